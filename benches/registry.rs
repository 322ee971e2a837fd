//! Identity search (exact cosine over every reference embedding) at growing registry sizes.
//! Results and machine: benches/RESULTS.md. Synthetic unit vectors, 192-d (MobileFaceNet).
//! `LIKEGUARD_BENCH_SIZES=10000,100000` overrides the sizes (default 1000,10000,100000).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use likeguard::config::SearchConfig;
use likeguard::inference::Embedding;
use likeguard::registry::{NewIdentity, Protection, Registry};

/// Deterministic pseudo-random unit vector (xorshift), no extra crates.
fn vector(seed: u64) -> Embedding {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Embedding::normalised(&v).unwrap()
}

fn search(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("LIKEGUARD_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            // `cargo test --all-targets` runs benches once without `--bench`: keep that quick.
            if std::env::args().any(|a| a == "--bench") {
                vec![1_000, 10_000, 100_000]
            } else {
                vec![1_000]
            }
        });
    let mut g = c.benchmark_group("registry_exact_search");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), &SearchConfig::default()).unwrap();
        // One batch write: enrolling one by one rewrites the file each time.
        registry
            .add_many((0..n as u64).map(|i| NewIdentity {
                name: format!("p{i}"),
                protection: Protection::Strict,
                owner: None,
                consent: None,
                embeddings: vec![vector(i)],
            }))
            .unwrap();
        let probe = vector(n as u64 / 2);
        assert!(registry.search(&probe, 0.9).is_some());
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| registry.search(&probe, 0.41))
        });
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
