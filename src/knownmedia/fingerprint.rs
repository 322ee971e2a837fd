//! Fingerprints of media: SHA-256 of the bytes, and a PDQ perceptual hash for images.

use std::io::Cursor;

use sha2::{Digest, Sha256};

use crate::media::{MediaKind, MediaType};

/// A PDQ hash: 256 bits.
pub type Pdq = [u64; 4];

#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub sha256: [u8; 32],
    /// None when the item is not an image, is too large, too small or does not decode.
    pub pdq: Option<(Pdq, f32)>,
}

/// Images larger than this side are downscaled before PDQ (as the reference does).
const PDQ_SIDE: u32 = 512;

pub fn fingerprint(data: &[u8], media: MediaType, max_pixels: u64) -> Fingerprint {
    fingerprint_hashed(Sha256::digest(data).into(), data, media, max_pixels)
}

/// `fingerprint` when the SHA-256 of `data` is already known.
pub fn fingerprint_hashed(
    sha256: [u8; 32],
    data: &[u8],
    media: MediaType,
    max_pixels: u64,
) -> Fingerprint {
    let pdq = (media.kind == MediaKind::Image)
        .then(|| perceptual(data, max_pixels))
        .flatten();
    Fingerprint { sha256, pdq }
}

fn perceptual(data: &[u8], max_pixels: u64) -> Option<(Pdq, f32)> {
    let reader = || {
        image::ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .ok()
    };
    let (w, h) = reader()?.into_dimensions().ok()?;
    if u64::from(w) * u64::from(h) > max_pixels {
        tracing::debug!(w, h, "image above known_media.max_pixels: exact match only");
        return None;
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    r.limits(limits);
    let img = r.decode().ok()?;
    let small = if img.width() > PDQ_SIDE || img.height() > PDQ_SIDE {
        img.thumbnail_exact(PDQ_SIDE.min(img.width()), PDQ_SIDE.min(img.height()))
    } else {
        img
    };
    let rgb = small.to_rgb8();
    let (w, h) = rgb.dimensions();
    // pdqhash is written against image 0.23: hand it the pixels, not our decoder's types.
    let old = image023::RgbImage::from_raw(w, h, rgb.into_raw())?;
    let (bytes, quality) = pdqhash::generate_pdq(&image023::DynamicImage::ImageRgb8(old))?;
    Some((pdq_from_bytes(&bytes), quality))
}

pub fn pdq_from_bytes(b: &[u8; 32]) -> Pdq {
    let word = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    [word(0), word(1), word(2), word(3)]
}

pub fn pdq_to_hex(p: &Pdq) -> String {
    p.iter().map(|w| format!("{w:016x}")).collect()
}

pub fn pdq_from_hex(s: &str) -> Option<Pdq> {
    let bytes: [u8; 32] = hex::decode(s).ok()?.try_into().ok()?;
    Some(pdq_from_bytes(&bytes))
}

pub fn hamming(a: &Pdq, b: &Pdq) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_distance() {
        let p = [1u64, 2, 3, u64::MAX];
        assert_eq!(pdq_from_hex(&pdq_to_hex(&p)), Some(p));
        assert_eq!(hamming(&p, &[0, 2, 3, 0]), 65);
        assert_eq!(pdq_from_hex("zz"), None);
    }
}
