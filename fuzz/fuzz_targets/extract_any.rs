//! Any body under any declared type and content coding: the whole discovery walk (forms,
//! text, archives, polyglots, compressed bodies).
#![no_main]
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 10] = [
    "application/octet-stream",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/zip",
    "image/jpeg",
    "video/mp4",
    "application/xml",
    "text/event-stream",
    "application/json",
    "",
];
const CODINGS: [Option<&str>; 5] = [None, Some("gzip"), Some("br"), Some("zstd"), Some("deflate, gzip")];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[usize::from(pick & 0x0f) % TYPES.len()];
    let coding = CODINGS[usize::from(pick >> 4) % CODINGS.len()];
    likeguard_fuzz_common::extract(ct, coding, body, &[]);
});
