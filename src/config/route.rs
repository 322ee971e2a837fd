//! Route configuration: which traffic is inspected, how, and what happens when inspection fails.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};

use super::fetch::FetchConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    pub upstream: Upstream,
    #[serde(default)]
    pub inspect: InspectConfig,
}

/// Host and path-prefix match. An empty matcher matches everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact host (without port), case-insensitive. None = any host.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "root_prefix")]
    pub path_prefix: String,
}

/// An upstream origin: `http://host:port` or `https://host:port` (TLS, certificate verified
/// against the system roots plus `upstream_ca_file`, SNI = host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`, as dialled.
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Default for RouteMatch {
    fn default() -> Self {
        Self {
            host: None,
            path_prefix: root_prefix(),
        }
    }
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(format!("{url:?}: give an http:// or https:// origin")),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "{url:?}: give an origin like http://host:port, without a path"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?}: bad port {p:?}"))?;
                (h.to_string(), port)
            }
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: missing host"));
        }
        Ok(Self {
            authority: format!("{host}:{port}"),
            host,
            port,
            tls,
        })
    }
}

impl Upstream {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority)
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Upstream::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Which bodies of a route are inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Nothing inspected: pure streaming pass-through.
    None,
    /// Request bodies (uploads).
    Request,
    /// Response bodies (generation results).
    Response,
    Both,
}

impl Direction {
    pub fn request(self) -> bool {
        matches!(self, Self::Request | Self::Both)
    }
    pub fn response(self) -> bool {
        matches!(self, Self::Response | Self::Both)
    }
    pub fn any(self) -> bool {
        self != Self::None
    }
}

/// How a body is captured. Only `hold` is built; `tee` and `async` are refused at load
/// so nobody believes they run (see docs/decisions/0001-inspected-exchange.md for the seam).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Buffer the whole body (up to `max_body`), decide, then forward.
    Hold,
    /// Forward while a copy is inspected, holding back only the last chunk (not built yet).
    Tee,
    /// Forward at once and inspect in the background (not built yet).
    Async,
}

/// What to do when inspection itself fails (error or time budget exceeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the traffic through un-inspected (marked with the decision header `error`).
    FailOpen,
    /// Refuse the traffic (503 on the request side, 502 on the response side).
    FailClosed,
}

/// What to do with a body that claims to be media but is not a format we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsupportedMedia {
    /// Pass it un-inspected.
    Pass,
    /// Refuse it with 415.
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectConfig {
    #[serde(default = "default_direction")]
    pub direction: Direction,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Largest body held for inspection; a bigger request body gets 413.
    #[serde(default = "default_max_body", deserialize_with = "de_bytes")]
    pub max_body: u64,
    /// Most media items taken from one body (multipart parts, JSON fields).
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// Time allowed for extraction and inspection of one body.
    #[serde(default = "default_budget", with = "humantime_serde")]
    pub time_budget: Duration,
    #[serde(default = "default_failure")]
    pub on_failure: FailureMode,
    #[serde(default = "default_unsupported")]
    pub on_unsupported: UnsupportedMedia,
    #[serde(default)]
    pub extract: ExtractConfig,
    #[serde(default = "default_ranges")]
    pub ranges: Ranges,
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self {
            direction: default_direction(),
            mode: default_mode(),
            max_body: default_max_body(),
            max_items: default_max_items(),
            time_budget: default_budget(),
            on_failure: default_failure(),
            on_unsupported: default_unsupported(),
            extract: ExtractConfig::default(),
            ranges: default_ranges(),
        }
    }
}

/// Where extraction looks. By default everywhere, by content: raw bodies, every multipart
/// part, every JSON string and form value, base64 in text, archives and compressed bodies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// JSON pointers (RFC 6901, `*` = every array element or object member) that narrow the
    /// search in JSON bodies; empty (the default): every string at any depth.
    #[serde(default)]
    pub json_pointers: Vec<String>,
    #[serde(default = "yes")]
    pub multipart: bool,
    /// Raw media bodies, `application/octet-stream` and bodies without a Content-Type.
    #[serde(default = "yes")]
    pub raw: bool,
    /// `application/x-www-form-urlencoded` fields.
    #[serde(default = "yes")]
    pub forms: bool,
    /// Open zip, tar, gzip and zstd data wherever it is found.
    #[serde(default = "yes")]
    pub archives: bool,
    /// Hold text bodies (`text/*`, XML, event streams) and search them for base64 media;
    /// `false` streams them, looking only at their opening bytes.
    #[serde(default = "yes")]
    pub text: bool,
    /// Containers inside containers (a zip in a JSON string in a part is 3).
    #[serde(default = "default_depth")]
    pub max_depth: usize,
    /// Bytes that decoding one body may produce (base64, decompression, archive members):
    /// the bound on zip and gzip bombs.
    #[serde(default = "default_expanded", deserialize_with = "de_bytes")]
    pub max_expanded: u64,
    /// Members of one archive.
    #[serde(default = "default_members")]
    pub max_members: usize,
    /// Fetch media behind URLs from these hosts (off unless set).
    #[serde(default)]
    pub fetch: Option<FetchConfig>,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            json_pointers: Vec::new(),
            multipart: true,
            raw: true,
            forms: true,
            archives: true,
            text: true,
            max_depth: default_depth(),
            max_expanded: default_expanded(),
            max_members: default_members(),
            fetch: None,
        }
    }
}

/// How a `Range` request on a response-inspected route is answered: the upstream is always
/// asked for the whole representation, which is inspected before any of it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranges {
    /// Serve the requested range (206) from the inspected whole.
    Serve,
    /// Answer the whole representation (200), as RFC 9110 allows.
    Whole,
}

impl RouteConfig {
    /// The route of the embedded default: every path, both directions, hold mode.
    pub fn catch_all(upstream: Upstream) -> Self {
        Self {
            name: "default".into(),
            matcher: RouteMatch::default(),
            upstream,
            inspect: InspectConfig::default(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.name.is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        if !self.matcher.path_prefix.starts_with('/') {
            return Err((
                "match.path_prefix".into(),
                format!("{:?} must start with '/'", self.matcher.path_prefix),
            ));
        }
        let i = &self.inspect;
        if i.direction.any() && i.mode != Mode::Hold {
            return Err((
                "inspect.mode".into(),
                format!(
                    "{:?} is not built yet; use \"hold\"",
                    format!("{:?}", i.mode).to_lowercase()
                ),
            ));
        }
        if i.max_body == 0 {
            return Err(("inspect.max_body".into(), "must be above 0".into()));
        }
        if i.max_items == 0 {
            return Err(("inspect.max_items".into(), "must be above 0".into()));
        }
        if i.time_budget.is_zero() {
            return Err(("inspect.time_budget".into(), "must be above 0".into()));
        }
        for (n, p) in i.extract.json_pointers.iter().enumerate() {
            if !p.starts_with('/') {
                return Err((
                    format!("inspect.extract.json_pointers[{n}]"),
                    format!("{p:?} is not a JSON pointer (must start with '/')"),
                ));
            }
        }
        if i.extract.max_expanded == 0 {
            return Err((
                "inspect.extract.max_expanded".into(),
                "must be above 0".into(),
            ));
        }
        if let Some(f) = &i.extract.fetch {
            f.validate()
                .map_err(|(field, e)| (format!("inspect.extract.fetch.{field}"), e))?;
        }
        Ok(())
    }
}

pub(super) fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Int(n) => Ok(n),
        Size::Text(s) => s.parse::<ByteSize>().map(|b| b.as_u64()).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a size like \"32MiB\": {e}"))
        }),
    }
}

fn root_prefix() -> String {
    "/".into()
}
fn default_direction() -> Direction {
    Direction::Both
}
fn default_mode() -> Mode {
    Mode::Hold
}
fn default_max_body() -> u64 {
    32 * 1024 * 1024
}
fn default_max_items() -> usize {
    16
}
fn default_budget() -> Duration {
    Duration::from_secs(5)
}
fn default_failure() -> FailureMode {
    FailureMode::FailClosed
}
fn default_unsupported() -> UnsupportedMedia {
    UnsupportedMedia::Reject
}
fn default_depth() -> usize {
    6
}
fn default_expanded() -> u64 {
    128 * 1024 * 1024
}
fn default_members() -> usize {
    4096
}
fn default_ranges() -> Ranges {
    Ranges::Serve
}
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("http://127.0.0.1:3000/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 3000));
        assert_eq!(Upstream::parse("http://svc").unwrap().port, 80);
        assert!(Upstream::parse("http://svc/path").is_err());
        assert!(Upstream::parse("ftp://svc").is_err());
        assert!(Upstream::parse("http://svc:99999").is_err());
    }
}
