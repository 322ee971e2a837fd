//! Video watermark: the image scheme applied to every frame's luminance while the video is
//! re-encoded through `pipelines/reencode.yaml` (container, codec and audio kept where
//! possible); read back by summing the whitened residuals of sampled frames — the mark is the
//! same in each frame, content and noise are not, so a clip reads more surely than one frame.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use image::RgbImage;

use super::luma::Plane;
use super::mark::{self, Detection, Grid, MIN_SIDE, Residual};
use super::pattern::Pattern;
use super::visible::{Placed, Stamp};
use super::{ImageWatermarker, WatermarkError};
use crate::config::{MediaConfig, Sampling};
use crate::media::{Decoder, FrameEditor, LumaFrame, MediaError, Output, Reencoded, Reencoder};

/// Frames read per second of video, and at most this many, when detecting.
const DETECT_FPS: f64 = 4.0;
const DETECT_MAX_FRAMES: u32 = 32;
/// Frames are read at up to this long side (the mark's geometry does not depend on size).
const DETECT_MAX_SIDE: u32 = 1024;

/// What reading a clip found.
#[derive(Debug, Clone)]
pub struct ClipDetection {
    pub detection: Detection,
    /// Frames whose residuals were summed.
    pub frames: u64,
}

/// Marks and reads videos with the image watermarker's key and strength.
pub struct VideoWatermarker {
    pattern: Arc<Pattern>,
    strength: f32,
    grid: Grid,
    reencoder: Reencoder,
    reader: Decoder,
}

impl VideoWatermarker {
    /// Loads the re-encode pipeline and a frame reader (GStreamer initialised once here).
    pub fn new(image: &ImageWatermarker, media: &MediaConfig) -> Result<Self, MediaError> {
        let reader = Decoder::new(&MediaConfig {
            max_side: DETECT_MAX_SIDE,
            sampling: Sampling {
                fps: DETECT_FPS,
                max_frames: DETECT_MAX_FRAMES,
                keyframes_only: false,
            },
            ..media.clone()
        })?;
        Ok(Self {
            pattern: image.pattern.clone(),
            strength: image.strength,
            grid: Grid::VIDEO,
            reencoder: Reencoder::new(media.pipelines_dir.as_deref(), &media.limits)?,
            reader,
        })
    }

    /// Re-encodes `data` with every frame marked with `payload` (and stamped with the visible
    /// mark when one is given). Blocking.
    pub fn embed(
        &self,
        data: Bytes,
        payload: u32,
        stamp: Option<Arc<Stamp>>,
    ) -> Result<Reencoded, WatermarkError> {
        let (pattern, strength, grid) = (self.pattern.clone(), self.strength, self.grid);
        let mut placed: Option<((u32, u32), Placed)> = None;
        let editor: FrameEditor = Box::new(move |mut f: LumaFrame<'_>| {
            if f.width.max(f.height) < MIN_SIDE {
                return Err(format!(
                    "watermarking a video whose long side is {} px (needs at least {MIN_SIDE})",
                    f.width.max(f.height)
                ));
            }
            if let Some(stamp) = &stamp {
                // Scaled once per frame size (every frame of a stream, as a rule).
                let size = (f.width, f.height);
                if placed.as_ref().is_none_or(|(s, _)| *s != size) {
                    placed = Some((size, stamp.place(f.width, f.height)));
                }
                if let Some((_, p)) = &placed {
                    p.apply_i420(&mut f);
                }
            }
            let mut plane = Plane::new(f.data, f.width, f.height, f.stride)
                .ok_or("a frame smaller than its stated size")?;
            mark::embed(&mut plane, payload, &pattern, strength, grid);
            Ok(())
        });
        self.reencoder.reencode(data, editor).map_err(|e| match e {
            crate::media::DecodeError::Unsupported(m) => WatermarkError::Unsupported(m),
            other => WatermarkError::Failed(other.to_string()),
        })
    }

    /// Reads the mark from up to `DETECT_MAX_FRAMES` frames sampled at `DETECT_FPS`. Blocking.
    pub fn detect(&self, data: Bytes) -> Result<ClipDetection, WatermarkError> {
        let mut sum: Option<Residual> = None;
        let mut frames = 0u64;
        let mut failed = None;
        self.reader
            .decode(
                crate::media::Input::Bytes(data),
                Some(crate::extract::MediaKind::Video),
                &mut |out| {
                    let Output::Frame(f) = out else {
                        return ControlFlow::Continue(());
                    };
                    let Some(img) = RgbImage::from_raw(f.width, f.height, f.rgb.clone()) else {
                        failed = Some("a frame smaller than its stated size");
                        return ControlFlow::Break(());
                    };
                    let r = Residual::new(&img, self.grid);
                    match &mut sum {
                        None => sum = Some(r),
                        Some(s) => {
                            // A size change mid-clip: keep what was summed so far.
                            if !s.accumulate(&r) {
                                return ControlFlow::Break(());
                            }
                        }
                    }
                    frames += 1;
                    ControlFlow::Continue(())
                },
            )
            .map_err(|e| WatermarkError::Unsupported(format!("this video: {e}")))?;
        if let Some(why) = failed {
            return Err(WatermarkError::Failed(why.into()));
        }
        let sum =
            sum.ok_or_else(|| WatermarkError::Unsupported("a video with no frames".into()))?;
        Ok(ClipDetection {
            detection: sum.read(&self.pattern),
            frames,
        })
    }
}
