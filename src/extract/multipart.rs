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
    data: Bytes,
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
    for part in parts {
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
        let data = field
            .bytes()
            .await
            .map_err(|e| malformed(format!("part {:?}: {e}", name.as_deref().unwrap_or(""))))?;
        out.push(Part {
            name,
            filename,
            declared,
            boundary,
            data,
        });
    }
    Ok(out)
}
