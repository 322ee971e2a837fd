//! Extraction: find the media items inside a captured body.
//!
//! A body is classified from its headers first (cheap, decides whether it is held at all), then
//! the held bytes are searched: a raw media body, each `multipart/form-data` part, or base64 media
//! at configured JSON pointers. The real type always comes from magic bytes, never from the
//! declared Content-Type alone. URLs found in bodies are never fetched.

mod json;
mod multipart;
mod splice;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use crate::config::ExtractConfig;

use crate::media::{MediaType, sniff};
pub use splice::splice;

/// Where in the body an item was found (for explanations; never holds body bytes).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum ItemSource {
    Body,
    Part {
        name: Option<String>,
        filename: Option<String>,
    },
    Json {
        pointer: String,
    },
}

/// One media item found in a body. `data` shares the body's buffer where it can.
#[derive(Debug, Clone)]
pub struct MediaItem {
    pub index: usize,
    pub source: ItemSource,
    pub media: MediaType,
    pub data: Bytes,
}

/// What a body looks like from its headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyClass {
    /// Declared `image/*`, `video/*` or `audio/*`.
    Raw {
        declared: String,
    },
    /// `application/octet-stream` or no Content-Type: hold it and sniff.
    Sniff,
    Multipart {
        boundary: String,
    },
    Json,
    /// Compressed with a Content-Encoding: cannot be inspected without inflating it.
    Encoded {
        encoding: String,
    },
    /// Anything else (text, forms, ...): streamed, never held.
    Opaque,
}

impl BodyClass {
    /// Whether the body must be held for inspection.
    pub fn is_held(&self) -> bool {
        !matches!(self, Self::Opaque)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The body does not parse as what it says it is (→ 400 from a client).
    #[error("malformed {format} body: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// It claims to be media but is not a format we can read (→ per `on_unsupported`).
    #[error("unsupported media: {0}")]
    Unsupported(String),
    #[error("more than {0} media items in one body")]
    TooManyItems(usize),
}

/// Classify a body by its headers under the route's extraction settings.
pub fn classify(headers: &HeaderMap, cfg: &ExtractConfig) -> BodyClass {
    // Every Content-Encoding value counts: `identity` then `gzip` is a gzip body.
    let encodings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect();
    if !encodings.is_empty() {
        return BodyClass::Encoded {
            encoding: encodings.join(", "),
        };
    }
    // Two Content-Types: which one the receiver believes is unknowable, so look at the bytes.
    if headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
        return BodyClass::Sniff;
    }
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return if cfg.raw {
            BodyClass::Sniff
        } else {
            BodyClass::Opaque
        };
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("image" | "video" | "audio", _)) if cfg.raw => BodyClass::Raw { declared: essence },
        Some(("application", "octet-stream")) if cfg.raw => BodyClass::Sniff,
        Some(("multipart", "form-data")) if cfg.multipart => match multer::parse_boundary(ct) {
            Ok(boundary) => BodyClass::Multipart { boundary },
            // A form without a boundary cannot be parsed: hold it so extraction reports it.
            Err(_) => BodyClass::Multipart {
                boundary: String::new(),
            },
        },
        Some(("application", sub))
            if (sub == "json" || sub.ends_with("+json")) && !cfg.json_pointers.is_empty() =>
        {
            BodyClass::Json
        }
        _ => BodyClass::Opaque,
    }
}

/// Pull the media items out of a held body.
pub async fn extract(
    class: &BodyClass,
    body: Bytes,
    cfg: &ExtractConfig,
    max_items: usize,
) -> Result<Vec<MediaItem>, ExtractError> {
    let mut items = Vec::new();
    match class {
        BodyClass::Raw { declared } => match sniff(&body) {
            Some(media) => items.push(MediaItem {
                index: 0,
                source: ItemSource::Body,
                media,
                data: body,
            }),
            None => {
                return Err(ExtractError::Unsupported(format!(
                    "body declared {declared} but its bytes are not a media format likeguard reads"
                )));
            }
        },
        BodyClass::Sniff => {
            if let Some(media) = sniff(&body) {
                items.push(MediaItem {
                    index: 0,
                    source: ItemSource::Body,
                    media,
                    data: body,
                });
            }
        }
        BodyClass::Multipart { boundary } => {
            items = multipart::extract(body, boundary, max_items).await?;
        }
        BodyClass::Json => {
            let pointers = cfg.json_pointers.clone();
            // Parsing and base64-decoding a large document is CPU work: keep it off the runtime.
            items = tokio::task::spawn_blocking(move || json::extract(&body, &pointers, max_items))
                .await
                .map_err(|e| ExtractError::Malformed {
                    format: "JSON",
                    detail: format!("extraction task failed: {e}"),
                })??;
        }
        BodyClass::Encoded { encoding } => {
            return Err(ExtractError::Unsupported(format!(
                "body is compressed with Content-Encoding {encoding}"
            )));
        }
        BodyClass::Opaque => {}
    }
    if items.len() > max_items {
        return Err(ExtractError::TooManyItems(max_items));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn classification() {
        let cfg = ExtractConfig::default();
        assert_eq!(
            classify(&headers("image/PNG"), &cfg),
            BodyClass::Raw {
                declared: "image/png".into()
            }
        );
        assert_eq!(classify(&HeaderMap::new(), &cfg), BodyClass::Sniff);
        let mut two = headers("text/plain");
        two.append(CONTENT_TYPE, "image/png".parse().unwrap());
        assert_eq!(classify(&two, &cfg), BodyClass::Sniff);
        let mut enc = headers("image/png");
        enc.append(CONTENT_ENCODING, "identity".parse().unwrap());
        enc.append(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(matches!(classify(&enc, &cfg), BodyClass::Encoded { .. }));
        assert_eq!(
            classify(&headers("multipart/form-data; boundary=abc"), &cfg),
            BodyClass::Multipart {
                boundary: "abc".into()
            }
        );
        assert_eq!(
            classify(&headers("application/json; charset=utf-8"), &cfg),
            BodyClass::Json
        );
        assert_eq!(
            classify(&headers("application/vnd.api+json"), &cfg),
            BodyClass::Json
        );
        assert_eq!(classify(&headers("text/html"), &cfg), BodyClass::Opaque);
        let mut h = headers("image/png");
        h.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(matches!(classify(&h, &cfg), BodyClass::Encoded { .. }));
    }

    #[tokio::test]
    async fn raw_body_that_is_not_media_is_unsupported() {
        let class = BodyClass::Raw {
            declared: "image/png".into(),
        };
        let err = extract(
            &class,
            Bytes::from_static(b"hello"),
            &ExtractConfig::default(),
            4,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported(_)), "{err}");
    }
}
