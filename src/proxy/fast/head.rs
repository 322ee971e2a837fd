//! HTTP/1.1 message heads for the fast front: parse (httparse), decide the body framing and
//! connection handling, and write the head that goes on with hop-by-hop headers removed.
//!
//! Framing rules follow RFC 9112 §6; anything ambiguous that could smuggle a second request past
//! an upstream (Content-Length with Transfer-Encoding, differing lengths, a transfer coding other
//! than a final `chunked`) is refused rather than guessed at.

use std::io::Write;

use super::body::Framing;

/// More header lines than this is refused (431 for requests, 502 for responses).
const MAX_HEADERS: usize = 100;

/// Why a head was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Too many header lines (the byte limit is the caller's).
    TooLarge,
    Malformed(&'static str),
}

/// What the front does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Stream it to this route's upstream (index into the router's routes).
    Stream(usize),
    /// Pingora's job: an inspected route, an upgrade, `Expect`, an absolute or `*` target, ...
    Handover,
    NoRoute,
}

#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head in the buffer it was parsed from.
    pub len: usize,
    pub dispatch: Dispatch,
    pub framing: Framing,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    pub is_head: bool,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    /// 1xx other than 101: more heads follow.
    pub interim: bool,
    pub framing: Framing,
    /// The upstream connection may carry another request.
    pub reusable: bool,
}

/// `route(host, path)` picks the route; it returns `Some((index, streamable))`.
/// On `Dispatch::Stream` the head to send upstream is written to `out`.
pub fn parse_request(
    buf: &[u8],
    route: impl FnOnce(Option<&str>, &str) -> Option<(usize, bool)>,
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, HeadError> {
    if buf.starts_with(b"PRI * HTTP/2.0") {
        // HTTP/2 with prior knowledge: pingora's.
        return Ok(Some(RequestHead {
            len: 0,
            dispatch: Dispatch::Handover,
            framing: Framing::None,
            keep_alive: false,
            is_head: false,
        }));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("malformed request line"));
    };
    let fields = Fields::read(req.headers, true)?;
    let framing = match (fields.chunked, fields.length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        (Some(true), None) if version == 1 => Framing::Chunked,
        (Some(_), None) => return Err(HeadError::Malformed("unsupported Transfer-Encoding")),
        (None, Some(0) | None) => Framing::None,
        (None, Some(n)) => Framing::Length(n),
    };
    let head = |dispatch| RequestHead {
        len,
        dispatch,
        framing,
        keep_alive: version == 1 && !fields.close,
        is_head: method == "HEAD",
    };
    // Only origin-form targets are ours; upgrades and 100-continue need the duplex pingora has.
    if !target.starts_with('/') || fields.upgrade || fields.expect || method == "CONNECT" {
        return Ok(Some(head(Dispatch::Handover)));
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let dispatch = match route(fields.host, path) {
        None => Dispatch::NoRoute,
        Some((_, false)) => Dispatch::Handover,
        Some((i, true)) => Dispatch::Stream(i),
    };
    if let Dispatch::Stream(_) = dispatch {
        out.clear();
        // Writes to a Vec cannot fail.
        let _ = write!(out, "{method} {target} HTTP/1.1\r\n");
        write_fields(out, req.headers, &fields);
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(head(dispatch)))
}

/// Parse a response head to request `is_head`; on success its head for the client is in `out`
/// (with `connection: close` when `close_client`, unless interim).
pub fn parse_response(
    buf: &[u8],
    is_head: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed response head")),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err(HeadError::Malformed("malformed status line"));
    };
    let fields = Fields::read(res.headers, false)?;
    let interim = (100..200).contains(&status) && status != 101;
    let framing = if is_head || interim || status == 204 || status == 304 {
        Framing::None
    } else {
        match (fields.chunked, fields.length) {
            (Some(true), _) if version == 1 => Framing::Chunked,
            // Another coding, or chunked from HTTP/1.0: the body ends when the upstream closes.
            (Some(_), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    out.clear();
    let reason = res.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    });
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    write_fields(out, res.headers, &fields);
    if !interim && (close_client || framing == Framing::Close) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        status,
        interim,
        framing,
        reusable: version == 1 && !fields.close && framing != Framing::Close,
    }))
}

/// The header fields that steer framing and connection handling.
#[derive(Default)]
struct Fields<'a> {
    host: Option<&'a str>,
    length: Option<u64>,
    /// Transfer-Encoding present: is its final coding `chunked`?
    chunked: Option<bool>,
    close: bool,
    upgrade: bool,
    expect: bool,
    /// Header names listed in Connection (hop-by-hop for this message only).
    named: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn read(headers: &[httparse::Header<'a>], request: bool) -> Result<Self, HeadError> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name;
            let value = std::str::from_utf8(h.value).ok();
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .and_then(parse_length)
                    .ok_or(HeadError::Malformed("invalid Content-Length"))?;
                if f.length.is_some_and(|m| m != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length headers"));
                }
                f.length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let v = value.ok_or(HeadError::Malformed("invalid Transfer-Encoding"))?;
                let last = v.rsplit(',').next().unwrap_or("").trim();
                f.chunked = Some(last.eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.unwrap_or("").split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        f.close = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        f.upgrade |= request;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case("keep-alive") {
                        f.named.push(token);
                    }
                }
            } else if request && name.eq_ignore_ascii_case("host") {
                if f.host.is_some() {
                    return Err(HeadError::Malformed("more than one Host header"));
                }
                f.host = Some(value.ok_or(HeadError::Malformed("invalid Host"))?);
            } else if request && name.eq_ignore_ascii_case("upgrade") {
                f.upgrade = true;
            } else if request && name.eq_ignore_ascii_case("expect") {
                f.expect = true;
            }
        }
        Ok(f)
    }
}

/// Copy the fields that go on: all but hop-by-hop ones (RFC 9110 §7.6.1) and those Connection
/// names. Transfer-Encoding and Trailer stay: the body is forwarded in its own framing.
fn write_fields(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], fields: &Fields<'_>) {
    for h in headers {
        let drop = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
        ]
        .iter()
        .any(|n| h.name.eq_ignore_ascii_case(n))
            || fields.named.iter().any(|n| h.name.eq_ignore_ascii_case(n));
        if !drop {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// 1*DIGIT, and no more than fits (RFC 9110 §8.6).
fn parse_length(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> (Result<Option<RequestHead>, HeadError>, String) {
        let mut out = Vec::new();
        let r = parse_request(raw.as_bytes(), |_, p| Some((0, p != "/held")), &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn streams_with_hop_by_hop_headers_removed() {
        let raw = "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nContent-Length: 3\r\nX-Keep: Yes\r\n\r\nabc";
        let (r, out) = req(raw);
        let r = r.unwrap().unwrap();
        assert_eq!(r.dispatch, Dispatch::Stream(0));
        assert_eq!(r.framing, Framing::Length(3));
        assert!(r.keep_alive);
        assert_eq!(r.len, raw.len() - 3);
        assert_eq!(
            out,
            "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Keep: Yes\r\n\r\n"
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(matches!(req(raw).0, Err(HeadError::Malformed(_))), "{raw}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(req(&many).0.unwrap_err(), HeadError::TooLarge);
        assert!(req("GET / HTTP/1.1\r\nHost: a\r\n").0.unwrap().is_none());
    }

    #[test]
    fn pingora_gets_what_the_front_does_not_stream() {
        for raw in [
            "GET /held HTTP/1.1\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
            "GET http://h/x HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert_eq!(
                req(raw).0.unwrap().unwrap().dispatch,
                Dispatch::Handover,
                "{raw}"
            );
        }
        let (r, _) = req("GET / HTTP/1.0\r\n\r\n");
        assert!(!r.unwrap().unwrap().keep_alive);
    }

    #[test]
    fn response_framing_and_reuse() {
        let mut out = Vec::new();
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            false,
            &mut out,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, true));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false, false, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::Close, false));
        assert!(String::from_utf8_lossy(&out).contains("connection: close"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            false,
            &mut out,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::None, true));
        let r = parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", false, true, &mut out)
            .unwrap()
            .unwrap();
        assert!(r.interim && !String::from_utf8_lossy(&out).contains("close"));
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                false,
                false,
                &mut out
            )
            .is_err()
        );
    }
}
