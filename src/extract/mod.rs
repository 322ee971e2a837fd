//! Extraction: find the media items inside a captured body, wherever they hide.
//!
//! A body is classified from its headers first (cheap, decides whether it is held at all), then
//! the held bytes are walked by content: raw media, every multipart part, every JSON string and
//! form value that is a data URL or base64 media, base64 runs in text, every member of zip, tar
//! and gzip/zstd archives, and compressed bodies (`Content-Encoding`). Containers nest (a zip in
//! a JSON string in a multipart part); the walk is bounded in depth, decoded bytes, members,
//! items and time. The real type always comes from magic bytes, never from a declared type
//! alone. URLs are only collected, and only for hosts a route allow-lists (`inspect.extract.
//! fetch`); the proxy fetches them.

mod archive;
mod b64;
mod encoding;
mod form;
mod json;
mod location;
mod multipart;
mod shape;
mod splice;
mod text;
mod walk;

use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use crate::config::ExtractConfig;
use crate::media::MediaType;
pub use encoding::Coding;
pub use location::{Location, Step};
pub use splice::splice;
use walk::{Hint, Walker};

/// One media item found in a body. `data` shares the body's buffer where it can.
#[derive(Debug, Clone)]
pub struct MediaItem {
    pub index: usize,
    pub location: Location,
    pub media: MediaType,
    pub data: Bytes,
    /// The SHA-256 of `data`, computed once by whoever needs it first (inspectors, the
    /// decision log) and shared by the rest.
    pub digest: Digest,
}

impl MediaItem {
    pub fn new(index: usize, location: Location, media: MediaType, data: Bytes) -> Self {
        Self {
            index,
            location,
            media,
            data,
            digest: Digest::default(),
        }
    }
}

/// A SHA-256 computed at most once, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Digest(std::sync::Arc<std::sync::OnceLock<[u8; 32]>>);

impl Digest {
    /// The digest of `data` (which must be the bytes this digest belongs to), computing it
    /// the first time. CPU work: call from a blocking context.
    pub fn of(&self, data: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        *self.0.get_or_init(|| sha2::Sha256::digest(data).into())
    }

    /// The digest if someone already computed it.
    pub fn get(&self) -> Option<[u8; 32]> {
        self.0.get().copied()
    }
}

/// A URL in a body whose host the route fetches from.
#[derive(Debug, Clone)]
pub struct FoundUrl {
    pub location: Location,
    pub url: url::Url,
}

/// Everything found in one body.
#[derive(Debug, Default)]
pub struct Found {
    pub items: Vec<MediaItem>,
    pub urls: Vec<FoundUrl>,
    /// The body with its `Content-Encoding` undone, when it had one: the body changed media is
    /// spliced back into (and then sent uncompressed).
    pub decoded: Option<Bytes>,
}

/// What a body looks like from its headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyClass {
    /// Declared `image/*`, `video/*` or `audio/*`.
    Raw {
        declared: String,
    },
    /// Held and recognised by content: `application/octet-stream`, archives, text, no
    /// Content-Type, or opening bytes that look like something.
    Sniff,
    Multipart {
        boundary: String,
    },
    Json,
    Form,
    /// Compressed with content codings likeguard undoes; `inner` is the type underneath.
    Encoded {
        codings: Vec<Coding>,
        inner: Box<BodyClass>,
    },
    /// Compressed with a coding likeguard cannot undo.
    Undecodable {
        encoding: String,
    },
    /// Anything else (fonts, PDFs, ...): streamed, only its opening bytes sniffed.
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
    /// It claims to be (or may hold) media but is not a format we can read (→ per
    /// `on_unsupported`).
    #[error("unsupported media: {0}")]
    Unsupported(String),
    #[error("more than {0} media items in one body")]
    TooManyItems(usize),
    /// A bound of the walk was reached (depth, decoded bytes, members, time): the route's
    /// failure mode decides.
    #[error("{0}")]
    Limit(String),
}

/// Classify a body by its headers under the route's extraction settings.
pub fn classify(headers: &HeaderMap, cfg: &ExtractConfig) -> BodyClass {
    // Every Content-Encoding value counts: `identity` then `gzip` is a gzip body.
    let tokens: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect();
    if !tokens.is_empty() {
        let codings: Option<Vec<Coding>> = tokens.iter().map(|t| Coding::parse(t)).collect();
        return match codings {
            Some(codings) => {
                // Compressed bytes cannot be sniffed: whatever is underneath is held.
                let inner = match classify_type(headers, cfg) {
                    BodyClass::Opaque => BodyClass::Sniff,
                    other => other,
                };
                BodyClass::Encoded {
                    codings,
                    inner: Box::new(inner),
                }
            }
            None => BodyClass::Undecodable {
                encoding: tokens.join(", "),
            },
        };
    }
    classify_type(headers, cfg)
}

fn classify_type(headers: &HeaderMap, cfg: &ExtractConfig) -> BodyClass {
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
    let Some((top, sub)) = essence.split_once('/') else {
        // Not a media type at all: recognise by content.
        return BodyClass::Sniff;
    };
    match (top, sub) {
        // SVG is XML text: searched for the data URLs it embeds.
        ("image", "svg+xml") => BodyClass::Sniff,
        ("image" | "video" | "audio", _) if cfg.raw => BodyClass::Raw {
            declared: essence.clone(),
        },
        // Any multipart subtype (form-data, mixed, related...): a part is a part. Without a
        // boundary it cannot be parsed: held, so extraction reports it.
        ("multipart", _) if cfg.multipart => BodyClass::Multipart {
            boundary: boundary_param(ct).unwrap_or_default(),
        },
        ("application", s) if s == "json" || s.ends_with("+json") => BodyClass::Json,
        ("application", "x-www-form-urlencoded") if cfg.forms => BodyClass::Form,
        ("application", "octet-stream") if cfg.raw => BodyClass::Sniff,
        (
            "application",
            "zip" | "x-zip-compressed" | "x-tar" | "gzip" | "x-gzip" | "zstd" | "x-ndjson"
            | "jsonl" | "xml" | "javascript" | "graphql",
        ) => BodyClass::Sniff,
        ("application", s) if s.ends_with("+xml") => BodyClass::Sniff,
        ("text", _) if cfg.text => BodyClass::Sniff,
        _ => BodyClass::Opaque,
    }
}

/// The `boundary` parameter of a Content-Type (quoted or not).
fn boundary_param(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// How many opening bytes are enough to recognise any media format `media::sniff` knows (what
/// `looks_inspectable` is given, unless the body is shorter).
pub const SNIFF_BYTES: usize = 512;

/// Whether the opening bytes of a body the headers did not call inspectable look like
/// something that must be inspected (media, an archive, JSON, base64 text).
pub fn looks_inspectable(prefix: &[u8]) -> bool {
    let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    if text::utf16(prefix).is_some() {
        return true;
    }
    // Only whitespace so far: what follows is unknown, so it is looked at.
    let blank = !prefix.is_empty() && prefix.iter().all(u8::is_ascii_whitespace);
    blank
        || shape::shape(prefix) != shape::Shape::Nothing
        || prefix.get(4..8) == Some(b"ftyp")
        || b64::has_run(prefix, b64::MIN_RUN, true)
        || prefix
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"data:"))
}

/// Pull the media items out of a held body (CPU work: runs on a blocking thread).
pub async fn extract(
    class: &BodyClass,
    body: Bytes,
    cfg: &ExtractConfig,
    max_items: usize,
    deadline: Instant,
) -> Result<Found, ExtractError> {
    let (class, cfg) = (class.clone(), cfg.clone());
    tokio::task::spawn_blocking(move || extract_blocking(&class, body, &cfg, max_items, deadline))
        .await
        .map_err(|e| ExtractError::Limit(format!("extraction task failed: {e}")))?
}

/// `extract` on the calling thread.
pub fn extract_blocking(
    class: &BodyClass,
    body: Bytes,
    cfg: &ExtractConfig,
    max_items: usize,
    deadline: Instant,
) -> Result<Found, ExtractError> {
    let mut w = Walker::new(cfg, max_items, deadline);
    let decoded = walk_class(&mut w, class, body)?;
    Ok(Found {
        items: std::mem::take(&mut w.items),
        urls: std::mem::take(&mut w.urls),
        decoded,
    })
}

/// Walk a fetched body (media behind a URL) found at `location`.
pub fn extract_fetched(
    body: Bytes,
    location: &Location,
    cfg: &ExtractConfig,
    max_items: usize,
    deadline: Instant,
) -> Result<Vec<MediaItem>, ExtractError> {
    let mut w = Walker::new(cfg, max_items, deadline);
    w.blob(body, location, Hint::None)?;
    Ok(std::mem::take(&mut w.items))
}

fn walk_class(
    w: &mut Walker<'_>,
    class: &BodyClass,
    body: Bytes,
) -> Result<Option<Bytes>, ExtractError> {
    let loc = Location::body();
    match class {
        BodyClass::Raw { declared } => w.blob(body, &loc, Hint::Media(declared.clone()))?,
        BodyClass::Sniff => w.blob(body, &loc, Hint::None)?,
        BodyClass::Multipart { boundary } => {
            w.blob(body, &loc, Hint::Multipart(boundary.clone()))?
        }
        BodyClass::Json => w.blob(body, &loc, Hint::Json)?,
        BodyClass::Form => w.blob(body, &loc, Hint::Form)?,
        BodyClass::Encoded { codings, inner } => {
            let decoded = encoding::decode(w, body, codings)?;
            walk_class(w, inner, decoded.clone())?;
            return Ok(Some(decoded));
        }
        BodyClass::Undecodable { encoding } => {
            return Err(ExtractError::Unsupported(format!(
                "body is compressed with Content-Encoding {encoding}, which likeguard cannot undo"
            )));
        }
        BodyClass::Opaque => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
