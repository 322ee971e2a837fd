//! ICAP requests as a client sends them: the head, the `Encapsulated` sections and the chunked
//! body. Properties: never a panic; a head that parses is found at the same length whatever
//! the bytes after it (a parser that reads past the empty line would disagree).
#![no_main]
use libfuzzer_sys::fuzz_target;
use likeguard::icap::{head, parse_all};

fuzz_target!(|data: &[u8]| {
    let _ = parse_all(data);
    if let Ok(Some((_, len))) = head::parse(data, 64 * 1024) {
        let alone = head::parse(&data[..len], 64 * 1024);
        assert!(
            matches!(alone, Ok(Some((_, l))) if l == len),
            "a head parses differently without what follows it"
        );
    }
});
