//! `application/x-www-form-urlencoded`: every field value (and name) is walked as bytes, so a
//! percent-encoded JPEG keeps its magic bytes, and base64 or data URLs are found as in JSON.

use bytes::Bytes;

use super::ExtractError;
use super::location::{Location, Step};
use super::walk::{Hint, Walker};

/// Most fields looked at in one form.
const MAX_FIELDS: usize = 10_000;

pub(super) fn walk(w: &mut Walker<'_>, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
    for (n, pair) in data.split(|b| *b == b'&').enumerate() {
        if n == MAX_FIELDS {
            return Err(ExtractError::Limit(format!(
                "{loc}: more than {MAX_FIELDS} form fields"
            )));
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name);
        let shown = String::from_utf8_lossy(&name).into_owned();
        for part in [decode(value), name] {
            if part.len() < 16 {
                continue;
            }
            w.tick()?;
            let at = loc.then(Step::Field {
                name: shown.clone(),
            });
            w.blob(Bytes::from(part), &at, Hint::None)?;
        }
    }
    Ok(())
}

/// `+` is a space, then percent-decoding to bytes (never through UTF-8).
fn decode(raw: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}
