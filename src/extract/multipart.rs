//! `multipart/form-data`: every part is looked at by content (media, archives, JSON, base64
//! text), whatever its headers say; a part declared media must be media.

use bytes::Bytes;

use super::ExtractError;
use super::location::{Location, Step};
use super::walk::{Hint, Walker};

/// Upper bound on parts of any kind, so a body of a million empty parts costs little.
const MAX_PARTS: usize = 1024;

struct Part {
    name: Option<String>,
    filename: Option<String>,
    declared: Option<String>,
    boundary: Option<String>,
    /// `Content-Transfer-Encoding`, when the part has one other than an identity.
    transfer: Option<String>,
    data: Bytes,
}

/// The boundary of a body that opens like multipart (`--token` then CRLF), whatever its
/// Content-Type said.
pub(super) fn boundary_of(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"--")?;
    let end = memchr::memmem::find(&rest[..rest.len().min(80)], b"\r\n")?;
    let token = std::str::from_utf8(&rest[..end]).ok()?;
    // RFC 2046 boundary characters, 1 to 70 of them.
    let ok = (1..=70).contains(&token.len())
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c));
    ok.then(|| token.to_string())
}

pub(super) fn walk(
    w: &mut Walker<'_>,
    body: Bytes,
    boundary: &str,
    loc: &Location,
) -> Result<(), ExtractError> {
    let malformed = |detail: String| ExtractError::Malformed {
        format: "multipart",
        detail,
    };
    if boundary.is_empty() {
        return Err(malformed(format!(
            "{loc}: Content-Type has no boundary parameter"
        )));
    }
    // multer is async; the body is already in memory, so this runs to the end at once.
    let parts = futures_executor::block_on(parts(body, boundary.to_owned()))?;
    let delimiter = format!("--{boundary}");
    for part in parts {
        // The boundary must not occur inside a part (RFC 2046 §5.1.1); where it does, a parser
        // that also takes bare-LF delimiters sees parts we did not.
        if memchr::memmem::find(&part.data, delimiter.as_bytes()).is_some() {
            return Err(ExtractError::Malformed {
                format: "multipart",
                detail: format!(
                    "{loc}: part {:?} contains the boundary",
                    part.name.as_deref().unwrap_or("")
                ),
            });
        }
        if let Some(cte) = &part.transfer {
            // base64 parts are found as base64 text below; anything else (quoted-printable)
            // would hide the bytes from us while the receiver decodes them.
            if cte != "base64" {
                return Err(ExtractError::Unsupported(format!(
                    "{loc}: part {:?} has Content-Transfer-Encoding {cte}",
                    part.name.as_deref().unwrap_or("")
                )));
            }
        }
        let at = loc.then(Step::Part {
            name: part.name,
            filename: part.filename,
        });
        let hint = match part.declared.as_deref() {
            Some(d)
                if ["image/", "video/", "audio/"]
                    .iter()
                    .any(|p| d.starts_with(p)) =>
            {
                Hint::Media(d.to_owned())
            }
            Some(d) if d == "application/json" || d.ends_with("+json") => Hint::Json,
            Some("application/x-www-form-urlencoded") => Hint::Form,
            Some(d) if d.starts_with("multipart/") => match part.boundary {
                Some(b) => Hint::Multipart(b),
                None => Hint::None,
            },
            _ => Hint::None,
        };
        w.blob(part.data, &at, hint)?;
    }
    Ok(())
}

async fn parts(body: Bytes, boundary: String) -> Result<Vec<Part>, ExtractError> {
    let malformed = |detail: String| ExtractError::Malformed {
        format: "multipart",
        detail,
    };
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| malformed(e.to_string()))?
    {
        if out.len() == MAX_PARTS {
            return Err(malformed(format!("more than {MAX_PARTS} parts")));
        }
        let name = field.name().map(str::to_owned);
        let filename = field.file_name().map(str::to_owned);
        let mime = field.content_type().cloned();
        let declared = mime.as_ref().map(|m| m.essence_str().to_owned());
        let boundary = mime
            .as_ref()
            .and_then(|m| m.get_param("boundary"))
            .map(|b| b.as_str().to_owned());
        let transfer = field
            .headers()
            .get("content-transfer-encoding")
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|v| !matches!(v.as_str(), "7bit" | "8bit" | "binary" | ""));
        let data = field
            .bytes()
            .await
            .map_err(|e| malformed(format!("part {:?}: {e}", name.as_deref().unwrap_or(""))))?;
        out.push(Part {
            name,
            filename,
            declared,
            boundary,
            transfer,
            data,
        });
    }
    Ok(out)
}
