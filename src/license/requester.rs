//! Who a request acts for, in this order: an API key the operator registered, a claim of a
//! signed JWT, or — where trusted — the licensee header a gateway in front sets. A credential
//! that is presented but does not check out names nobody: it never falls through to a weaker one.

use std::collections::HashMap;
use std::str::FromStr;

use http::{HeaderMap, HeaderName};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use crate::config::{JwtConfig, LicensingConfig};

pub struct Requester {
    header: HeaderName,
    trust_header: bool,
    api_key_header: HeaderName,
    /// SHA-256 of each key → licensee (the config holds digests, never keys).
    keys: HashMap<[u8; 32], String>,
    jwt: Option<Jwt>,
}

/// A JWT check prepared once: key parsed, validation fixed.
struct Jwt {
    header: HeaderName,
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

impl Jwt {
    fn new(c: &JwtConfig) -> Result<Self, String> {
        let algorithm = Algorithm::from_str(&c.algorithm).map_err(|_| {
            format!(
                "licensing.jwt.algorithm: {:?} is not a JWT algorithm",
                c.algorithm
            )
        })?;
        let key = if algorithm.family() == AlgorithmFamily::Hmac {
            let var = c.secret_env.as_deref().ok_or(
                "licensing.jwt: HS* algorithms need secret_env (the variable holding the secret)",
            )?;
            let secret = std::env::var(var)
                .map_err(|_| format!("licensing.jwt.secret_env: {var} is not set"))?;
            if secret.len() < 32 {
                return Err(format!(
                    "licensing.jwt.secret_env: {var} holds under 32 bytes"
                ));
            }
            DecodingKey::from_secret(secret.as_bytes())
        } else {
            let path = c
                .public_key_file
                .as_ref()
                .ok_or("licensing.jwt: public-key algorithms need public_key_file (PEM)")?;
            let pem = std::fs::read(path)
                .map_err(|e| format!("licensing.jwt.public_key_file: {}: {e}", path.display()))?;
            let parsed = match algorithm.family() {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            };
            parsed.map_err(|e| {
                format!(
                    "licensing.jwt.public_key_file: {}: not a {} public key: {e}",
                    path.display(),
                    c.algorithm
                )
            })?
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        match &c.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &c.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            header: HeaderName::try_from(c.header.as_str()).map_err(|_| {
                format!("licensing.jwt.header: {:?} is not a header name", c.header)
            })?,
            key,
            validation,
            claim: c.claim.clone(),
        })
    }

    /// The licensee claim of a valid token; `None` for a bad signature, expired token, wrong
    /// issuer/audience or a missing claim (logged without the token).
    fn licensee(&self, value: &http::HeaderValue) -> Option<String> {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| tracing::debug!(reason = %e, "JWT rejected; the request names no licensee"))
        .ok()?
        .claims;
        claims
            .get(&self.claim)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
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
            jwt: config.jwt.as_ref().map(Jwt::new).transpose()?,
        })
    }

    /// The licensee for these request headers, if any.
    pub fn licensee(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(key) = headers.get(&self.api_key_header) {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            // A presented but unknown key names nobody (and never falls back to the header).
            return self.keys.get(&digest).cloned();
        }
        if let Some(jwt) = &self.jwt
            && let Some(value) = headers.get(&jwt.header)
        {
            return jwt.licensee(value);
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

    fn token(claims: serde_json::Value, alg: Algorithm, key: &jsonwebtoken::EncodingKey) -> String {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).unwrap()
    }

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h.insert("likeguard-licensee", "mallory".parse().unwrap());
        h
    }

    #[test]
    fn jwt_claims_name_the_licensee_only_when_the_token_checks_out() {
        // SAFETY: this test alone uses the variable; set before any reader.
        unsafe { std::env::set_var("LG_TEST_JWT_SECRET", "0123456789abcdef0123456789abcdef") };
        let config = LicensingConfig {
            jwt: Some(JwtConfig {
                header: "authorization".into(),
                algorithm: "HS256".into(),
                public_key_file: None,
                secret_env: Some("LG_TEST_JWT_SECRET".into()),
                claim: "tenant".into(),
                issuer: Some("https://idp.example".into()),
                audience: Some("likeguard".into()),
            }),
            ..Default::default()
        };
        let r = Requester::new(&config).unwrap();
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let good = serde_json::json!({"tenant": "acme", "iss": "https://idp.example", "aud": "likeguard", "exp": exp});
        assert_eq!(
            r.licensee(&with_bearer(&token(good.clone(), Algorithm::HS256, &key)))
                .as_deref(),
            Some("acme")
        );

        let forged_key =
            jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-not-the-secret-!!");
        let mut expired = good.clone();
        expired["exp"] = (exp - 7200).into();
        let mut other_aud = good.clone();
        other_aud["aud"] = "someone-else".into();
        let mut no_claim = good.clone();
        no_claim.as_object_mut().unwrap().remove("tenant");
        for bad in [
            token(good.clone(), Algorithm::HS256, &forged_key),
            token(good.clone(), Algorithm::HS384, &key),
            token(expired, Algorithm::HS256, &key),
            token(other_aud, Algorithm::HS256, &key),
            token(no_claim, Algorithm::HS256, &key),
            "not.a.jwt".into(),
        ] {
            // Never falls back to the (trusted) header once a token was presented.
            assert_eq!(r.licensee(&with_bearer(&bad)), None);
        }
        // No token: the trusted header still applies.
        let mut h = with_bearer("x");
        h.remove("authorization");
        assert_eq!(r.licensee(&h).as_deref(), Some("mallory"));
    }

    #[test]
    fn jwt_config_errors_name_the_field() {
        let bad = |jwt: JwtConfig| {
            Requester::new(&LicensingConfig {
                jwt: Some(jwt),
                ..Default::default()
            })
            .err()
            .unwrap()
        };
        let base = JwtConfig {
            header: "authorization".into(),
            algorithm: "RS256".into(),
            public_key_file: None,
            secret_env: None,
            claim: "sub".into(),
            issuer: None,
            audience: None,
        };
        assert!(bad(base.clone()).contains("public_key_file"));
        assert!(
            bad(JwtConfig {
                algorithm: "XX1".into(),
                ..base.clone()
            })
            .contains("algorithm")
        );
        assert!(
            bad(JwtConfig {
                algorithm: "HS256".into(),
                ..base.clone()
            })
            .contains("secret_env")
        );
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("k.pem");
        std::fs::write(&pem, "not a key").unwrap();
        assert!(
            bad(JwtConfig {
                public_key_file: Some(pem),
                ..base
            })
            .contains("not a RS256 public key")
        );
    }
}
