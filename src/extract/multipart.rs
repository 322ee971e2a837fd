//! `multipart/form-data`: every part that is (or claims to be) media becomes an item.

use bytes::Bytes;

use super::{ExtractError, ItemSource, MediaItem};
use crate::media::sniff;

/// Upper bound on parts of any kind, so a body of a million empty parts costs little.
const MAX_PARTS: usize = 1024;

pub(super) async fn extract(
    body: Bytes,
    boundary: &str,
    max_items: usize,
) -> Result<Vec<MediaItem>, ExtractError> {
    let malformed = |detail: String| ExtractError::Malformed {
        format: "multipart",
        detail,
    };
    if boundary.is_empty() {
        return Err(malformed("Content-Type has no boundary parameter".into()));
    }
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut items = Vec::new();
    let mut parts = 0usize;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| malformed(e.to_string()))?
    {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(malformed(format!("more than {MAX_PARTS} parts")));
        }
        let name = field.name().map(str::to_owned);
        let filename = field.file_name().map(str::to_owned);
        let declared = field.content_type().map(|m| m.essence_str().to_owned());
        let declared_media = declared.as_deref().is_some_and(|d| {
            d.starts_with("image/") || d.starts_with("video/") || d.starts_with("audio/")
        });
        let maybe_media = declared_media
            || filename.is_some()
            || declared.as_deref() == Some("application/octet-stream");
        let data = field
            .bytes()
            .await
            .map_err(|e| malformed(format!("part {:?}: {e}", name.as_deref().unwrap_or(""))))?;
        if !maybe_media {
            continue;
        }
        match sniff(&data) {
            Some(media) => {
                if items.len() == max_items {
                    return Err(ExtractError::TooManyItems(max_items));
                }
                items.push(MediaItem {
                    index: items.len(),
                    source: ItemSource::Part { name, filename },
                    media,
                    data,
                });
            }
            None if declared_media => {
                return Err(ExtractError::Unsupported(format!(
                    "part {:?} declared {} but its bytes are not a media format likeguard reads",
                    name.as_deref().unwrap_or(""),
                    declared.as_deref().unwrap_or("")
                )));
            }
            None => {}
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    /// (name, filename, content type, data)
    type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

    fn form(parts: &[Part<'_>]) -> Bytes {
        let mut b = Vec::new();
        for (name, filename, ct, data) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = filename {
                disp.push_str(&format!("; filename=\"{f}\""));
            }
            b.extend_from_slice(disp.as_bytes());
            b.extend_from_slice(b"\r\n");
            if let Some(ct) = ct {
                b.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b.into()
    }

    #[tokio::test]
    async fn media_parts_become_items_text_fields_do_not() {
        let body = form(&[
            ("prompt", None, None, b"a cat"),
            ("image", Some("a.png"), Some("image/png"), PNG),
            ("mask", Some("m.bin"), Some("application/octet-stream"), PNG),
        ]);
        let items = extract(body, "XyZ", 8).await.unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].index, 1);
        assert!(matches!(&items[0].source, ItemSource::Part { name: Some(n), .. } if n == "image"));
        assert_eq!(&items[0].data[..], PNG);
    }

    #[tokio::test]
    async fn truncated_form_is_malformed() {
        let body = form(&[("image", Some("a.png"), Some("image/png"), PNG)]);
        let cut = body.slice(..body.len() - 12);
        let err = extract(cut, "XyZ", 8).await.unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }

    #[tokio::test]
    async fn declared_image_that_is_not_is_unsupported() {
        let body = form(&[("image", Some("a.png"), Some("image/png"), b"not an image")]);
        let err = extract(body, "XyZ", 8).await.unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported(_)), "{err}");
    }

    #[tokio::test]
    async fn too_many_items() {
        let body = form(&[
            ("a", Some("a.png"), None, PNG),
            ("b", Some("b.png"), None, PNG),
        ]);
        let err = extract(body, "XyZ", 1).await.unwrap_err();
        assert!(matches!(err, ExtractError::TooManyItems(1)), "{err}");
    }
}
