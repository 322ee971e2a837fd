//! Route matching: first route whose host and path prefix match wins.

use std::sync::Arc;

use crate::config::{InspectConfig, RouteConfig, Upstream};

#[derive(Debug)]
pub struct Route {
    pub name: String,
    host: Option<String>,
    prefix: String,
    pub upstream: Upstream,
    pub inspect: InspectConfig,
}

pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(configs: &[RouteConfig]) -> Self {
        let routes = configs
            .iter()
            .map(|c| {
                Arc::new(Route {
                    name: c.name.clone(),
                    host: c.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    prefix: c.matcher.path_prefix.clone(),
                    upstream: c.upstream.clone(),
                    inspect: c.inspect.clone(),
                })
            })
            .collect();
        Self { routes }
    }

    /// `host` is the Host header (a port, if any, is ignored).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.position(host, path).map(|i| &self.routes[i])
    }

    /// Like `find`, as an index into `routes()`.
    pub fn position(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(strip_port);
        self.routes.iter().position(|r| {
            r.host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
                && prefix_matches(&r.prefix, path)
        })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `/upload` matches `/upload`, `/upload/x`, `/upload?x` — not `/uploads`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?']),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn first_match_wins_with_host_and_segment_prefix() {
        let c = Config::parse(
            "routes:\n  - {name: up, match: {host: Up.Example, path_prefix: /upload}, upstream: 'http://a:1'}\n  - {name: all, upstream: 'http://b:1'}\n",
            "t",
        )
        .unwrap();
        let r = Router::new(&c.routes);
        let name = |h, p| r.find(h, p).map(|r| r.name.as_str());
        assert_eq!(name(Some("up.example:8080"), "/upload/a"), Some("up"));
        assert_eq!(name(Some("up.example"), "/upload"), Some("up"));
        assert_eq!(name(Some("up.example"), "/uploads"), Some("all"));
        assert_eq!(name(Some("other"), "/upload"), Some("all"));
        assert_eq!(name(None, "/upload"), Some("all"));
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
