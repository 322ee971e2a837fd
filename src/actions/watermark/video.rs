//! Video watermark: the image scheme applied to every frame's luminance while the video is
//! re-encoded through `pipelines/reencode.yaml` (container, codec and audio kept where
//! possible); read back by summing the whitened residuals of sampled frames — the mark is the
//! same in each frame, content and noise are not, so a clip reads more surely than one frame.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::luma::Plane;
use super::mark::{self, Detection, Grid, MIN_SIDE, Residual};
use super::pattern::Pattern;
use super::visible::{Placed, Stamp};
use super::{ImageWatermarker, WatermarkError};
use crate::config::MediaConfig;
use crate::media::{FrameEditor, LumaFrame, MediaError, Reencoded, Reencoder};

/// When detecting: one frame in this many (about 4 per second at 30 fps), at most this many.
const DETECT_EVERY: u64 = 8;
const DETECT_MAX_FRAMES: u64 = 32;

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
}

impl VideoWatermarker {
    /// Loads the re-encode pipeline (GStreamer initialised once here).
    pub fn new(image: &ImageWatermarker, media: &MediaConfig) -> Result<Self, MediaError> {
        Ok(Self {
            pattern: image.pattern.clone(),
            strength: image.strength,
            grid: Grid::VIDEO,
            reencoder: Reencoder::new(media.pipelines_dir.as_deref(), &media.limits)?,
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

    /// Reads the mark from up to `DETECT_MAX_FRAMES` frames, one in `DETECT_EVERY`, in their
    /// stored geometry (as they were marked: no pixel-aspect correction). Blocking.
    pub fn detect(&self, data: Bytes) -> Result<ClipDetection, WatermarkError> {
        let sum: Arc<Mutex<(Option<Residual>, u64)>> = Arc::default();
        let (acc, grid) = (sum.clone(), self.grid);
        let editor: FrameEditor = Box::new(move |f: LumaFrame<'_>| {
            let mut acc = acc.lock().unwrap_or_else(|p| p.into_inner());
            if !f.index.is_multiple_of(DETECT_EVERY) || acc.1 >= DETECT_MAX_FRAMES {
                return Ok(());
            }
            let plane = Plane::new(&*f.data, f.width, f.height, f.stride)
                .ok_or("a frame smaller than its stated size")?;
            let r = Residual::new(&plane, grid);
            // A size change mid-clip: keep what was summed so far.
            let added = match &mut acc.0 {
                None => {
                    acc.0 = Some(r);
                    true
                }
                Some(s) => s.accumulate(&r),
            };
            acc.1 += u64::from(added);
            Ok(())
        });
        self.reencoder
            .read(data, editor)
            .map_err(|e| WatermarkError::Unsupported(format!("this video: {e}")))?;
        let (sum, frames) = std::mem::take(&mut *sum.lock().unwrap_or_else(|p| p.into_inner()));
        let sum =
            sum.ok_or_else(|| WatermarkError::Unsupported("a video with no frames".into()))?;
        Ok(ClipDetection {
            detection: sum.read(&self.pattern),
            frames,
        })
    }
}
