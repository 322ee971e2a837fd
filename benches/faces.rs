//! Face inference hot paths on real photos, CPU execution provider, 2 intra-op threads.
//! Results and the machine they ran on: benches/RESULTS.md.
//! Needs the models: `likeguard models fetch` (or `.ci/run`) first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use likeguard::config::InferenceConfig;
use likeguard::inference::{FaceEngine, Image};

fn testdata(rel: &str) -> PathBuf {
    std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
        .join(rel)
}

/// A real one-face photo as a 640×480 RGB frame.
fn frame_640x480() -> Vec<u8> {
    let img = image::open(testdata("images/faces/deepface/img1.jpg")).expect("testdata photo");
    img.resize_to_fill(640, 480, image::imageops::FilterType::Triangle)
        .to_rgb8()
        .into_raw()
}

fn engine(max_batch: usize) -> FaceEngine {
    let mut config = InferenceConfig {
        models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
        ..Default::default()
    };
    config.batch.max_batch = max_batch;
    FaceEngine::load(&config).expect("models (run `likeguard models fetch`)")
}

fn single_frame(c: &mut Criterion) {
    let engine = engine(8);
    let rgb = frame_640x480();
    let image = Image::new(&rgb, 640, 480).unwrap();
    let faces = engine.detect(&image).unwrap();
    assert_eq!(faces.len(), 1, "the bench photo shows one face");
    let mut g = c.benchmark_group("faces");
    g.bench_function("detect_640x480", |b| {
        b.iter(|| engine.detect(&image).unwrap())
    });
    g.bench_function("embed_1_face", |b| {
        b.iter(|| engine.embed(&image, &faces[..1]).unwrap())
    });
    g.bench_function("detect_align_embed_640x480", |b| {
        b.iter(|| engine.analyze(&image).unwrap())
    });
    g.finish();
}

/// 8 threads embedding at once, through batches of up to 8 vs one at a time.
fn batching(c: &mut Criterion) {
    let rgb = Arc::new(frame_640x480());
    let mut g = c.benchmark_group("embed_8_concurrent");
    g.measurement_time(Duration::from_secs(8));
    for max_batch in [1, 8] {
        let engine = Arc::new(engine(max_batch));
        let image = Image::new(&rgb, 640, 480).unwrap();
        let face = engine.detect(&image).unwrap()[0];
        g.bench_function(format!("max_batch_{max_batch}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..8 {
                        let (engine, rgb) = (engine.clone(), rgb.clone());
                        s.spawn(move || {
                            let image = Image::new(&rgb, 640, 480).unwrap();
                            for _ in 0..iters {
                                engine.embed(&image, &[face]).unwrap();
                            }
                        });
                    }
                });
                // Time per 8 embeddings (one from each thread).
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, single_frame, batching);
criterion_main!(benches);
