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

/// As lenient as the decoders receivers use (Python, Node, browsers): padding optional, stray
/// trailing bits allowed. The URL-safe alphabet (and a mix of both) is mapped to the standard
/// one before decoding.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);

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
    next_run_from(text, 0, min, t, true).is_some()
}

/// The first run of at least `min` bytes of `t` starting at or after `from`.
fn next_run(text: &[u8], from: usize, min: usize, t: &[bool; 256]) -> Option<Range<usize>> {
    next_run_from(text, from, min, t, false)
}

/// `next_run`; with `any`, the run is only known to be at least `min` long (its end is not
/// looked for: a multi-megabyte run costs nothing to find).
fn next_run_from(
    text: &[u8],
    mut from: usize,
    min: usize,
    t: &[bool; 256],
    any: bool,
) -> Option<Range<usize>> {
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
        while end < text.len() && t[text[end] as usize] && !(any && end - start >= min) {
            end += 1;
        }
        if end - start >= min {
            return Some(start..end);
        }
        from = end;
    }
    None
}

/// Runs of base64 in plain text, MIME line breaks (`\n`, `\r\n`) inside a run joined. JSON
/// escapes (`\/`, `\n`, `\u0041`) count as run bytes, so base64 inside JSON that is read as
/// text (event streams, NDJSON, a document that does not parse) is found too; `unescape`
/// turns such a run back into base64.
pub(super) fn runs(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let run = next_run(text, from, MIN_RUN, &ALPHABET_ESCAPED)?;
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
                .take_while(|b| ALPHABET_ESCAPED[**b as usize])
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

/// A run with JSON escapes undone (`\/` → `/`; escaped line breaks dropped; `\uXXXX` → the
/// character when it is ASCII).
pub(super) fn unescape(run: &str) -> std::borrow::Cow<'_, str> {
    if !run.contains('\\') {
        return run.into();
    }
    let b = run.as_bytes();
    let mut out = String::with_capacity(run.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'n' | b'r' | b't') => i += 2,
            Some(b'u') => {
                let hex = run
                    .get(i + 2..i + 6)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(c) = hex.filter(u8::is_ascii) {
                    out.push(c as char);
                }
                i += 6;
            }
            Some(c) => {
                out.push(*c as char);
                i += 2;
            }
            None => i += 1,
        }
    }
    out.into()
}

/// A string value that may be media.
pub(super) enum Candidate<'a> {
    /// `data:[type][;param][;base64],payload`: the declared type and the payload.
    DataUrl {
        mime: String,
        base64: bool,
        payload: &'a str,
    },
    /// The string opens like base64 (whitespace allowed anywhere, as decoders drop it).
    Base64(&'a str),
    /// An `http(s)` URL.
    Url(&'a str),
}

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A data URL's media type and parameters (RFC 2397): token characters only, so an event
/// stream's `data: {...}` line is not taken for one.
fn data_url_meta(meta: &str) -> bool {
    meta.len() <= 256
        && meta
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/+-.;=_!#$&^%".contains(&c))
}

/// What kind of candidate a whole string value is, if any.
pub(super) fn candidate(s: &str) -> Option<Candidate<'_>> {
    let t = s.trim();
    let b = t.as_bytes();
    if starts_with_ci(b, b"data:") {
        // The first five bytes are ASCII, so `t[5..]` is on a character boundary.
        if let Some((meta, payload)) = t[5..].split_once(',')
            && data_url_meta(meta)
        {
            let lower = meta.to_ascii_lowercase();
            return Some(Candidate::DataUrl {
                base64: lower.ends_with(";base64"),
                mime: lower.split(';').next().unwrap_or("").to_string(),
                payload,
            });
        }
    }
    if starts_with_ci(b, b"https://") || starts_with_ci(b, b"http://") {
        return Some(Candidate::Url(t));
    }
    if b.len() < MIN_RUN {
        return None;
    }
    // The opening stretch decides; the rest is checked by decoding.
    let opening = b
        .iter()
        .filter(|c| !c.is_ascii_whitespace())
        .take(MIN_RUN)
        .take_while(|c| ALPHABET[**c as usize])
        .count();
    (opening == MIN_RUN).then_some(Candidate::Base64(t))
}

/// Bytes decoded to recognise a shape: enough for a long `ftyp` box.
const SHAPE_DECODE: usize = 4096;

/// The shape of what base64 `text` decodes to, from its opening bytes only (the leading run
/// of alphabet bytes, whitespace dropped; whatever follows is checked when the whole is
/// decoded).
pub(super) fn decoded_shape(text: &str) -> Shape {
    let mut opening: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .take_while(|c| ALPHABET[*c as usize])
        .take(SHAPE_DECODE.max(SHAPE_BYTES) / 3 * 4)
        .collect();
    opening.truncate(opening.len() / 4 * 4);
    match decode_bytes(opening) {
        Ok(head) => shape(&head),
        Err(_) => Shape::Nothing,
    }
}

/// Decode base64 in either alphabet (or a mix), padding optional, whitespace ignored. The
/// common case (one standard-alphabet run) decodes in place, without a copy.
pub(super) fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let b = text.as_bytes();
    let plain = memchr::memchr3(b'-', b'_', b' ', b).is_none()
        && memchr::memchr3(b'\n', b'\r', b'\t', b).is_none()
        && memchr::memchr(0x0c, b).is_none();
    if plain {
        return lenient(b);
    }
    decode_bytes(
        b.iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    )
}

fn decode_bytes(mut b: Vec<u8>) -> Result<Vec<u8>, base64::DecodeError> {
    for c in &mut b {
        match *c {
            b'-' => *c = b'+',
            b'_' => *c = b'/',
            _ => {}
        }
    }
    lenient(&b)
}

/// Decode; where a stray byte stops the decoder (a boundary line after a MIME attachment, a
/// quote), what comes before it is the content, as lenient receivers read it.
fn lenient(b: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::DecodeError::{InvalidByte, InvalidLastSymbol};
    match STANDARD.decode(b) {
        Err(InvalidByte(at, _) | InvalidLastSymbol(at, _)) if at >= 4 => {
            STANDARD.decode(&b[..at / 4 * 4])
        }
        other => other,
    }
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
        // Words open like base64 once spaces are dropped; decoding their opening says no.
        assert_eq!(decoded_shape(&"hello world ".repeat(10)), Shape::Nothing);
        assert!(candidate("data: {\"event\": 1, \"x\": 2}").is_none());
        assert!(
            candidate(
                "日本語のテキスト、とても長い文章です。とても長い文章です。とても長い文章です。"
            )
            .is_none()
        );
        // Mixed alphabets and stray trailing bits decode, as receivers decode them.
        assert_eq!(decode("+/-_").unwrap(), decode("+/+/").unwrap());
        assert!(decode("QR==").is_ok());
        assert_eq!(unescape("ab\\/cd\\nef\\u0041"), "ab/cdefA");
        let png = b64(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert!(matches!(decoded_shape(&png), Shape::Media(_)));
        // URL-safe alphabet decodes too.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 30]);
        assert_eq!(decode(&url_safe).unwrap(), vec![0xfb; 30]);
    }
}
