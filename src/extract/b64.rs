//! Base64 and data URLs in text: finding candidates fast, decoding them leniently.
//!
//! Finding is the hot path — every JSON, form and text body on an inspected route goes through
//! it — so it skips ahead: a run of at least `MIN_RUN` alphabet bytes must cover the byte
//! `MIN_RUN - 1` ahead, so when that byte is not in the alphabet the whole window is skipped.
//! Ordinary text (spaces every few bytes) is crossed `MIN_RUN` bytes at a time.

use std::ops::Range;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::shape::{SHAPE_BYTES, Shape, shape};

/// Shortest base64 text looked at: 48 bytes decoded, below any real image's header.
pub(super) const MIN_RUN: usize = 64;

/// Standard and URL-safe alphabets, padding optional: generators emit both.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// Both base64 alphabets and padding.
static ALPHABET: [bool; 256] = table(&[]);
/// The same plus `\`: in raw JSON an escape (`\/`, `\u0041`) stands for one string character,
/// and every byte of an escape is in this set, so a long string of base64 is a long run here
/// however it is escaped.
static ALPHABET_ESCAPED: [bool; 256] = table(b"\\");

/// Whether `text` holds a run of at least `min` alphabet bytes (`escaped`: JSON escapes count).
pub(super) fn has_run(text: &[u8], min: usize, escaped: bool) -> bool {
    let t = if escaped {
        &ALPHABET_ESCAPED
    } else {
        &ALPHABET
    };
    next_run(text, 0, min, t).is_some()
}

/// The first run of at least `min` bytes of `t` starting at or after `from`.
fn next_run(text: &[u8], mut from: usize, min: usize, t: &[bool; 256]) -> Option<Range<usize>> {
    debug_assert!(min > 0);
    while from + min <= text.len() {
        let probe = from + min - 1;
        if !t[text[probe] as usize] {
            from = probe + 1;
            continue;
        }
        // Walk back to the run's start, then forward to its end.
        let mut start = probe;
        while start > from && t[text[start - 1] as usize] {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < text.len() && t[text[end] as usize] {
            end += 1;
        }
        if end - start >= min {
            return Some(start..end);
        }
        from = end;
    }
    None
}

/// Runs of base64 in plain text, MIME line breaks (`\n`, `\r\n`) inside a run joined.
pub(super) fn runs(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let run = next_run(text, from, MIN_RUN, &ALPHABET)?;
        let (start, mut end) = (run.start, run.end);
        loop {
            let rest = &text[end..];
            let gap = if rest.starts_with(b"\r\n") {
                2
            } else if rest.starts_with(b"\n") {
                1
            } else {
                break;
            };
            let more = rest[gap..]
                .iter()
                .take_while(|b| ALPHABET[**b as usize])
                .count();
            if more == 0 {
                break;
            }
            end += gap + more;
        }
        from = end;
        Some(start..end)
    })
}

/// A string value that may be media.
pub(super) enum Candidate<'a> {
    /// `data:[type][;base64],payload`: the declared type and the decoded bytes' source.
    DataUrl {
        mime: String,
        base64: bool,
        payload: &'a str,
    },
    /// The whole string is base64 (whitespace allowed).
    Base64(&'a str),
    /// An `http(s)` URL.
    Url(&'a str),
}

/// What kind of candidate a whole string value is, if any.
pub(super) fn candidate(s: &str) -> Option<Candidate<'_>> {
    let t = s.trim();
    let head = t.get(..8).unwrap_or(t);
    if head.len() >= 5 && head[..5].eq_ignore_ascii_case("data:") {
        let (meta, payload) = t[5..].split_once(',')?;
        let lower = meta.to_ascii_lowercase();
        let base64 = lower.ends_with(";base64");
        let mime = lower.split(';').next().unwrap_or("").trim().to_string();
        return Some(Candidate::DataUrl {
            mime,
            base64,
            payload,
        });
    }
    let lower = head.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(Candidate::Url(t));
    }
    if t.len() < MIN_RUN {
        return None;
    }
    let b = t.as_bytes();
    // The opening stretch decides; the rest is checked by decoding.
    let opening = b.iter().filter(|c| !is_break(**c)).take(MIN_RUN);
    let mut n = 0;
    for c in opening {
        if !ALPHABET[*c as usize] {
            return None;
        }
        n += 1;
    }
    (n == MIN_RUN).then_some(Candidate::Base64(t))
}

/// MIME line breaks, allowed inside base64.
fn is_break(c: u8) -> bool {
    matches!(c, b'\r' | b'\n')
}

/// The shape of what base64 `text` decodes to, from its opening bytes only (the leading run
/// of alphabet bytes; whatever follows is checked when the whole is decoded).
pub(super) fn decoded_shape(text: &str) -> Shape {
    let mut opening: Vec<u8> = text
        .bytes()
        .filter(|c| !is_break(*c))
        .take_while(|c| ALPHABET[*c as usize])
        .take(SHAPE_BYTES / 3 * 4)
        .collect();
    opening.truncate(opening.len() / 4 * 4);
    match decode_bytes(&opening) {
        Ok(head) => shape(&head),
        Err(_) => Shape::Nothing,
    }
}

/// Decode base64 in either alphabet, padding optional, whitespace (MIME line breaks) ignored.
pub(super) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let b = text.as_bytes();
    if b.iter().any(u8::is_ascii_whitespace) {
        let compact: Vec<u8> = b
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        decode_bytes(&compact)
    } else {
        decode_bytes(b)
    }
}

fn decode_bytes(b: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(b).or_else(|_| URL_SAFE.decode(b))
}

/// Decoded size of base64 text of `len` bytes (an upper bound).
pub(super) fn decoded_len(len: usize) -> u64 {
    (len as u64).div_ceil(4) * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(d: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    #[test]
    fn runs_are_found_and_text_is_skipped() {
        let png = b64(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR and enough bytes to make a long run...");
        let text = format!("a prompt with words, {png}; more words");
        let found: Vec<_> = runs(text.as_bytes()).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].clone()], png);
        assert!(
            runs(b"short words only, nothing long enough here at all, really")
                .next()
                .is_none()
        );
        assert!(!has_run(
            "the quick brown fox ".repeat(1000).as_bytes(),
            MIN_RUN,
            false
        ));
        // JSON escapes keep a run together.
        let escaped = png.replace('/', "\\/");
        assert!(has_run(escaped.as_bytes(), MIN_RUN, true));
    }

    #[test]
    fn mime_line_breaks_join_a_run() {
        let long = b64(&[7u8; 200]);
        let wrapped = format!(
            "x {}\r\n{}\n{} y",
            &long[..76],
            &long[76..152],
            &long[152..]
        );
        let found: Vec<_> = runs(wrapped.as_bytes()).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(decode(&wrapped[found[0].clone()]).unwrap(), vec![7u8; 200]);
    }

    #[test]
    fn candidates() {
        assert!(matches!(
            candidate("data:image/PNG;Base64,AAAA"),
            Some(Candidate::DataUrl { base64: true, ref mime, .. }) if mime == "image/png"
        ));
        assert!(matches!(
            candidate(" https://cdn.example/x.png "),
            Some(Candidate::Url(_))
        ));
        assert!(matches!(
            candidate(&"QUJD".repeat(20)),
            Some(Candidate::Base64(_))
        ));
        assert!(candidate("QUJD").is_none());
        assert!(candidate(&"hello world ".repeat(10)).is_none());
        let png = b64(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert!(matches!(decoded_shape(&png), Shape::Media(_)));
        // URL-safe alphabet decodes too.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 30]);
        assert_eq!(decode(&url_safe).unwrap(), vec![0xfb; 30]);
    }
}
