//! GStreamer decoding on real clips from the testdata and on files made here with GStreamer's
//! own encoders: formats, sampling, limits, damaged input, streaming in, and clean teardown.

mod support;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use likeguard::config::MediaConfig;
use likeguard::media::MediaKind;
use likeguard::media::{DecodeError, Decoder, Input, Limit, Output};
use support::testdata;

fn decoder(edit: impl FnOnce(&mut MediaConfig)) -> Decoder {
    let mut cfg = MediaConfig::default();
    edit(&mut cfg);
    Decoder::new(&cfg).expect("decoder")
}

/// Encode a test file with a gst-launch description ending in `filesink`.
fn make(dir: &Path, name: &str, launch: &str) -> PathBuf {
    gst::init().unwrap();
    let path = dir.join(name);
    let desc = format!("{launch} ! filesink location={}", path.display());
    let p = gst::parse::launch(&desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoder finished");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{desc}: {}", e.error());
    }
    p.set_state(gst::State::Null).unwrap();
    path
}

fn video_src(frames: u32, w: u32, h: u32) -> String {
    format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width={w},height={h},framerate=30/1"
    )
}

fn audio_src(seconds: u32) -> String {
    // 44.1 kHz stereo in, so resampling and downmixing are exercised.
    let buffers = seconds * 44_100 / 1024;
    format!(
        "audiotestsrc num-buffers={buffers} samplesperbuffer=1024 ! audio/x-raw,rate=44100,channels=2"
    )
}

fn read(p: &Path) -> Bytes {
    std::fs::read(p).unwrap().into()
}

#[test]
fn real_clips_decode_with_sampled_frames_scaled_in_aspect() {
    let d = decoder(|c| c.sampling.max_frames = 1000);
    let dir = testdata().join("video/faces");
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    clips.sort();
    assert!(clips.len() >= 5);
    for clip in clips {
        let (summary, frames, _) = d
            .decode_all(read(&clip))
            .unwrap_or_else(|e| panic!("{}: {e}", clip.display()));
        let (w, h) = (summary.width.unwrap(), summary.height.unwrap());
        let duration = summary.duration.unwrap().as_secs_f64();
        // 1 fps sampling, first frame included: one frame per started second.
        let expected = duration.ceil() as u64;
        assert!(
            summary.frames_sampled.abs_diff(expected) <= 1,
            "{}: {} frames for {duration:.2}s",
            clip.display(),
            summary.frames_sampled
        );
        assert!(summary.frames_decoded >= summary.frames_sampled);
        let f = &frames[0];
        assert_eq!(f.pts, Some(Duration::ZERO), "{}", clip.display());
        assert!(f.width <= 640 && f.height <= 640);
        assert_eq!(f.rgb.len(), (f.width * f.height * 3) as usize);
        let (pn, pd) = summary.pixel_aspect.unwrap_or((1, 1));
        let src_aspect = w as f64 * pn as f64 / (h as f64 * pd as f64);
        let out_aspect = f.width as f64 / f.height as f64;
        assert!(
            (src_aspect - out_aspect).abs() < 0.02,
            "{}: aspect {src_aspect} → {out_aspect}",
            clip.display()
        );
        for pair in frames.windows(2) {
            let gap = pair[1].pts.unwrap() - pair[0].pts.unwrap();
            assert!(
                gap >= Duration::from_millis(900),
                "{}: frames {gap:?} apart",
                clip.display()
            );
        }
    }
}

#[test]
fn video_formats_made_with_gstreamer_encoders() {
    let dir = tempfile::tempdir().unwrap();
    let d = decoder(|c| c.sampling.fps = 0.0); // every frame
    let src = video_src(30, 320, 240);
    let cases = [
        (
            "h264.mp4",
            format!("{src} ! x264enc ! mp4mux"),
            "video/x-h264",
        ),
        (
            "h264.mov",
            format!("{src} ! x264enc ! qtmux"),
            "video/x-h264",
        ),
        (
            "h265.mp4",
            format!("{src} ! x265enc ! h265parse ! mp4mux"),
            "video/x-h265",
        ),
        (
            "vp8.webm",
            format!("{src} ! vp8enc deadline=1 ! webmmux"),
            "video/x-vp8",
        ),
        (
            "vp9.webm",
            format!("{src} ! vp9enc deadline=1 ! webmmux"),
            "video/x-vp9",
        ),
        (
            "vp9.mkv",
            format!("{src} ! vp9enc deadline=1 ! matroskamux"),
            "video/x-vp9",
        ),
    ];
    for (name, launch, codec) in cases {
        let path = make(dir.path(), name, &launch);
        let (s, frames, _) = d
            .decode_all(read(&path))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.kind, Some(MediaKind::Video), "{name}");
        assert_eq!(s.codec.as_deref(), Some(codec), "{name}");
        assert_eq!((s.width, s.height), (Some(320), Some(240)), "{name}");
        assert_eq!(s.frames_decoded, 30, "{name}");
        assert_eq!(frames.len(), 30, "{name}");
        assert_eq!((frames[0].width, frames[0].height), (320, 240), "{name}");
        // Timestamps follow the 30 fps clock.
        assert_eq!(frames[15].pts, Some(Duration::from_millis(500)), "{name}");
        assert_eq!(frames[15].index, 15, "{name}");
    }
}

#[test]
fn avi_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(
        dir.path(),
        "a.avi",
        &format!("{} ! jpegenc ! avimux", video_src(10, 160, 120)),
    );
    let err = decoder(|_| {}).decode_all(read(&path)).unwrap_err();
    assert!(
        matches!(&err, DecodeError::Unsupported(m) if m.contains("AVI")),
        "{err}"
    );
}

#[test]
fn av1_in_matroska_decodes_with_debians_aom() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(
        dir.path(),
        "av1.mkv",
        &format!(
            "{} ! av1enc cpu-used=8 ! av1parse ! matroskamux",
            video_src(5, 160, 120)
        ),
    );
    let (s, frames, _) = decoder(|c| c.sampling.fps = 0.0)
        .decode_all(read(&path))
        .unwrap();
    assert_eq!(s.codec.as_deref(), Some("video/x-av1"));
    assert_eq!(frames.len(), 5);
}

#[test]
fn image_formats_including_animated_gif() {
    let dir = tempfile::tempdir().unwrap();
    let d = decoder(|_| {});
    let still = "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=400,height=300";
    for (name, launch) in [
        ("a.jpg", format!("{still} ! jpegenc")),
        ("a.png", format!("{still} ! pngenc")),
        ("a.webp", format!("{still} ! webpenc")),
        (
            "a.bmp",
            format!("{still} ! videoconvert ! video/x-raw,format=BGR ! avenc_bmp"),
        ),
        (
            "a.tiff",
            format!("{still} ! videoconvert ! video/x-raw,format=RGB ! avenc_tiff"),
        ),
    ] {
        let path = make(dir.path(), name, &launch);
        let (s, frames, _) = d
            .decode_all(read(&path))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.kind, Some(MediaKind::Image), "{name}");
        assert_eq!(frames.len(), 1, "{name}");
        assert_eq!((frames[0].width, frames[0].height), (400, 300), "{name}");
    }

    // A real photo larger than max_side is scaled down, aspect kept.
    let (_, frames, _) = d
        .decode_all(read(&testdata().join("images/faces/deepface/img1.jpg")))
        .unwrap();
    assert_eq!(frames[0].height, 640);
    assert!(frames[0].width.abs_diff(474) <= 1, "{}", frames[0].width); // 1382×1868

    // Animated GIF (no GIF encoder in GStreamer here: made with the image crate): 4 frames 100 ms apart.
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        for i in 0..4u8 {
            let img =
                image::RgbaImage::from_pixel(64, 48, image::Rgba([i * 60, 0, 255 - i * 60, 255]));
            let delay = image::Delay::from_numer_denom_ms(100, 1);
            enc.encode_frame(image::Frame::from_parts(img, 0, 0, delay))
                .unwrap();
        }
    }
    let (_, frames, _) = decoder(|c| c.sampling.fps = 0.0)
        .decode_all(gif.into())
        .unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[1].pts, Some(Duration::from_millis(100)));
}

#[test]
fn audio_formats_become_16khz_mono() {
    let dir = tempfile::tempdir().unwrap();
    let d = decoder(|_| {});
    let src = audio_src(2);
    for (name, launch) in [
        ("a.wav", format!("{src} ! wavenc")),
        (
            "a.mp3",
            format!("{src} ! audioconvert ! lamemp3enc ! id3v2mux"),
        ),
        (
            "a.m4a",
            format!("{src} ! audioconvert ! avenc_aac ! mp4mux"),
        ),
        (
            "a.ogg",
            format!("{src} ! audioconvert ! vorbisenc ! oggmux"),
        ),
        (
            "a.opus",
            format!("{src} ! audioconvert ! audioresample ! opusenc ! oggmux"),
        ),
        ("a.flac", format!("{src} ! audioconvert ! flacenc")),
    ] {
        let path = make(dir.path(), name, &launch);
        let (s, _, audio) = d
            .decode_all(read(&path))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.kind, Some(MediaKind::Audio), "{name}");
        let samples: usize = audio.iter().map(|a| a.samples.len()).sum();
        assert_eq!(samples as u64, s.audio_samples);
        // 2 s (minus the partial last buffer) at 16 kHz, give or take codec padding.
        let expected = (2 * 44_100 / 1024 * 1024) as f64 / 44_100.0 * 16_000.0;
        assert!(
            (samples as f64 - expected).abs() < 0.05 * expected,
            "{name}: {samples} samples, expected ≈{expected}"
        );
        assert!(
            audio
                .iter()
                .any(|a| a.samples.iter().any(|&x| x.unsigned_abs() > 1000)),
            "{name}: silent"
        );
    }
    // Real speech from the testdata.
    let speech = std::fs::read_dir(testdata().join("audio/librispeech_test-other"))
        .unwrap()
        .flat_map(|e| walk(&e.unwrap().path()))
        .find(|p| {
            p.extension()
                .is_some_and(|e| e == "flac" || e == "wav" || e == "mp3")
        })
        .expect("a librispeech clip");
    let (s, _, _) = d.decode_all(read(&speech)).unwrap();
    let secs = s.duration.unwrap().as_secs_f64();
    assert!(
        (s.audio_samples as f64 / 16_000.0 - secs).abs() < 0.1,
        "{secs}s vs {} samples",
        s.audio_samples
    );
}

fn walk(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flat_map(|e| walk(&e.unwrap().path()))
            .collect()
    } else {
        vec![p.to_path_buf()]
    }
}

#[test]
fn sampling_fps_keyframes_max_frames_and_early_stop() {
    let dir = tempfile::tempdir().unwrap();
    let clip = read(&make(
        dir.path(),
        "gop.mp4",
        &format!(
            "{} ! x264enc key-int-max=10 ! mp4mux",
            video_src(60, 320, 240)
        ),
    ));
    let pts = |d: &Decoder| -> Vec<u64> {
        let (_, frames, _) = d.decode_all(clip.clone()).unwrap();
        frames
            .iter()
            .map(|f| f.pts.unwrap().as_millis() as u64)
            .collect()
    };
    // 5 fps over 2 s of 30 fps video: every 6th frame.
    assert_eq!(
        pts(&decoder(|c| c.sampling.fps = 5.0)),
        vec![0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]
    );
    // Key frames only (every 10th frame), at any rate.
    let d = decoder(|c| {
        c.sampling.fps = 0.0;
        c.sampling.keyframes_only = true;
    });
    assert_eq!(pts(&d), vec![0, 333, 666, 1000, 1333, 1666]);
    // The frame budget is spread over the stated duration: 4 frames cover all 2 s.
    assert_eq!(
        pts(&decoder(|c| {
            c.sampling.fps = 5.0;
            c.sampling.max_frames = 4;
        })),
        vec![0, 666, 1333]
    );
    // Every frame (fps 0) cannot be spread: past the budget the decode says it is incomplete.
    let (s, frames, _) = decoder(|c| {
        c.sampling.fps = 0.0;
        c.sampling.max_frames = 3;
    })
    .decode_all(clip.clone())
    .unwrap();
    assert_eq!((frames.len(), s.stopped_early), (3, false));
    let incomplete = s.incomplete.expect("reported incomplete");
    assert_eq!(incomplete.limit, "media.sampling.max_frames");
    assert_eq!(incomplete.covered.as_millis(), 100);
    assert_eq!(incomplete.duration.map(|d| d.as_millis()), Some(2000));
    // The caller decides after two frames.
    let d = decoder(|c| c.sampling.fps = 0.0);
    let mut seen = 0;
    let s = d
        .decode(Input::Bytes(clip.clone()), None, &mut |o| {
            if let Output::Frame(_) = o {
                seen += 1;
            }
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((seen, s.stopped_early), (2, true));
}

#[test]
fn chunks_streamed_in_give_the_same_result_as_a_whole_body() {
    let clip = read(&testdata().join("video/faces/face_recognition/short_hamilton_clip.mp4"));
    let d = decoder(|_| {});
    let (whole, _, _) = d.decode_all(clip.clone()).unwrap();
    let (tx, rx) = likeguard::media::feed::channel(8192);
    let producer = produce(clip.clone(), tx, 4096, |_| Duration::ZERO);
    let mut frames = 0;
    let streamed = d
        .decode(Input::Chunks(rx), None, &mut |o| {
            if let Output::Frame(_) = o {
                frames += 1;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(producer.join().unwrap(), Ok(clip.len()));
    assert_eq!(streamed.frames_sampled, whole.frames_sampled);
    assert_eq!(streamed.frames_decoded, whole.frames_decoded);
    assert_eq!(frames, whole.frames_sampled);
}

/// Sends `clip` in `chunk`-byte pieces as a proxy would (async, waiting for room), sleeping
/// `pause(i)` before piece `i`; how many bytes went in before the decode stopped reading, if it
/// did.
fn produce(
    clip: Bytes,
    tx: likeguard::media::feed::ChunkSender,
    chunk: usize,
    pause: impl Fn(usize) -> Duration + Send + 'static,
) -> std::thread::JoinHandle<Result<usize, usize>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (i, at) in (0..clip.len()).step_by(chunk).enumerate() {
                tokio::time::sleep(pause(i)).await;
                let end = (at + chunk).min(clip.len());
                if tx.send(clip.slice(at..end)).await.is_err() {
                    return Err(at);
                }
            }
            Ok(clip.len())
        })
    })
}

/// The face clip remuxed into Matroska (header first), so a decode can start on its first
/// bytes as an upload streams in. The folder holds the file for as long as it is kept.
fn streamable_clip() -> (tempfile::TempDir, Bytes) {
    let dir = tempfile::tempdir().unwrap();
    let mkv = dir.path().join("clip.mkv");
    support::clips::streamable(
        &testdata().join("video/faces/face_recognition/short_hamilton_clip.mp4"),
        &mkv,
    );
    let clip = read(&mkv);
    (dir, clip)
}

/// `max_wall` bounds the decode's own time: an input still arriving after `max_wall` is
/// fine as long as it keeps arriving; one that stalls for longer than `max_wall` fails.
#[test]
fn max_wall_counts_from_the_last_input_for_streamed_media() {
    let (_dir, clip) = streamable_clip();
    let chunks = clip.len().div_ceil(65536);
    let d = decoder(|c| c.limits.max_wall = Duration::from_millis(800));
    // ~10 chunks over ~2 s: longer than max_wall in all, never a gap as long.
    let (tx, rx) = likeguard::media::feed::channel(1 << 20);
    let step = Duration::from_millis(2000 / chunks as u64);
    let producer = produce(clip.clone(), tx, 65536, move |_| step);
    let start = std::time::Instant::now();
    let summary = d
        .decode(Input::Chunks(rx), None, &mut |_| ControlFlow::Continue(()))
        .expect("a steady upload longer than max_wall decodes");
    assert_eq!(producer.join().unwrap(), Ok(clip.len()));
    assert!(start.elapsed() > Duration::from_millis(1500));
    assert!(summary.frames_sampled > 0);
    // A stall of 2 s in the middle: the limit, naming it.
    let (tx, rx) = likeguard::media::feed::channel(1 << 20);
    let producer = produce(clip, tx, 65536, move |i| {
        if i == chunks / 2 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        }
    });
    let err = d
        .decode(Input::Chunks(rx), None, &mut |_| ControlFlow::Continue(()))
        .expect_err("a stalled input must hit max_wall");
    // The decode gave up during the stall: the rest may or may not have gone in.
    let _ = producer.join().unwrap();
    assert!(
        matches!(
            err,
            DecodeError::Limit {
                limit: Limit::MaxWall,
                ..
            }
        ),
        "{err}"
    );
}

/// A decode that decides early (the caller breaks off at the first frame) stops reading, and
/// the producer — the proxy streaming an upload — is told at once instead of waiting forever.
#[test]
fn a_decode_stopped_early_releases_the_producer() {
    let (_dir, clip) = streamable_clip();
    let d = decoder(|_| {});
    let (tx, rx) = likeguard::media::feed::channel(8192);
    let producer = produce(clip.clone(), tx, 4096, |_| Duration::ZERO);
    let summary = d
        .decode(Input::Chunks(rx), None, &mut |o| match o {
            Output::Frame(_) => ControlFlow::Break(()),
            Output::Audio(_) => ControlFlow::Continue(()),
        })
        .unwrap();
    assert_eq!(summary.frames_sampled, 1);
    let start = std::time::Instant::now();
    let sent = producer.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the producer waited {:?} on a decode that had stopped",
        start.elapsed()
    );
    let stopped_at = sent.expect_err("the decode read the whole clip although it had stopped");
    assert!(stopped_at < clip.len(), "{stopped_at}");
}

/// Phones and cameras write a key frame every second: the key frames alone cover the medium
/// at 1 fps, so with `skip_delta_frames` the frames between them are never decoded after the
/// first group (off by default: it trusts the stream's key-frame flags).
#[test]
fn with_a_key_frame_every_second_only_key_frames_are_decoded_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let clip = read(&make(
        dir.path(),
        "gop1s.mp4",
        &format!(
            "{} ! x264enc key-int-max=30 ! mp4mux",
            video_src(300, 320, 240)
        ),
    ));
    let (all, _, _) = decoder(|_| {}).decode_all(clip.clone()).unwrap();
    assert_eq!(all.frames_decoded, 300, "every frame by default");
    let (s, frames, _) = decoder(|c| c.sampling.skip_delta_frames = true)
        .decode_all(clip)
        .unwrap();
    let secs: Vec<u64> = frames
        .iter()
        .map(|f| f.pts.unwrap().as_millis() as u64)
        .collect();
    assert_eq!(secs, (0..10).map(|i| i * 1000).collect::<Vec<_>>());
    assert!(s.incomplete.is_none());
    // The first group in full (the second key frame tells the interval), then key frames.
    assert!(
        s.frames_decoded <= 31 + 9,
        "{} frames decoded",
        s.frames_decoded
    );
}

/// Cameras and phones write the index (`moov`) after the media data; in a body larger than
/// qtdemux's 10 MB push-mode look-ahead it used to be "corrupt". Held bodies are read with
/// random access, so the index is found wherever it is and the whole duration is known.
#[test]
fn a_40_mb_mp4_with_its_index_at_the_end_decodes_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clip = read(&make(
        dir.path(),
        "moov-at-end.mp4",
        "videotestsrc num-buffers=300 pattern=snow ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
         ! x264enc speed-preset=ultrafast bitrate=40000 key-int-max=60 ! mp4mux faststart=false",
    ));
    assert!(clip.len() > 38_000_000, "{} bytes", clip.len());
    let moov = clip.windows(4).rposition(|w| w == b"moov").unwrap();
    let mdat = clip.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(
        moov > mdat && moov > 10_000_000,
        "moov at {moov}, mdat at {mdat}"
    );
    let (s, frames, _) = decoder(|_| {}).decode_all(clip).unwrap();
    assert_eq!(s.frames_decoded, 300);
    assert_eq!(frames.len(), 10, "one a second over 10 s");
    assert!(s.incomplete.is_none());
    assert_eq!(s.duration.map(|d| d.as_secs()), Some(10));
}

fn limit_of(r: Result<impl std::fmt::Debug, DecodeError>) -> Limit {
    match r {
        Err(DecodeError::Limit { limit, .. }) => limit,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn every_limit_is_a_typed_error_naming_it() {
    let hd = read(&testdata().join("video/faces/facenet_pytorch/video.mp4")); // 1920×1080, 4.2 s
    let run = |d: Decoder| limit_of(d.decode_all(hd.clone()).map(|(s, _, _)| s));
    assert_eq!(
        run(decoder(|c| c.limits.max_pixels = 1_000_000)),
        Limit::MaxPixels
    );
    assert_eq!(
        run(decoder(|c| c.limits.max_decoded_frames = 10)),
        Limit::MaxDecodedFrames
    );
    assert_eq!(
        run(decoder(|c| c.limits.max_duration = Duration::from_secs(2))),
        Limit::MaxDuration
    );
    assert_eq!(
        run(decoder(|c| c.limits.max_wall = Duration::from_millis(1))),
        Limit::MaxWall
    );
    assert_eq!(
        run(decoder(|c| c.limits.max_memory = 16 * 1024 * 1024)),
        Limit::MaxMemory
    );
    let err = decoder(|c| c.limits.max_pixels = 1_000_000)
        .decode_all(hd.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("media.limits.max_pixels"), "{err}");

    // A decompression bomb: a tiny PNG that claims 20000×20000 pixels.
    let dir = tempfile::tempdir().unwrap();
    let bomb = make(
        dir.path(),
        "bomb.png",
        "videotestsrc num-buffers=1 pattern=black ! video/x-raw,width=8000,height=8000 ! pngenc compression-level=9",
    );
    let bytes = read(&bomb);
    assert!(bytes.len() < 1_000_000, "bomb is {} bytes", bytes.len());
    assert_eq!(
        limit_of(decoder(|_| {}).decode_all(bytes).map(|(s, _, _)| s)),
        Limit::MaxPixels
    );
}

#[test]
fn damaged_and_hostile_input_gives_typed_errors_never_a_panic_or_hang() {
    let d = decoder(|c| c.limits.max_wall = Duration::from_secs(10));
    assert!(matches!(
        d.decode_all(Bytes::new()),
        Err(DecodeError::Empty)
    ));
    assert!(matches!(
        d.decode_all(Bytes::from_static(b"just some text, not media")),
        Err(DecodeError::Unsupported(_))
    ));
    let sources = [
        "video/faces/face_recognition/short_hamilton_clip.mp4",
        "images/faces/deepface/img11.jpg",
        "images/faces/misc/skimage_astronaut.png",
        "audio/resemblyzer_interview/X2zqiX6yL3I.mp3",
    ];
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for rel in sources {
        let good = read(&testdata().join(rel));
        let mut variants: Vec<(String, Bytes)> = Vec::new();
        for frac in [0.05, 0.3, 0.6, 0.95] {
            let n = (good.len() as f64 * frac) as usize;
            variants.push((format!("{rel} truncated to {n}"), good.slice(..n)));
        }
        // Deterministic bit flips spread over the file.
        for seed in 0..4u64 {
            let mut bad = good.to_vec();
            let mut x = 0x2545F4914F6CDD1D ^ seed;
            for _ in 0..(bad.len() / 2000).max(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % bad.len();
                bad[i] ^= 1 << (x % 8);
            }
            variants.push((format!("{rel} bit-flipped #{seed}"), bad.into()));
        }
        // Same bytes behind a wrong header: the real type comes from the bytes.
        let mut wrong = b"RIFF\0\0\0\0WAVE".to_vec();
        wrong.extend_from_slice(&good[12..]);
        variants.push((format!("{rel} with a WAV header"), wrong.into()));
        for (what, bytes) in variants {
            let started = std::time::Instant::now();
            let outcome = match d.decode_all(bytes) {
                Ok(_) => "decoded".to_string(),
                Err(DecodeError::Corrupt(_)) => "corrupt".to_string(),
                Err(DecodeError::Unsupported(_)) => "unsupported".to_string(),
                Err(DecodeError::Empty) => "empty".to_string(),
                Err(e) => panic!("{what}: unexpected error {e}"),
            };
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what} took {:?}",
                started.elapsed()
            );
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    // Some damage must actually be detected (the test must be able to fail).
    assert!(
        outcomes.get("corrupt").copied().unwrap_or(0)
            + outcomes.get("unsupported").copied().unwrap_or(0)
            >= 4,
        "{outcomes:?}"
    );
}

#[test]
fn a_broken_pipeline_file_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["image.yaml", "video.yaml", "audio.yaml"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("video.yaml"),
        "kind: video\nlaunch: appsrc name=src ! nosuchelement ! appsink name=sink\n",
    )
    .unwrap();
    let cfg = MediaConfig {
        pipelines_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let err = Decoder::new(&cfg).err().expect("refused").to_string();
    assert!(
        err.contains("video.yaml") && err.contains("nosuchelement"),
        "{err}"
    );

    let cfg = MediaConfig {
        prefer_decoders: vec!["nvh264dec_not_here".into()],
        ..Default::default()
    };
    let err = Decoder::new(&cfg).err().expect("refused").to_string();
    assert!(err.contains("nvh264dec_not_here"), "{err}");
}
