//! HEIC/HEIF (iPhone photos) and AVIF stills, through the system libheif: the primary image,
//! decoded to RGB in process (GStreamer 1.22 has no HEIF/AVIF-still demuxer). The declared
//! size is checked against `max_pixels` before anything is decoded.

use std::sync::LazyLock;

use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

use super::{DecodeError, Frame, Limit};
use crate::config::MediaConfig;

/// libheif's global state (plugins), set up once.
static LIBHEIF: LazyLock<LibHeif> = LazyLock::new(LibHeif::new);

/// Decode the primary image to an RGB frame no larger than `max_side`, aspect kept.
/// Returns the frame and the source size.
pub fn decode(data: &[u8], cfg: &MediaConfig) -> Result<(Frame, (u32, u32)), DecodeError> {
    let corrupt = |e: libheif_rs::HeifError| DecodeError::Corrupt(format!("HEIF: {e}"));
    let ctx = HeifContext::read_from_bytes(data).map_err(corrupt)?;
    let handle = ctx.primary_image_handle().map_err(corrupt)?;
    let (w, h) = (handle.width(), handle.height());
    if u64::from(w) * u64::from(h) > cfg.limits.max_pixels {
        return Err(Limit::too_many_pixels(
            u64::from(w),
            u64::from(h),
            cfg.limits.max_pixels,
        ));
    }
    let image = LIBHEIF
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(|e| match e.code {
            libheif_rs::HeifErrorCode::UnsupportedFeature
            | libheif_rs::HeifErrorCode::UnsupportedFileType
            | libheif_rs::HeifErrorCode::DecoderPluginError => {
                DecodeError::Unsupported(format!("HEIF: {e}"))
            }
            _ => corrupt(e),
        })?;
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| DecodeError::Corrupt("HEIF: no interleaved RGB plane".into()))?;
    let (pw, ph) = (plane.width as usize, plane.height as usize);
    let row = pw * 3;
    if plane.stride < row || plane.data.len() < plane.stride * ph.saturating_sub(1) + row {
        return Err(DecodeError::Corrupt(
            "HEIF: plane smaller than its size".into(),
        ));
    }
    let mut rgb = Vec::with_capacity(row * ph);
    for y in 0..ph {
        rgb.extend_from_slice(&plane.data[y * plane.stride..y * plane.stride + row]);
    }
    let img = image::RgbImage::from_raw(pw as u32, ph as u32, rgb)
        .ok_or_else(|| DecodeError::Corrupt("HEIF: bad plane size".into()))?;
    let frame = super::still::still_frame(image::DynamicImage::ImageRgb8(img), cfg.max_side);
    Ok((frame, (w, h)))
}
