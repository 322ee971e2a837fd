//! `icap:` — the ICAP service (RFC 3507) beside the proxy, off unless configured
//! (docs/icap.md).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcapConfig {
    /// Address of the ICAP listener (port 1344 is ICAP's registered port).
    pub listen: SocketAddr,
    /// ICAP connections served at once; more are answered `503` and closed. Announced to
    /// clients as `Max-Connections`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes of each body the client sends before the rest is asked for (`Preview`); enough
    /// to recognise any media format, so non-media bodies are answered `204` from it.
    #[serde(default = "default_preview")]
    pub preview: usize,
    /// How long a client may cache the OPTIONS answer (`Options-TTL`).
    #[serde(default = "default_options_ttl", with = "humantime_serde")]
    pub options_ttl: Duration,
    /// Bytes an ICAP head plus the encapsulated HTTP heads may take.
    #[serde(default = "default_max_head")]
    pub max_head_bytes: usize,
    /// An idle keep-alive connection is closed after this long.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl IcapConfig {
    pub fn validate(&self, others: &[SocketAddr]) -> Result<(), (String, String)> {
        if others.contains(&self.listen) {
            return Err((
                "icap.listen".into(),
                "must differ from the proxy, TLS and admin listen addresses".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(("icap.max_connections".into(), "must be at least 1".into()));
        }
        // Under the sniffing window a preview could not tell media from anything else.
        if self.preview < crate::extract::SNIFF_BYTES {
            return Err((
                "icap.preview".into(),
                format!(
                    "must be at least {} bytes (what recognising a media format needs)",
                    crate::extract::SNIFF_BYTES
                ),
            ));
        }
        if self.max_head_bytes < 1024 {
            return Err(("icap.max_head_bytes".into(), "must be at least 1024".into()));
        }
        Ok(())
    }
}

fn default_max_connections() -> usize {
    256
}

fn default_preview() -> usize {
    4096
}

fn default_options_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_max_head() -> usize {
    64 * 1024
}

fn default_idle() -> Duration {
    Duration::from_secs(60)
}
