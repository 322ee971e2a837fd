//! `inspect.extract.fetch:` — media behind URLs in bodies, fetched from allow-listed hosts only.

use std::time::Duration;

use serde::Deserialize;

use super::route::de_bytes;

/// Off unless a route lists hosts. Fetches go to the listed hosts only, over the listed schemes
/// and ports, never to private, loopback or link-local addresses (unless `allow_private`), with
/// no credentials, and redirects are checked like the first URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Host names (`cdn.example.com`) or suffix patterns (`*.example.com`, which does not
    /// match `example.com` itself). IP literals must be listed as they are written.
    pub hosts: Vec<String>,
    /// Schemes fetched (`https` unless listed).
    #[serde(default = "https_only")]
    pub schemes: Vec<String>,
    /// Ports fetched; empty: the scheme's default port only.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Allow addresses in private, loopback, link-local and other non-public ranges.
    #[serde(default)]
    pub allow_private: bool,
    /// Largest fetched body.
    #[serde(default = "default_max_bytes", deserialize_with = "de_bytes")]
    pub max_bytes: u64,
    /// Redirects followed (each one checked against these rules).
    #[serde(default = "default_redirects")]
    pub max_redirects: u32,
    /// Time for one fetch, redirects included (the route's time budget bounds it too).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl FetchConfig {
    /// Whether `url` may be fetched (before any address is resolved).
    pub fn allows(&self, url: &url::Url) -> bool {
        let scheme_ok = self
            .schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(url.scheme()));
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = self.hosts.iter().any(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == h,
            }
        });
        let default = if url.scheme().eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        let port = url.port().unwrap_or(default);
        let port_ok = if self.ports.is_empty() {
            port == default
        } else {
            self.ports.contains(&port)
        };
        // Credentials in the URL are never sent: refuse such URLs rather than strip them.
        let no_userinfo = url.username().is_empty() && url.password().is_none();
        scheme_ok && host_ok && port_ok && no_userinfo
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.hosts.is_empty() {
            return Err(("hosts".into(), "list at least one host".into()));
        }
        if let Some(s) = self
            .schemes
            .iter()
            .find(|s| !matches!(s.to_ascii_lowercase().as_str(), "http" | "https"))
        {
            return Err(("schemes".into(), format!("{s:?} is not http or https")));
        }
        if self.max_bytes == 0 {
            return Err(("max_bytes".into(), "must be above 0".into()));
        }
        Ok(())
    }
}

fn https_only() -> Vec<String> {
    vec!["https".into()]
}
fn default_max_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_redirects() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> FetchConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn allow_list() {
        let c = cfg("hosts: [cdn.example.com, '*.delivery.net']");
        let ok = |u: &str| c.allows(&url::Url::parse(u).unwrap());
        assert!(ok("https://cdn.example.com/a.png"));
        assert!(ok("https://CDN.example.com./a.png"));
        assert!(ok("https://x.delivery.net/a.png"));
        assert!(!ok("https://delivery.net/a.png"));
        assert!(!ok("http://cdn.example.com/a.png"), "scheme not listed");
        assert!(!ok("https://cdn.example.com:8443/a.png"), "port not listed");
        assert!(ok("https://cdn.example.com:443/a.png"));
        assert!(!ok("https://user:pw@cdn.example.com/a.png"));
        assert!(!ok("https://cdn.example.com.evil.org/a.png"));
        assert!(!ok("https://evilcdn.example.com/a.png"));
    }
}
