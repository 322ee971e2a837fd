//! What a run of bytes is, from its opening bytes: media, a container likeguard opens, a
//! container it cannot open (refused per `on_unsupported` rather than passed unseen), JSON, or
//! nothing in particular.

use crate::media::{MediaType, sniff};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Media(MediaType),
    Zip,
    Tar,
    Gzip,
    Zstd,
    /// An archive or compression format that may hold media but is not opened here.
    Unreadable(&'static str),
    /// Opens like a JSON document (`{` or `[` after whitespace).
    Json,
    Nothing,
}

/// Bytes needed to recognise every shape (tar's magic sits at offset 257).
pub(super) const SHAPE_BYTES: usize = 512;

pub(super) fn shape(data: &[u8]) -> Shape {
    if let Some(m) = sniff(data) {
        return Shape::Media(m);
    }
    let starts = |magic: &[u8]| data.starts_with(magic);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Shape::Zip;
    }
    if (data.len() >= 262 && &data[257..262] == b"ustar") || old_tar(data) {
        return Shape::Tar;
    }
    if starts(b"\x1f\x8b") {
        return Shape::Gzip;
    }
    // A zstd frame, or a skippable frame (0x184D2A50..5F) in front of one.
    let skippable =
        data.len() >= 4 && (0x50..=0x5F).contains(&data[0]) && data[1..4] == [0x2A, 0x4D, 0x18];
    if starts(b"\x28\xb5\x2f\xfd") || skippable {
        return Shape::Zstd;
    }
    const UNREADABLE: &[(&[u8], &str)] = &[
        (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
        (b"Rar!\x1a\x07", "RAR"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"LZIP", "lzip"),
        (b"\x04\x22\x4d\x18", "LZ4"),
    ];
    if let Some((_, name)) = UNREADABLE.iter().find(|(m, _)| starts(m)) {
        return Shape::Unreadable(name);
    }
    if data.len() >= 10 && starts(b"BZh") && (b'1'..=b'9').contains(&data[3]) {
        return Shape::Unreadable("bzip2");
    }
    // LZMA "alone" (.lzma): properties byte 0x5D and a power-of-two dictionary size.
    if data.len() >= 13
        && data[0] == 0x5D
        && u32::from_le_bytes([data[1], data[2], data[3], data[4]]).is_power_of_two()
    {
        return Shape::Unreadable("LZMA");
    }
    // An ISO media file (MP4, MOV, HEIC, AVIF...) whose brand the sniffer does not know.
    if data.get(4..8) == Some(b"ftyp") {
        return Shape::Unreadable("ISO base media with an unknown brand");
    }
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Shape::Json,
        _ => Shape::Nothing,
    }
}

/// A pre-POSIX (v7) tar header: no `ustar` magic, but its checksum field matches the sum of
/// its bytes (with the field itself counted as spaces).
fn old_tar(data: &[u8]) -> bool {
    let Some(h) = data.get(..512) else {
        return false;
    };
    let field = std::str::from_utf8(&h[148..156]).unwrap_or("");
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    // A name is required; an all-zero block is an archive's end, not its start.
    sum == want && h[0] != 0
}

/// Where a zip's end-of-central-directory record starts, when `data` ends with one (a zip
/// appended to other bytes: self-extracting archives, JPEG/ZIP polyglots).
pub(super) fn trailing_zip(data: &[u8]) -> Option<usize> {
    // The record is 22 bytes plus a comment of at most 65,535.
    let from = data.len().saturating_sub(22 + 65_535);
    memchr::memmem::rfind(&data[from..], b"PK\x05\x06").map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(matches!(
            shape(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Shape::Media(_)
        ));
        assert_eq!(shape(b"PK\x03\x04rest"), Shape::Zip);
        assert_eq!(shape(b"\x1f\x8b\x08\0"), Shape::Gzip);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(shape(&tar), Shape::Tar);
        let mut v7 = vec![0u8; 512];
        v7[..5].copy_from_slice(b"a.jpg");
        let sum: u32 = v7.iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * 32;
        v7[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert_eq!(shape(&v7), Shape::Tar);
        assert_eq!(shape(b"\x50\x2a\x4d\x18\x04\0\0\0abcd"), Shape::Zstd);
        assert_eq!(
            shape(b"7z\xbc\xaf\x27\x1c\0\x04"),
            Shape::Unreadable("7-Zip")
        );
        assert_eq!(shape(b"BZh91AY&SY"), Shape::Unreadable("bzip2"));
        assert_eq!(shape(b"  \n{\"a\": 1}"), Shape::Json);
        assert_eq!(shape(b"hello"), Shape::Nothing);
        assert_eq!(shape(b""), Shape::Nothing);
        let mut poly = b"\xff\xd8\xff\xe0 jpeg bytes".to_vec();
        let at = poly.len();
        poly.extend_from_slice(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(trailing_zip(&poly), Some(at));
        assert_eq!(trailing_zip(b"no zip here"), None);
    }
}
