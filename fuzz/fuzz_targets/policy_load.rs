//! Rule files: YAML with CEL conditions, compiled and checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = likeguard::policy::rules::Policy::parse(text, "fuzz.yaml");
    }
});
