//! Who a request acts for: an API key the operator registered (authenticated) or, where
//! trusted, the licensee header a gateway in front sets.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use crate::config::LicensingConfig;

pub struct Requester {
    header: HeaderName,
    trust_header: bool,
    api_key_header: HeaderName,
    /// SHA-256 of each key → licensee (the config holds digests, never keys).
    keys: HashMap<[u8; 32], String>,
}

impl Requester {
    pub fn new(config: &LicensingConfig) -> Result<Self, String> {
        let name = |field: &str, v: &str| {
            HeaderName::try_from(v)
                .map_err(|_| format!("licensing.{field}: {v:?} is not a header name"))
        };
        let mut keys = HashMap::new();
        for (digest, licensee) in &config.api_keys {
            let bytes = hex::decode(digest)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!("licensing.api_keys: {digest:?} is not a SHA-256 hex digest of a key")
                })?;
            keys.insert(bytes, licensee.clone());
        }
        Ok(Self {
            header: name("licensee_header", &config.licensee_header)?,
            trust_header: config.trust_licensee_header,
            api_key_header: name("api_key_header", &config.api_key_header)?,
            keys,
        })
    }

    /// The licensee for these request headers, if any.
    pub fn licensee(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(key) = headers.get(&self.api_key_header) {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            // A presented but unknown key names nobody (and never falls back to the header).
            return self.keys.get(&digest).cloned();
        }
        if !self.trust_header {
            return None;
        }
        headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_win_and_unknown_keys_name_nobody() {
        let key_digest = hex::encode(Sha256::digest(b"k-123"));
        let config = LicensingConfig {
            api_keys: [(key_digest, "acme".to_string())].into(),
            ..Default::default()
        };
        let r = Requester::new(&config).unwrap();
        let mut h = HeaderMap::new();
        h.insert("likeguard-licensee", "mallory".parse().unwrap());
        assert_eq!(r.licensee(&h).as_deref(), Some("mallory"));
        h.insert("x-api-key", "k-123".parse().unwrap());
        assert_eq!(r.licensee(&h).as_deref(), Some("acme"));
        h.insert("x-api-key", "wrong".parse().unwrap());
        assert_eq!(r.licensee(&h), None);

        let strict = Requester::new(&LicensingConfig {
            trust_licensee_header: false,
            ..Default::default()
        })
        .unwrap();
        h.remove("x-api-key");
        assert_eq!(strict.licensee(&h), None);
    }
}
