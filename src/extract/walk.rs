//! The walk: look at a run of bytes, decide what it is from its content, and go inside
//! containers (multipart, JSON, forms, archives, base64, compression) until media is found.
//! Bounded everywhere: nesting depth, bytes produced by decoding, archive members, items and a
//! deadline. Going past a bound is an error (the route's failure mode), never a silent pass.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::b64::{self, Candidate};
use super::location::{Location, Step};
use super::shape::{Shape, shape, trailing_zip};
use super::{ExtractError, FoundUrl, MediaItem, archive, form, json, multipart, text};
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
    /// Decoding layers (base64, data URLs) entered and not yet left.
    layers: usize,
    /// Skip items whose bytes were already found (second looks at the same text).
    dedupe: bool,
}

/// Line starts inside one joined base64 run that are tried on their own.
const LINE_STARTS: usize = 16;

/// What decoding base64 text gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoded {
    /// Media or a container, walked: this is what the run is.
    Media,
    /// Something else (text, bytes), walked in case it holds media.
    Other,
    /// Not decoded (not base64, or not media at a later line start).
    Not,
}

/// Encodings inside each other at one location (base64 of a data URL of base64 ...).
const MAX_LAYERS: usize = 8;

/// Bytes being produced by decoding across every body in flight, and their cap: a hundred
/// concurrent bombs each just under `max_expanded` are refused together, not all held.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
const IN_FLIGHT_CAP: u64 = 2 << 30;

impl Drop for Walker<'_> {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.expanded, Ordering::Relaxed);
    }
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
            layers: 0,
            dedupe: false,
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
        // What the bytes are comes first: a JPEG declared JSON or a form is still a JPEG (a
        // receiver may sniff it). Declared containers are parsed as declared after that.
        let shape = shape(&data);
        match shape {
            Shape::Media(m) => {
                self.push(loc.clone(), m, data.clone())?;
                if archives {
                    self.trailing_zip(&data, loc)?;
                }
                return Ok(());
            }
            Shape::Zip if archives => return archive::zip(self, &data, loc),
            Shape::Tar if archives => return archive::tar(self, &data, loc),
            Shape::Gzip if archives => return archive::inflate(self, &data, loc, "gzip"),
            Shape::Zstd if archives => return archive::inflate(self, &data, loc, "zstd"),
            Shape::Unreadable(name) => {
                return Err(ExtractError::Unsupported(format!(
                    "{loc}: {name} data may hold media but likeguard cannot open it"
                )));
            }
            _ => {}
        }
        match hint {
            Hint::Multipart(boundary) => multipart::walk(self, data, &boundary, loc),
            Hint::Form => form::walk(self, &data, loc),
            Hint::Json => json::walk(self, &data, loc, true),
            Hint::Media(declared) => Err(ExtractError::Unsupported(format!(
                "{loc}: declared {declared} but its bytes are not a media format likeguard reads"
            ))),
            Hint::None => {
                // UTF-16 text (JSON, XML) is read as the text it is.
                if let Some(utf8) = text::utf16(&data) {
                    return self.layer(loc, |w| w.blob(Bytes::from(utf8), loc, Hint::None));
                }
                if shape == Shape::Json {
                    return json::walk(self, &data, loc, false);
                }
                // Multipart without (or behind a misleading) Content-Type: parse it by its
                // opening boundary line; if it does not parse, it is searched as text.
                if let Some(boundary) = multipart::boundary_of(&data) {
                    let before = self.items.len();
                    match multipart::walk(self, data.clone(), &boundary, loc) {
                        Err(ExtractError::Malformed { .. }) => self.items.truncate(before),
                        other => return other,
                    }
                }
                self.text(&data, loc)
            }
        }
    }

    /// A string value (JSON string, form field, text part): a data URL, base64, an
    /// allow-listed URL, or text that may hold base64.
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
                self.layer(loc, |w| w.blob(Bytes::from(data), loc, hint))
            }
            Some(Candidate::Base64(text)) => match self.base64(text, loc, true)? {
                Decoded::Media => Ok(()),
                // Not media as a whole (a hash line before it, words around it): runs, with
                // the whole already walked.
                Decoded::Other => self.with_dedupe(|w| w.runs(s.as_bytes(), loc, false)),
                Decoded::Not => self.runs(s.as_bytes(), loc, true),
            },
            Some(Candidate::Url(url)) => self.url(url, loc),
            None if s.len() >= b64::MIN_RUN => self.runs(s.as_bytes(), loc, true),
            None => Ok(()),
        }
    }

    /// Base64 text, decoded and walked. Its opening bytes say whether it is media or a
    /// container (`Media`). Anything else is decoded and walked as well when `whole` (`Other`):
    /// text, a multipart body or more base64 may be inside, behind any prefix — when in
    /// doubt, look. Without `whole` (later line starts of a run) only media is decoded, so a
    /// long non-media run is not decoded once per line.
    fn base64(&mut self, text: &str, loc: &Location, whole: bool) -> Result<Decoded, ExtractError> {
        let media = b64::decoded_shape(text) != Shape::Nothing;
        if !media && !whole {
            return Ok(Decoded::Not);
        }
        self.charge(b64::decoded_len(text.len()))?;
        let data = match b64::decode(text) {
            Ok(d) => d,
            Err(_) if !media => return Ok(Decoded::Not),
            Err(e) => {
                return Err(ExtractError::Malformed {
                    format: "base64",
                    detail: format!("{loc}: {e}"),
                });
            }
        };
        if media {
            self.layer(loc, |w| w.blob(Bytes::from(data), loc, Hint::None))?;
            return Ok(Decoded::Media);
        }
        self.layer(loc, |w| {
            w.with_dedupe(|w| w.blob(Bytes::from(data), loc, Hint::None))
        })?;
        Ok(Decoded::Other)
    }

    /// `f` with items already found not found again (a second look at the same bytes).
    fn with_dedupe(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        let before = std::mem::replace(&mut self.dedupe, true);
        let out = f(self);
        self.dedupe = before;
        out
    }

    /// One more decoding layer (base64, a data URL) at the same location: bounded like
    /// containers, so `data:,data:,data:,…` cannot recurse without end.
    fn layer(
        &mut self,
        loc: &Location,
        f: impl FnOnce(&mut Self) -> Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        if self.layers >= MAX_LAYERS {
            return Err(ExtractError::Limit(format!(
                "{loc}: more than {MAX_LAYERS} encodings inside each other"
            )));
        }
        self.layers += 1;
        let out = f(self);
        self.layers -= 1;
        out
    }

    /// Bytes that are no known shape: a zip at their end, UTF-16 text, a whole data URL or
    /// base64 text, or text with base64 runs inside (text bodies, XML, HTML, event streams) —
    /// also once more with character references and percent-escapes undone, and data URLs
    /// whose payload whitespace breaks up.
    pub fn text(&mut self, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
        if self.cfg.archives {
            self.trailing_zip(data, loc)?;
        }
        if let Some(utf8) = text::utf16(data) {
            return self.layer(loc, |w| w.blob(Bytes::from(utf8), loc, Hint::None));
        }
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
        self.runs(data, loc, true)?;
        // Second looks find what the first may have found already: the same bytes once.
        self.with_dedupe(|w| w.text_again(data, loc))
    }

    fn text_again(&mut self, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
        for (offset, url) in text::spaced_data_urls(data) {
            self.string(url, &loc.then(Step::Text { offset }))?;
        }
        if let Some(plain) = text::normalize(data) {
            self.layer(loc, |w| {
                w.runs(&plain, loc, true)?;
                for (offset, url) in text::spaced_data_urls(&plain) {
                    w.string(url, &loc.then(Step::Text { offset }))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Every base64 run in `data` (JSON escapes undone), each walked where it starts. A run
    /// joined across line breaks that is nothing as a whole is tried from each of its first
    /// line starts too (a hash or a header line before the base64).
    fn runs(&mut self, data: &[u8], loc: &Location, first_whole: bool) -> Result<(), ExtractError> {
        for run in b64::runs(data) {
            self.tick()?;
            let starts = std::iter::once(run.start).chain(
                memchr::memchr_iter(b'\n', &data[run.clone()])
                    .map(|i| run.start + i + 1)
                    .take(LINE_STARTS),
            );
            for (n, start) in starts.enumerate() {
                // Runs are ASCII by construction.
                let text = std::str::from_utf8(&data[start..run.end]).unwrap_or_default();
                let whole = n == 0 && first_whole;
                let found = self.base64(
                    &b64::unescape(text),
                    &loc.then(Step::Text { offset: start }),
                    whole,
                )?;
                if found == Decoded::Media {
                    break;
                }
            }
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

    /// A zip at the end of other bytes (an image/zip polyglot, a self-extracting archive, a
    /// zip behind a junk prefix) is opened too; one that does not parse is left (four bytes of
    /// a JPEG's entropy data can look like a zip's end record).
    fn trailing_zip(&mut self, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
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
        if self.dedupe && self.items.iter().any(|i| i.data == data) {
            return Ok(());
        }
        if self.items.len() + self.urls.len() >= self.max_items {
            return Err(ExtractError::TooManyItems(self.max_items));
        }
        self.items
            .push(MediaItem::new(self.items.len(), location, media, data));
        Ok(())
    }

    /// Count `n` more decoded bytes against `max_expanded`.
    pub fn charge(&mut self, n: u64) -> Result<(), ExtractError> {
        self.expanded = self.expanded.saturating_add(n);
        let all = IN_FLIGHT.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if all > IN_FLIGHT_CAP {
            return Err(ExtractError::Limit(format!(
                "bodies being decoded at once would produce more than {IN_FLIGHT_CAP} bytes"
            )));
        }
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
