//! Media decoding with GStreamer: bytes in (whole, or chunk by chunk as they arrive), sampled RGB
//! frames or 16 kHz mono PCM out, under hard limits.
//!
//! `Decoder` is built once (GStreamer initialised, `pipelines/*.yaml` loaded and validated,
//! preferred decoders ranked); each `decode` call runs one pipeline on the calling thread and
//! tears it down completely. Call it from a blocking context (`spawn_blocking`), never on the
//! async runtime. See docs/media.md.

mod decode;
pub mod feed;
mod heif;
mod pipeline;
mod reencode;
mod run;
mod sample;
mod sniff;
mod still;

use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;

pub use pipeline::{Template, Templates};
pub use reencode::{Chroma, FrameEditor, LumaFrame, Reencoded, Reencoder};

use crate::config::MediaConfig;
pub use sniff::{MediaKind, MediaType, is_animated_still, sniff};
/// The in-process still decoders (also fuzzed on their own: fuzz/).
pub use still::{decode as decode_still, decode_gif};

/// What goes into a decode.
pub enum Input {
    /// A body already held in memory; fed in 64 KiB slices without copying.
    Bytes(Bytes),
    /// Chunks as they arrive, through a channel bounded in bytes (`feed::channel`): the
    /// producer is slowed to the decode's pace, or told it is behind. The input ends when the
    /// sender is dropped; a decode that stops early closes the channel.
    Chunks(feed::ChunkReceiver),
}

/// One sampled video frame (or image), packed RGB, `width * 3` bytes per row.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position among decoded frames (0-based).
    pub index: u64,
    pub pts: Option<Duration>,
    pub width: u32,
    pub height: u32,
    /// The source's size before scaling to `media.max_side` (what the policy sees as
    /// `media.width/height`, and what face boxes are reported in).
    pub source: (u32, u32),
    pub keyframe: bool,
    pub rgb: Vec<u8>,
}

/// A run of 16 kHz mono PCM.
#[derive(Debug, Clone)]
pub struct Audio {
    pub pts: Option<Duration>,
    pub samples: Vec<i16>,
}

/// What a decode hands to its caller, in order.
pub enum Output<'a> {
    Frame(&'a Frame),
    Audio(&'a Audio),
}

/// What a decode found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub kind: Option<MediaKind>,
    /// Container/format from the bytes (e.g. `mp4`, `jpg`).
    pub format: Option<String>,
    /// Stream codec as GStreamer names it (e.g. `video/x-h264`).
    pub codec: Option<String>,
    /// Source dimensions (before scaling).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Source pixel aspect ratio when not square (frames are output with square pixels).
    pub pixel_aspect: Option<(i32, i32)>,
    pub duration: Option<Duration>,
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub audio_samples: u64,
    /// The caller stopped the decode before the end (it had what it needed).
    pub stopped_early: bool,
    /// A bound stopped sampling before the end of the medium: what was seen is not all of it,
    /// and the caller must not treat "nothing found" as a finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Incomplete>,
}

/// Why a decode did not cover the whole medium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incomplete {
    /// The configuration key that stopped it (e.g. `media.sampling.max_frames`).
    pub limit: &'static str,
    /// Media time up to which frames were sampled.
    #[serde(with = "humantime_serde")]
    pub covered: Duration,
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    pub duration: Option<Duration>,
}

impl Incomplete {
    /// The frame budget ran out at media time `at`.
    pub fn budget(at: Duration, duration: Option<Duration>) -> Self {
        Self {
            limit: "media.sampling.max_frames",
            covered: at,
            duration,
        }
    }
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inspection incomplete: media sampled up to {:.1} s",
            self.covered.as_secs_f64()
        )?;
        if let Some(d) = self.duration {
            write!(f, " of {:.1} s", d.as_secs_f64())?;
        }
        write!(f, " ({})", self.limit)
    }
}

/// The limit a decode ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    MaxPixels,
    MaxDecodedFrames,
    MaxDuration,
    MaxWall,
    MaxMemory,
}

impl Limit {
    /// The error for exceeding this limit.
    pub fn exceeded(self, detail: impl Into<String>) -> DecodeError {
        DecodeError::Limit {
            limit: self,
            detail: detail.into(),
        }
    }

    /// `max_pixels` exceeded by a `w`×`h` frame.
    pub fn too_many_pixels(w: u64, h: u64, max: u64) -> DecodeError {
        Self::MaxPixels.exceeded(format!("{w}×{h} frames exceed {max} pixels"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxPixels => "max_pixels",
            Self::MaxDecodedFrames => "max_decoded_frames",
            Self::MaxDuration => "max_duration",
            Self::MaxWall => "max_wall",
            Self::MaxMemory => "max_memory",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("unsupported media: {0}")]
    Unsupported(String),
    #[error("corrupt or truncated media: {0}")]
    Corrupt(String),
    #[error("limit media.limits.{} exceeded: {detail}", limit.as_str())]
    Limit { limit: Limit, detail: String },
    #[error("decoder failure: {0}")]
    Internal(String),
}

/// Set-up problems, reported at start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("{file}: invalid pipeline: {reason}")]
    Pipeline { file: String, reason: String },
    #[error(
        "media.prefer_decoders: GStreamer element {0:?} is not installed (for NVIDIA decoders: gstreamer1.0-plugins-bad built with nvcodec, and the NVIDIA driver)"
    )]
    MissingDecoder(String),
}

/// Decodes media; build once, share everywhere.
pub struct Decoder {
    templates: Templates,
    config: MediaConfig,
}

impl Decoder {
    pub fn new(config: &MediaConfig) -> Result<Self, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        for name in &config.prefer_decoders {
            let feature = gst::Registry::get()
                .find_feature(name, gst::ElementFactory::static_type())
                .ok_or_else(|| MediaError::MissingDecoder(name.clone()))?;
            // decodebin picks the highest-ranked decoder for a format.
            feature.set_rank(gst::Rank::PRIMARY + 100);
        }
        let templates = Templates::load(
            config.pipelines_dir.as_deref(),
            &[("max_side", config.max_side.to_string())],
        )?;
        Ok(Self {
            templates,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// Decode `input` of `kind` (None: sniff it from the first bytes), handing each sampled frame
    /// or audio run to `on_output`; return `ControlFlow::Break` to stop early.
    /// Blocking: run it on a blocking thread.
    pub fn decode(
        &self,
        input: Input,
        kind: Option<MediaKind>,
        on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
    ) -> Result<Summary, DecodeError> {
        decode::run(&self.templates, &self.config, input, kind, on_output)
    }

    /// Decode a whole file's bytes (sniffing the kind) and collect every output.
    pub fn decode_all(
        &self,
        data: Bytes,
    ) -> Result<(Summary, Vec<Frame>, Vec<Audio>), DecodeError> {
        let mut frames = Vec::new();
        let mut audio = Vec::new();
        let kind = sniff(&data).map(|m| m.kind);
        let summary = self.decode(Input::Bytes(data), kind, &mut |o| {
            match o {
                Output::Frame(f) => frames.push(f.clone()),
                Output::Audio(a) => audio.push(a.clone()),
            }
            ControlFlow::Continue(())
        })?;
        Ok((summary, frames, audio))
    }
}
