//! C2PA manifest reading of hostile files (JPEG, PNG, WebP, MP4 containers).
#![no_main]
use libfuzzer_sys::fuzz_target;

const MIMES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "video/mp4"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let _ = likeguard::actions::provenance::read(body, MIMES[usize::from(pick) % MIMES.len()]);
});
