//! One decode: build the pipeline, feed it, pull samples, enforce limits, tear it down.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSrcCallbacks;

use super::run::{FirstFailure, Teardown};
use super::sample::{Sampler, Take};
use super::sniff::{MediaKind, sniff};
use super::{
    Audio, DecodeError, Frame, Incomplete, Input, Limit, Output, Summary, Templates, still,
};
use crate::config::{MediaConfig, StillImages};

/// Bytes pushed into appsrc per buffer (zero-copy slices of the input).
const CHUNK: usize = 64 * 1024;
/// Decoded frames that may be in flight between decoder and sink (for the memory estimate).
const FRAMES_IN_FLIGHT: u64 = 8;
/// How often the pull loop wakes to check limits, errors and the caller's stop.
const TICK: gst::ClockTime = gst::ClockTime::from_mseconds(20);

/// State shared with GStreamer's streaming threads.
#[derive(Default)]
struct Shared {
    failure: Arc<FirstFailure>,
    /// decodebin exposed its streams and none could be linked.
    no_stream: AtomicBool,
    /// Timestamps of the key frames entering the video decoder (parsers and demuxers mark
    /// them reliably; decoded frames do not always carry the flag).
    keyframes: Mutex<std::collections::HashSet<u64>>,
    /// Whether frames other than key frames are decoded at all (see `Gop`).
    gop: Mutex<Gop>,
    /// Source pixel aspect ratio.
    par: Mutex<Option<(i32, i32)>>,
    /// Decides which decoded video frames go on to scaling and conversion.
    sampler: Mutex<Sampler>,
    decoded: AtomicU64,
    /// A frame was due after the sampling budget was spent (see `Sampler`), or frames were
    /// dropped undecoded where they were due (`gop_gap`).
    over_budget: AtomicBool,
    gop_gap: AtomicBool,
    /// decodebin exposed a stream.
    exposed: AtomicBool,
    /// Sink pads of the demuxers plugged (see `demuxer_gave_up`).
    demuxers: Mutex<Vec<gst::Pad>>,
    /// The medium's duration as the demuxer states it, asked once at the first frame.
    stated: Mutex<Option<Duration>>,
    codec: Mutex<Option<String>>,
    dims: Mutex<Option<(u32, u32)>>,
    /// Chunked inputs: when the last chunk (or the end) arrived. `max_wall` bounds the decode's
    /// own time, so it counts from here while input is still arriving: an upload streamed for
    /// minutes is not a slow decode, and an input that stalls longer than `max_wall` is one.
    input_at: Mutex<Option<Instant>>,
}

enum Feed {
    Bytes {
        data: Bytes,
        offset: usize,
    },
    Chunks {
        rx: super::feed::ChunkReceiver,
        first: Option<Bytes>,
    },
}

/// Why an attempt did not produce a result.
enum Failure {
    /// The container holds no stream of the kind the pipeline decodes (e.g. audio-only MP4).
    NoStream,
    /// It holds a video stream no installed decoder reads: never retried as sound alone.
    UndecodableVideo,
    Error(DecodeError),
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        Self::Error(e)
    }
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
    let animated;
    let mut _closer = None;
    let (feed, head) = match input {
        Input::Bytes(data) => {
            if data.is_empty() {
                return Err(DecodeError::Empty);
            }
            let head = data.slice(..data.len().min(4096));
            animated = super::sniff::is_animated_still(&data);
            (Feed::Bytes { data, offset: 0 }, head)
        }
        Input::Chunks(rx) => {
            // However the decode ends, the producer stops waiting on it.
            _closer = Some(rx.closer());
            let first = rx
                .recv_timeout(cfg.limits.max_wall)
                .map_err(|_| DecodeError::Empty)?;
            if first.is_empty() {
                return Err(DecodeError::Empty);
            }
            let head = first.clone();
            animated = super::sniff::is_animated_still(&first);
            (
                Feed::Chunks {
                    rx,
                    first: Some(first),
                },
                head,
            )
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
    if sniffed.is_some_and(|m| m.format == "avi") {
        // avidemux fed from appsrc (streaming mode) on GStreamer 1.22 fails on many files
        // ("Could not demultiplex", or no frames): refuse clearly rather than half-work.
        return Err(DecodeError::Unsupported(
            "AVI is not supported (GStreamer 1.22 cannot demultiplex it reliably from a stream)"
                .into(),
        ));
    }
    if kind == MediaKind::Image && animated {
        // Neither decoder here reads past the first frame of these: refuse rather than pass
        // the other frames unseen.
        return Err(DecodeError::Unsupported(
            "animated PNG/WebP: only the first frame could be inspected".into(),
        ));
    }
    let in_process = sniffed.is_some_and(|m| match cfg.still_images {
        StillImages::Builtin => still::handles(m.format),
        // GStreamer is faster for these (benches/RESULTS.md); it cannot do the others.
        StillImages::Auto | StillImages::Gstreamer => still::only_here(m.format),
    });
    if kind == MediaKind::Image && in_process {
        let data = feed.collect(cfg.limits.max_wall)?;
        summary.codec = sniffed.map(|m| m.mime.to_string());
        if sniffed.is_some_and(|m| m.format == "gif") {
            still::decode_gif(&data, cfg, &mut summary, &mut |f| {
                on_output(Output::Frame(f))
            })?;
            return Ok(summary);
        }
        let (frame, (w, h)) = still::decode(&data, cfg)?;
        summary.width = Some(w);
        summary.height = Some(h);
        summary.frames_decoded = 1;
        summary.frames_sampled = 1;
        let _ = on_output(Output::Frame(&frame));
        return Ok(summary);
    }
    let replay = match &feed {
        Feed::Bytes { data, .. } => Some(data.clone()),
        Feed::Chunks { .. } => None,
    };
    match attempt(
        templates,
        cfg,
        feed,
        kind,
        deadline,
        &mut summary,
        on_output,
    ) {
        Ok(()) => Ok(summary),
        Err(Failure::Error(e)) => Err(e),
        // MP4, Matroska and Ogg may hold sound only: decode it as audio.
        Err(Failure::UndecodableVideo) => Err(DecodeError::Unsupported(
            "the container's video stream has no decoder here".into(),
        )),
        Err(Failure::NoStream) if kind == MediaKind::Video => match replay {
            Some(data) => {
                let mut audio = Summary {
                    kind: Some(MediaKind::Audio),
                    format: summary.format.clone(),
                    ..Summary::default()
                };
                let feed = Feed::Bytes { data, offset: 0 };
                match attempt(
                    templates,
                    cfg,
                    feed,
                    MediaKind::Audio,
                    deadline,
                    &mut audio,
                    on_output,
                ) {
                    Ok(()) => Ok(audio),
                    Err(Failure::Error(e)) => Err(e),
                    Err(Failure::NoStream | Failure::UndecodableVideo) => Err(no_stream(kind)),
                }
            }
            None => Err(no_stream(kind)),
        },
        Err(Failure::NoStream) => Err(no_stream(kind)),
    }
}

/// Nothing decodable was exposed: a video stream seen in the container (its size is known)
/// that no decoder reads must not be passed over as if the file held only sound.
fn no_stream_in(kind: MediaKind, s: &Shared) -> Failure {
    let saw_video = s.dims.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    if kind == MediaKind::Video && saw_video {
        Failure::UndecodableVideo
    } else {
        Failure::NoStream
    }
}

fn no_stream(kind: MediaKind) -> DecodeError {
    DecodeError::Unsupported(format!(
        "no decodable {} stream in the container",
        kind.as_str()
    ))
}

impl Feed {
    /// The whole input as one buffer (still images).
    /// Chunked input may take as long as it keeps arriving; a gap longer than `wait` fails.
    fn collect(self, wait: Duration) -> Result<Bytes, DecodeError> {
        match self {
            Feed::Bytes { data, .. } => Ok(data),
            Feed::Chunks { rx, first } => {
                let mut all = bytes::BytesMut::new();
                if let Some(f) = first {
                    all.extend_from_slice(&f);
                }
                loop {
                    match rx.recv_timeout(wait) {
                        Ok(c) => all.extend_from_slice(&c),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            return Ok(all.freeze());
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            return Err(Limit::MaxWall.exceeded("input did not arrive in time"));
                        }
                    }
                }
            }
        }
    }
}

/// One pipeline run over `feed`, filling `summary`.
fn attempt(
    templates: &Templates,
    cfg: &MediaConfig,
    feed: Feed,
    kind: MediaKind,
    deadline: Instant,
    summary: &mut Summary,
    on_output: &mut dyn FnMut(Output<'_>) -> ControlFlow<()>,
) -> Result<(), Failure> {
    let built = templates.get(kind).build().map_err(DecodeError::Internal)?;
    let shared = Arc::new(Shared {
        sampler: Mutex::new(Sampler::new(&cfg.sampling)),
        gop: Mutex::new(Gop {
            enabled: cfg.sampling.skip_delta_frames,
            ..Gop::default()
        }),
        ..Shared::default()
    });
    let _teardown = Teardown {
        pipeline: built.pipeline.clone(),
        failure: shared.failure.clone(),
    };
    watch_decoder(&built.decode, cfg, &shared);
    if kind == MediaKind::Video {
        watch_keyframes(&built.pipeline, &shared);
    }
    watch_demuxers(&built.pipeline, &shared);
    feed_appsrc(&built.src, feed, &shared);

    if built.pipeline.set_state(gst::State::Playing).is_err() {
        return Err(shared
            .failure
            .take()
            .unwrap_or_else(|| DecodeError::Internal("pipeline did not start".into()))
            .into());
    }
    let bus = built
        .pipeline
        .bus()
        .ok_or_else(|| DecodeError::Internal("pipeline has no bus".into()))?;

    let mut frame = Frame {
        index: 0,
        pts: None,
        width: 0,
        height: 0,
        source: (0, 0),
        keyframe: false,
        rgb: Vec::new(),
    };
    loop {
        if let Some(e) = shared.failure.take() {
            return Err(e.into());
        }
        if shared.no_stream.load(Ordering::Acquire) {
            return Err(no_stream_in(kind, &shared));
        }
        let input_at = *shared.input_at.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = input_at.map_or(deadline, |t| deadline.max(t + cfg.limits.max_wall));
        if Instant::now() > deadline {
            return Err(Limit::MaxWall
                .exceeded(format!("decode took longer than {:?}", cfg.limits.max_wall))
                .into());
        }
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                if shared.no_stream.load(Ordering::Acquire) {
                    return Err(no_stream_in(kind, &shared));
                }
                return Err(shared
                    .failure
                    .take()
                    .unwrap_or_else(|| map_error(err))
                    .into());
            }
        }
        let Some(sample) = built.sink.try_pull_sample(TICK) else {
            // Every frame sampled within the budget has been handed on; the rest is unseen
            // (dropped undecoded or unsampled, whether or not the stream has ended since).
            if shared.over_budget.load(Ordering::Acquire) {
                break;
            }
            if built.sink.is_eos() {
                break;
            }
            if demuxer_gave_up(&shared) {
                return Err(DecodeError::Corrupt(
                    "the container holds no stream that can be played".into(),
                )
                .into());
            }
            continue;
        };
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
            continue;
        };
        let raw_pts = buffer.pts();
        // Media time from the first frame (encoder delay and edit lists shift raw timestamps).
        let pts = raw_pts.map(|t| {
            shared
                .sampler
                .lock()
                .map_or(Duration::ZERO, |mut smp| smp.media_time(t.nseconds()))
        });
        if pts.is_some_and(|p| p > cfg.limits.max_duration) {
            return Err(Limit::MaxDuration
                .exceeded(format!("media runs past {:?}", cfg.limits.max_duration))
                .into());
        }
        let flow = if kind == MediaKind::Audio {
            let map = buffer.map_readable().map_err(|_| {
                Failure::Error(DecodeError::Internal("unreadable audio buffer".into()))
            })?;
            let samples: Vec<i16> = map
                .as_slice()
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            summary.audio_samples += samples.len() as u64;
            on_output(Output::Audio(&Audio { pts, samples }))
        } else {
            let keyframe = kind == MediaKind::Image
                || raw_pts.is_some_and(|t| {
                    shared
                        .keyframes
                        .lock()
                        .is_ok_and(|k| k.contains(&t.nseconds()))
                });
            // Frames reaching the sink were already sampled right after the decoder.
            let info = gstreamer_video::VideoInfo::from_caps(caps)
                .map_err(|_| DecodeError::Internal("sink caps are not raw video".into()))?;
            copy_rgb(buffer, &info, &mut frame.rgb)?;
            frame.width = info.width();
            frame.height = info.height();
            frame.source = shared
                .dims
                .lock()
                .ok()
                .and_then(|d| *d)
                .unwrap_or((frame.width, frame.height));
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
            on_output(Output::Frame(&frame))
        };
        if flow.is_break() {
            summary.stopped_early = true;
            break;
        }
    }
    // Whatever ended the loop (the stream may have ended while a bound was being hit): a
    // medium not covered to its end says so.
    if !summary.stopped_early && kind == MediaKind::Video {
        let stated = *shared.stated.lock().unwrap_or_else(|p| p.into_inner());
        let mut smp = shared.sampler.lock().unwrap_or_else(|p| p.into_inner());
        let gap = shared.gop_gap.load(Ordering::Acquire);
        if (shared.over_budget.load(Ordering::Acquire) || gap || smp.check_span())
            && let Some((covered, limit)) = smp.refusal()
        {
            summary.incomplete = Some(Incomplete {
                limit,
                covered,
                duration: stated,
            });
        }
    }
    if let Some(e) = shared.failure.take() {
        return Err(e.into());
    }
    summary.frames_decoded = shared.decoded.load(Ordering::Acquire);
    summary.codec = shared.codec.lock().ok().and_then(|c| c.clone());
    if let Some((w, h)) = shared.dims.lock().ok().and_then(|d| *d) {
        summary.width = Some(w);
        summary.height = Some(h);
    }
    summary.pixel_aspect = shared.par.lock().ok().and_then(|p| *p);
    summary.duration = built
        .pipeline
        .query_duration::<gst::ClockTime>()
        .map(|d| Duration::from_nanos(d.nseconds()));
    if summary
        .duration
        .is_some_and(|d| d > cfg.limits.max_duration)
    {
        return Err(Limit::MaxDuration
            .exceeded(format!(
                "media lasts longer than {:?}",
                cfg.limits.max_duration
            ))
            .into());
    }
    if !summary.stopped_early
        && summary.incomplete.is_none()
        && summary.frames_sampled == 0
        && summary.audio_samples == 0
    {
        return Err(DecodeError::Corrupt(format!(
            "no {} could be decoded",
            if kind == MediaKind::Audio {
                "audio"
            } else {
                "frame"
            }
        ))
        .into());
    }
    Ok(())
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
    let s = shared.clone();
    decode.connect_no_more_pads(move |decode| {
        if decode.src_pads().iter().all(|p| !p.is_linked()) {
            s.no_stream.store(true, Ordering::Release);
        }
    });
    let limits = cfg.limits.clone();
    let s = shared.clone();
    decode.connect_pad_added(move |_, pad| {
        s.exposed.store(true, Ordering::Release);
        let limits = limits.clone();
        let s = s.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| {
                if s.failure.stopped() {
                    // The pull loop tears the pipeline down; let data drain meanwhile.
                    return gst::PadProbeReturn::Ok;
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
                                s.failure.fail(Limit::MaxDecodedFrames.exceeded(format!(
                                    "more than {} frames",
                                    limits.max_decoded_frames
                                )));
                                return gst::PadProbeReturn::Ok;
                            }
                            if n == 1 && !plan(pad, &limits, &s) {
                                return gst::PadProbeReturn::Drop;
                            }
                            let raw = match &info.data {
                                Some(gst::PadProbeData::Buffer(b)) => b.pts().map(|t| t.nseconds()),
                                _ => None,
                            };
                            let keyframe = raw
                                .is_some_and(|r| s.keyframes.lock().is_ok_and(|k| k.contains(&r)));
                            let take = s
                                .sampler
                                .lock()
                                .map_or(Take::Keep, |mut smp| smp.take(raw, keyframe));
                            match take {
                                Take::Keep => {}
                                Take::Skip => return gst::PadProbeReturn::Drop,
                                Take::OverBudget => {
                                    s.over_budget.store(true, Ordering::Release);
                                    return gst::PadProbeReturn::Drop;
                                }
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

/// At the first decoded frame: ask the demuxer how long the medium is (known up front when
/// the body is held), refuse one past `max_duration` before decoding it, and spread the frame
/// budget over the rest. Returns false when the decode must stop.
fn plan(pad: &gst::Pad, limits: &crate::config::Limits, s: &Shared) -> bool {
    let Some(d) = pad.query_duration::<gst::ClockTime>() else {
        return true;
    };
    let d = Duration::from_nanos(d.nseconds());
    if d > limits.max_duration {
        s.failure.fail(Limit::MaxDuration.exceeded(format!(
            "media lasts {:.1} s, longer than {:?}",
            d.as_secs_f64(),
            limits.max_duration
        )));
        return false;
    }
    *s.stated.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    s.sampler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .spread(d);
    true
}

/// Decode only what sampling needs (`media.sampling.skip_delta_frames`, off by default): when
/// key frames come at least once per sampling period (phones and cameras write one a second),
/// the key frames alone cover the medium at the sampling rate, and the frames between them are
/// dropped before the decoder — the bulk of the decoding cost. Streams with longer groups of
/// pictures are decoded in full: every frame between two key frames depends on the one before
/// it. Any stretch longer than the period that goes undecoded makes the decode incomplete.
#[derive(Default)]
struct Gop {
    enabled: bool,
    last_key: Option<u64>,
    /// Delta frames are being dropped before the decoder.
    keys_only: bool,
}

/// How far past the sampling period two key frames may be before key frames alone stop
/// covering it (timestamp jitter of one frame at 24 fps and above).
const GOP_SLACK: Duration = Duration::from_millis(42);

impl Gop {
    /// A buffer at `pts` (ns) enters the video decoder: whether it is decoded. `period` is
    /// the sampling period in force (None: every frame is wanted).
    fn admit(
        &mut self,
        pts: Option<u64>,
        keyframe: bool,
        period: Option<Duration>,
        s: &Shared,
    ) -> bool {
        let Some(period) = period.filter(|_| self.enabled) else {
            return true;
        };
        let window = (period + GOP_SLACK).as_nanos() as u64;
        if !keyframe {
            if !self.keys_only {
                return true;
            }
            // A delta frame dropped further than one period from the last key frame (a group
            // that turned long, a tail without key frames, timestamps that jump): that
            // stretch is not sampled.
            // Leading frames of an open group (before their key frame in display order, by
            // less than a period) are expected.
            if let (Some(pts), Some(last)) = (pts, self.last_key)
                && (pts.saturating_add(window) < last || pts.saturating_sub(last) > window)
            {
                s.gop_gap.store(true, Ordering::Release);
                let mut smp = s.sampler.lock().unwrap_or_else(|p| p.into_inner());
                let at = smp.media_time_of(last);
                smp.refuse_at(at, "media.sampling.skip_delta_frames (key frames further apart than the sampling period)");
            }
            return false;
        }
        let Some(pts) = pts else { return true };
        if let Some(last) = self.last_key.replace(pts)
            && !self.keys_only
            && pts >= last
            && pts - last <= window
        {
            self.keys_only = true;
        }
        true
    }
}

/// Remember the demuxers decodebin plugs (see `demuxer_gave_up`).
fn watch_demuxers(pipeline: &gst::Pipeline, shared: &Arc<Shared>) {
    let s = shared.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_demuxer = element
            .factory()
            .is_some_and(|f| f.klass().contains("Demux"));
        if let Some(pad) = is_demuxer.then(|| element.static_pad("sink")).flatten() {
            s.demuxers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(pad);
        }
    });
}

/// A demuxer reading with random access runs its own loop; when that loop fails before it
/// finds any stream (a truncated or damaged index), GStreamer 1.22's decodebin swallows the
/// error it posts — it filters errors of elements it is still setting up — and the pipeline
/// would wait for data that never comes. A paused demuxer loop with nothing exposed is that.
fn demuxer_gave_up(s: &Shared) -> bool {
    !s.exposed.load(Ordering::Acquire)
        && s.demuxers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|pad| {
                // A loop paused after the demuxer found streams is an end of stream.
                pad.task_state() == gst::TaskState::Paused
                    && pad
                        .parent_element()
                        .is_some_and(|demuxer| demuxer.src_pads().is_empty())
            })
}

/// Record which frames are key frames, at the video decoder's input, and drop the frames
/// sampling does not need (`Gop`).
fn watch_keyframes(pipeline: &gst::Pipeline, shared: &Arc<Shared>) {
    let s = shared.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        let is_video_decoder = element.factory().is_some_and(|f| {
            let klass = f.klass();
            klass.contains("Decoder") && klass.contains("Video")
        });
        let Some(pad) = is_video_decoder
            .then(|| element.static_pad("sink"))
            .flatten()
        else {
            return;
        };
        let s = s.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let keyframe = !b.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let pts = b.pts().map(|t| t.nseconds());
            if keyframe
                && let Some(pts) = pts
                && let Ok(mut k) = s.keyframes.lock()
            {
                k.insert(pts);
            }
            let period = s.sampler.lock().unwrap_or_else(|p| p.into_inner()).period();
            let decode = s
                .gop
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(pts, keyframe, period, &s);
            if decode {
                gst::PadProbeReturn::Ok
            } else {
                // Consumed here (gstreamer-rs frees the buffer): on a sink pad GStreamer
                // 1.22 answers `Drop` by unreffing the buffer the binding already took
                // ("gst_mini_object_unref: assertion 'mini_object != NULL' failed").
                gst::PadProbeReturn::Handled
            }
        });
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
    if let Ok(par) = st.get::<gst::Fraction>("pixel-aspect-ratio")
        && let Ok(mut p) = s.par.lock()
    {
        p.get_or_insert((par.numer(), par.denom()));
    }
    if w * h > limits.max_pixels {
        s.failure
            .fail(Limit::too_many_pixels(w, h, limits.max_pixels));
        return false;
    }
    let in_flight = w * h * 4 * FRAMES_IN_FLIGHT;
    if in_flight > limits.max_memory {
        s.failure.fail(Limit::MaxMemory.exceeded(format!(
            "{w}×{h} frames need about {in_flight} bytes in flight, above {}",
            limits.max_memory
        )));
        return false;
    }
    true
}

/// Feed appsrc from GStreamer's own streaming thread when it asks for data.
///
/// A body held in memory is offered with random access (seekable, pull mode), as a file
/// would be: demuxers read the index wherever it is (MP4/MOV with `moov` at the end, of any
/// size) and know the duration before the first frame. Chunks arriving over time are a stream.
fn feed_appsrc(src: &gstreamer_app::AppSrc, feed: Feed, shared: &Arc<Shared>) {
    src.set_format(gst::Format::Bytes);
    src.set_max_bytes(4 * CHUNK as u64);
    // Push mode (a demuxer that cannot pull) reads blocks of this size.
    src.set_property("blocksize", CHUNK as u32);
    if let Feed::Bytes { data, .. } = &feed {
        src.set_stream_type(gstreamer_app::AppStreamType::RandomAccess);
        src.set_size(i64::try_from(data.len()).unwrap_or(i64::MAX));
    }
    let feed = Arc::new(Mutex::new(feed));
    let seek_feed = feed.clone();
    let s = shared.clone();
    src.set_callbacks(
        AppSrcCallbacks::builder()
            .seek_data(move |_, to| {
                let mut feed = seek_feed.lock().unwrap_or_else(|p| p.into_inner());
                match &mut *feed {
                    Feed::Bytes { data, offset } => match usize::try_from(to) {
                        Ok(to) if to <= data.len() => {
                            *offset = to;
                            true
                        }
                        _ => false,
                    },
                    Feed::Chunks { .. } => false,
                }
            })
            .need_data(move |src, length| {
                let mut feed = feed.lock().unwrap_or_else(|p| p.into_inner());
                let next = match &mut *feed {
                    // In pull mode `length` is what the reader asked for; 0 in push mode.
                    Feed::Bytes { data, offset } => (*offset < data.len()).then(|| {
                        let want = if length > 0 { length as usize } else { CHUNK };
                        let end = offset.saturating_add(want).min(data.len());
                        let chunk = data.slice(*offset..end);
                        *offset = end;
                        chunk
                    }),
                    Feed::Chunks { rx, first } => first.take().or_else(|| {
                        loop {
                            if s.failure.stopped() {
                                break None;
                            }
                            let got = rx.recv_timeout(Duration::from_millis(50));
                            if !matches!(got, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                                *s.input_at.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(Instant::now());
                            }
                            match got {
                                Ok(c) if c.is_empty() => continue,
                                Ok(c) => break Some(c),
                                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
                            }
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

/// Copy a (possibly row-padded) RGB frame into a tight buffer, reusing its allocation. Mapped
/// as a video frame: real strides are in the buffer's video meta when there is one, not in the
/// caps.
fn copy_rgb(
    buffer: &gst::BufferRef,
    info: &gstreamer_video::VideoInfo,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    use gstreamer_video::prelude::*;
    let frame = gstreamer_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| DecodeError::Internal("unreadable video buffer".into()))?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = usize::try_from(frame.plane_stride()[0])
        .map_err(|_| DecodeError::Internal("bottom-up video buffer".into()))?;
    let data = frame
        .plane_data(0)
        .map_err(|_| DecodeError::Internal("video buffer without a plane".into()))?;
    let row = w * 3;
    if stride < row || data.len() < stride * (h.saturating_sub(1)) + row {
        return Err(DecodeError::Internal(
            "video buffer smaller than its caps".into(),
        ));
    }
    out.clear();
    out.reserve(row * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(())
}

pub(super) fn map_error(err: &gst::message::Error) -> DecodeError {
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
