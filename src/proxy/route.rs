//! Route matching on the normalised target (`target`): the first route whose host and path
//! prefix match wins.
//!
//! Matching leans towards inspection: paths compare without case, and a route that inspects
//! matches its prefix as a plain string (`/upload` also takes `/uploads`, as nginx's
//! `location /upload` would), while a pass-through route matches whole segments only
//! (`/static` takes `/static/x`, not `/statics`). Over-inspecting costs CPU; under-inspecting
//! is a breach.

use std::sync::Arc;

use super::target::{SlashMode, normalize_host, normalize_path};
use crate::config::{InspectConfig, RouteConfig, Upstream};

#[derive(Debug)]
pub struct Route {
    /// Position in the config (metrics are resolved per route at start).
    pub index: usize,
    pub name: String,
    /// Normalised (`target::normalize_host`).
    host: Option<String>,
    /// Normalised and lower-cased, as `NormalPath::matched`.
    prefix: String,
    pub upstream: Upstream,
    pub inspect: InspectConfig,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.host.as_deref().is_none_or(|want| host == Some(want));
        host_ok
            && match path.strip_prefix(self.prefix.as_str()) {
                None => false,
                Some(_) if self.inspect.direction.any() => true,
                Some(rest) => {
                    self.prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
                }
            }
    }
}

pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(configs: &[RouteConfig]) -> Self {
        let routes = configs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                // Validated to start with '/'; a prefix with escapes normalises like a path.
                let prefix = normalize_path(&c.matcher.path_prefix, SlashMode::Decode).map_or_else(
                    |_| c.matcher.path_prefix.to_ascii_lowercase(),
                    |p| p.matched,
                );
                // "/upload" normalises to "/upload"; keep a prefix's own trailing slash only.
                let prefix = match c.matcher.path_prefix.ends_with('/') {
                    true => prefix,
                    false => prefix.trim_end_matches('/').to_string(),
                };
                Arc::new(Route {
                    index,
                    name: c.name.clone(),
                    host: c
                        .matcher
                        .host
                        .as_deref()
                        .map(|h| normalize_host(h).unwrap_or_else(|| h.to_ascii_lowercase())),
                    prefix,
                    upstream: c.upstream.clone(),
                    inspect: c.inspect.clone(),
                })
            })
            .collect();
        Self { routes }
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// `host` normalised (`target::normalize_host`), `path` a `NormalPath::matched`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(host, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn router() -> Router {
        let c = Config::parse(
            "routes:\n  - {name: up, match: {host: Up.Example., path_prefix: /Upload}, upstream: 'http://a:1'}\n  - {name: static, match: {path_prefix: /static}, upstream: 'http://a:1', inspect: {direction: none}}\n  - {name: all, upstream: 'http://b:1'}\n",
            "t",
        )
        .unwrap();
        Router::new(&c.routes)
    }

    #[test]
    fn first_match_wins_on_normalised_host_and_path() {
        let r = router();
        let name = |h, p| r.find(h, p).map(|r| r.name.as_str());
        assert_eq!(name(Some("up.example"), "/upload/a"), Some("up"));
        assert_eq!(name(Some("up.example"), "/upload"), Some("up"));
        assert_eq!(name(Some("other"), "/upload"), Some("all"));
        assert_eq!(name(None, "/upload"), Some("all"));
    }

    #[test]
    fn inspecting_prefixes_match_as_strings_pass_through_ones_by_segment() {
        let r = router();
        let name = |h, p| r.find(h, p).map(|r| r.name.as_str());
        assert_eq!(name(Some("up.example"), "/uploads"), Some("up"));
        assert_eq!(name(None, "/static/a.css"), Some("static"));
        assert_eq!(name(None, "/static"), Some("static"));
        assert_eq!(name(None, "/statics"), Some("all"));
    }
}
