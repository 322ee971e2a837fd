//! An ICAP request head (RFC 3507 §4.3): the request line, the header fields and the
//! `Encapsulated` map of the sections that follow. Sans-IO: given the bytes received so far it
//! answers "need more", "this head, this long", or why the bytes are not ICAP.
//!
//! Header fields go through httparse (the parser hyper uses); the request line and the
//! `Encapsulated` map are ICAP's own and checked here, strictly: one space between parts, CRLF
//! only, offsets that start at 0 and grow, the sections each method allows in their order, and
//! exactly one body entry, last.

use std::ops::Range;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::MAX_FIELDS;

/// The ICAP methods likeguard serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Options,
    Reqmod,
    Respmod,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Options => "OPTIONS",
            Self::Reqmod => "REQMOD",
            Self::Respmod => "RESPMOD",
        }
    }
}

/// What follows the encapsulated heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `null-body`: nothing.
    Null,
    /// `req-body` / `res-body`: a chunked body.
    Chunked,
}

/// The `Encapsulated` map, resolved: where each HTTP head lies in the bytes after the ICAP
/// head, and whether a body follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated {
    pub req_hdr: Option<Range<usize>>,
    pub res_hdr: Option<Range<usize>>,
    pub body: Body,
    /// Bytes of encapsulated heads before the body (the body entry's offset).
    pub heads_len: usize,
}

/// One ICAP request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    /// The service's path in the ICAP URI (`/reqmod`).
    pub service: String,
    pub headers: HeaderMap,
    pub encapsulated: Encapsulated,
    /// `Preview: n`: the body sent so far is at most its first `n` bytes.
    pub preview: Option<usize>,
    /// `Allow: 204`: the client takes "unmodified" without the message echoed back.
    pub allow_204: bool,
    /// `Connection: close`.
    pub close: bool,
}

/// Why a head was refused, with the ICAP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Malformed(String),
    #[error("the ICAP head is larger than {0} bytes")]
    TooLarge(usize),
    #[error("method {0:?} is not implemented")]
    Method(String),
    #[error("only ICAP/1.0 is spoken")]
    Version,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::TooLarge(_) => 400,
            Self::Method(_) => 501,
            Self::Version => 505,
        }
    }
}

fn bad(why: impl Into<String>) -> HeadError {
    HeadError::Malformed(why.into())
}

/// Parse an ICAP head from the start of `buf`: `Ok(None)` while it is incomplete (and shorter
/// than `max`), else the head and its length in bytes.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(Head, usize)>, HeadError> {
    let Some(end) = memchr::memmem::find(&buf[..buf.len().min(max)], b"\r\n\r\n") else {
        if buf.len() >= max {
            return Err(HeadError::TooLarge(max));
        }
        // A stray LF already seen will not become valid by waiting.
        crlf_only(buf)?;
        return Ok(None);
    };
    let len = end + 4;
    let head = &buf[..len];
    crlf_only(head)?;
    let line_end = memchr::memmem::find(head, b"\r\n").unwrap_or(end);
    let (method, service) = request_line(&head[..line_end])?;
    let headers = fields(&head[line_end + 2..])?;
    let one = |name: &str| -> Result<Option<&str>, HeadError> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(bad(format!("more than one {name} header")));
        }
        first
            .map(|v| {
                v.to_str()
                    .map_err(|_| bad(format!("{name} is not text")))
                    .map(str::trim)
            })
            .transpose()
    };
    let encapsulated = match (one("encapsulated")?, method) {
        (Some(v), _) => encapsulated(v, method)?,
        (None, Method::Options) => Encapsulated {
            req_hdr: None,
            res_hdr: None,
            body: Body::Null,
            heads_len: 0,
        },
        (None, _) => return Err(bad("an Encapsulated header is required")),
    };
    if encapsulated.heads_len > max - len {
        return Err(HeadError::TooLarge(max));
    }
    let preview = one("preview")?
        .map(|v| number(v).ok_or_else(|| bad("Preview is not a number")))
        .transpose()?;
    if preview.is_some() && method == Method::Options {
        return Err(bad("OPTIONS takes no Preview"));
    }
    let allow_204 = list_has(&headers, "allow", "204");
    let close = list_has(&headers, "connection", "close");
    Ok(Some((
        Head {
            method,
            service,
            headers,
            encapsulated,
            preview,
            allow_204,
            close,
        },
        len,
    )))
}

/// Every LF is preceded by CR: a bare LF would end a line for some readers and not others.
pub(super) fn crlf_only(bytes: &[u8]) -> Result<(), HeadError> {
    for at in memchr::memchr_iter(b'\n', bytes) {
        if at == 0 || bytes[at - 1] != b'\r' {
            return Err(bad("a line ends in a bare LF (CRLF is required)"));
        }
    }
    Ok(())
}

fn request_line(line: &[u8]) -> Result<(Method, String), HeadError> {
    let line = std::str::from_utf8(line).map_err(|_| bad("the request line is not text"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the request line is not METHOD URI ICAP/1.0"));
    };
    let method = match method {
        "OPTIONS" => Method::Options,
        "REQMOD" => Method::Reqmod,
        "RESPMOD" => Method::Respmod,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Err(HeadError::Method(m.to_string()));
        }
        _ => return Err(bad("the request line is not METHOD URI ICAP/1.0")),
    };
    match version {
        "ICAP/1.0" => {}
        v if v.starts_with("ICAP/") => return Err(HeadError::Version),
        _ => return Err(bad("the request line is not METHOD URI ICAP/1.0")),
    }
    let uri = url::Url::parse(uri).map_err(|_| bad("the ICAP URI is not a URI"))?;
    if !matches!(uri.scheme(), "icap" | "icaps") || uri.host().is_none() {
        return Err(bad("the ICAP URI must be icap://host[:port]/service"));
    }
    Ok((method, uri.path().to_string()))
}

/// Header fields (the block after the request line, ending in the empty line).
fn fields(block: &[u8]) -> Result<HeaderMap, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let parsed = httparse::parse_headers(block, &mut raw).map_err(|e| match e {
        httparse::Error::TooManyHeaders => bad(format!("more than {MAX_FIELDS} header fields")),
        e => bad(format!("header fields: {e}")),
    })?;
    let httparse::Status::Complete((used, found)) = parsed else {
        return Err(bad("header fields: incomplete"));
    };
    if used != block.len() {
        return Err(bad("header fields: bytes after the empty line"));
    }
    header_map(found)
}

/// Parsed fields as a `HeaderMap` (ICAP heads and encapsulated HTTP heads alike); httparse
/// leaves unused slots empty, which end the list.
pub(super) fn header_map(found: &[httparse::Header<'_>]) -> Result<HeaderMap, HeadError> {
    let mut headers = HeaderMap::with_capacity(found.len());
    for h in found.iter().take_while(|h| !h.name.is_empty()) {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad(format!("{:?} is not a header name", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| bad(format!("the value of {} is not a header value", h.name)))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// A decimal number of at most 10 digits (no sign, no spaces inside).
fn number(v: &str) -> Option<usize> {
    (!v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

/// Whether a comma-separated header (any of its fields) lists `token`, without case.
fn list_has(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// `req-hdr=0, req-body=412` → where each section lies (RFC 3507 §4.4.1).
fn encapsulated(v: &str, method: Method) -> Result<Encapsulated, HeadError> {
    let mut entries: Vec<(&str, usize)> = Vec::new();
    for part in v.split(',') {
        let part = part.trim_matches([' ', '\t']);
        let (name, offset) = part
            .split_once('=')
            .ok_or_else(|| bad("Encapsulated entries are name=offset"))?;
        let offset = number(offset).ok_or_else(|| bad("an Encapsulated offset is not a number"))?;
        entries.push((name, offset));
    }
    let Some((&(last, heads_len), heads)) = entries.split_last() else {
        return Err(bad("Encapsulated is empty"));
    };
    let body = match (last, method) {
        ("null-body", _) => Body::Null,
        ("req-body", Method::Reqmod) | ("res-body", Method::Respmod) => Body::Chunked,
        _ => {
            return Err(bad(format!(
                "Encapsulated must end in a body entry {} allows, not {last:?}",
                method.as_str()
            )));
        }
    };
    let allowed: &[&str] = match method {
        Method::Options => &[],
        Method::Reqmod => &["req-hdr"],
        Method::Respmod => &["req-hdr", "res-hdr"],
    };
    let mut out = Encapsulated {
        req_hdr: None,
        res_hdr: None,
        body,
        heads_len,
    };
    let mut expected = 0;
    let mut next_name = 0;
    for (i, &(name, start)) in heads.iter().enumerate() {
        let Some(pos) = allowed[next_name..].iter().position(|a| *a == name) else {
            return Err(bad(format!(
                "Encapsulated: {name:?} is not allowed here in {}",
                method.as_str()
            )));
        };
        next_name += pos + 1;
        let end = entries[i + 1].1;
        if start != expected || end <= start {
            return Err(bad(
                "Encapsulated offsets must start at 0 and each section be non-empty",
            ));
        }
        expected = end;
        match name {
            "req-hdr" => out.req_hdr = Some(start..end),
            _ => out.res_hdr = Some(start..end),
        }
    }
    if heads.is_empty() && heads_len != 0 {
        return Err(bad("Encapsulated: a body entry alone must be at offset 0"));
    }
    match method {
        Method::Reqmod if out.req_hdr.is_none() => {
            return Err(bad("REQMOD needs the request head (req-hdr)"));
        }
        Method::Respmod if out.res_hdr.is_none() => {
            return Err(bad("RESPMOD needs the response head (res-hdr)"));
        }
        Method::Options if out.body != Body::Null => {
            return Err(bad("OPTIONS takes no body"));
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse(s.as_bytes(), 65536)
    }

    #[test]
    fn a_reqmod_head_with_preview_parses() {
        let s = "REQMOD icap://127.0.0.1:1344/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204, trailers\r\nPreview: 4096\r\nEncapsulated: req-hdr=0, req-body=120\r\n\r\nPOST";
        let (h, len) = head(s).unwrap().unwrap();
        assert_eq!(len, s.len() - 4);
        assert_eq!(h.method, Method::Reqmod);
        assert_eq!(h.service, "/reqmod");
        assert_eq!(h.preview, Some(4096));
        assert!(h.allow_204);
        assert_eq!(h.encapsulated.req_hdr, Some(0..120));
        assert_eq!(h.encapsulated.body, Body::Chunked);
        assert_eq!(h.encapsulated.heads_len, 120);
    }

    #[test]
    fn an_incomplete_head_waits_and_a_huge_one_is_refused() {
        assert!(
            head("OPTIONS icap://a/reqmod ICAP/1.0\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );
        let long = format!("OPTIONS icap://a/x ICAP/1.0\r\nX: {}", "a".repeat(100));
        assert_eq!(
            parse(long.as_bytes(), 64).unwrap_err(),
            HeadError::TooLarge(64)
        );
    }

    #[test]
    fn respmod_sections_resolve_in_order() {
        let s = "RESPMOD icap://a/respmod ICAP/1.0\r\nEncapsulated: req-hdr=0, res-hdr=40, res-body=90\r\n\r\n";
        let (h, _) = head(s).unwrap().unwrap();
        assert_eq!(h.encapsulated.req_hdr, Some(0..40));
        assert_eq!(h.encapsulated.res_hdr, Some(40..90));
        assert_eq!(h.encapsulated.heads_len, 90);
        assert!(!h.allow_204);
    }

    #[test]
    fn malformed_heads_are_refused_with_their_status() {
        let status = |s: &str| head(s).map(|_| 0).unwrap_or_else(|e| e.status());
        let e =
            |enc: &str| format!("RESPMOD icap://a/respmod ICAP/1.0\r\nEncapsulated: {enc}\r\n\r\n");
        // Offsets that do not start at 0, go backwards, repeat or overflow.
        assert_eq!(status(&e("res-hdr=5, res-body=90")), 400);
        assert_eq!(status(&e("req-hdr=0, res-hdr=50, res-body=40")), 400);
        assert_eq!(status(&e("req-hdr=0, res-hdr=0, res-body=40")), 400);
        assert_eq!(status(&e("res-hdr=0, res-body=99999999999")), 400);
        assert_eq!(status(&e("res-hdr=0, res-body=-1")), 400);
        assert_eq!(status(&e("res-hdr=0, res-body=1 0")), 400);
        // Sections out of order, repeated, of the wrong method, or a body not last.
        assert_eq!(status(&e("res-hdr=0, req-hdr=10, res-body=40")), 400);
        assert_eq!(status(&e("res-hdr=0, res-hdr=10, res-body=40")), 400);
        assert_eq!(status(&e("res-hdr=0, req-body=40")), 400);
        assert_eq!(status(&e("res-body=0, res-hdr=10")), 400);
        assert_eq!(status(&e("req-hdr=0, null-body=10")), 400); // RESPMOD without res-hdr
        assert_eq!(status(&e("")), 400);
        // Past the head limit.
        assert_eq!(
            parse(e("res-hdr=0, res-body=70000").as_bytes(), 65536).unwrap_err(),
            HeadError::TooLarge(65536)
        );
        // Request lines and fields.
        assert_eq!(status("REQMOD  icap://a/r ICAP/1.0\r\n\r\n"), 400);
        assert_eq!(status("GET icap://a/r ICAP/1.0\r\n\r\n"), 501);
        assert_eq!(status("OPTIONS icap://a/r ICAP/2.0\r\n\r\n"), 505);
        assert_eq!(status("OPTIONS http://a/r ICAP/1.0\r\n\r\n"), 400);
        assert_eq!(status("OPTIONS icap://a/r ICAP/1.0\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status("OPTIONS icap://a/r ICAP/1.0\r\nHost : a\r\n\r\n"),
            400
        );
        assert_eq!(
            status("OPTIONS icap://a/r ICAP/1.0\r\nHost: a\r\n folded\r\n\r\n"),
            400
        );
        assert_eq!(status("REQMOD icap://a/r ICAP/1.0\r\n\r\n"), 400); // no Encapsulated
        assert_eq!(
            status(
                "REQMOD icap://a/r ICAP/1.0\r\nEncapsulated: req-hdr=0, req-body=9\r\nEncapsulated: req-hdr=0, req-body=9\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status(
                "REQMOD icap://a/r ICAP/1.0\r\nPreview: x\r\nEncapsulated: req-hdr=0, req-body=9\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("OPTIONS icap://a/r ICAP/1.0\r\nEncapsulated: opt-body=0\r\n\r\n"),
            400
        );
        assert_eq!(
            status("OPTIONS icap://a/r ICAP/1.0\r\nEncapsulated: null-body=0\r\n\r\n"),
            0
        );
        assert_eq!(status("OPTIONS icap://a/r ICAP/1.0\r\n\r\n"), 0);
    }
}
