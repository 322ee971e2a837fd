//! Multipart bodies (nested parts, base64 transfer encoding, archives in parts).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ct = "multipart/form-data; boundary=XyZ";
    likeguard_fuzz_common::extract(ct, None, data, &[]);
});
