//! The encapsulated HTTP heads: parsed with httparse (each section must be exactly one
//! complete head, CRLF only), and written back — unchanged, or with the decision's changes.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

use super::MAX_FIELDS;
use super::head::{HeadError, crlf_only, header_map};

/// An encapsulated HTTP request head.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    /// The target as sent (absolute-form from a forward proxy, origin-form otherwise).
    pub target: String,
    pub uri: Uri,
    /// 0 or 1: HTTP/1.x.
    pub minor: u8,
    pub headers: HeaderMap,
    /// The section as received, for echoing it back unchanged.
    pub raw: Bytes,
}

/// An encapsulated HTTP response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub minor: u8,
    pub headers: HeaderMap,
    pub raw: Bytes,
}

fn bad(why: impl Into<String>) -> HeadError {
    HeadError::Malformed(why.into())
}

pub fn request(section: Bytes) -> Result<RequestHead, HeadError> {
    crlf_only(&section)?;
    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut raw);
    let used = complete(req.parse(&section), section.len(), "request")?;
    debug_assert_eq!(used, section.len());
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("encapsulated request: bad method"))?;
    let target = req.path.unwrap_or_default().to_string();
    let uri = Uri::try_from(target.as_str())
        .map_err(|_| bad("encapsulated request: the target is not a URI"))?;
    let minor = req.version.unwrap_or(1);
    let headers = header_map(req.headers)?;
    Ok(RequestHead {
        method,
        target,
        uri,
        minor,
        headers,
        raw: section,
    })
}

pub fn response(section: Bytes) -> Result<ResponseHead, HeadError> {
    crlf_only(&section)?;
    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut raw);
    complete(res.parse(&section), section.len(), "response")?;
    let status = StatusCode::from_u16(res.code.unwrap_or(0))
        .map_err(|_| bad("encapsulated response: bad status"))?;
    let minor = res.version.unwrap_or(1);
    let headers = header_map(res.headers)?;
    Ok(ResponseHead {
        status,
        minor,
        headers,
        raw: section,
    })
}

/// The section must be one whole head, nothing before or after it.
fn complete(parsed: httparse::Result<usize>, len: usize, what: &str) -> Result<usize, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n == len => Ok(n),
        Ok(httparse::Status::Complete(_)) => Err(bad(format!(
            "encapsulated {what}: bytes after the head inside its section"
        ))),
        Ok(httparse::Status::Partial) => Err(bad(format!(
            "encapsulated {what}: the head does not end where Encapsulated says"
        ))),
        Err(e) => Err(bad(format!("encapsulated {what}: {e}"))),
    }
}

fn write_fields(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (k, v) in headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `METHOD target HTTP/1.x` and `headers`.
pub fn write_request(head: &RequestHead, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.raw.len() + 256);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(if head.minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    write_fields(headers, &mut out);
    out
}

/// `HTTP/1.x status reason` and `headers`.
pub fn write_response(minor: u8, status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if minor == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(headers, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_write_back() {
        let raw = Bytes::from_static(
            b"POST http://up.example/upload HTTP/1.1\r\nHost: up.example\r\nContent-Type: image/jpeg\r\n\r\n",
        );
        let r = request(raw.clone()).unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.uri.host(), Some("up.example"));
        assert_eq!(r.headers["content-type"], "image/jpeg");
        let written = write_request(&r, &r.headers);
        assert_eq!(request(Bytes::from(written)).unwrap().target, r.target);
        let res = response(Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(res.status, StatusCode::OK);
        let w = write_response(1, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, &res.headers);
        assert!(w.starts_with(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n"));
    }

    #[test]
    fn a_section_must_be_exactly_one_head() {
        let bad = |s: &'static [u8]| request(Bytes::from_static(s)).is_err();
        assert!(bad(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(bad(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nextra"));
        assert!(bad(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(bad(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"));
        assert!(bad(b"GET / HTTP/1.1\r\nHost a\r\n\r\n"));
        assert!(response(Bytes::from_static(b"HTTP/1.1 99 x\r\n\r\n")).is_err());
    }
}
