//! Decoding settings: where the pipelines are, how frames are sampled, and the hard limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Folder with `image.yaml`, `video.yaml`, `audio.yaml`; unset = the built-in copies of
    /// the repository's `pipelines/`.
    #[serde(default)]
    pub pipelines_dir: Option<PathBuf>,
    /// Frames are scaled to fit this many pixels on their longer side (aspect kept, never up).
    #[serde(default = "d_max_side")]
    pub max_side: u32,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub limits: Limits,
    /// Still images: `auto` sends JPEG/PNG/WebP through pipelines/image.yaml (measured faster)
    /// and decodes BMP/TIFF/GIF in-process (GStreamer 1.22 cannot, or hangs); `builtin` decodes
    /// every still in-process; `gstreamer` sends JPEG/PNG/WebP through GStreamer too (same as auto).
    #[serde(default)]
    pub still_images: StillImages,
    /// Decoder elements to prefer over the software ones, e.g. `[nvh264dec, nvjpegdec]`.
    /// Start-up fails, naming the element, if one is not installed.
    #[serde(default)]
    pub prefer_decoders: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            pipelines_dir: None,
            max_side: d_max_side(),
            sampling: Sampling::default(),
            limits: Limits::default(),
            still_images: StillImages::default(),
            prefer_decoders: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StillImages {
    #[default]
    Auto,
    Builtin,
    Gstreamer,
}

/// Which decoded video frames are handed on. The first frame is always included.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Frames per second of media time (0 = every frame).
    #[serde(default = "d_fps")]
    pub fps: f64,
    /// Frame budget: spread over the stated duration; a medium it cannot cover is reported
    /// incomplete (see docs/media.md "The whole medium, every time").
    #[serde(default = "d_max_frames")]
    pub max_frames: u32,
    /// Only frames the codec marks as key frames.
    #[serde(default)]
    pub keyframes_only: bool,
    /// Decode only key frames while they come at least once per sampling period (the bulk of
    /// the decoding cost saved on phone and camera video). It trusts the stream's key-frame
    /// flags, which a crafted file can set on frames that are not: for media from sources you
    /// trust (your own generation service's responses), not for uploads. docs/media.md.
    #[serde(default)]
    pub skip_delta_frames: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            fps: d_fps(),
            max_frames: d_max_frames(),
            keyframes_only: false,
            skip_delta_frames: false,
        }
    }
}

/// Hard limits on one decode. Exceeding one is an error naming it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest frame (width × height) a decoder may produce: decompression bombs stop here,
    /// before the decoder is even created when the container states the size.
    #[serde(default = "d_max_pixels")]
    pub max_pixels: u64,
    /// Most frames decoded (sampled or not).
    #[serde(default = "d_max_decoded")]
    pub max_decoded_frames: u64,
    /// Longest media (stated duration or timestamps).
    #[serde(default = "d_max_duration", with = "humantime_serde")]
    pub max_duration: Duration,
    /// Longest wall-clock time for one decode.
    #[serde(default = "d_max_wall", with = "humantime_serde")]
    pub max_wall: Duration,
    /// Most memory the decoded frames in flight may take (frame size × queue depth).
    #[serde(default = "d_max_memory", deserialize_with = "super::route::de_bytes")]
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: d_max_pixels(),
            max_decoded_frames: d_max_decoded(),
            max_duration: d_max_duration(),
            max_wall: d_max_wall(),
            max_memory: d_max_memory(),
        }
    }
}

impl MediaConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if !(16..=8192).contains(&self.max_side) {
            return Err((
                "media.max_side".into(),
                "must be between 16 and 8192".into(),
            ));
        }
        if !self.sampling.fps.is_finite() || self.sampling.fps < 0.0 {
            return Err((
                "media.sampling.fps".into(),
                "must be 0 (every frame) or above".into(),
            ));
        }
        if self.sampling.max_frames == 0 {
            return Err(("media.sampling.max_frames".into(), "must be above 0".into()));
        }
        if self.limits.max_wall.is_zero() {
            return Err(("media.limits.max_wall".into(), "must be above 0".into()));
        }
        Ok(())
    }
}

fn d_max_side() -> u32 {
    640
}
fn d_fps() -> f64 {
    1.0
}
fn d_max_frames() -> u32 {
    32
}
fn d_max_pixels() -> u64 {
    40_000_000
}
fn d_max_decoded() -> u64 {
    100_000
}
fn d_max_duration() -> Duration {
    Duration::from_secs(600)
}
fn d_max_wall() -> Duration {
    Duration::from_secs(30)
}
fn d_max_memory() -> u64 {
    1024 * 1024 * 1024
}
