//! `provenance:` — signed C2PA manifests on the media likeguard passes.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceConfig {
    /// Sign a manifest onto response-side images decided `tag` or `watermark` (JPEG, PNG).
    pub enabled: bool,
    /// PEM certificate chain (end-entity first); C2PA needs a document-signing style profile,
    /// see docs/watermark.md for making a test pair with openssl.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8).
    pub key_file: Option<PathBuf>,
    /// `es256` | `es384` | `es512` | `ps256` | `ps384` | `ps512` | `ed25519`.
    pub algorithm: String,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: None,
            key_file: None,
            algorithm: "es256".into(),
        }
    }
}
