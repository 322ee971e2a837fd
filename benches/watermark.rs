//! Invisible watermark speed on a 1080p frame (a real photo resized to 1920×1080), and on a
//! real clip (re-encode with every frame marked; detection from the clip).
//! Floors (issue 6): embed ≤ 60 ms, detect ≤ 40 ms on this machine. Results: benches/RESULTS.md.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use likeguard::actions::watermark::ImageWatermarker;
use likeguard::actions::watermark::attack::Attack;
use likeguard::config::WatermarkConfig;

fn testdata(rel: &str) -> PathBuf {
    std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
        .join(rel)
}

fn frame_1080p() -> image::RgbImage {
    let path = testdata("images/faces/deepface/img26.jpg");
    image::open(path)
        .expect("testdata photo")
        .resize_to_fill(1920, 1080, image::imageops::FilterType::Triangle)
        .to_rgb8()
}

fn watermark(c: &mut Criterion) {
    let w = ImageWatermarker::new(&WatermarkConfig::default());
    let frame = frame_1080p();
    let mut marked = frame.clone();
    w.embed(&mut marked, 0xDEC1_5105).unwrap();
    let cropped = Attack::Crop(0.9).apply(&marked);
    assert_eq!(w.detect(&marked).payload, Some(0xDEC1_5105));
    assert_eq!(w.detect(&cropped).payload, Some(0xDEC1_5105));
    let mut jpeg = Vec::new();
    marked
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();

    let mut g = c.benchmark_group("watermark_1080p");
    g.bench_function("embed_pixels", |b| {
        b.iter_batched_ref(
            || frame.clone(),
            |img| w.embed(img, 0xDEC1_5105).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("detect_pixels", |b| b.iter(|| w.detect(&marked)));
    g.bench_function("detect_pixels_cropped_90", |b| {
        b.iter(|| w.detect(&cropped))
    });
    g.bench_function("embed_jpeg_file_roundtrip", |b| {
        b.iter(|| w.embed_file(&jpeg, 0xDEC1_5105).unwrap())
    });
    g.bench_function("detect_jpeg_file", |b| {
        b.iter(|| w.detect_file(&jpeg).unwrap())
    });
    g.finish();
}

/// A 7.2 s 480×480 H.264 + AAC clip (216 frames): the whole re-encode, and a clip read.
fn video(c: &mut Criterion) {
    let image = ImageWatermarker::new(&WatermarkConfig::default());
    let w =
        likeguard::actions::watermark::VideoWatermarker::new(&image, &Default::default()).unwrap();
    let clip: bytes::Bytes = std::fs::read(testdata("video/faces/liveportrait/driving_d18.mp4"))
        .expect("testdata clip")
        .into();
    let marked: bytes::Bytes = w.embed(clip.clone(), 7, None).unwrap().data.into();
    assert_eq!(w.detect(marked.clone()).unwrap().detection.payload, Some(7));
    let mut g = c.benchmark_group("watermark_clip_480p_216_frames");
    g.sample_size(10);
    g.bench_function("embed_reencode", |b| {
        b.iter(|| w.embed(clip.clone(), 7, None).unwrap())
    });
    g.bench_function("detect", |b| b.iter(|| w.detect(marked.clone()).unwrap()));
    g.finish();
}

criterion_group!(benches, watermark, video);
criterion_main!(benches);
