//! The in-process still-image path (`image` crate; libheif for HEIC/HEIF and AVIF): BMP,
//! TIFF, HEIF and AVIF, which Debian 12's GStreamer cannot decode from a stream, and every still
//! when `media.still_images: builtin`. JPEG is faster through GStreamer's libjpeg-turbo
//! (benches/RESULTS.md), so `auto` sends it there. GIF (animated or not) is decoded here too:
//! Debian 12's avdec_gif hangs under concurrent pipelines. Everything else goes through
//! GStreamer.

use std::io::Cursor;

use image::ImageReader;

use super::{DecodeError, Frame, Limit};
use crate::config::MediaConfig;

/// Formats this path takes.
pub fn handles(format: &str) -> bool {
    matches!(
        format,
        "jpg" | "png" | "webp" | "bmp" | "tif" | "gif" | "heif" | "avif"
    )
}

/// Formats only this path can decode (GStreamer 1.22 cannot, from a stream).
pub fn only_here(format: &str) -> bool {
    matches!(format, "bmp" | "tif" | "gif" | "heif" | "avif")
}

/// Decode one still image to an RGB frame no larger than `max_side`, aspect kept.
/// Returns the frame and the source size.
pub fn decode(data: &[u8], cfg: &MediaConfig) -> Result<(Frame, (u32, u32)), DecodeError> {
    if super::sniff(data).is_some_and(|m| matches!(m.format, "heif" | "avif")) {
        return super::heif::decode(data, cfg);
    }
    let reader = || {
        ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .map_err(|e| DecodeError::Internal(e.to_string()))
    };
    let (w, h) = reader()?.into_dimensions().map_err(corrupt)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > cfg.limits.max_pixels {
        return Err(Limit::too_many_pixels(
            u64::from(w),
            u64::from(h),
            cfg.limits.max_pixels,
        ));
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(cfg.limits.max_memory);
    r.limits(limits);
    let img = r.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Limit::MaxMemory.exceeded(format!(
            "decoding {w}×{h} needs more than {} bytes",
            cfg.limits.max_memory
        )),
        image::ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        other => corrupt(other),
    })?;
    Ok((still_frame(img, cfg.max_side), (w, h)))
}

/// A decoded still as the one frame of its item, fitted to `max_side`.
pub(super) fn still_frame(img: image::DynamicImage, max_side: u32) -> Frame {
    let source = (img.width(), img.height());
    let rgb = fit(img, max_side).into_rgb8();
    let (width, height) = rgb.dimensions();
    Frame {
        index: 0,
        pts: Some(std::time::Duration::ZERO),
        width,
        height,
        source,
        keyframe: true,
        rgb: rgb.into_raw(),
    }
}

/// Scale to fit `side` on the longer side, aspect kept, never up.
pub(super) fn fit(img: image::DynamicImage, side: u32) -> image::DynamicImage {
    let (w, h) = (img.width(), img.height());
    if w > side || h > side {
        // Same fit as the pipelines: longer side = max_side, aspect kept.
        let (nw, nh) = if w >= h {
            (
                side,
                ((u64::from(h) * u64::from(side) + u64::from(w) / 2) / u64::from(w)).max(1) as u32,
            )
        } else {
            (
                ((u64::from(w) * u64::from(side) + u64::from(h) / 2) / u64::from(h)).max(1) as u32,
                side,
            )
        };
        // Box-filter downscale: fast, and smooth enough for detection input.
        img.thumbnail_exact(nw, nh)
    } else {
        img
    }
}

/// Animated GIF: every frame, timed by its delay, sampled like video.
/// Fills the counts, size, duration, early stop and incompleteness of `summary`.
pub fn decode_gif(
    data: &[u8],
    cfg: &MediaConfig,
    summary: &mut super::Summary,
    on_frame: &mut dyn FnMut(&Frame) -> std::ops::ControlFlow<()>,
) -> Result<(), DecodeError> {
    use image::AnimationDecoder;
    use std::time::Duration;
    let dec = image::codecs::gif::GifDecoder::new(Cursor::new(data)).map_err(corrupt)?;
    let (w, h) = image::ImageDecoder::dimensions(&dec);
    if u64::from(w) * u64::from(h) > cfg.limits.max_pixels {
        return Err(Limit::too_many_pixels(
            u64::from(w),
            u64::from(h),
            cfg.limits.max_pixels,
        ));
    }
    // The same sampling schedule as video (every GIF frame is a key frame).
    let mut sampler = super::sample::Sampler::new(&cfg.sampling);
    let mut t = Duration::ZERO;
    let (mut decoded, mut sampled) = (0u64, 0u64);
    for frame in dec.into_frames() {
        let frame = frame.map_err(corrupt)?;
        decoded += 1;
        if decoded > cfg.limits.max_decoded_frames {
            return Err(Limit::MaxDecodedFrames.exceeded(format!(
                "more than {} frames",
                cfg.limits.max_decoded_frames
            )));
        }
        if t > cfg.limits.max_duration {
            return Err(Limit::MaxDuration
                .exceeded(format!("media runs past {:?}", cfg.limits.max_duration)));
        }
        let pts = t;
        // Browsers show frames with a delay under 20 ms for 100 ms: so must sampling time
        // them, or a run of zero-delay frames would all sit at one instant, unsampled.
        let delay = Duration::from(frame.delay());
        t += if delay < Duration::from_millis(20) {
            Duration::from_millis(100)
        } else {
            delay
        };
        match sampler.take(Some(pts.as_nanos() as u64), true) {
            super::sample::Take::Keep => {}
            super::sample::Take::Skip => continue,
            // The frame count is not known before decoding: a GIF longer than the budget
            // is reported incomplete, not cut short silently.
            super::sample::Take::OverBudget => {
                summary.incomplete = Some(match sampler.refusal() {
                    Some((covered, limit)) => super::Incomplete {
                        limit,
                        covered,
                        duration: None,
                    },
                    None => super::Incomplete::budget(pts, None),
                });
                break;
            }
        }
        let full = image::DynamicImage::ImageRgba8(frame.into_buffer());
        let source = (full.width(), full.height());
        let rgb = fit(full, cfg.max_side).into_rgb8();
        let (fw, fh) = rgb.dimensions();
        let out = Frame {
            index: decoded - 1,
            pts: Some(pts),
            width: fw,
            height: fh,
            source,
            keyframe: true,
            rgb: rgb.into_raw(),
        };
        sampled += 1;
        if on_frame(&out).is_break() {
            summary.stopped_early = true;
            break;
        }
    }
    if decoded == 0 {
        return Err(DecodeError::Corrupt("no frame could be decoded".into()));
    }
    summary.width = Some(w);
    summary.height = Some(h);
    summary.frames_decoded = decoded;
    summary.frames_sampled = sampled;
    summary.duration = (decoded > 1).then_some(t);
    Ok(())
}

fn corrupt(e: image::ImageError) -> DecodeError {
    DecodeError::Corrupt(e.to_string())
}
