//! JSON bodies: every string searched for base64 and data URLs, with RFC 6901 pointers (the
//! first byte picks a pointer narrowing, or none).
#![no_main]
use libfuzzer_sys::fuzz_target;

const POINTERS: [&[&str]; 4] = [&[], &["/image"], &["/images/*/b64_json"], &["/*/*"]];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let pointers = POINTERS[usize::from(pick) % POINTERS.len()];
    likeguard_fuzz_common::extract("application/json", None, body, pointers);
});
