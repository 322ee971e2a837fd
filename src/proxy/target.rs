//! The request target as an origin reads it: the path normalised the way servers normalise it
//! before routing (RFC 3986 §6.2.2: unreserved percent-escapes decoded, dot segments removed;
//! repeated slashes merged and `;params` not hiding a segment, as nginx, Envoy and servlet
//! containers do), and the host without case, port or trailing dot.
//!
//! Routes are chosen on this form, and this form is what goes upstream, so likeguard and the
//! origin never disagree on which path a request is for. Where the origin's reading cannot be
//! known (encoded slashes and backslashes), the request is refused unless the config says to
//! decode them.

pub use crate::config::SlashMode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the path contains an encoded slash or a backslash, which origins read differently")]
    AmbiguousSlash,
    #[error("the path contains an invalid percent-escape")]
    BadEscape,
    #[error("the request target is not a path")]
    NotAPath,
}

/// A normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// What is forwarded upstream: segments normalised, `;params` kept, no query.
    pub forward: String,
    /// What routes are matched against: `forward` lower-cased with `;params` removed.
    pub matched: String,
}

/// Normalise an origin-form path (no query). `*` (OPTIONS) is kept as it is and matched as `/`.
pub fn normalize_path(raw: &str, slashes: SlashMode) -> Result<NormalPath, TargetError> {
    if raw == "*" {
        return Ok(NormalPath {
            forward: "*".into(),
            matched: "/".into(),
        });
    }
    if !raw.starts_with('/') {
        return Err(TargetError::NotAPath);
    }
    let decoded = decode(raw, slashes)?;
    let trailing = decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        // `..;x` is `..` to a servlet container: params never hide a dot segment.
        match segment.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut forward = String::with_capacity(decoded.len());
    let mut matched = String::with_capacity(decoded.len());
    for segment in &segments {
        forward.push('/');
        forward.push_str(segment);
        matched.push('/');
        matched.push_str(&segment.split(';').next().unwrap_or("").to_ascii_lowercase());
    }
    let last_was_dot = decoded
        .rsplit('/')
        .next()
        .is_some_and(|s| matches!(s.split(';').next(), Some("." | "..")));
    if segments.is_empty() || trailing || last_was_dot {
        forward.push('/');
        matched.push('/');
    }
    Ok(NormalPath { forward, matched })
}

/// Decode percent-escapes of unreserved characters (and of slashes when allowed); others stay
/// escaped, with upper-case hex digits.
fn decode(raw: &str, slashes: SlashMode) -> Result<String, TargetError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(TargetError::BadEscape)?;
                let byte = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(TargetError::BadEscape)?;
                match byte {
                    b'/' | b'\\' => push_slash(&mut out, slashes)?,
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        out.push(b as char)
                    }
                    b => push_escaped(&mut out, b),
                }
                i += 3;
            }
            b'\\' => {
                push_slash(&mut out, slashes)?;
                i += 1;
            }
            b if b.is_ascii() => {
                out.push(b as char);
                i += 1;
            }
            // Not URI characters: escaped, so the forwarded target is always valid.
            b => {
                push_escaped(&mut out, b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `%XX` with upper-case hex, without a temporary string.
fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

fn push_slash(out: &mut String, slashes: SlashMode) -> Result<(), TargetError> {
    match slashes {
        SlashMode::Reject => Err(TargetError::AmbiguousSlash),
        SlashMode::Decode => {
            out.push('/');
            Ok(())
        }
    }
}

/// A Host (or authority) as routes compare it: lower-case, no port, no trailing dot. `None` when
/// it is not `host[:digits]` or `[v6][:digits]` — origins would split it differently (one cuts
/// `a:80:90` at the first colon, another at the last).
pub fn normalize_host(host: &str) -> Option<String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let (name, rest) = v6.split_once(']')?;
            (
                name,
                rest.strip_prefix(':').or(rest.is_empty().then_some(""))?,
            )
        }
        None => host.split_once(':').unwrap_or((host, "")),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    let name_ok = name_ok && (host.starts_with('[') || !name.contains(':'));
    if !name_ok || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(name.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(raw: &str) -> String {
        normalize_path(raw, SlashMode::Reject).unwrap().matched
    }

    #[test]
    fn variants_of_one_path_normalise_alike() {
        for raw in [
            "/upload",
            "//upload",
            "/./upload",
            "/x/../upload",
            "/%75pload",
            "/%75%70load",
            "/UPLOAD",
            "/upload;x",
            "/%2e/upload",
            "/x/..;/upload",
            "/x/%2E%2E/upload",
            "/../upload",
        ] {
            assert_eq!(m(raw), "/upload", "{raw}");
        }
        assert_eq!(m("/upload/"), "/upload/");
        assert_eq!(m("/upload/."), "/upload/");
        assert_eq!(m("/upload/a/.."), "/upload/");
        assert_eq!(m("/"), "/");
        assert_eq!(m("//"), "/");
        assert_eq!(m("*"), "/");
    }

    #[test]
    fn forwarded_form_keeps_params_and_case_and_other_escapes() {
        let n = normalize_path("//A/./b;v=1/%7e%41%20x/../c", SlashMode::Reject).unwrap();
        assert_eq!(n.forward, "/A/b;v=1/c");
        assert_eq!(n.matched, "/a/b/c");
        let n = normalize_path("/a%20b%c3%a9é", SlashMode::Reject).unwrap();
        assert_eq!(n.forward, "/a%20b%C3%A9%C3%A9");
    }

    #[test]
    fn slashes_are_refused_or_decoded() {
        for raw in ["/%2fupload", "/upload%2F", "/x%5cupload", "/x\\upload"] {
            assert_eq!(
                normalize_path(raw, SlashMode::Reject),
                Err(TargetError::AmbiguousSlash),
                "{raw}"
            );
        }
        let d = |raw| normalize_path(raw, SlashMode::Decode).unwrap();
        assert_eq!(d("/%2fupload").forward, "/upload");
        assert_eq!(d("/upload%2F").forward, "/upload/");
        assert_eq!(d("/x\\..\\upload").forward, "/upload");
    }

    #[test]
    fn bad_targets_are_errors() {
        assert_eq!(
            normalize_path("/a%zz", SlashMode::Reject),
            Err(TargetError::BadEscape)
        );
        assert_eq!(
            normalize_path("/a%4", SlashMode::Reject),
            Err(TargetError::BadEscape)
        );
        assert_eq!(
            normalize_path("upload", SlashMode::Reject),
            Err(TargetError::NotAPath)
        );
    }

    #[test]
    fn hosts_compare_without_case_port_or_trailing_dot() {
        let n = |h| normalize_host(h);
        assert_eq!(n("Up.Example.:8080").as_deref(), Some("up.example"));
        assert_eq!(n("up.example.").as_deref(), Some("up.example"));
        assert_eq!(n("up.example:").as_deref(), Some("up.example"));
        assert_eq!(n("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(n("[::1]").as_deref(), Some("::1"));
        for bad in [
            "up.example:80:90",
            "up.example:x:",
            "a b",
            "",
            "[::1",
            "[::1]x",
            "u@up.example",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
