//! One decode: build the pipeline, feed it, pull samples, enforce limits, tear it down.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSrcCallbacks;

use super::{Audio, DecodeError, Frame, Input, Limit, Output, Summary, Templates};
use crate::config::MediaConfig;
use crate::extract::{MediaKind, sniff};

/// Bytes pushed into appsrc per buffer (zero-copy slices of the input).
const CHUNK: usize = 64 * 1024;
/// Decoded frames that may be in flight between decoder and sink (for the memory estimate).
const FRAMES_IN_FLIGHT: u64 = 8;
/// How often the pull loop wakes to check limits, errors and the caller's stop.
const TICK: gst::ClockTime = gst::ClockTime::from_mseconds(20);

/// State shared with GStreamer's streaming threads.
#[derive(Default)]
struct Shared {
    failure: Mutex<Option<DecodeError>>,
    decoded: AtomicU64,
    stop: AtomicBool,
    codec: Mutex<Option<String>>,
    dims: Mutex<Option<(u32, u32)>>,
}

impl Shared {
    fn fail(&self, e: DecodeError) {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
        self.stop.store(true, Ordering::Release);
    }
    fn take_failure(&self) -> Option<DecodeError> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Stops and frees the pipeline however the decode ends (no leaked threads or fds).
struct Teardown {
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

enum Feed {
    Bytes { data: Bytes, offset: usize },
    Chunks { rx: std::sync::mpsc::Receiver<Bytes>, first: Option<Bytes> },
}

pub(super) fn run(
    templates: &Templates,
    cfg: &MediaConfig,
    input: Input,
    kind: Option<MediaKind>,
    on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
) -> Result<Summary, DecodeError> {
    let started = Instant::now();
    let deadline = started + cfg.limits.max_wall;
    // The first bytes tell the format; nothing is decoded from an empty input.
    let (feed, head) = match input {
        Input::Bytes(data) => {
            if data.is_empty() {
                return Err(DecodeError::Empty);
            }
            let head = data.slice(..data.len().min(4096));
            (Feed::Bytes { data, offset: 0 }, head)
        }
        Input::Chunks(rx) => {
            let first = rx
                .recv_timeout(cfg.limits.max_wall)
                .map_err(|_| DecodeError::Empty)?;
            if first.is_empty() {
                return Err(DecodeError::Empty);
            }
            let head = first.clone();
            (Feed::Chunks { rx, first: Some(first) }, head)
        }
    };
    let sniffed = sniff(&head);
    let kind = kind.or(sniffed.map(|m| m.kind)).ok_or_else(|| {
        DecodeError::Unsupported("not an image, video or audio format likeguard recognises".into())
    })?;
    let mut summary = Summary {
        kind: Some(kind),
        format: sniffed.map(|m| m.format.to_string()),
        ..Summary::default()
    };

    let built = templates.get(kind).build().map_err(DecodeError::Internal)?;
    let shared = Arc::new(Shared::default());
    let _teardown = Teardown {
        pipeline: built.pipeline.clone(),
        shared: shared.clone(),
    };
    watch_decoder(&built.decode, cfg, &shared);
    feed_appsrc(&built.src, feed, &shared);

    if built.pipeline.set_state(gst::State::Playing).is_err() {
        return Err(shared
            .take_failure()
            .unwrap_or_else(|| DecodeError::Internal("pipeline did not start".into())));
    }
    let bus = built
        .pipeline
        .bus()
        .ok_or_else(|| DecodeError::Internal("pipeline has no bus".into()))?;

    let sampling = &cfg.sampling;
    let period = (sampling.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / sampling.fps));
    let mut next_t = Duration::ZERO;
    let mut frame = Frame {
        index: 0,
        pts: None,
        width: 0,
        height: 0,
        keyframe: false,
        rgb: Vec::new(),
    };
    loop {
        if let Some(e) = shared.take_failure() {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err(DecodeError::Limit {
                limit: Limit::MaxWall,
                detail: format!("decode took longer than {:?}", cfg.limits.max_wall),
            });
        }
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                return Err(shared.take_failure().unwrap_or_else(|| map_error(err)));
            }
        }
        let Some(sample) = built.sink.try_pull_sample(TICK) else {
            if built.sink.is_eos() {
                break;
            }
            continue;
        };
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
            continue;
        };
        let pts = buffer.pts().map(|t| Duration::from_nanos(t.nseconds()));
        if pts.is_some_and(|p| p > cfg.limits.max_duration) {
            return Err(DecodeError::Limit {
                limit: Limit::MaxDuration,
                detail: format!("media runs past {:?}", cfg.limits.max_duration),
            });
        }
        let flow = if kind == MediaKind::Audio {
            let map = buffer
                .map_readable()
                .map_err(|_| DecodeError::Internal("unreadable audio buffer".into()))?;
            let samples: Vec<i16> = map
                .as_slice()
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            summary.audio_samples += samples.len() as u64;
            on_output(Output::Audio(&Audio { pts, samples }))
        } else {
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let first = summary.frames_sampled == 0;
            let due = period.is_none_or(|_| pts.is_none_or(|p| p >= next_t));
            if !(first || (due && (keyframe || !sampling.keyframes_only))) {
                continue;
            }
            if let (Some(period), Some(p)) = (period, pts) {
                // Next sample: the first frame at or after the next period boundary.
                let n = (p.as_secs_f64() / period.as_secs_f64()).floor() + 1.0;
                next_t = period.mul_f64(n);
            }
            let info = gstreamer_video::VideoInfo::from_caps(caps)
                .map_err(|_| DecodeError::Internal("sink caps are not raw video".into()))?;
            copy_rgb(buffer, &info, &mut frame.rgb)?;
            frame.width = info.width();
            frame.height = info.height();
            frame.pts = pts;
            frame.keyframe = keyframe;
            let fps = info.fps();
            frame.index = match (pts, fps.numer(), fps.denom()) {
                (Some(p), n, d) if n > 0 && d > 0 => {
                    (p.as_secs_f64() * f64::from(n) / f64::from(d)).round() as u64
                }
                _ => summary.frames_sampled,
            };
            summary.frames_sampled += 1;
            let flow = on_output(Output::Frame(&frame));
            if summary.frames_sampled >= u64::from(sampling.max_frames) {
                ControlFlow::Break(())
            } else {
                flow
            }
        };
        if flow.is_break() {
            summary.stopped_early = true;
            break;
        }
    }
    if let Some(e) = shared.take_failure() {
        return Err(e);
    }
    summary.frames_decoded = shared.decoded.load(Ordering::Acquire);
    summary.codec = shared.codec.lock().ok().and_then(|c| c.clone());
    if let Some((w, h)) = shared.dims.lock().ok().and_then(|d| *d) {
        summary.width = Some(w);
        summary.height = Some(h);
    }
    summary.duration = built
        .pipeline
        .query_duration::<gst::ClockTime>()
        .map(|d| Duration::from_nanos(d.nseconds()));
    if summary.duration.is_some_and(|d| d > cfg.limits.max_duration) {
        return Err(DecodeError::Limit {
            limit: Limit::MaxDuration,
            detail: format!("media lasts longer than {:?}", cfg.limits.max_duration),
        });
    }
    if !summary.stopped_early && summary.frames_sampled == 0 && summary.audio_samples == 0 {
        return Err(DecodeError::Corrupt(format!(
            "no {} could be decoded",
            if kind == MediaKind::Audio { "audio" } else { "frame" }
        )));
    }
    Ok(summary)
}

/// Check stream sizes before a decoder exists (container caps), and again on decoded caps;
/// count decoded frames.
fn watch_decoder(decode: &gst::Element, cfg: &MediaConfig, shared: &Arc<Shared>) {
    let limits = cfg.limits.clone();
    let s = shared.clone();
    decode.connect("autoplug-continue", false, move |values| {
        let ok = values
            .get(2)
            .and_then(|v| v.get::<gst::Caps>().ok())
            .is_none_or(|caps| admit(&caps, &limits, &s));
        Some(ok.to_value())
    });
    let limits = cfg.limits.clone();
    let s = shared.clone();
    decode.connect_pad_added(move |_, pad| {
        let limits = limits.clone();
        let s = s.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| {
                if s.stop.load(Ordering::Acquire) {
                    return gst::PadProbeReturn::Drop;
                }
                match &info.data {
                    Some(gst::PadProbeData::Event(ev)) => {
                        if let gst::EventView::Caps(c) = ev.view()
                            && !admit(c.caps(), &limits, &s)
                        {
                            return gst::PadProbeReturn::Drop;
                        }
                    }
                    Some(gst::PadProbeData::Buffer(_)) => {
                        let is_video = pad
                            .current_caps()
                            .and_then(|c| c.structure(0).map(|st| st.name().starts_with("video/")))
                            .unwrap_or(false);
                        if is_video {
                            let n = s.decoded.fetch_add(1, Ordering::AcqRel) + 1;
                            if n > limits.max_decoded_frames {
                                s.fail(DecodeError::Limit {
                                    limit: Limit::MaxDecodedFrames,
                                    detail: format!("more than {} frames", limits.max_decoded_frames),
                                });
                                return gst::PadProbeReturn::Drop;
                            }
                        }
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    });
}

/// Whether a stream with these caps may be decoded; records codec and size.
fn admit(caps: &gst::CapsRef, limits: &crate::config::Limits, s: &Shared) -> bool {
    let Some(st) = caps.structure(0) else {
        return true;
    };
    let name = st.name();
    // Stream caps carry a size or a rate; container caps (video/quicktime, ...) do not.
    let is_stream = st.has_field("width") || st.has_field("rate");
    if is_stream
        && !name.ends_with("x-raw")
        && let Ok(mut codec) = s.codec.lock()
    {
        codec.get_or_insert_with(|| name.to_string());
    }
    let (Ok(w), Ok(h)) = (st.get::<i32>("width"), st.get::<i32>("height")) else {
        return true;
    };
    let (w, h) = (w.max(0) as u64, h.max(0) as u64);
    if let Ok(mut d) = s.dims.lock() {
        d.get_or_insert((w as u32, h as u32));
    }
    if w * h > limits.max_pixels {
        s.fail(DecodeError::Limit {
            limit: Limit::MaxPixels,
            detail: format!("{w}×{h} frames exceed {} pixels", limits.max_pixels),
        });
        return false;
    }
    let in_flight = w * h * 4 * FRAMES_IN_FLIGHT;
    if in_flight > limits.max_memory {
        s.fail(DecodeError::Limit {
            limit: Limit::MaxMemory,
            detail: format!(
                "{w}×{h} frames need about {in_flight} bytes in flight, above {}",
                limits.max_memory
            ),
        });
        return false;
    }
    true
}

/// Feed appsrc from GStreamer's own streaming thread when it asks for data.
fn feed_appsrc(src: &gstreamer_app::AppSrc, feed: Feed, shared: &Arc<Shared>) {
    src.set_format(gst::Format::Bytes);
    src.set_max_bytes(4 * CHUNK as u64);
    let feed = Mutex::new(feed);
    let s = shared.clone();
    src.set_callbacks(
        AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let mut feed = feed.lock().unwrap_or_else(|p| p.into_inner());
                let next = match &mut *feed {
                    Feed::Bytes { data, offset } => {
                        (*offset < data.len()).then(|| {
                            let end = (*offset + CHUNK).min(data.len());
                            let chunk = data.slice(*offset..end);
                            *offset = end;
                            chunk
                        })
                    }
                    Feed::Chunks { rx, first } => first.take().or_else(|| loop {
                        if s.stop.load(Ordering::Acquire) {
                            break None;
                        }
                        match rx.recv_timeout(Duration::from_millis(50)) {
                            Ok(c) if c.is_empty() => continue,
                            Ok(c) => break Some(c),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
                        }
                    }),
                };
                match next {
                    Some(chunk) => {
                        let _ = src.push_buffer(gst::Buffer::from_slice(chunk));
                    }
                    None => {
                        let _ = src.end_of_stream();
                    }
                }
            })
            .build(),
    );
}

/// Copy a (possibly row-padded) RGB frame into a tight buffer, reusing its allocation.
fn copy_rgb(
    buffer: &gst::BufferRef,
    info: &gstreamer_video::VideoInfo,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let map = buffer
        .map_readable()
        .map_err(|_| DecodeError::Internal("unreadable video buffer".into()))?;
    let data = map.as_slice();
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = info.stride()[0] as usize;
    let row = w * 3;
    if stride < row || data.len() < stride * (h.saturating_sub(1)) + row {
        return Err(DecodeError::Internal("video buffer smaller than its caps".into()));
    }
    out.clear();
    out.reserve(row * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(())
}

fn map_error(err: &gst::message::Error) -> DecodeError {
    let e = err.error();
    let text = e.message().to_string();
    if e.matches(gst::StreamError::TypeNotFound)
        || e.matches(gst::StreamError::CodecNotFound)
        || e.matches(gst::StreamError::WrongType)
        || e.matches(gst::CoreError::MissingPlugin)
    {
        DecodeError::Unsupported(text)
    } else if e.matches(gst::StreamError::Decode)
        || e.matches(gst::StreamError::Demux)
        || e.matches(gst::StreamError::Format)
        || e.matches(gst::StreamError::Failed)
    {
        DecodeError::Corrupt(text)
    } else {
        // Negotiation and other failures on hostile input: treat as unreadable media.
        DecodeError::Corrupt(format!(
            "{text} ({})",
            err.debug().map(|d| d.to_string()).unwrap_or_default()
        ))
    }
}
