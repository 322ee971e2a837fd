//! Invisible image watermark: a keyed, tiled spread-spectrum pattern in the luminance, carrying
//! a 32-bit payload with CRC-16 and a rate-1/3 convolutional code. Survives JPEG re-encoding,
//! resizing, moderate crops and brightness changes; read back without the original.
//! Design and measured robustness: docs/watermark.md.

pub mod attack;
mod code;
mod luma;
mod mark;
mod pattern;
mod video;
mod visible;

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, RgbImage};
use sha2::{Digest, Sha256};

pub use code::PAYLOAD_BITS;
pub use mark::{Detection, Grid, MIN_SIDE};
use pattern::Pattern;
pub use video::{ClipDetection, VideoWatermarker};
pub use visible::Stamp;

use super::{WatermarkError, Watermarker};
use crate::config::WatermarkConfig;
use crate::extract::MediaItem;
use crate::media::MediaKind;
use crate::policy::Decision;

/// JPEG quality used when the source's tables cannot be read.
const DEFAULT_JPEG_QUALITY: u8 = 90;

/// The payload a decision's mark carries: the first 32 bits of SHA-256(decision id). The audit
/// log records it with the decision, so a mark found later leads back to the decision.
pub fn payload_for(decision_id: &str) -> u32 {
    let d = Sha256::digest(decision_id.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Marks and reads images with one key.
pub struct ImageWatermarker {
    pattern: Arc<Pattern>,
    strength: f32,
}

impl ImageWatermarker {
    pub fn new(config: &WatermarkConfig) -> Self {
        Self {
            pattern: Arc::new(Pattern::new(&config.key())),
            strength: config.strength,
        }
    }

    /// Marks pixels in place.
    pub fn embed(&self, img: &mut RgbImage, payload: u32) -> Result<(), WatermarkError> {
        let long = img.width().max(img.height());
        if long < MIN_SIDE {
            return Err(WatermarkError::Unsupported(format!(
                "an image whose long side is {long} px (needs at least {MIN_SIDE})"
            )));
        }
        mark::embed(img, payload, &self.pattern, self.strength, Grid::IMAGE);
        Ok(())
    }

    pub fn detect(&self, img: &RgbImage) -> Detection {
        mark::detect(img, &self.pattern, Grid::IMAGE)
    }

    /// Marks an encoded image and re-encodes it in the same format: JPEG at the source's
    /// estimated quality, PNG losslessly (alpha kept). EXIF orientation is applied to the
    /// pixels; other metadata (EXIF, XMP) is dropped — it can carry location — while the ICC
    /// colour profile is kept.
    pub fn embed_file(&self, data: &[u8], payload: u32) -> Result<Vec<u8>, WatermarkError> {
        self.embed_file_with(data, payload, None)
    }

    /// `embed_file`, with the visible mark stamped first when one is given (the invisible
    /// mark then covers the stamp too).
    pub fn embed_file_with(
        &self,
        data: &[u8],
        payload: u32,
        stamp: Option<&Stamp>,
    ) -> Result<Vec<u8>, WatermarkError> {
        let format = image::guess_format(data)
            .map_err(|_| WatermarkError::Unsupported("data that is not an image".into()))?;
        if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
            return Err(WatermarkError::Unsupported(format!(
                "{format:?} images (JPEG and PNG are supported)"
            )));
        }
        if format == ImageFormat::Jpeg && !has_jpeg_end(data) {
            // The decoder would fill the missing part with grey: refuse rather than pass on
            // a repaired picture.
            return Err(WatermarkError::Unsupported(
                "a truncated JPEG (no end-of-image marker)".into(),
            ));
        }
        let (img, icc) = decode(data, format)?;
        let alpha = img.color().has_alpha().then(|| img.to_rgba8());
        let mut rgb = img.to_rgb8();
        if let Some(stamp) = stamp {
            stamp.place(rgb.width(), rgb.height()).apply_rgb(&mut rgb);
        }
        self.embed(&mut rgb, payload)?;
        let mut out = Vec::with_capacity(data.len() + data.len() / 8);
        let failed = |e: image::ImageError| WatermarkError::Failed(format!("encoding: {e}"));
        match format {
            ImageFormat::Jpeg => {
                let quality = jpeg_quality(data).unwrap_or(DEFAULT_JPEG_QUALITY);
                let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
                if let Some(icc) = icc {
                    let _ = enc.set_icc_profile(icc);
                }
                enc.write_image(
                    rgb.as_raw(),
                    rgb.width(),
                    rgb.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(failed)?;
            }
            _ => {
                let mut enc = image::codecs::png::PngEncoder::new(&mut out);
                if let Some(icc) = icc {
                    let _ = enc.set_icc_profile(icc);
                }
                match alpha {
                    Some(mut rgba) => {
                        for (dst, src) in rgba.pixels_mut().zip(rgb.pixels()) {
                            dst.0[..3].copy_from_slice(&src.0);
                        }
                        enc.write_image(
                            rgba.as_raw(),
                            rgba.width(),
                            rgba.height(),
                            image::ExtendedColorType::Rgba8,
                        )
                    }
                    None => enc.write_image(
                        rgb.as_raw(),
                        rgb.width(),
                        rgb.height(),
                        image::ExtendedColorType::Rgb8,
                    ),
                }
                .map_err(failed)?;
            }
        }
        Ok(out)
    }

    /// Reads the mark of an encoded image (any format the decoder knows).
    pub fn detect_file(&self, data: &[u8]) -> Result<Detection, WatermarkError> {
        let format = image::guess_format(data)
            .map_err(|_| WatermarkError::Unsupported("data that is not an image".into()))?;
        let (img, _) = decode(data, format)?;
        Ok(self.detect(&img.to_rgb8()))
    }
}

/// What can stop the watermarker from starting.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkSetupError {
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    #[error(transparent)]
    Stamp(#[from] WatermarkError),
}

/// The `watermark` action: images marked in place, videos re-encoded with every frame marked.
pub struct MediaWatermarker {
    image: ImageWatermarker,
    video: VideoWatermarker,
    /// The visible mark, for decisions whose rule asks for it.
    stamp: Option<Arc<Stamp>>,
}

impl MediaWatermarker {
    pub fn new(
        config: &WatermarkConfig,
        media: &crate::config::MediaConfig,
    ) -> Result<Self, WatermarkSetupError> {
        let image = ImageWatermarker::new(config);
        let video = VideoWatermarker::new(&image, media)?;
        let stamp = config
            .visible
            .as_ref()
            .map(Stamp::load)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            image,
            video,
            stamp,
        })
    }

    pub fn stamp(&self) -> Option<&Arc<Stamp>> {
        self.stamp.as_ref()
    }

    pub fn image(&self) -> &ImageWatermarker {
        &self.image
    }

    pub fn video(&self) -> &VideoWatermarker {
        &self.video
    }
}

impl Watermarker for MediaWatermarker {
    fn mark(&self, item: &MediaItem, decision: &Decision) -> Result<Bytes, WatermarkError> {
        let payload = payload_for(&decision.id);
        let stamp = match (decision.visible, &self.stamp) {
            (false, _) => None,
            (true, Some(s)) => Some(s.clone()),
            (true, None) => {
                return Err(WatermarkError::Unsupported(format!(
                    "a visible mark: rule {:?} asks for one and watermark.visible is not configured",
                    decision.rule
                )));
            }
        };
        match item.media.kind {
            MediaKind::Image => self
                .image
                .embed_file_with(&item.data, payload, stamp.as_deref())
                .map(Bytes::from),
            MediaKind::Video => self
                .video
                .embed(item.data.clone(), payload, stamp)
                .map(|r| Bytes::from(r.data)),
            MediaKind::Audio => Err(WatermarkError::Unsupported(format!(
                "{} (audio has no watermark yet)",
                item.media.mime
            ))),
        }
    }
}

/// Largest decoded image marked or read (bytes of pixels): image's own default allocation
/// limit, which `DynamicImage::from_decoder` does not apply by itself.
const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// Decodes with orientation applied; returns the ICC profile too. The declared size is
/// checked before any pixel buffer exists: a tiny file declaring 400,000 × 400,000 pixels
/// must be an error, not a terabyte allocation that aborts the process (found by fuzzing:
/// fuzz/regressions/watermark_detect).
fn decode(
    data: &[u8],
    format: ImageFormat,
) -> Result<(DynamicImage, Option<Vec<u8>>), WatermarkError> {
    let bad = |e: image::ImageError| WatermarkError::Unsupported(format!("this image: {e}"));
    let mut reader = image::ImageReader::with_format(Cursor::new(data), format);
    reader.limits(image::Limits::default());
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    // Orientation may add a rotated copy: twice the buffer in the worst case.
    if decoder.total_bytes().saturating_mul(2) > MAX_DECODED_BYTES {
        return Err(WatermarkError::Unsupported(format!(
            "this image: {w}×{h} pixels is too large to mark or read (more than {} MiB decoded)",
            MAX_DECODED_BYTES / 2 / (1024 * 1024)
        )));
    }
    let icc = decoder.icc_profile().ok().flatten();
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok((img, icc))
}

/// Whether a JPEG ends with its EOI marker (trailing padding allowed).
fn has_jpeg_end(data: &[u8]) -> bool {
    let tail = &data[data.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Estimates a JPEG's quality from its first (luminance) quantisation table, by the IJG
/// scaling rule against the standard table.
fn jpeg_quality(data: &[u8]) -> Option<u8> {
    const STD_LUMA_SUM: u32 = 3688; // sum of the IJG standard luminance table (quality 50)
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let marker = data[i + 1];
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if marker == 0xDB {
            let table = data.get(i + 4..i + 2 + len)?;
            let (precision, values) = (table.first()? >> 4, table.get(1..)?);
            let sum: u32 = if precision == 0 {
                values.get(..64)?.iter().map(|v| u32::from(*v)).sum()
            } else {
                values
                    .get(..128)?
                    .chunks(2)
                    .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                    .sum()
            };
            let scale = sum as f32 * 100.0 / STD_LUMA_SUM as f32;
            let q = if scale <= 100.0 {
                (200.0 - scale) / 2.0
            } else {
                5000.0 / scale
            };
            return Some(q.round().clamp(1.0, 100.0) as u8);
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 69-byte PNG declaring 400,000 × 400,000 pixels of 16-bit RGBA (1.28 TB decoded):
    /// refused before any allocation. It used to abort the process (`memory allocation of …
    /// failed`); fuzzing found it (the fuzz build skips PNG CRCs, this copy has valid ones).
    #[test]
    fn an_image_declaring_huge_dimensions_is_refused_not_allocated() {
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/watermark_detect/huge-dimensions-valid-crc.png"
        ))
        .unwrap();
        let w = ImageWatermarker::new(&WatermarkConfig::default());
        let err = w.detect_file(&data).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn jpeg_quality_is_read_back_from_the_tables() {
        let img = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
        });
        for q in [50u8, 75, 90] {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                .write_image(img.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
                .unwrap();
            let got = jpeg_quality(&out).unwrap();
            assert!(got.abs_diff(q) <= 2, "quality {q} read as {got}");
        }
        assert_eq!(jpeg_quality(b"\xFF\xD8\xFF\xDA"), None);
    }
}
