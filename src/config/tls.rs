//! `tls:` — a second, TLS listener for the proxy (HTTP/2 offered by ALPN).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenConfig {
    /// Address of the TLS listener (beside `listen`, which stays plain HTTP).
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf.
    pub key_file: PathBuf,
    /// Offer HTTP/2 by ALPN (clients that do not ask for it keep HTTP/1.1).
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

impl TlsListenConfig {
    /// Both files must be readable at start, not at the first handshake.
    pub fn validate(&self, plain: SocketAddr) -> Result<(), (String, String)> {
        if self.listen == plain {
            return Err((
                "tls.listen".into(),
                "must differ from the plain listen address".into(),
            ));
        }
        for (field, path) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            std::fs::metadata(path)
                .map_err(|e| (field.to_string(), format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }
}
