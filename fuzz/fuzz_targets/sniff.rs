//! Media sniffing, the animated-still check and the inspect-or-stream peek.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = likeguard::media::sniff(data);
    let _ = likeguard::media::is_animated_still(data);
    let _ = likeguard::extract::looks_inspectable(data);
});
