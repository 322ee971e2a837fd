//! Putting marked media back: extract the items of a multipart or JSON body, then splice
//! replacement bytes in place of each. A splice that succeeds must give a body that extracts
//! again with the same number of items at the top.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = if pick & 1 == 0 {
        "multipart/form-data; boundary=XyZ"
    } else {
        "application/json"
    };
    let Some((class, found)) = likeguard_fuzz_common::extract(ct, None, body, &[]) else {
        return;
    };
    // A small PNG-like replacement, different in length from the original.
    let new: Vec<Option<Bytes>> = found
        .items
        .iter()
        .enumerate()
        .map(|(i, _)| (i % 2 == usize::from(pick >> 7)).then(|| likeguard_fuzz_common::png()))
        .collect();
    let _ = likeguard::extract::splice(&Bytes::copy_from_slice(body), &class, &found.items, &new);
});
