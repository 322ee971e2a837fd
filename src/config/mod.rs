//! Configuration: the YAML file an operator writes, its defaults, and its validation.
//!
//! Everything is parsed into typed values up front so the request path never re-parses strings.
//! `likeguard config example` prints `example.yaml`, which is also parsed in a test so the
//! documented example can never drift from what the loader accepts.

mod connections;
mod decision_log;
mod fetch;
mod icap;
mod inference;
mod inspections;
mod media;
mod provenance;
mod route;
mod search;
mod tls;
mod watermark;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use connections::ConnectionsConfig;
pub use decision_log::DecisionLogConfig;
pub use fetch::FetchConfig;
pub use icap::IcapConfig;
pub use inference::{BatchConfig, ExecutionProvider, InferenceConfig, MODELS_DIR_ENV};
pub use inspections::InspectionsConfig;
pub use media::{Limits, MediaConfig, Sampling, StillImages};
pub use provenance::ProvenanceConfig;
pub use route::{
    Direction, ExtractConfig, FailureMode, InspectConfig, Mode, Ranges, RouteConfig, RouteMatch,
    UnsupportedMedia, Upstream,
};
pub use search::{Quantization, SearchConfig};
pub use tls::TlsListenConfig;
pub use watermark::{
    KEY_FILE as WATERMARK_KEY_FILE, KeySource, Position as StampPosition, VisibleConfig,
    WATERMARK_KEY_ENV, WatermarkConfig,
};

/// The commented example printed by `likeguard config example`.
pub const EXAMPLE: &str = include_str!("example.yaml");

/// Environment variable that supplies the admin bearer token (overrides the file).
pub const ADMIN_TOKEN_ENV: &str = "LIKEGUARD_ADMIN_TOKEN";
/// The Redis URL of `store: {kind: redis}` (it may hold a password: keep it in a secret).
pub const REDIS_URL_ENV: &str = "LIKEGUARD_REDIS_URL";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the proxy listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// An optional TLS listener (HTTP/1.1 and HTTP/2), same routes.
    #[serde(default)]
    pub tls: Option<TlsListenConfig>,
    /// Extra trusted roots (PEM) for `https://` upstreams, beside the system's.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
    /// Proxy worker threads; 0 = one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// How request paths are read (docs/proxy.md).
    #[serde(default)]
    pub paths: PathsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where likeguard keeps its own state (known-media bank, ...).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Bounds on upstream connections (busy, queued, idle).
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Bodies inspected at once.
    #[serde(default)]
    pub inspections: InspectionsConfig,
    #[serde(default)]
    pub tag: TagConfig,
    #[serde(default)]
    pub known_media: KnownMediaConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub licensing: LicensingConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Where identities and licenses live.
    #[serde(default)]
    pub store: StoreConfig,
    /// How faces are looked up among enrolled identities (exact / ANN).
    #[serde(default)]
    pub search: SearchConfig,
    /// The persistent record of decisions (docs/decision-log.md).
    #[serde(default)]
    pub decision_log: DecisionLogConfig,
    /// The invisible mark of the `watermark` action.
    #[serde(default)]
    pub watermark: WatermarkConfig,
    /// Signed C2PA manifests on tagged and watermarked response images.
    #[serde(default)]
    pub provenance: ProvenanceConfig,
    /// An ICAP service (RFC 3507) for proxies that hand content to inspection over ICAP
    /// (Squid, Traffic Server, ...): off unless set (docs/icap.md).
    #[serde(default)]
    pub icap: Option<IcapConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// `%2F`, `%5C` and `\` in a path: `reject` (400) or `decode` (read as `/`).
    #[serde(default)]
    pub encoded_slashes: SlashMode,
}

/// What to do with `%2F`, `%5C` and `\` in a path: origins disagree on whether they separate
/// segments, so by default they are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlashMode {
    #[default]
    Reject,
    /// Treat them as `/` (the path forwarded upstream has a plain `/` there).
    Decode,
}

/// `embedded`: files in `state_dir` (one process). `redis`: shared by every instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    #[default]
    Embedded,
    Redis {
        /// e.g. `redis://127.0.0.1:6379/0`. `LIKEGUARD_REDIS_URL` overrides it, so a URL with
        /// a password can come from a secret rather than the file.
        #[serde(default)]
        url: String,
        /// Key prefix, so several deployments can share one Redis.
        #[serde(default = "default_store_prefix")]
        prefix: String,
    },
}

fn default_store_prefix() -> String {
    "likeguard".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rule file (YAML + CEL). Unset: the built-in `policies/default.yaml`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Request headers rules may read as `request.headers["name"]` (lower-case names).
    #[serde(default)]
    pub expose_headers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensingConfig {
    /// Request header naming the licensee a request acts for (set by a trusted gateway).
    #[serde(default = "default_licensee_header")]
    pub licensee_header: String,
    /// Honour `licensee_header` at all (false: only API keys name a licensee).
    #[serde(default = "default_true")]
    pub trust_licensee_header: bool,
    /// Header carrying an API key.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// SHA-256 (hex) of each API key → the licensee it authenticates.
    #[serde(default)]
    pub api_keys: std::collections::BTreeMap<String, String>,
    /// Licensee from a claim of a signed JWT (checked after API keys, before the header).
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// `licensing.jwt`: a bearer JWT whose signature, expiry, issuer and audience are checked; one
/// of its claims names the licensee.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Header carrying `Bearer <token>`.
    #[serde(default = "default_jwt_header")]
    pub header: String,
    /// The only accepted algorithm (e.g. `RS256`, `ES256`, `EdDSA`, `HS256`): pinning one
    /// rules out algorithm-confusion attacks.
    pub algorithm: String,
    /// PEM public key for RS*/PS*/ES*/EdDSA.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Environment variable holding the shared secret for HS* (never in the file).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Claim naming the licensee (a string).
    #[serde(default = "default_jwt_claim")]
    pub claim: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

fn default_jwt_header() -> String {
    "authorization".into()
}

fn default_jwt_claim() -> String {
    "sub".into()
}

impl Default for LicensingConfig {
    fn default() -> Self {
        Self {
            licensee_header: default_licensee_header(),
            trust_licensee_header: true,
            api_key_header: default_api_key_header(),
            api_keys: Default::default(),
            jwt: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

fn default_licensee_header() -> String {
    "likeguard-licensee".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Bearer token for the admin API and /metrics. `LIKEGUARD_ADMIN_TOKEN` overrides it.
    #[serde(default)]
    pub token: Option<String>,
    /// Serve /metrics without the token (for scrapers on a trusted network).
    #[serde(default)]
    pub metrics_public: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
            metrics_public: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Longest wait for the next chunk of a client's body (slow clients get 408).
    #[serde(default = "d_30s", with = "humantime_serde")]
    pub client_read: Duration,
    /// How long a keep-alive client connection may sit idle between requests.
    #[serde(default = "d_60s", with = "humantime_serde")]
    pub client_idle: Duration,
    /// Longest time to receive a whole held body from a client.
    #[serde(default = "d_60s", with = "humantime_serde")]
    pub client_body: Duration,
    #[serde(default = "d_5s", with = "humantime_serde")]
    pub upstream_connect: Duration,
    /// Longest wait for the upstream's response headers.
    #[serde(default = "d_60s", with = "humantime_serde")]
    pub upstream_response: Duration,
    /// Graceful shutdown: how long in-flight requests may take to finish.
    #[serde(default = "d_5s", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_read: d_30s(),
            client_idle: d_60s(),
            client_body: d_60s(),
            upstream_connect: d_5s(),
            upstream_response: d_60s(),
            shutdown_grace: d_5s(),
        }
    }
}

/// Header names used by the `tag` action (and by every decision for traceability).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    #[serde(default = "h_decision")]
    pub decision_header: String,
    #[serde(default = "h_rule")]
    pub rule_header: String,
    #[serde(default = "h_decision_id")]
    pub decision_id_header: String,
    /// Extra fixed headers added on `tag`.
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, String>,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            decision_header: h_decision(),
            rule_header: h_rule(),
            decision_id_header: h_decision_id(),
            extra: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownMediaConfig {
    /// Largest PDQ Hamming distance (of 256 bits) that still counts as the same image.
    /// 31 is the threshold recommended with the PDQ reference implementation.
    #[serde(default = "default_pdq_distance")]
    pub pdq_max_distance: u32,
    /// Largest image (in pixels) decoded for perceptual hashing; bigger ones are hashed exactly only.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
}

impl Default for KnownMediaConfig {
    fn default() -> Self {
        Self {
            pdq_max_distance: default_pdq_distance(),
            max_pixels: default_max_pixels(),
        }
    }
}

/// The text split for error reporting: each top-level key's block, and each item of `routes`
/// on its own (with its `routes:` line), every other line blanked so positions stay true.
fn sections(text: &str) -> Vec<(String, Option<usize>)> {
    let lines: Vec<&str> = text.lines().collect();
    let top = |l: &str| !l.is_empty() && !l.starts_with([' ', '\t', '#', '-']);
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if top(l) {
            if let Some(last) = blocks.last_mut() {
                last.1 = i;
            }
            blocks.push((i, lines.len()));
        }
    }
    let keep = |ranges: &[(usize, usize)]| {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if ranges.iter().any(|(a, b)| (*a..*b).contains(&i)) {
                    *l
                } else {
                    ""
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = Vec::new();
    for &(start, end) in &blocks {
        if lines[start].trim_end() != "routes:" {
            out.push((keep(&[(start, end)]), None));
            continue;
        }
        // One route at a time: items start with "- " at the list's indentation.
        let items: Vec<usize> = (start + 1..end)
            .filter(|i| {
                lines[*i].trim_start().starts_with("- ") && {
                    let indent = lines[*i].len() - lines[*i].trim_start().len();
                    indent
                        == lines[start + 1..end]
                            .iter()
                            .filter(|l| l.trim_start().starts_with("- "))
                            .map(|l| l.len() - l.trim_start().len())
                            .min()
                            .unwrap_or(indent)
                }
            })
            .collect();
        if items.is_empty() {
            out.push((keep(&[(start, end)]), None));
        }
        for (n, &item) in items.iter().enumerate() {
            let next = items.get(n + 1).copied().unwrap_or(end);
            out.push((keep(&[(start, start + 1), (item, next)]), Some(n)));
        }
    }
    out
}

/// The line an error names ("line N"), for ordering; 0 when it names none.
fn error_line(e: &ConfigError) -> usize {
    let text = e.to_string();
    text.split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A configuration problem, reported as file / field / reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {field}: {reason}")]
    Invalid {
        file: String,
        field: String,
        reason: String,
    },
    /// Several problems, each once, at its field, in file order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl Config {
    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Self::parse(&text, &file)?;
        // Relative paths in a file mean "next to this file", wherever likeguard is started.
        let folder = path.parent().unwrap_or(Path::new("."));
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        config.resolve_paths(&folder);
        Ok(config)
    }

    /// Every relative path in the config, joined to `base` (the config file's folder).
    /// `LIKEGUARD_MODELS_DIR` is the environment's, so it stays as given.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                fix(p);
            }
        };
        fix(&mut self.state_dir);
        if std::env::var_os(MODELS_DIR_ENV).is_none() {
            fix(&mut self.inference.models_dir);
        }
        fix_opt(&mut self.media.pipelines_dir);
        fix_opt(&mut self.upstream_ca_file);
        fix_opt(&mut self.policy.file);
        fix_opt(&mut self.provenance.cert_file);
        fix_opt(&mut self.provenance.key_file);
        if let Some(jwt) = &mut self.licensing.jwt {
            fix_opt(&mut jwt.public_key_file);
        }
        if let Some(tls) = &mut self.tls {
            fix(&mut tls.cert_file);
            fix(&mut tls.key_file);
        }
        if let Some(v) = &mut self.watermark.visible {
            fix_opt(&mut v.logo_file);
            fix(&mut v.font_file);
        }
    }

    /// Parse and validate config text; `file` names it in errors. A file with several mistakes
    /// gets them all, each once, at its field: every top-level section and every route is read
    /// on its own (the rest of the text blanked, so line numbers stay true).
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let mut config = match Self::deserialize_text(text, file) {
            Ok(c) => c,
            Err(first) => {
                let mut all: Vec<(usize, ConfigError)> = sections(text)
                    .into_iter()
                    .filter_map(|(part, route)| {
                        let e = Self::deserialize_text(&part, file).err()?;
                        // A route read alone is routes[0]: give it back its place.
                        Some(match (e, route) {
                            (
                                ConfigError::Invalid {
                                    file,
                                    field,
                                    reason,
                                },
                                Some(n),
                            ) => ConfigError::Invalid {
                                file,
                                field: field.replacen("routes[0]", &format!("routes[{n}]"), 1),
                                reason,
                            },
                            (e, _) => e,
                        })
                    })
                    .map(|e| (error_line(&e), e))
                    .collect();
                all.sort_by_key(|(line, _)| *line);
                all.dedup_by(|a, b| a.1.to_string() == b.1.to_string());
                return Err(match all.len() {
                    0 => first,
                    1 => all.remove(0).1,
                    _ => ConfigError::Many(all.into_iter().map(|(_, e)| e).collect()),
                });
            }
        };
        if let (StoreConfig::Redis { url, .. }, Some(from_env)) =
            (&mut config.store, std::env::var(REDIS_URL_ENV).ok())
        {
            *url = from_env;
        }
        config
            .validate()
            .map_err(|(field, reason)| ConfigError::Invalid {
                file: file.to_string(),
                field,
                reason,
            })?;
        if let Some(dir) = std::env::var_os(MODELS_DIR_ENV) {
            config.inference.models_dir = PathBuf::from(dir);
        }
        Ok(config)
    }

    fn deserialize_text(text: &str, file: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." {
                "(top level)".to_string()
            } else {
                field
            };
            // serde_yaml's message may lead with its own path and ends with the position:
            // keep one of each.
            let reason = e.into_inner().to_string();
            let reason = match reason.split_once(": ") {
                Some((lead, rest)) if field.starts_with(lead) && !lead.contains(' ') => {
                    rest.to_string()
                }
                _ => reason,
            };
            ConfigError::Invalid {
                file: file.to_string(),
                field,
                reason,
            }
        })
    }

    /// The embedded default: no file, every path inspected towards `upstream` in both directions.
    pub fn embedded(upstream: Upstream) -> Self {
        let mut config = Self::parse("{}", "(embedded)").expect("empty config is valid");
        config.routes.push(RouteConfig::catch_all(upstream));
        config
    }

    /// Checks that need more than one field at a time.
    fn validate(&self) -> Result<(), (String, String)> {
        if let StoreConfig::Redis { url, .. } = &self.store {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "unix" | "redis+unix") => {}
                _ => {
                    return Err((
                        "store.url".into(),
                        format!("needs a redis:// or rediss:// URL (here or in {REDIS_URL_ENV})"),
                    ));
                }
            }
        }
        self.decision_log.validate()?;
        if self.listen == self.admin.listen {
            return Err((
                "admin.listen".into(),
                "must differ from the proxy listen address".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            tls.validate(self.listen)?;
        }
        if let Some(icap) = &self.icap {
            let mut taken = vec![self.listen, self.admin.listen];
            taken.extend(self.tls.as_ref().map(|t| t.listen));
            icap.validate(&taken)?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            route
                .validate()
                .map_err(|(f, r)| (format!("routes[{i}].{f}"), r))?;
            if !names.insert(route.name.as_str()) {
                return Err((
                    format!("routes[{i}].name"),
                    format!("duplicate route name {:?}", route.name),
                ));
            }
        }
        for (field, name) in [
            ("tag.decision_header", &self.tag.decision_header),
            ("tag.rule_header", &self.tag.rule_header),
            ("tag.decision_id_header", &self.tag.decision_id_header),
            ("licensing.licensee_header", &self.licensing.licensee_header),
        ] {
            http::HeaderName::try_from(name.as_str())
                .map_err(|_| (field.to_string(), format!("{name:?} is not a header name")))?;
        }
        for (k, v) in &self.tag.extra {
            http::HeaderName::try_from(k.as_str()).map_err(|_| {
                (
                    "tag.extra".to_string(),
                    format!("{k:?} is not a header name"),
                )
            })?;
            http::HeaderValue::try_from(v.as_str()).map_err(|_| {
                (
                    format!("tag.extra.{k}"),
                    format!("{v:?} is not a header value"),
                )
            })?;
        }
        self.media.validate()?;
        self.inference.validate()?;
        self.connections.validate()?;
        if self.known_media.pdq_max_distance > 128 {
            return Err((
                "known_media.pdq_max_distance".into(),
                "must be at most 128 (of 256 bits); 31 is the usual value".into(),
            ));
        }
        Ok(())
    }

    /// The admin token: the environment wins over the file. Empty means unset.
    pub fn admin_token(&self) -> Option<String> {
        std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .or_else(|| self.admin.token.clone())
            .filter(|t| !t.is_empty())
    }

    pub fn worker_threads(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("likeguard-state")
}
fn default_pdq_distance() -> u32 {
    31
}
fn default_max_pixels() -> u64 {
    50_000_000
}
fn d_5s() -> Duration {
    Duration::from_secs(5)
}
fn d_30s() -> Duration {
    Duration::from_secs(30)
}
fn d_60s() -> Duration {
    Duration::from_secs(60)
}
fn h_decision() -> String {
    "likeguard-decision".into()
}
fn h_rule() -> String {
    "likeguard-rule".into()
}
fn h_decision_id() -> String {
    "likeguard-decision-id".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_by_default_and_checked() {
        let c = Config::parse("{}", "t").unwrap();
        assert_eq!(c.connections.upstream_max, 256);
        assert_eq!(c.connections.upstream_idle, 64);
        assert_eq!(c.connections.retry_after_secs(), 1);
        let e = Config::parse("connections: {upstream_max: 0}\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("connections.upstream_max"), "{e}");
        let e = Config::parse("connections: {retry_after: 200ms}\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("connections.retry_after"), "{e}");
    }

    #[test]
    fn example_parses() {
        let c = Config::parse(EXAMPLE, "example.yaml").unwrap();
        assert!(c.routes.len() >= 2);
        assert_eq!(c.routes[0].name, "uploads");
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::parse(
            "routes:\n  - name: a\n    upstream: http://x:1\n    inspect: {direction: sideways}\n",
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("f.yaml: routes[0].inspect.direction:"), "{e}");
        assert!(e.contains("sideways"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = Config::parse("listn: 1.2.3.4:5\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn upstream_schemes_other_than_http_and_https_are_refused_clearly() {
        let c = Config::parse("routes:\n  - name: a\n    upstream: https://x\n", "f.yaml").unwrap();
        let up = &c.routes[0].upstream;
        assert!(up.tls);
        assert_eq!(up.authority, "x:443");
        let e = Config::parse("routes:\n  - name: a\n    upstream: ws://x:1\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routes[0].upstream"), "{e}");
        assert!(e.contains("http:// or https://"), "{e}");
    }

    #[test]
    fn duplicate_route_names_are_refused() {
        let e = Config::parse(
            "routes:\n  - {name: a, upstream: 'http://x:1'}\n  - {name: a, upstream: 'http://x:2'}\n",
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("routes[1].name"), "{e}");
    }
}
