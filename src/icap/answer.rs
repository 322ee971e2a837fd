//! ICAP responses: the status line, `ISTag`, `Encapsulated` computed from the sections that
//! follow, and the sections themselves. Bodies are written by `Conn` as chunks.

use std::fmt::Write as _;

use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};

use super::message;
use crate::actions::Problem;
use crate::decide::Side;

/// One encapsulated head in an answer.
pub struct Section<'a> {
    name: &'static str,
    bytes: &'a [u8],
}

impl<'a> Section<'a> {
    pub fn req(bytes: &'a [u8]) -> Self {
        Self {
            name: "req-hdr",
            bytes,
        }
    }

    pub fn res(bytes: &'a [u8]) -> Self {
        Self {
            name: "res-hdr",
            bytes,
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "ICAP Service Not Found",
        405 => "Method Not Allowed For Service",
        408 => "Request Timeout",
        501 => "Method Not Implemented",
        503 => "Service Overloaded",
        505 => "ICAP Version Not Supported",
        _ => "Server Error",
    }
}

fn status_line(out: &mut String, status: u16, istag: &str) {
    let _ = write!(
        out,
        "ICAP/1.0 {status} {}\r\nISTag: \"{istag}\"\r\nService: likeguard/{}\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION")
    );
}

/// The head of an answer with `sections` and, when `body` is set, a chunked body of that
/// side (`req-body` / `res-body`) after them.
pub fn head(
    status: u16,
    istag: &str,
    sections: &[Section<'_>],
    body: Option<Side>,
    close: bool,
) -> Vec<u8> {
    let mut text = String::with_capacity(256);
    status_line(&mut text, status, istag);
    text.push_str("Encapsulated: ");
    let mut offset = 0;
    for s in sections {
        let _ = write!(text, "{}={offset}, ", s.name);
        offset += s.bytes.len();
    }
    let body = match body {
        Some(Side::Request) => "req-body",
        Some(Side::Response) => "res-body",
        None => "null-body",
    };
    let _ = write!(text, "{body}={offset}\r\n");
    if close {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    let mut out = text.into_bytes();
    out.reserve(offset);
    for s in sections {
        out.extend_from_slice(s.bytes);
    }
    out
}

/// `204 No Content`: the message goes on unchanged.
pub fn no_content(istag: &str, close: bool) -> Vec<u8> {
    head(204, istag, &[], None, close)
}

/// An ICAP-level error; the connection closes after it.
pub fn error(status: u16, istag: &str) -> Vec<u8> {
    head(status, istag, &[], None, true)
}

/// The OPTIONS answer for a service (RFC 3507 §4.10.2).
pub fn options(istag: &str, method: &str, config: &crate::config::IcapConfig) -> Vec<u8> {
    let mut text = String::with_capacity(384);
    status_line(&mut text, 200, istag);
    let _ = write!(
        text,
        "Methods: {method}\r\nService-ID: likeguard\r\nMax-Connections: {}\r\nOptions-TTL: {}\r\nAllow: 204\r\nPreview: {}\r\nTransfer-Preview: *\r\nEncapsulated: null-body=0\r\n\r\n",
        config.max_connections,
        config.options_ttl.as_secs().max(1),
        config.preview,
    );
    text.into_bytes()
}

/// A problem as an encapsulated HTTP response: its head and its body.
pub fn problem(p: &Problem) -> (Vec<u8>, Vec<u8>) {
    let (status, fields, body) = p.response();
    let mut headers = HeaderMap::with_capacity(fields.len() + 1);
    for (k, v) in fields {
        if let Ok(v) = HeaderValue::try_from(v) {
            headers.insert(k, v);
        }
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (message::write_response(1, status, &headers), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulated_offsets_follow_the_sections() {
        let out = head(
            200,
            "t",
            &[
                Section::req(b"GET / HTTP/1.1\r\n\r\n"),
                Section::res(b"HTTP/1.1 200 OK\r\n\r\n"),
            ],
            Some(Side::Response),
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Encapsulated: req-hdr=0, res-hdr=18, res-body=37\r\n"));
        assert!(text.ends_with("\r\n\r\nGET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"));
        let text = String::from_utf8(no_content("t", true)).unwrap();
        assert!(text.starts_with("ICAP/1.0 204 No Content\r\nISTag: \"t\"\r\n"));
        assert!(text.contains("Encapsulated: null-body=0\r\nConnection: close\r\n\r\n"));
    }
}
