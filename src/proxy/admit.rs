//! Admission: what pingora parsed, checked for what an inline inspector cannot leave
//! ambiguous, and the target normalised (`target`). Framing (Content-Length, Transfer-Encoding,
//! chunk syntax) is pingora's and never looked at here.

use http::header::{CONTENT_TYPE, HOST};
use pingora::http::RequestHeader;

use super::target::{NormalPath, SlashMode, TargetError, normalize_host, normalize_path};
use crate::actions::{Problem, ProblemKind};

/// A request fit to be routed.
#[derive(Debug)]
pub struct Admitted {
    /// Normalised host (`target::normalize_host`).
    pub host: Option<String>,
    pub path: NormalPath,
    /// The normalised path with the query as sent: the upstream's request target.
    pub forward: String,
}

pub fn admit(req: &RequestHeader, slashes: SlashMode) -> Result<Admitted, Problem> {
    admit_parts(&req.method, req.raw_path(), &req.uri, &req.headers, slashes)
}

/// `admit` for a request head parsed elsewhere (the ICAP server's encapsulated requests):
/// `raw` is the request target as sent, `uri` its parse.
pub fn admit_parts(
    method: &http::Method,
    raw: &[u8],
    uri: &http::Uri,
    headers: &http::HeaderMap,
    slashes: SlashMode,
) -> Result<Admitted, Problem> {
    let ambiguous = |detail: &str| Err(Problem::new(ProblemKind::AmbiguousRequest, detail));
    let mut hosts = headers.get_all(HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return ambiguous("more than one Host header");
    }
    if headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
        return ambiguous("more than one Content-Type header: send one");
    }
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2); HTTP/2 has only
    // `:authority`, which pingora puts there.
    let host = match (uri.host(), host_header) {
        (Some(h), _) => h.to_string(),
        (None, Some(v)) => v
            .to_str()
            .map_err(|_| Problem::new(ProblemKind::BadRequest, "the Host header is not text"))?
            .to_string(),
        (None, None) => {
            return Err(Problem::new(
                ProblemKind::BadRequest,
                "a Host header is required (RFC 9112 §3.2)",
            ));
        }
    };
    let host = normalize_host(&host).ok_or_else(|| {
        Problem::new(
            ProblemKind::AmbiguousRequest,
            "the Host is not host[:port]: origins would read it differently",
        )
    })?;
    // Origin-form, asterisk-form (OPTIONS) or absolute-form (pingora kept its path): anything
    // else would reach the upstream as some other target.
    let form_ok = raw.starts_with(b"/")
        || (raw == b"*" && method == http::Method::OPTIONS)
        || raw.starts_with(b"http://")
        || raw.starts_with(b"https://");
    if !form_ok {
        return Err(Problem::new(
            ProblemKind::BadRequest,
            "the request target must be a path (or absolute-form)",
        ));
    }
    let path = normalize_path(uri.path(), slashes).map_err(|e| match e {
        TargetError::AmbiguousSlash => Problem::new(
            ProblemKind::AmbiguousRequest,
            format!("{e}; send plain '/' separators (or set paths.encoded_slashes: decode)"),
        ),
        TargetError::BadEscape | TargetError::NotAPath => {
            Problem::new(ProblemKind::BadRequest, e.to_string())
        }
    })?;
    let forward = match uri.query() {
        Some(q) => format!("{}?{q}", path.forward),
        None => path.forward.clone(),
    };
    Ok(Admitted {
        host: Some(host),
        path,
        forward,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn slug(r: Result<Admitted, Problem>) -> &'static str {
        r.map_or_else(|p| p.slug(), |_| "ok")
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        let a = |t, h| slug(admit(&req(t, h), SlashMode::Reject));
        assert_eq!(a("/x", &[]), "bad-request");
        assert_eq!(
            a("/x", &[("host", "a"), ("host", "b")]),
            "ambiguous-request"
        );
        assert_eq!(
            a(
                "/x",
                &[
                    ("host", "a"),
                    ("content-type", "text/plain"),
                    ("content-type", "image/png")
                ]
            ),
            "ambiguous-request"
        );
        assert_eq!(a("/%2fupload", &[("host", "a")]), "ambiguous-request");
        assert_eq!(a("/a%zz", &[("host", "a")]), "bad-request");
        assert_eq!(a("/x", &[("host", "a")]), "ok");
        assert_eq!(
            a("/x", &[("host", "up.example:80:90")]),
            "ambiguous-request"
        );
        assert_eq!(a("upload", &[("host", "a")]), "bad-request");
        assert_eq!(a("*", &[("host", "a")]), "bad-request");
    }

    #[test]
    fn target_and_host_are_normalised() {
        let r = admit(
            &req("//x/../UPLOAD;v?q=1/../", &[("host", "Up.Example.:80")]),
            SlashMode::Reject,
        )
        .unwrap();
        assert_eq!(r.host.as_deref(), Some("up.example"));
        assert_eq!(r.path.matched, "/upload");
        assert_eq!(r.forward, "/UPLOAD;v?q=1/../");
        // Absolute form: pingora keeps only the path in the URI (and has checked the authority
        // against Host); the upstream gets origin-form.
        let r = admit(
            &req("http://up.example/a/../b", &[("host", "up.example")]),
            SlashMode::Reject,
        )
        .unwrap();
        assert_eq!(r.host.as_deref(), Some("up.example"));
        assert_eq!(r.forward, "/b");
    }
}
