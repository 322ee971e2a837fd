//! Hot paths of an inspected body: extraction and known-media matching, on real photos.
//! Results and the machine they ran on: benches/RESULTS.md.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use likeguard::config::{ExtractConfig, KnownMediaConfig};
use likeguard::extract::{BodyClass, Found, extract};
use likeguard::knownmedia::{Bank, KnownAction, NewEntry};
use likeguard::media::sniff;

fn photo(rel: &str) -> Bytes {
    let dir = std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"));
    std::fs::read(dir.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e} (set LIKEGUARD_TESTDATA)", dir.join(rel).display()))
        .into()
}

fn multipart(data: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(data.len() + 256);
    b.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhello\r\n");
    b.extend_from_slice(
        b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
    );
    b.extend_from_slice(data);
    b.extend_from_slice(b"\r\n--B--\r\n");
    b.into()
}

/// Extraction with a generous deadline (the bench measures time; it does not bound it).
fn run(
    rt: &tokio::runtime::Runtime,
    class: &BodyClass,
    body: &Bytes,
    cfg: &ExtractConfig,
) -> Found {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    rt.block_on(extract(class, body.clone(), cfg, 16, deadline))
        .unwrap()
}

/// A 1 MB JSON document the way chat and generation APIs send them: prompts, messages, ids and
/// numbers, and no media.
fn json_without_media() -> Bytes {
    let mut messages = Vec::new();
    let mut n = 0u64;
    let mut len = 0;
    while len < 1_000_000 {
        n += 1;
        let m = serde_json::json!({
            "id": format!("msg_{n:016x}"),
            "role": if n.is_multiple_of(2) { "user" } else { "assistant" },
            "content": "Describe a quiet harbour town at dawn, fishing boats coming in, gulls over \
                the water, the light soft and golden on the old stone houses by the quay.",
            "embedding": [0.0132, -0.2231, 0.9817, 0.5521, -0.1103, 0.0042],
            "created": 1_764_547_200u64 + n,
        });
        len += m.to_string().len();
        messages.push(m);
    }
    serde_json::to_vec(&serde_json::json!({"model": "gen-1", "messages": messages}))
        .unwrap()
        .into()
}

fn extraction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let img = photo("images/faces/deepface/img1.jpg"); // 2.2 MB, 1382×1868
    let cfg = ExtractConfig::default();
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Bytes(img.len() as u64));

    let form = multipart(&img);
    let class = BodyClass::Multipart {
        boundary: "B".into(),
    };
    g.bench_function("multipart_2.2MB", |b| {
        b.iter(|| run(&rt, &class, &form, &cfg))
    });

    let b64 = base64::engine::general_purpose::STANDARD.encode(&img);
    let json: Bytes = serde_json::to_vec(&serde_json::json!({"data": [{"b64_json": b64}]}))
        .unwrap()
        .into();
    g.bench_function("json_b64_2.2MB", |b| {
        b.iter(|| run(&rt, &BodyClass::Json, &json, &cfg))
    });

    let raw = BodyClass::Raw {
        declared: "image/jpeg".into(),
    };
    g.bench_function("raw_2.2MB", |b| b.iter(|| run(&rt, &raw, &img, &cfg)));
    g.finish();

    // Discovery on a body with no media: the cost every JSON request pays (floor: ≤ 2 ms).
    let plain = json_without_media();
    let mut g = c.benchmark_group("discovery");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("json_1MB_no_media", |b| {
        b.iter(|| {
            let found = run(&rt, &BodyClass::Json, &plain, &cfg);
            assert!(found.items.is_empty());
        })
    });
    // The same document parsed string by string (what a route that fetches URLs, or a body
    // with a long base64 run somewhere, pays).
    let parsing: ExtractConfig =
        serde_yaml_ng::from_str("fetch: {hosts: [cdn.example.com]}").unwrap();
    g.bench_function("json_1MB_no_media_parsed", |b| {
        b.iter(|| {
            let found = run(&rt, &BodyClass::Json, &plain, &parsing);
            assert!(found.items.is_empty());
        })
    });
    g.finish();
}

fn known_media(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let gauge = prometheus::IntGauge::new("g", "g").unwrap();
    let bank = Arc::new(Bank::open(dir.path(), &KnownMediaConfig::default(), gauge).unwrap());
    let mut g = c.benchmark_group("known_media");
    for (name, rel) in [
        (
            "fingerprint_250x250_jpeg",
            "images/faces/lfw_deepfunneled/Abdullah_Gul/Abdullah_Gul_0001.jpg",
        ),
        (
            "fingerprint_1382x1868_jpeg",
            "images/faces/deepface/img1.jpg",
        ),
    ] {
        let img = photo(rel);
        let media = sniff(&img).unwrap();
        g.bench_function(name, |b| b.iter(|| bank.fingerprint(&img, media)));
    }

    // Lookup against a bank of 10,000 perceptual hashes (no exact hit: full PDQ scan).
    let mut new = Vec::new();
    let mut x = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..10_000 {
        let pdq = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            next(),
            next(),
            next(),
            next()
        );
        new.push(NewEntry {
            sha256: None,
            pdq: Some((pdq, None)),
            action: KnownAction::Block,
            label: String::new(),
        });
    }
    bank.add_all(new).unwrap();
    let img = photo("images/faces/deepface/img11.jpg");
    let fp = bank.fingerprint(&img, sniff(&img).unwrap());
    g.bench_function("lookup_10k_pdq", |b| b.iter(|| bank.lookup(&fp)));
    g.finish();
}

criterion_group!(benches, extraction, known_media);
criterion_main!(benches);
