//! `Range` on response-inspected routes. The upstream is asked for the whole representation
//! (a piece of a blocked image must never leave: a progressive JPEG's first bytes are a whole
//! low-resolution picture), the whole is inspected, and the requested piece is cut from it.

use std::ops::RangeInclusive;

use http::HeaderMap;
use http::header::{IF_RANGE, RANGE};

/// What a client asked for, as far as ranges go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// The whole representation (no `Range`, several ranges, `If-Range`, or one we ignore).
    Whole,
    /// One byte range, RFC 9110 §14.1.2.
    One(Spec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spec {
    /// `first-` or `first-last`
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes
    Suffix(u64),
}

/// The client's ask. `If-Range` makes it whole: we cannot tell whether the validator still
/// matches the inspected whole without the upstream's help, and answering whole is always
/// allowed (RFC 9110 §14.2).
pub(super) fn asked(headers: &HeaderMap) -> Asked {
    if headers.contains_key(IF_RANGE) || headers.get_all(RANGE).iter().count() != 1 {
        return Asked::Whole;
    }
    let Some(v) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Asked::Whole;
    };
    let Some(set) = v.trim().strip_prefix("bytes=") else {
        return Asked::Whole;
    };
    if set.contains(',') {
        return Asked::Whole;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return Asked::Whole;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let spec = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => num(b).map(Spec::Suffix),
        (false, true) => num(a).map(|first| Spec::From { first, last: None }),
        (false, false) => match (num(a), num(b)) {
            (Some(first), Some(last)) if first <= last => Some(Spec::From {
                first,
                last: Some(last),
            }),
            _ => None,
        },
        (true, true) => None,
    };
    spec.map_or(Asked::Whole, Asked::One)
}

/// The bytes of a `len`-byte representation a spec selects; `None` when unsatisfiable (416).
pub(super) fn select(spec: Spec, len: u64) -> Option<RangeInclusive<u64>> {
    match spec {
        Spec::From { first, last } if first < len => {
            let last = last.map_or(len - 1, |l| l.min(len - 1));
            Some(first..=last)
        }
        Spec::Suffix(n) if n > 0 && len > 0 => Some(len - n.min(len)..=len - 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: &str) -> Asked {
        let mut h = HeaderMap::new();
        h.insert(RANGE, v.parse().unwrap());
        asked(&h)
    }

    #[test]
    fn parsing_and_selecting() {
        let one = |v: &str| match ask(v) {
            Asked::One(s) => s,
            Asked::Whole => panic!("{v} should be one range"),
        };
        assert_eq!(select(one("bytes=0-2999"), 10_000), Some(0..=2999));
        assert_eq!(select(one("bytes=9000-"), 10_000), Some(9000..=9999));
        assert_eq!(select(one("bytes=-500"), 10_000), Some(9500..=9999));
        assert_eq!(select(one("bytes=-50000"), 10_000), Some(0..=9999));
        assert_eq!(select(one("bytes=0-99999"), 10_000), Some(0..=9999));
        assert_eq!(select(one("bytes=10000-"), 10_000), None);
        assert_eq!(select(one("bytes=-0"), 10_000), None);
        assert_eq!(ask("bytes=0-1,5-9"), Asked::Whole);
        assert_eq!(ask("bytes=5-1"), Asked::Whole);
        assert_eq!(ask("items=0-1"), Asked::Whole);
        assert_eq!(ask("bytes=x-1"), Asked::Whole);
        let mut h = HeaderMap::new();
        h.insert(RANGE, "bytes=0-1".parse().unwrap());
        h.insert(IF_RANGE, "\"etag\"".parse().unwrap());
        assert_eq!(asked(&h), Asked::Whole);
    }
}
