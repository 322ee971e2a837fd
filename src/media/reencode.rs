//! Re-encoding a video through `pipelines/reencode.yaml`, handing each decoded frame's luminance
//! plane to the caller to change in place (the watermark action marks it there). Audio is copied
//! without re-encoding; container and codec are kept where the pipeline file has a muxer and an
//! encoder for them. Blocking: run it on a blocking thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video::prelude::*;
use serde::Deserialize;

use super::run::{FirstFailure, Teardown};
use super::{DecodeError, Limit, MediaError};
use crate::config::Limits;
use crate::media::{MediaKind, sniff};

const BUILTIN: &str = include_str!("../../pipelines/reencode.yaml");
const FILE: &str = "reencode.yaml";
/// Slices the input is pushed in (zero-copy views of the body).
const CHUNK: usize = 1 << 20;
/// How often the wait loop checks failures and the deadline.
const TICK: gst::ClockTime = gst::ClockTime::from_mseconds(20);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    kind: String,
    video: String,
    encoders: BTreeMap<String, String>,
    muxers: BTreeMap<String, String>,
}

/// One frame's luminance (the Y plane of I420), to change in place.
pub struct LumaFrame<'a> {
    pub data: &'a mut [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    /// Position among decoded frames (0-based).
    pub index: u64,
    /// The two half-resolution chroma planes (I420), for edits that change colour.
    pub chroma: Option<Chroma<'a>>,
}

/// Cb and Cr planes of an I420 frame, sharing one stride.
pub struct Chroma<'a> {
    pub u: &'a mut [u8],
    pub v: &'a mut [u8],
    pub stride: usize,
}

/// Changes one frame; an `Err` stops the re-encode with that reason.
pub type FrameEditor = Box<dyn FnMut(LumaFrame<'_>) -> Result<(), String> + Send>;

/// What a re-encode produced.
#[derive(Debug)]
pub struct Reencoded {
    pub data: Vec<u8>,
    /// Container (sniffed), e.g. `mp4`.
    pub container: &'static str,
    /// The source's video codec as GStreamer names it, e.g. `video/x-h264`.
    pub codec: String,
    /// Whether the codec was kept (false: the `default` encoder replaced it).
    pub codec_kept: bool,
    pub frames: u64,
    /// Audio streams copied as they were.
    pub audio_streams: u32,
}

/// Built once (the pipeline file loaded and every description checked), used per request.
pub struct Reencoder {
    spec: Spec,
    limits: Limits,
}

impl Reencoder {
    /// Loads `reencode.yaml` from `dir` (or the built-in copy) and checks that each description
    /// parses with the elements installed here.
    pub fn new(dir: Option<&Path>, limits: &Limits) -> Result<Self, MediaError> {
        gst::init().map_err(|e| MediaError::Init(e.to_string()))?;
        let (text, source) = match dir {
            Some(d) => {
                let p = d.join(FILE);
                let text = std::fs::read_to_string(&p).map_err(|e| MediaError::Pipeline {
                    file: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                (text, p.display().to_string())
            }
            None => (BUILTIN.to_string(), format!("(built-in) pipelines/{FILE}")),
        };
        let bad = |reason: String| MediaError::Pipeline {
            file: source.clone(),
            reason,
        };
        let spec: Spec = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if spec.kind != "reencode" {
            return Err(bad(format!(
                "kind is {:?}, expected \"reencode\"",
                spec.kind
            )));
        }
        if !spec.encoders.contains_key("default") {
            return Err(bad("encoders: needs a `default` entry".into()));
        }
        let video = gst::parse::bin_from_description(&spec.video, true)
            .map_err(|e| bad(format!("video: {e}")))?;
        if video.by_name("mark").is_none() {
            return Err(bad("video: no element named \"mark\"".into()));
        }
        for (codec, desc) in &spec.encoders {
            gst::parse::bin_from_description(desc, true)
                .map_err(|e| bad(format!("encoders.{codec}: {e}")))?;
        }
        for (container, desc) in &spec.muxers {
            gst::parse::launch(desc).map_err(|e| bad(format!("muxers.{container}: {e}")))?;
        }
        Ok(Self {
            spec,
            limits: limits.clone(),
        })
    }

    /// Re-encodes `data`, calling `editor` on every decoded frame. Bounded by `media.limits`
    /// (wall time, frame size, frame count, duration) and by an output of at most four times
    /// the input plus 64 MiB.
    pub fn reencode(&self, data: Bytes, editor: FrameEditor) -> Result<Reencoded, DecodeError> {
        self.run(data, editor, true)
    }

    /// Decodes every frame of the video stream and hands it to `editor` (changes go nowhere):
    /// frames in their stored geometry, as they were marked, whatever the pixel aspect ratio.
    /// Returns the number of frames. Same limits as `reencode`.
    pub fn read(&self, data: Bytes, editor: FrameEditor) -> Result<u64, DecodeError> {
        self.run(data, editor, false).map(|r| r.frames)
    }

    fn run(&self, data: Bytes, editor: FrameEditor, write: bool) -> Result<Reencoded, DecodeError> {
        let started = Instant::now();
        let sniffed = sniff(&data[..data.len().min(4096)])
            .filter(|m| m.kind == MediaKind::Video)
            .ok_or_else(|| DecodeError::Unsupported("not a video container".into()))?;
        let internal = |e: String| DecodeError::Internal(e);
        let mux = match write {
            true => {
                let muxer = self.spec.muxers.get(sniffed.format).ok_or_else(|| {
                    DecodeError::Unsupported(format!(
                        "re-encoding {} videos (no muxer for it in {FILE})",
                        sniffed.format
                    ))
                })?;
                Some(gst::parse::launch(muxer).map_err(|e| internal(e.to_string()))?)
            }
            false => None,
        };
        let pipeline = gst::Pipeline::new();
        let src = gstreamer_app::AppSrc::builder()
            .format(gst::Format::Bytes)
            .build();
        let parse = gst::ElementFactory::make("parsebin")
            .build()
            .map_err(|e| internal(e.to_string()))?;
        pipeline
            .add_many([src.upcast_ref(), &parse])
            .map_err(|e| internal(e.to_string()))?;
        src.link(&parse).map_err(|e| internal(e.to_string()))?;

        let shared = Arc::new(Shared {
            editor: Mutex::new(Some(editor)),
            ..Shared::default()
        });
        let _teardown = Teardown {
            pipeline: pipeline.clone(),
            failure: shared.failure.clone(),
        };
        if let Some(mux) = &mux {
            let sink = gstreamer_app::AppSink::builder().sync(false).build();
            pipeline
                .add_many([mux, sink.upcast_ref()])
                .map_err(|e| internal(e.to_string()))?;
            mux.link(&sink).map_err(|e| internal(e.to_string()))?;
            collect_output(&sink, &shared, data.len().saturating_mul(4) + (64 << 20));
        }
        self.link_streams(&pipeline, &parse, mux.as_ref(), &shared);

        for start in (0..data.len()).step_by(CHUNK) {
            let chunk = data.slice(start..(start + CHUNK).min(data.len()));
            let _ = src.push_buffer(gst::Buffer::from_slice(chunk));
        }
        let _ = src.end_of_stream();

        if pipeline.set_state(gst::State::Playing).is_err() {
            return Err(shared
                .failure
                .take()
                .unwrap_or_else(|| internal("the re-encode pipeline did not start".into())));
        }
        let bus = pipeline
            .bus()
            .ok_or_else(|| internal("pipeline has no bus".into()))?;
        let deadline = started + self.limits.max_wall;
        loop {
            if let Some(e) = shared.failure.take() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(Limit::MaxWall.exceeded(format!(
                    "the video pipeline took longer than {:?}",
                    self.limits.max_wall
                )));
            }
            let Some(msg) =
                bus.timed_pop_filtered(TICK, &[gst::MessageType::Eos, gst::MessageType::Error])
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(err) => {
                    return Err(shared
                        .failure
                        .take()
                        .unwrap_or_else(|| super::decode::map_error(err)));
                }
                _ => break,
            }
        }
        if let Some(e) = shared.failure.take() {
            return Err(e);
        }
        let frames = shared.frames.load(Ordering::Acquire);
        if frames == 0 {
            return Err(DecodeError::Unsupported(
                "no decodable video stream in the container".into(),
            ));
        }
        let codec = shared.codec.lock().map(|c| c.clone()).unwrap_or_default();
        Ok(Reencoded {
            data: std::mem::take(&mut *shared.output.lock().unwrap_or_else(|p| p.into_inner())),
            container: sniffed.format,
            codec_kept: self.spec.encoders.contains_key(&codec),
            codec,
            frames,
            audio_streams: shared.audio.load(Ordering::Acquire) as u32,
        })
    }

    /// Links each stream parsebin finds: the (single) video stream through decode → edit →
    /// encode, audio straight into the muxer, anything else into a fakesink.
    fn link_streams(
        &self,
        pipeline: &gst::Pipeline,
        parse: &gst::Element,
        mux: Option<&gst::Element>,
        shared: &Arc<Shared>,
    ) {
        let weak = pipeline.downgrade();
        let mux = mux.cloned();
        let video_desc = self.spec.video.clone();
        let encoders = self.spec.encoders.clone();
        let limits = self.limits.clone();
        let s = shared.clone();
        parse.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps
                .structure(0)
                .map(|st| st.name().to_string())
                .unwrap_or_default();
            let linked = if name.starts_with("video/") {
                if s.video.swap(true, Ordering::AcqRel) {
                    Err(DecodeError::Unsupported(
                        "videos with more than one video stream".into(),
                    ))
                } else {
                    *s.codec.lock().unwrap_or_else(|p| p.into_inner()) = name.clone();
                    let encoder = encoders.get(&name).unwrap_or(&encoders["default"]);
                    link_video(
                        &pipeline,
                        pad,
                        mux.as_ref(),
                        &video_desc,
                        encoder,
                        &limits,
                        &s,
                    )
                }
            } else if name.starts_with("audio/") {
                s.audio.fetch_add(1, Ordering::AcqRel);
                match &mux {
                    Some(mux) => link_to_mux(&pipeline, pad, mux, "audio_%u"),
                    None => link_fakesink(&pipeline, pad, true),
                }
            } else {
                link_fakesink(&pipeline, pad, false)
            };
            if let Err(e) = linked {
                s.failure.fail(e);
            }
        });
    }
}

#[derive(Default)]
struct Shared {
    editor: Mutex<Option<FrameEditor>>,
    failure: Arc<FirstFailure>,
    output: Mutex<Vec<u8>>,
    codec: Mutex<String>,
    video: AtomicBool,
    audio: AtomicU64,
    frames: AtomicU64,
}

fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mux: Option<&gst::Element>,
    video: &str,
    encoder: &str,
    limits: &Limits,
    shared: &Arc<Shared>,
) -> Result<(), DecodeError> {
    let internal = |e: String| DecodeError::Internal(e);
    // decodebin's output pad appears later: it cannot sit inside a parsed bin (the bin would
    // ghost the wrong sink pad), so it is made here and linked when it exposes its pad.
    let decode = gst::ElementFactory::make("decodebin")
        .build()
        .map_err(|e| internal(e.to_string()))?;
    // The demuxer must never wait on the muxer: it interleaves by time and can hold the video
    // pad until audio catches up, while audio can only come from the demuxer (a deadlock on
    // poorly interleaved files). Both streams get an unbounded queue (bounded by the input,
    // which is in memory already).
    let queue = unbounded_queue()?;
    // Reading only: frames end in a fakesink, nothing is encoded.
    let tail = match mux {
        Some(_) => encoder.to_string(),
        None => "fakesink sync=false async=false".to_string(),
    };
    let bin = gst::parse::bin_from_description(&format!("{video} ! {tail}"), true)
        .map_err(|e| internal(e.to_string()))?;
    let mark = bin
        .by_name("mark")
        .and_then(|m| m.static_pad("src"))
        .ok_or_else(|| internal("no `mark` element in the video branch".into()))?;
    watch_frames(&mark, limits, shared);
    pipeline
        .add_many([&queue, &decode, bin.upcast_ref()])
        .map_err(|e| internal(e.to_string()))?;
    queue.link(&decode).map_err(|e| internal(e.to_string()))?;
    if let Some(mux) = mux {
        link_src_to_mux(&bin, mux, "video_%u")?;
    }
    let branch = bin.clone();
    let s = shared.clone();
    decode.connect_pad_added(move |_, pad| {
        // Caps may not be set yet when the pad appears: ask what it can produce.
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|st| st.name().starts_with("video/"));
        let sink = branch.static_pad("sink");
        match sink {
            Some(sink) if is_video && !sink.is_linked() => {
                if let Err(e) = pad.link(&sink) {
                    s.failure
                        .fail(DecodeError::Internal(format!("linking the decoder: {e:?}")));
                }
            }
            _ => {}
        }
    });
    let _ = bin.sync_state_with_parent();
    let _ = decode.sync_state_with_parent();
    let _ = queue.sync_state_with_parent();
    let sink = queue
        .static_pad("sink")
        .ok_or_else(|| internal("queue has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| internal(format!("linking the video stream: {e:?}")))?;
    Ok(())
}

fn link_to_mux(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mux: &gst::Element,
    template: &str,
) -> Result<(), DecodeError> {
    // Unbounded: the encoder holds back dozens of frames (look-ahead) before the muxer sees
    // video, and the demuxer must not block on a full audio queue meanwhile.
    let queue = unbounded_queue()?;
    pipeline
        .add(&queue)
        .map_err(|e| DecodeError::Internal(e.to_string()))?;
    let _ = queue.sync_state_with_parent();
    let sink = pad_of(&queue, "sink")?;
    pad.link(&sink)
        .map_err(|e| DecodeError::Internal(format!("linking a stream: {e:?}")))?;
    link_src_to_mux(&queue, mux, template)
}

fn link_src_to_mux(
    from: &impl IsA<gst::Element>,
    mux: &gst::Element,
    template: &str,
) -> Result<(), DecodeError> {
    let src = from
        .static_pad("src")
        .ok_or_else(|| DecodeError::Internal("branch has no src pad".into()))?;
    let caps = src.query_caps(None);
    let what = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let target = mux.request_pad_simple(template).ok_or_else(|| {
        DecodeError::Unsupported(format!(
            "this container cannot hold another {template} stream"
        ))
    })?;
    src.link(&target).map_err(|_| {
        DecodeError::Unsupported(format!(
            "{what} in this container (the muxer refuses it; audio is copied, never re-encoded)"
        ))
    })?;
    Ok(())
}

/// Discards a stream; `queued` puts an unbounded queue in front, so that the demuxer never
/// waits on this branch.
fn link_fakesink(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    queued: bool,
) -> Result<(), DecodeError> {
    // Not async: a discarded stream must not hold up preroll (the demuxer would block on it
    // while the other sinks wait for data from that same demuxer).
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| DecodeError::Internal(e.to_string()))?;
    pipeline
        .add(&sink)
        .map_err(|e| DecodeError::Internal(e.to_string()))?;
    let _ = sink.sync_state_with_parent();
    let target = match queued {
        true => {
            let queue = unbounded_queue()?;
            pipeline
                .add(&queue)
                .map_err(|e| DecodeError::Internal(e.to_string()))?;
            let _ = queue.sync_state_with_parent();
            queue
                .link(&sink)
                .map_err(|e| DecodeError::Internal(e.to_string()))?;
            pad_of(&queue, "sink")?
        }
        false => pad_of(&sink, "sink")?,
    };
    pad.link(&target)
        .map_err(|e| DecodeError::Internal(format!("linking a stream: {e:?}")))?;
    Ok(())
}

/// The frame editor runs here, on GStreamer's streaming thread, as each frame leaves `mark`.
fn watch_frames(pad: &gst::Pad, limits: &Limits, shared: &Arc<Shared>) {
    let limits = limits.clone();
    let s = shared.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if s.failure.stopped() {
            return gst::PadProbeReturn::Drop;
        }
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        match edit(pad, buffer, &limits, &s) {
            Ok(()) => gst::PadProbeReturn::Ok,
            Err(e) => {
                s.failure.fail(e);
                gst::PadProbeReturn::Drop
            }
        }
    });
}

fn edit(
    pad: &gst::Pad,
    buffer: &mut gst::Buffer,
    limits: &Limits,
    s: &Shared,
) -> Result<(), DecodeError> {
    let index = s.frames.fetch_add(1, Ordering::AcqRel);
    if index >= limits.max_decoded_frames {
        return Err(Limit::MaxDecodedFrames
            .exceeded(format!("more than {} frames", limits.max_decoded_frames)));
    }
    if buffer
        .pts()
        .is_some_and(|t| Duration::from_nanos(t.nseconds()) > limits.max_duration)
    {
        return Err(
            Limit::MaxDuration.exceeded(format!("video runs past {:?}", limits.max_duration))
        );
    }
    let caps = pad
        .current_caps()
        .ok_or_else(|| DecodeError::Internal("frame without caps".into()))?;
    let info = gstreamer_video::VideoInfo::from_caps(&caps)
        .map_err(|_| DecodeError::Internal("mark caps are not raw video".into()))?;
    let (w, h) = (info.width(), info.height());
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(Limit::too_many_pixels(
            w.into(),
            h.into(),
            limits.max_pixels,
        ));
    }
    // Map as a video frame: decoders pad rows, and the real strides and offsets are in the
    // buffer's video meta, not in the caps.
    let mut frame =
        gstreamer_video::VideoFrameRef::from_buffer_ref_writable(buffer.make_mut(), &info)
            .map_err(|_| DecodeError::Internal("frame not writable".into()))?;
    let strides = frame.plane_stride();
    let (stride, chroma_stride) = match (
        usize::try_from(strides[0]),
        strides.get(1).map(|s| usize::try_from(*s)),
    ) {
        (Ok(s), Some(Ok(c))) => (s, c),
        _ => return Err(DecodeError::Unsupported("bottom-up frames".into())),
    };
    let [data, u, v, _] = frame.planes_data_mut();
    if stride < w as usize || data.len() < stride * (h as usize - 1) + w as usize {
        return Err(DecodeError::Internal("frame smaller than its caps".into()));
    }
    let mut editor = s.editor.lock().unwrap_or_else(|p| p.into_inner());
    let editor = editor
        .as_mut()
        .ok_or_else(|| DecodeError::Internal("no frame editor".into()))?;
    editor(LumaFrame {
        data,
        width: w,
        height: h,
        stride,
        index,
        chroma: Some(Chroma {
            u,
            v,
            stride: chroma_stride,
        }),
    })
    .map_err(DecodeError::Unsupported)
}

fn collect_output(sink: &gstreamer_app::AppSink, shared: &Arc<Shared>, max: usize) {
    let s = shared.clone();
    sink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut out = s.output.lock().unwrap_or_else(|p| p.into_inner());
                if out.len() + map.len() > max {
                    drop(out);
                    s.failure.fail(
                        Limit::MaxMemory
                            .exceeded(format!("re-encoded output grew past {max} bytes")),
                    );
                    return Err(gst::FlowError::Error);
                }
                out.extend_from_slice(&map);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// A queue that never blocks its producer; what it holds is bounded by the in-memory input.
fn unbounded_queue() -> Result<gst::Element, DecodeError> {
    gst::ElementFactory::make("queue")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 0u64)
        .build()
        .map_err(|e| DecodeError::Internal(e.to_string()))
}

/// An element's always-present pad, as an error rather than a panic if it is missing.
fn pad_of(element: &impl IsA<gst::Element>, name: &str) -> Result<gst::Pad, DecodeError> {
    element.static_pad(name).ok_or_else(|| {
        DecodeError::Internal(format!("{} has no {name} pad", element.as_ref().name()))
    })
}
