//! The walk: look at a run of bytes, decide what it is from its content, and go inside
//! containers (multipart, JSON, forms, archives, base64, compression) until media is found.
//! Bounded everywhere: nesting depth, bytes produced by decoding, archive members, items and a
//! deadline. Going past a bound is an error (the route's failure mode), never a silent pass.

use std::io::Read;
use std::time::Instant;

use bytes::Bytes;

use super::b64::{self, Candidate};
use super::location::{Location, Step};
use super::shape::{Shape, shape, trailing_zip};
use super::{ExtractError, FoundUrl, MediaItem, archive, form, json, multipart};
use crate::config::ExtractConfig;
use crate::media::MediaType;

/// What the sender said a run of bytes is. Declared containers are parsed as declared (a body
/// that does not parse as what it claims is refused); everything else is recognised by content.
#[derive(Debug, Clone)]
pub(super) enum Hint {
    None,
    /// Declared `image/*`, `video/*` or `audio/*`.
    Media(String),
    Json,
    Form,
    Multipart(String),
}

pub(super) struct Walker<'a> {
    pub cfg: &'a ExtractConfig,
    max_items: usize,
    deadline: Instant,
    /// Bytes produced so far by decoding base64, decompressing and unpacking.
    expanded: u64,
    pub items: Vec<MediaItem>,
    pub urls: Vec<FoundUrl>,
}

impl<'a> Walker<'a> {
    pub fn new(cfg: &'a ExtractConfig, max_items: usize, deadline: Instant) -> Self {
        Self {
            cfg,
            max_items,
            deadline,
            expanded: 0,
            items: Vec::new(),
            urls: Vec::new(),
        }
    }

    /// Look at `data` found at `loc`.
    pub fn blob(&mut self, data: Bytes, loc: &Location, hint: Hint) -> Result<(), ExtractError> {
        self.tick()?;
        if loc.depth() > self.cfg.max_depth {
            return Err(ExtractError::Limit(format!(
                "{loc}: containers nested deeper than {} (inspect.extract.max_depth)",
                self.cfg.max_depth
            )));
        }
        let archives = self.cfg.archives;
        match (&hint, shape(&data)) {
            (Hint::Multipart(boundary), _) => multipart::walk(self, data, boundary, loc),
            (Hint::Form, _) => form::walk(self, &data, loc),
            (Hint::Json, _) => json::walk(self, &data, loc, true),
            (_, Shape::Media(m)) => {
                self.push(loc.clone(), m, data.clone())?;
                if archives {
                    self.polyglot(&data, loc)?;
                }
                Ok(())
            }
            (_, Shape::Zip) if archives => archive::zip(self, &data, loc),
            (_, Shape::Tar) if archives => archive::tar(self, &data, loc),
            (_, Shape::Gzip) if archives => archive::inflate(self, &data, loc, "gzip"),
            (_, Shape::Zstd) if archives => archive::inflate(self, &data, loc, "zstd"),
            (_, Shape::Unreadable(name)) => Err(ExtractError::Unsupported(format!(
                "{loc}: {name} data may hold media but likeguard cannot open it"
            ))),
            (Hint::Media(declared), _) => Err(ExtractError::Unsupported(format!(
                "{loc}: declared {declared} but its bytes are not a media format likeguard reads"
            ))),
            (_, Shape::Json) => json::walk(self, &data, loc, false),
            (_, Shape::Nothing) => self.text(&data, loc),
            _ => Ok(()),
        }
    }

    /// A string value (JSON string, form field): a data URL, base64, an allow-listed URL, or
    /// text that may hold base64.
    pub fn string(&mut self, s: &str, loc: &Location) -> Result<(), ExtractError> {
        match b64::candidate(s) {
            Some(Candidate::DataUrl {
                mime,
                base64,
                payload,
            }) => {
                let data = if base64 {
                    self.charge(b64::decoded_len(payload.len()))?;
                    b64::decode(payload).map_err(|e| ExtractError::Malformed {
                        format: "base64",
                        detail: format!("{loc}: data URL: {e}"),
                    })?
                } else {
                    self.charge(payload.len() as u64)?;
                    percent_encoding::percent_decode_str(payload).collect()
                };
                let declared = ["image/", "video/", "audio/"]
                    .iter()
                    .any(|p| mime.starts_with(p));
                let hint = if declared {
                    Hint::Media(mime)
                } else {
                    Hint::None
                };
                self.blob(Bytes::from(data), loc, hint)
            }
            Some(Candidate::Base64(text)) => self.base64(text, loc),
            Some(Candidate::Url(url)) => self.url(url, loc),
            None if s.len() >= b64::MIN_RUN => self.text(s.as_bytes(), loc),
            None => Ok(()),
        }
    }

    /// Base64 text: decoded and walked when its opening bytes are something; other base64
    /// (tokens, hashes, ids) is left alone.
    fn base64(&mut self, text: &str, loc: &Location) -> Result<(), ExtractError> {
        if b64::decoded_shape(text) == Shape::Nothing {
            return Ok(());
        }
        self.charge(b64::decoded_len(text.len()))?;
        let data = b64::decode(text).map_err(|e| ExtractError::Malformed {
            format: "base64",
            detail: format!("{loc}: {e}"),
        })?;
        self.blob(Bytes::from(data), loc, Hint::None)
    }

    /// Bytes that are no known shape: a whole data URL or base64 text, or text with base64
    /// runs inside (text bodies, XML, a base64 string with words around it).
    pub fn text(&mut self, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
        if data.len() < b64::MIN_RUN {
            return Ok(());
        }
        if let Ok(s) = std::str::from_utf8(data)
            && matches!(
                b64::candidate(s),
                Some(Candidate::DataUrl { .. } | Candidate::Base64(_))
            )
        {
            return self.string(s, loc);
        }
        for run in b64::runs(data) {
            self.tick()?;
            // Runs are ASCII by construction.
            let text = std::str::from_utf8(&data[run.clone()]).unwrap_or_default();
            self.base64(text, &loc.then(Step::Text { offset: run.start }))?;
        }
        Ok(())
    }

    /// A URL found in a body, kept when the route fetches from its host.
    fn url(&mut self, url: &str, loc: &Location) -> Result<(), ExtractError> {
        let Some(fetch) = &self.cfg.fetch else {
            return Ok(());
        };
        let Ok(parsed) = url::Url::parse(url) else {
            return Ok(());
        };
        if !fetch.allows(&parsed) {
            return Ok(());
        }
        if self.items.len() + self.urls.len() >= self.max_items {
            return Err(ExtractError::TooManyItems(self.max_items));
        }
        self.urls.push(FoundUrl {
            location: loc.clone(),
            url: parsed,
        });
        Ok(())
    }

    /// A zip appended to an item (polyglot, self-extracting archive) is opened too; one that
    /// does not parse is left (four bytes of a JPEG's entropy data can look like a zip's end).
    fn polyglot(&mut self, data: &Bytes, loc: &Location) -> Result<(), ExtractError> {
        if data.len() < 22 || trailing_zip(data).is_none() {
            return Ok(());
        }
        let before = self.items.len();
        match archive::zip(self, data, loc) {
            Ok(()) => Ok(()),
            Err(ExtractError::Malformed { .. }) => {
                self.items.truncate(before);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn push(
        &mut self,
        location: Location,
        media: MediaType,
        data: Bytes,
    ) -> Result<(), ExtractError> {
        if self.items.len() + self.urls.len() >= self.max_items {
            return Err(ExtractError::TooManyItems(self.max_items));
        }
        self.items.push(MediaItem {
            index: self.items.len(),
            location,
            media,
            data,
        });
        Ok(())
    }

    /// Count `n` more decoded bytes against `max_expanded`.
    pub fn charge(&mut self, n: u64) -> Result<(), ExtractError> {
        self.expanded = self.expanded.saturating_add(n);
        if self.expanded > self.cfg.max_expanded {
            return Err(ExtractError::Limit(format!(
                "decoding the body produces more than {} bytes (inspect.extract.max_expanded)",
                self.cfg.max_expanded
            )));
        }
        Ok(())
    }

    /// Out of time?
    pub fn tick(&self) -> Result<(), ExtractError> {
        if Instant::now() > self.deadline {
            return Err(ExtractError::Limit(
                "extraction ran past the route's time budget".into(),
            ));
        }
        Ok(())
    }

    /// Read a decoder to its end, charging what it produces; stops at the first byte past the
    /// budget (a bomb costs at most `max_expanded` and a chunk).
    pub fn read_bounded(&mut self, mut r: impl Read, hint: u64) -> Result<Vec<u8>, std::io::Error> {
        let room = self.cfg.max_expanded.saturating_sub(self.expanded);
        let mut out = Vec::with_capacity(hint.min(room).min(64 << 20) as usize);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            self.charge(n as u64).map_err(std::io::Error::other)?;
            self.tick().map_err(std::io::Error::other)?;
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// An `io::Error` from `read_bounded` back to the extraction error that caused it, or a
/// malformed-container error.
pub(super) fn read_error(e: std::io::Error, format: &'static str, loc: &Location) -> ExtractError {
    match e.downcast::<ExtractError>() {
        Ok(inner) => inner,
        Err(e) => ExtractError::Malformed {
            format,
            detail: format!("{loc}: {e}"),
        },
    }
}
