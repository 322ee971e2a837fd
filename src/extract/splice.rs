//! The inverse of extraction: put changed media items back into the body they came from, so a
//! marked image inside a form upload or a JSON generation response goes on in the same shape.
//! JSON values are re-encoded as base64 at their pointers (a `data:` URL keeps its prefix);
//! multipart parts are replaced in place (boundary and part headers untouched).

use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::location::Step;
use super::{BodyClass, ExtractError, MediaItem};

/// `body` with `new[i]` put back in place of `items[i]` (every item extracted from the body, in
/// extraction order); `None` leaves an item as it was. Only items found at the top of the body
/// (the raw body, a multipart part, a JSON string) can be put back; changing one found deeper
/// (in an archive, a form field, behind a URL) is an error. A compressed body is given
/// decoded, and comes back uncompressed.
pub fn splice(
    body: &Bytes,
    class: &BodyClass,
    items: &[MediaItem],
    new: &[Option<Bytes>],
) -> Result<Bytes, ExtractError> {
    let lost = |what: String| ExtractError::Malformed {
        format: "body",
        detail: format!("cannot put the changed media back: {what}"),
    };
    if items.len() != new.len() {
        return Err(lost("one replacement per item is needed".into()));
    }
    let changes: Vec<(&MediaItem, &Bytes)> = items
        .iter()
        .zip(new)
        .filter_map(|(i, n)| Some((i, n.as_ref()?)))
        .collect();
    for (item, _) in &changes {
        let fits = matches!(
            (class, item.location.top()),
            (BodyClass::Raw { .. } | BodyClass::Sniff, Some(Step::Body))
                | (BodyClass::Multipart { .. }, Some(Step::Part { .. }))
                | (BodyClass::Json, Some(Step::Json { .. }))
                | (BodyClass::Encoded { .. }, _)
        );
        if !fits {
            return Err(lost(format!(
                "item {} was found at {}, which cannot be rewritten",
                item.index, item.location
            )));
        }
    }
    if changes.is_empty() {
        return Ok(body.clone());
    }
    match class {
        BodyClass::Raw { .. } | BodyClass::Sniff => match changes.as_slice() {
            [(_, new)] => Ok((*new).clone()),
            _ => Err(lost("a raw body holds exactly one item".into())),
        },
        BodyClass::Encoded { inner, .. } => splice(body, inner, items, new),
        BodyClass::Json => {
            let mut doc: Value = serde_json::from_slice(body).map_err(|e| lost(e.to_string()))?;
            for (item, new) in changes {
                let Some(Step::Json { pointer }) = item.location.top() else {
                    return Err(lost("a JSON body item without a pointer".into()));
                };
                let slot = doc
                    .pointer_mut(pointer)
                    .ok_or_else(|| lost(format!("{pointer} is gone")))?;
                let prefix = match slot.as_str() {
                    Some(s) if s.trim_start().starts_with("data:") => s
                        .trim_start()
                        .split_once(',')
                        .map(|(meta, _)| format!("{meta},"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let encoded = base64::engine::general_purpose::STANDARD.encode(new);
                *slot = Value::String(prefix + &encoded);
            }
            // Keys keep their order (serde_json's preserve_order); whitespace is compacted.
            serde_json::to_vec(&doc)
                .map(Bytes::from)
                .map_err(|e| lost(e.to_string()))
        }
        BodyClass::Multipart { .. } => {
            // Top-level items are in body order and each one's bytes appear verbatim in its
            // part (HTTP multipart has no transfer encoding): each is found after the one
            // before, so two identical parts are told apart by position.
            let mut out = BytesMut::with_capacity(body.len() + body.len() / 8);
            let mut from = 0usize;
            for (item, new) in items.iter().zip(new) {
                if item.data.is_empty() || !matches!(item.location.top(), Some(Step::Part { .. })) {
                    continue;
                }
                let at = memchr::memmem::find(&body[from..], &item.data)
                    .map(|i| from + i)
                    .ok_or_else(|| lost(format!("part {} not found in the body", item.index)))?;
                out.extend_from_slice(&body[from..at]);
                out.extend_from_slice(new.as_deref().unwrap_or(&item.data));
                from = at + item.data.len();
            }
            out.extend_from_slice(&body[from..]);
            Ok(out.freeze())
        }
        BodyClass::Form | BodyClass::Undecodable { .. } | BodyClass::Opaque => {
            Err(lost("this body cannot be rewritten".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Location;
    use crate::media::sniff;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR old";
    const NEW: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR brand new bytes";

    fn item(index: usize, source: Step, data: &'static [u8]) -> MediaItem {
        MediaItem::new(
            index,
            Location::from(source),
            sniff(data).unwrap(),
            Bytes::from_static(data),
        )
    }

    #[test]
    fn json_values_are_replaced_at_their_pointers_keeping_data_url_prefixes() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
        let body = Bytes::from(format!(
            r#"{{"data":[{{"b64_json":"{b64}"}},{{"b64_json":"data:image/png;base64,{b64}"}}],"model":"m"}}"#
        ));
        let items = [
            item(
                0,
                Step::Json {
                    pointer: "/data/0/b64_json".into(),
                },
                PNG,
            ),
            item(
                1,
                Step::Json {
                    pointer: "/data/1/b64_json".into(),
                },
                PNG,
            ),
        ];
        let new = [Some(Bytes::from_static(NEW)), Some(Bytes::from_static(NEW))];
        let out = splice(&body, &BodyClass::Json, &items, &new).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let new = base64::engine::general_purpose::STANDARD.encode(NEW);
        assert_eq!(v["data"][0]["b64_json"], new);
        assert_eq!(
            v["data"][1]["b64_json"],
            format!("data:image/png;base64,{new}")
        );
        assert_eq!(v["model"], "m");
    }

    #[test]
    fn multipart_parts_are_replaced_in_place_even_when_identical() {
        let part = |name: &str| {
            format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
        };
        let mut body = Vec::new();
        for name in ["a", "b"] {
            body.extend_from_slice(part(name).as_bytes());
            body.extend_from_slice(PNG);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\r\n--XyZ--\r\n",
        );
        let body = Bytes::from(body);
        let src = |n: &str| Step::Part {
            name: Some(n.into()),
            filename: Some("a.png".into()),
        };
        // Only the second part changes: the first must stay.
        let items = [item(0, src("a"), PNG), item(1, src("b"), PNG)];
        let class = BodyClass::Multipart {
            boundary: "XyZ".into(),
        };
        let out = splice(
            &body,
            &class,
            &items,
            &[None, Some(Bytes::from_static(NEW))],
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("brand new").count(), 1);
        assert!(text.find("IHDR old").unwrap() < text.find("brand new").unwrap());
        assert!(text.ends_with("hello\r\n--XyZ--\r\n"));
        // A part whose bytes are not in the body is an error, not a silent pass.
        let stray = [item(0, src("a"), NEW)];
        assert!(splice(&body, &class, &stray, &[Some(Bytes::from_static(PNG))]).is_err());
    }
}
