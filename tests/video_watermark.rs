//! The video watermark on real clips: every frame marked while re-encoding through
//! pipelines/reencode.yaml (container, codec and audio kept), read back from the clip, after a
//! platform-style re-encode too; bad input refused; the CLI and the proxy's `watermark` action.

mod support;

use likeguard::actions::watermark::{ImageWatermarker, VideoWatermarker, payload_for};
use likeguard::config::{MediaConfig, WatermarkConfig};
use support::*;

const KEY: &str = "test-watermark-key";
/// 480×480, 7.2 s, H.264 + AAC in MP4.
const CLIP: &str = "video/faces/liveportrait/driving_d18.mp4";

fn watermarker(key: &str) -> VideoWatermarker {
    let image = ImageWatermarker::new(&WatermarkConfig {
        key: Some(key.into()),
        ..Default::default()
    });
    VideoWatermarker::new(&image, &MediaConfig::default()).unwrap()
}

/// Re-encodes with GStreamer's command-line tool, as a platform would after upload.
fn transcode(input: &[u8], encoder: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.mp4"), dir.path().join("out.mp4"));
    std::fs::write(&src, input).unwrap();
    let launch = format!(
        "filesrc location={} ! decodebin ! videoconvert ! {encoder} ! h264parse ! mp4mux ! filesink location={}",
        src.display(),
        dst.display()
    );
    let o = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(launch.split(' '))
        .output()
        .expect("gst-launch-1.0 (scripts/setup-system installs gstreamer1.0-tools)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(dst).unwrap()
}

#[test]
fn every_frame_is_marked_and_the_clip_reads_back_after_reencoding() {
    let w = watermarker(KEY);
    let original = media(CLIP);
    let unmarked = w.detect(original.clone().into()).unwrap();
    assert!(!unmarked.detection.marked, "the source reads as marked");

    let out = w.embed(original.clone().into(), 0x0DEC_1DED, None).unwrap();
    assert_eq!(out.container, "mp4");
    assert_eq!(out.codec, "video/x-h264");
    assert!(out.codec_kept);
    assert_eq!(out.audio_streams, 1, "the AAC track is copied");
    assert_eq!(out.frames, 216);
    assert_eq!(likeguard::media::sniff(&out.data).unwrap().format, "mp4");

    let read = w.detect(out.data.clone().into()).unwrap();
    assert_eq!(read.detection.payload, Some(0x0DEC_1DED), "{read:?}");
    assert!(read.frames >= 20, "frames summed: {}", read.frames);
    assert!(read.detection.confidence > 0.99);

    // A platform re-encode at lower quality keeps the mark.
    let again = transcode(
        &out.data,
        "x264enc speed-preset=faster pass=qual quantizer=28",
    );
    let read = w.detect(again.into()).unwrap();
    assert_eq!(
        read.detection.payload,
        Some(0x0DEC_1DED),
        "after CRF 28: {read:?}"
    );
    // Another key reads nothing.
    assert!(
        !watermarker("another-key")
            .detect(out.data.into())
            .unwrap()
            .detection
            .marked
    );
}

#[test]
fn bad_videos_are_refused_with_a_reason() {
    let w = watermarker(KEY);
    let clip = media(CLIP);
    // Truncated: the container's index is cut off.
    let cut = clip[..clip.len() / 3].to_vec();
    let started = std::time::Instant::now();
    assert!(w.embed(cut.into(), 1, None).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Not a video.
    let e = w
        .embed(media("images/faces/deepface/img11.jpg").into(), 1, None)
        .unwrap_err();
    assert!(e.to_string().contains("not a video"), "{e}");
    // Garbage after a real MP4 header.
    let mut junk = clip[..4096].to_vec();
    junk.extend(std::iter::repeat_n(0xA5u8, 200_000));
    assert!(w.embed(junk.into(), 1, None).is_err());
}

#[test]
fn cli_marks_and_reads_a_clip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("marked.mp4");
    let src = testdata().join(CLIP);
    let run = |args: &[&str]| watermark_cli(KEY, args);
    let said = run(&[
        "watermark",
        "embed",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--payload",
        "c0ffee01",
    ]);
    assert!(said.contains("216 frames"), "{said}");
    let lines = run(&["watermark", "detect", "--json", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(v["marked"], true);
    assert_eq!(v["payload"], "c0ffee01");
    assert!(v["frames"].as_u64().unwrap() >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_decision_on_a_generated_video_reaches_the_client_marked() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "watermark: {{key: {KEY}}}\ninference: {{enabled: false}}\nroutes:\n  - name: all\n    upstream: {}\n    inspect: {{direction: response, max_body: 16MiB, time_budget: 60s, on_failure: fail_closed}}\n",
        up.url()
    ));
    let clip = media(CLIP);
    lg.register(clip.clone(), "watermark").await;
    up.serve(
        "/v1/videos/1",
        Canned::ok("video/mp4", clip.clone(), Some(4)),
    );
    let (decision, body) = lg
        .get_decided("/v1/videos/1", "video/mp4", "watermark")
        .await;
    let read = watermarker(KEY).detect(body).unwrap();
    assert_eq!(read.detection.payload, Some(payload_for(&decision)));
}
