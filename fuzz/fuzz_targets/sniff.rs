//! Media sniffing and the inspect-or-stream peek.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = likeguard::media::sniff(data);
    let _ = likeguard::extract::looks_inspectable(data);
});
