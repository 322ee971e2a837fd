//! Decoding costs (issue 3). Results and machine: benches/RESULTS.md.
//! - one 1024×768 JPEG end to end: built-in still path vs the GStreamer image pipeline;
//! - building and tearing down a pipeline (the per-decode set-up cost);
//! - 1080p H.264 (300 frames, 8 Mb/s) end to end, every frame and 1 fps sampling, side by side
//!   with `gst-launch-1.0` on the same file (decode only, and decode + the same scale/convert).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gstreamer as gst;
use gstreamer::prelude::*;
use likeguard::config::{MediaConfig, StillImages};
use likeguard::media::{Decoder, Templates};

fn testdata(rel: &str) -> PathBuf {
    std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
        .join(rel)
}

fn work_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-media");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A real photo resized to exactly 1024×768, JPEG quality 90.
fn jpeg_1024() -> Bytes {
    let img = image::open(testdata("images/faces/deepface/img13.jpg")).unwrap();
    let img = img.resize_exact(1024, 768, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    img.to_rgb8().write_with_encoder(enc).unwrap();
    out.into_inner().into()
}

/// 300 frames of 1920×1080 H.264 at 8 Mb/s in MP4, made once and kept.
fn h264_1080p() -> PathBuf {
    let path = work_dir().join("1080p-h264-300.mp4");
    if !path.exists() {
        let status = Command::new("gst-launch-1.0")
            .args(["-q", "videotestsrc", "num-buffers=300", "pattern=ball", "!"])
            .args([
                "video/x-raw,format=I420,width=1920,height=1080,framerate=30/1",
                "!",
            ])
            .args([
                "x264enc",
                "bitrate=8000",
                "speed-preset=veryfast",
                "!",
                "mp4mux",
                "!",
            ])
            .arg("filesink")
            .arg(format!("location={}", path.display()))
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

fn decoder(edit: impl FnOnce(&mut MediaConfig)) -> Decoder {
    let mut cfg = MediaConfig::default();
    edit(&mut cfg);
    Decoder::new(&cfg).unwrap()
}

fn still(c: &mut Criterion) {
    let jpeg = jpeg_1024();
    let mut g = c.benchmark_group("jpeg_1024x768");
    let builtin = decoder(|c| c.still_images = StillImages::Builtin);
    g.bench_function("builtin", |b| {
        b.iter(|| builtin.decode_all(jpeg.clone()).unwrap())
    });
    let gst_path = decoder(|c| c.still_images = StillImages::Gstreamer);
    g.bench_function("gstreamer_pipeline", |b| {
        b.iter(|| gst_path.decode_all(jpeg.clone()).unwrap())
    });
    g.finish();

    gst::init().unwrap();
    let templates = Templates::load(None, &[("max_side", "640".into())]).unwrap();
    c.bench_function("pipeline_build_teardown/video", |b| {
        b.iter(|| {
            let built = templates.video.build().unwrap();
            built.pipeline.set_state(gst::State::Null).unwrap();
        })
    });
}

fn gst_launch(args: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("gst-launch-1.0 -q {args}")])
        .status()
        .unwrap();
    assert!(status.success());
}

fn video(c: &mut Criterion) {
    let path = h264_1080p();
    let data: Bytes = std::fs::read(&path).unwrap().into();
    let mut g = c.benchmark_group("h264_1080p_300_frames");
    g.sample_size(10).measurement_time(Duration::from_secs(40));
    g.throughput(Throughput::Elements(300));
    let every = decoder(|c| {
        c.sampling.fps = 0.0;
        c.sampling.max_frames = 1000;
    });
    g.bench_function("likeguard_every_frame_rgb640", |b| {
        b.iter(|| {
            assert_eq!(
                every.decode_all(data.clone()).unwrap().0.frames_sampled,
                300
            )
        })
    });
    let sampled = decoder(|c| c.sampling.fps = 1.0);
    g.bench_function("likeguard_1fps_rgb640", |b| {
        b.iter(|| sampled.decode_all(data.clone()).unwrap())
    });
    let loc = path.display().to_string();
    g.bench_function("gst_launch_decode_only", |b| {
        b.iter(|| gst_launch(&format!("filesrc location={loc} ! decodebin ! fakesink")))
    });
    g.bench_function("gst_launch_rgb640", |b| {
        b.iter(|| {
            gst_launch(&format!(
                "filesrc location={loc} ! decodebin ! videoscale ! videoconvert ! \
                 video/x-raw,format=RGB,pixel-aspect-ratio=1/1,width=[1,640],height=[1,640] ! fakesink"
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, still, video);
criterion_main!(benches);
