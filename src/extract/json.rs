//! JSON: every string at any depth is a candidate (data URL, base64, allow-listed URL), found
//! with its RFC 6901 pointer. Configured pointers (with `*` wildcards) only narrow the search
//! in a JSON body. The document is streamed through a visitor, never built as a tree: every
//! string is seen, duplicate keys included (a receiver may take the first or the last), and a
//! document with no long base64 run is not parsed at all.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ExtractError;
use super::b64;
use super::location::{Location, Step};
use super::walk::Walker;

pub(super) fn walk(
    w: &mut Walker<'_>,
    data: &[u8],
    loc: &Location,
    declared: bool,
) -> Result<(), ExtractError> {
    if declared {
        // RFC 8259: JSON on the wire is UTF-8; a UTF-16 document (which some parsers accept)
        // would hide its strings from the byte scan below.
        let utf16 = data.starts_with(&[0xFF, 0xFE])
            || data.starts_with(&[0xFE, 0xFF])
            || data.iter().take(4).any(|b| *b == 0);
        let opens = data
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| b"{[\"-0123456789tfn".contains(b));
        if utf16 || !opens {
            return Err(ExtractError::Malformed {
                format: "JSON",
                detail: format!("{loc}: not a UTF-8 JSON document"),
            });
        }
    }
    // Nothing long enough to be media: nothing to find (routes that fetch URLs always parse).
    if w.cfg.fetch.is_none() && !b64::has_run(data, b64::MIN_RUN, true) && !has_data_url(data) {
        // Nothing in it can be media; a declared document nested past what any parser takes
        // is still refused (it would be refused if it held anything).
        if declared && nested_deeper_than(data, MAX_NESTING) {
            return Err(ExtractError::Malformed {
                format: "JSON",
                detail: format!("{loc}: nested deeper than {MAX_NESTING}"),
            });
        }
        return Ok(());
    }
    // Configured pointers narrow only the body's own document, not JSON found inside it.
    let patterns: Vec<Vec<String>> = if loc.depth() == 0 {
        w.cfg
            .json_pointers
            .iter()
            .map(|p| p.split('/').skip(1).map(str::to_owned).collect())
            .collect()
    } else {
        Vec::new()
    };
    let mut state = State {
        w: &mut *w,
        loc,
        patterns: &patterns,
        path: Vec::new(),
        stopped: None,
    };
    let mut de = serde_json::Deserializer::from_slice(data);
    let parsed = Node(&mut state)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(e) = state.stopped {
        return Err(e);
    }
    match parsed {
        Ok(()) => Ok(()),
        Err(e) if declared => Err(ExtractError::Malformed {
            format: "JSON",
            detail: format!("{loc}: {e}"),
        }),
        // Looked like JSON but is not: whatever base64 it holds is still found.
        Err(_) => w.text(data, loc),
    }
}

/// Whether `data:` (any case) appears: a data URL's payload may be broken up by whitespace,
/// which receivers drop, so it need not be one long run.
fn has_data_url(data: &[u8]) -> bool {
    memchr::memchr_iter(b':', data).any(|i| i >= 4 && data[i - 4..i].eq_ignore_ascii_case(b"data"))
}

/// serde_json's recursion limit: a document nested deeper does not parse.
const MAX_NESTING: usize = 128;

/// Whether arrays and objects nest deeper than `max`, found without parsing: strings are
/// skipped with memchr, so this costs little more than reading the bytes.
fn nested_deeper_than(data: &[u8], max: usize) -> bool {
    if memchr::memchr2_iter(b'[', b'{', data).count() <= max {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'"' => {
                // To the closing quote, over escapes.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &data[i.min(data.len())..]) {
                        Some(j) if data[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j + 1;
                            break;
                        }
                        None => return false,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

struct State<'s, 'w, 'c> {
    w: &'s mut Walker<'w>,
    loc: &'c Location,
    patterns: &'c [Vec<String>],
    /// Escaped pointer segments down to the current value.
    path: Vec<String>,
    /// The walk's own error, carried out through serde's.
    stopped: Option<ExtractError>,
}

impl State<'_, '_, '_> {
    fn wanted(&self) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| {
                p.len() == self.path.len()
                    && p.iter()
                        .zip(&self.path)
                        .all(|(want, got)| want == "*" || want == got)
            })
    }

    fn string(&mut self, s: &str) -> Result<(), String> {
        // Short strings that are no data URL or URL hold nothing (`Walker::string` would pass
        // them): skip them before building a pointer for each.
        let short = s.len() < b64::MIN_RUN && b64::candidate(s).is_none();
        if short || !self.wanted() {
            return Ok(());
        }
        let pointer = self.path.iter().fold(String::new(), |mut p, seg| {
            p.push('/');
            p.push_str(seg);
            p
        });
        let at = self.loc.then(Step::Json { pointer });
        self.w.string(s, &at).map_err(|e| {
            self.stopped = Some(e);
            "stopped".to_string()
        })
    }
}

struct Node<'a, 's, 'w, 'c>(&'a mut State<'s, 'w, 'c>);

impl<'de> DeserializeSeed<'de> for Node<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.string(v).map_err(E::custom)
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            self.0.path.push(i.to_string());
            let more = seq.next_element_seed(Node(&mut *self.0))?;
            self.0.path.pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.0.path.push(key.replace('~', "~0").replace('/', "~1"));
            let r = map.next_value_seed(Node(&mut *self.0));
            self.0.path.pop();
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::nested_deeper_than;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(nested_deeper_than("[".repeat(200).as_bytes(), 128));
        assert!(!nested_deeper_than("[]".repeat(200).as_bytes(), 128));
        let in_string = format!(
            r#"{{"a": "{}\\", "b": "\"{}"}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(!nested_deeper_than(in_string.as_bytes(), 128));
    }
}
