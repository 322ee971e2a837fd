//! Base64 media inside JSON, selected by JSON pointers with `*` wildcards.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde_json::Value;

use super::{ExtractError, ItemSource, MediaItem};
use crate::media::sniff;

/// Standard and URL-safe alphabets, padding optional: generators emit both.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

pub(super) fn extract(
    body: &[u8],
    pointers: &[String],
    max_items: usize,
) -> Result<Vec<MediaItem>, ExtractError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| ExtractError::Malformed {
        format: "JSON",
        detail: e.to_string(),
    })?;
    let mut items = Vec::new();
    for pattern in pointers {
        let mut found = Vec::new();
        resolve(&doc, pattern.split('/').skip(1), String::new(), &mut found);
        for (pointer, value) in found {
            // Only strings can hold base64; URLs and other shapes are left alone (never fetched).
            let Value::String(text) = value else { continue };
            let Some(data) = decode(text, &pointer)? else {
                continue;
            };
            let media = sniff(&data).ok_or_else(|| {
                ExtractError::Unsupported(format!(
                    "{pointer}: decoded base64 is not a media format likeguard reads"
                ))
            })?;
            if items.len() == max_items {
                return Err(ExtractError::TooManyItems(max_items));
            }
            items.push(MediaItem {
                index: items.len(),
                source: ItemSource::Json { pointer },
                media,
                data: Bytes::from(data),
            });
        }
    }
    Ok(items)
}

/// Walk `segments` (RFC 6901, `*` = every child), collecting concrete pointers and values.
fn resolve<'a, 's>(
    value: &'a Value,
    mut segments: impl Iterator<Item = &'s str> + Clone,
    at: String,
    out: &mut Vec<(String, &'a Value)>,
) {
    let Some(raw) = segments.next() else {
        out.push((at, value));
        return;
    };
    if raw == "*" {
        match value {
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    resolve(v, segments.clone(), format!("{at}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let esc = k.replace('~', "~0").replace('/', "~1");
                    resolve(v, segments.clone(), format!("{at}/{esc}"), out);
                }
            }
            _ => {}
        }
        return;
    }
    let key = raw.replace("~1", "/").replace("~0", "~");
    let child = match value {
        Value::Object(map) => map.get(&key),
        Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    };
    if let Some(child) = child {
        resolve(child, segments, format!("{at}/{raw}"), out);
    }
}

/// Decode a base64 string or `data:` URL. `Ok(None)` for an http(s) URL (never fetched).
fn decode(text: &str, pointer: &str) -> Result<Option<Vec<u8>>, ExtractError> {
    let text = text.trim();
    if text.starts_with("http://") || text.starts_with("https://") || text.is_empty() {
        return Ok(None);
    }
    let payload = match text.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            _ => {
                return Err(ExtractError::Malformed {
                    format: "JSON",
                    detail: format!("{pointer}: data URL is not base64"),
                });
            }
        },
        None => text,
    };
    STANDARD
        .decode(payload)
        .or_else(|_| URL_SAFE.decode(payload))
        .map(Some)
        .map_err(|e| ExtractError::Malformed {
            format: "base64",
            detail: format!("{pointer}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn b64(d: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    #[test]
    fn wildcard_arrays_and_data_urls() {
        let doc = serde_json::json!({
            "data": [{"b64_json": b64(PNG)}, {"url": "https://example.com/x.png"}, {"b64_json": format!("data:image/png;base64,{}", b64(PNG))}],
            "image": null
        });
        let body = serde_json::to_vec(&doc).unwrap();
        let items = extract(&body, &["/data/*/b64_json".into(), "/image".into()], 8).unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[1].source, ItemSource::Json { pointer } if pointer == "/data/2/b64_json")
        );
        assert_eq!(&items[0].data[..], PNG);
    }

    #[test]
    fn bad_json_and_bad_base64_are_malformed() {
        let err = extract(b"{\"data\": [", &["/data".into()], 8).unwrap_err();
        assert!(
            matches!(err, ExtractError::Malformed { format: "JSON", .. }),
            "{err}"
        );
        let err = extract(br#"{"image": "!!!not base64!!!"}"#, &["/image".into()], 8).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::Malformed {
                    format: "base64",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn base64_that_is_not_media_is_unsupported() {
        let body = format!(r#"{{"image": "{}"}}"#, b64(b"plain text"));
        let err = extract(body.as_bytes(), &["/image".into()], 8).unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported(_)), "{err}");
    }

    #[test]
    fn pointer_escapes() {
        let doc = serde_json::json!({"a/b": {"c~d": b64(PNG)}});
        let body = serde_json::to_vec(&doc).unwrap();
        let items = extract(&body, &["/a~1b/c~0d".into()], 8).unwrap();
        assert_eq!(items.len(), 1);
    }
}
