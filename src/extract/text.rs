//! Text as receivers read it: UTF-16 transcoded, HTML/XML character references and
//! percent-escapes undone, and data URLs whose payload is broken up by whitespace (which HTML,
//! SVG and CSS allow) picked out whole.

/// A UTF-16 text (by its byte-order mark, or ASCII with every other byte zero) as UTF-8.
pub(super) fn utf16(data: &[u8]) -> Option<String> {
    let (body, little) = if let Some(rest) = data.strip_prefix(&[0xFF, 0xFE]) {
        (rest, true)
    } else if let Some(rest) = data.strip_prefix(&[0xFE, 0xFF]) {
        (rest, false)
    } else {
        let head = &data[..data.len().min(64) & !1];
        if head.len() < 8 {
            return None;
        }
        let zero_odd = head.iter().skip(1).step_by(2).all(|b| *b == 0);
        let zero_even = head.iter().step_by(2).all(|b| *b == 0);
        let ascii = |offset: usize| head.iter().skip(offset).step_by(2).all(|b| *b != 0);
        match (zero_odd && ascii(0), zero_even && ascii(1)) {
            (true, _) => (data, true),
            (_, true) => (data, false),
            _ => return None,
        }
    };
    let units = body.chunks_exact(2).map(|c| {
        if little {
            u16::from_le_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], c[1]])
        }
    });
    Some(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

/// The text with numeric character references (`&#47;`, `&#x2F;`) and percent-escapes
/// (`%2F`) for ASCII undone; `None` when it has none.
pub(super) fn normalize(data: &[u8]) -> Option<Vec<u8>> {
    let has = memchr::memmem::find(data, b"&#").is_some() || memchr::memchr(b'%', data).is_some();
    if !has {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    let mut changed = false;
    while i < data.len() {
        let (byte, used) = match data[i] {
            b'&' if data.get(i + 1) == Some(&b'#') => char_ref(&data[i..]),
            b'%' => data
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map_or((None, 1), |b| (Some(b), 3)),
            _ => (None, 1),
        };
        match byte {
            Some(b) => {
                out.push(b);
                changed = true;
            }
            None => out.extend_from_slice(&data[i..i + used]),
        }
        i += used;
    }
    changed.then_some(out)
}

/// `&#NN;` or `&#xHH;` at the start of `s`, when it stands for an ASCII character.
fn char_ref(s: &[u8]) -> (Option<u8>, usize) {
    let Some(end) = s.iter().take(12).position(|b| *b == b';') else {
        return (None, 1);
    };
    let body = std::str::from_utf8(&s[2..end]).unwrap_or("");
    let value = match body.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => body.parse::<u32>().ok(),
    };
    match value
        .and_then(|v| u8::try_from(v).ok())
        .filter(u8::is_ascii)
    {
        Some(b) => (Some(b), end + 1),
        None => (None, 1),
    }
}

/// Data URLs in text whose payload holds whitespace (so no single base64 run covers it):
/// each as (offset, the URL up to its closing quote, bracket or parenthesis).
pub(super) fn spaced_data_urls(data: &[u8]) -> impl Iterator<Item = (usize, &str)> + '_ {
    memchr::memchr_iter(b':', data).filter_map(move |colon| {
        let start = colon.checked_sub(4)?;
        if !data[start..colon].eq_ignore_ascii_case(b"data") {
            return None;
        }
        let rest = &data[start..];
        let end = rest
            .iter()
            .position(|b| matches!(b, b'"' | b'\'' | b'<' | b'>' | b')' | 0))
            .unwrap_or(rest.len());
        let url = std::str::from_utf8(&rest[..end]).ok()?;
        url.split_once(',')
            .is_some_and(|(_, payload)| payload.trim().contains(|c: char| c.is_ascii_whitespace()))
            .then_some((start, url))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_references_and_spaced_urls() {
        let le: Vec<u8> = "{\"a\": \"QUJD\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(utf16(&le).as_deref(), Some("{\"a\": \"QUJD\"}"));
        let mut be = vec![0xFE, 0xFF];
        be.extend("<x>hi there</x>".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(utf16(&be).as_deref(), Some("<x>hi there</x>"));
        assert!(utf16(b"plain ascii text here").is_none());
        assert_eq!(normalize(b"a&#47;b&#x2B;c%2Fd").unwrap(), b"a/b+c/d");
        assert_eq!(normalize(b"100% &amp; &#9731;").as_deref(), None);
        let html = b"<img src=\"data:image/png;base64,iVBO Rw0K\"> <a href=\"data:text/plain,hi\">";
        let found: Vec<_> = spaced_data_urls(html).collect();
        assert_eq!(found, [(10, "data:image/png;base64,iVBO Rw0K")]);
    }
}
