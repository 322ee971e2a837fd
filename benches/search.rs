//! Identity search at scale: ANN (usearch HNSW, i8, candidates re-scored) against exact, on
//! registries of 10k / 100k / 1M identities. Reports build time, p50/p99 latency of one
//! search, recall@1 of ANN against exact, and p99 of single inserts/removals on the full index.
//! Results and machine: benches/RESULTS.md.
//!
//! The vectors are synthetic but shaped like real ones: identities are drawn from a Gaussian
//! fitted (mean + full covariance) to real MobileFaceNet embeddings of testdata photos, and
//! each enrolled reference and each probe is the identity plus within-person variation fitted to
//! the testdata's genuine pairs — so a probe's similarity to its reference matches what two real
//! photos of one person give (printed next to the real mean). Isotropic random vectors
//! would be a harsher, unrealistic case: faces are not spread uniformly over the sphere.
//!
//! `cargo bench --bench search`; `LIKEGUARD_BENCH_SIZES=10000,100000` picks sizes. Under
//! `cargo test` it runs once at 2,000 identities. Needs the models (`likeguard models fetch`).

use std::path::PathBuf;
use std::time::Instant;

use likeguard::config::{InferenceConfig, Quantization, SearchConfig};
use likeguard::inference::{FaceEngine, Image};
use likeguard::registry::{Key, VectorIndex};

fn testdata() -> PathBuf {
    std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
}

/// xorshift64* with Box–Muller normals: deterministic, no extra crates.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.next_f64().max(1e-300), self.next_f64());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n
    }
}

/// A Gaussian: mean and lower Cholesky factor of the covariance.
struct Gaussian {
    mean: Vec<f32>,
    chol: Vec<f64>,
    dim: usize,
}

impl Gaussian {
    /// Fits samples (rows) around `mean`.
    fn fit(rows: &[Vec<f32>], mean: Vec<f32>) -> Self {
        let dim = mean.len();
        let mut cov = vec![0f64; dim * dim];
        for r in rows {
            for i in 0..dim {
                let di = (r[i] - mean[i]) as f64;
                for j in 0..=i {
                    cov[i * dim + j] += di * (r[j] - mean[j]) as f64;
                }
            }
        }
        let n = rows.len().max(2) as f64 - 1.0;
        let trace: f64 = (0..dim).map(|i| cov[i * dim + i] / n).sum();
        for i in 0..dim {
            for j in 0..=i {
                cov[i * dim + j] /= n;
            }
            // A small ridge: fewer samples than needed for a full-rank estimate.
            cov[i * dim + i] += 1e-3 * trace / dim as f64;
        }
        // Cholesky, in place on the lower triangle.
        for j in 0..dim {
            let mut d = cov[j * dim + j];
            for k in 0..j {
                d -= cov[j * dim + k] * cov[j * dim + k];
            }
            let d = d.max(1e-12).sqrt();
            cov[j * dim + j] = d;
            for i in j + 1..dim {
                let mut s = cov[i * dim + j];
                for k in 0..j {
                    s -= cov[i * dim + k] * cov[j * dim + k];
                }
                cov[i * dim + j] = s / d;
            }
        }
        Self {
            mean,
            chol: cov,
            dim,
        }
    }

    /// `mean + L z`.
    fn draw(&self, rng: &mut Rng) -> Vec<f32> {
        let z: Vec<f64> = (0..self.dim).map(|_| rng.normal() as f64).collect();
        (0..self.dim)
            .map(|i| {
                let row = &self.chol[i * self.dim..i * self.dim + i + 1];
                self.mean[i] + row.iter().zip(&z).map(|(l, z)| l * z).sum::<f64>() as f32
            })
            .collect()
    }

    /// A draw, normalised like an embedding.
    fn unit(&self, rng: &mut Rng) -> Vec<f32> {
        let mut v = self.draw(rng);
        normalise(&mut v);
        v
    }
}

/// Another photo of the person at `centre`: within-person variation added, normalised.
fn photo_of(centre: &[f32], within: &Gaussian, rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = centre
        .iter()
        .zip(within.draw(rng))
        .map(|(c, e)| c + e)
        .collect();
    normalise(&mut v);
    v
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Real embeddings of testdata photos, and the genuine pairs among them (by pairs.tsv).
fn real_embeddings(max_photos: usize) -> (Vec<Vec<f32>>, Vec<(usize, usize)>) {
    let config = InferenceConfig {
        models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
        ..Default::default()
    };
    let engine = FaceEngine::load(&config).expect("models (run `likeguard models fetch`)");
    let pairs = std::fs::read_to_string(testdata().join("pairs.tsv")).expect("testdata pairs");
    let mut index: std::collections::HashMap<String, Option<usize>> = Default::default();
    let mut embeddings = Vec::new();
    let mut genuine = Vec::new();
    let mut embed = |path: &str| -> Option<usize> {
        if let Some(known) = index.get(path) {
            return *known;
        }
        if index.len() >= max_photos {
            return None;
        }
        let img = image::open(testdata().join(path)).ok()?.to_rgb8();
        let image = Image::new(img.as_raw(), img.width(), img.height()).ok()?;
        let faces = engine.analyze(&image).ok()?;
        let best = faces
            .iter()
            .max_by(|a, b| (a.0.bbox[2] * a.0.bbox[3]).total_cmp(&(b.0.bbox[2] * b.0.bbox[3])))
            .map(|(_, e)| e.as_slice().to_vec());
        let slot = best.map(|e| {
            embeddings.push(e);
            embeddings.len() - 1
        });
        index.insert(path.to_string(), slot);
        slot
    };
    for line in pairs.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        let (a, b) = (embed(f[0]), embed(f[1]));
        if let (Some(a), Some(b), "1") = (a, b, f[2]) {
            genuine.push((a, b));
        }
    }
    (embeddings, genuine)
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    sorted_us[((sorted_us.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = std::env::var("LIKEGUARD_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if bench {
                vec![10_000, 100_000, 1_000_000]
            } else {
                vec![2_000]
            }
        });
    let queries = if bench { 1_000 } else { 100 };

    let t = Instant::now();
    let (real, genuine) = real_embeddings(if bench { 700 } else { 80 });
    let dim = real[0].len();
    let mut mean = vec![0f32; dim];
    for r in &real {
        mean.iter_mut()
            .zip(r)
            .for_each(|(m, x)| *m += x / real.len() as f32);
    }
    let population = Gaussian::fit(&real, mean);
    // Within-person variation: each genuine difference a−b has twice the per-photo covariance.
    let diffs: Vec<Vec<f32>> = genuine
        .iter()
        .map(|&(a, b)| {
            real[a]
                .iter()
                .zip(&real[b])
                .map(|(x, y)| (x - y) / std::f32::consts::SQRT_2)
                .collect()
        })
        .collect();
    let within = Gaussian::fit(&diffs, vec![0.0; dim]);
    let real_genuine: f32 = genuine
        .iter()
        .map(|&(a, b)| dot(&real[a], &real[b]))
        .sum::<f32>()
        / genuine.len() as f32;
    println!(
        "fitted on {} real embeddings ({} genuine pairs, mean genuine cosine {real_genuine:.3}) in {:.1}s",
        real.len(),
        genuine.len(),
        t.elapsed().as_secs_f64()
    );

    // `LIKEGUARD_BENCH_M=32` and `LIKEGUARD_BENCH_QUANT=f16` try other index builds.
    let env = |k: &str| std::env::var(k).ok();
    let defaults = SearchConfig::default();
    let config = SearchConfig {
        ann_min_references: 0,
        connectivity: env("LIKEGUARD_BENCH_M")
            .and_then(|m| m.parse().ok())
            .unwrap_or(defaults.connectivity),
        quantization: match env("LIKEGUARD_BENCH_QUANT").as_deref() {
            Some("f16") => Quantization::F16,
            Some("f32") => Quantization::F32,
            _ => defaults.quantization,
        },
        ..defaults
    };
    println!(
        "config: M={} ef_add={} ef={} candidates={} {:?}",
        config.connectivity,
        config.expansion_add,
        config.expansion_search,
        config.candidates,
        config.quantization
    );
    // `LIKEGUARD_BENCH_SWEEP=64:8,128:8,256:16` measures several ef:candidates settings on
    // one build (default: the configured ones).
    let settings: Vec<(usize, usize)> = std::env::var("LIKEGUARD_BENCH_SWEEP")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|p| {
                    let (a, b) = p.split_once(':')?;
                    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(config.expansion_search, config.candidates)]);
    println!(
        "| identities | ef / candidates | build | exact p50 / p99 | ANN p50 / p99 | recall@1 | probe cosine | insert p99 | remove p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut rng = Rng(0x5EED ^ n as u64);
        // Each identity: a centre, and one enrolled reference photo of it (centre + the
        // within-person variation); probes are other photos of the same centres.
        let centres: Vec<Vec<f32>> = (0..n).map(|_| population.unit(&mut rng)).collect();
        let vectors: Vec<Vec<f32>> = centres
            .iter()
            .map(|c| photo_of(c, &within, &mut rng))
            .collect();
        let t = Instant::now();
        let mut index = VectorIndex::new(&config);
        let items: Vec<(Key, &[f32])> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i as Key, v.as_slice()))
            .collect();
        index.insert_many(&items).unwrap();
        drop(items);
        let build = t.elapsed();

        // Probes and their exact answers once; then each (ef, candidates) setting.
        let (mut exact_us, mut cosine) = (vec![], 0f32);
        let probes: Vec<(Vec<f32>, Option<Key>)> = (0..queries)
            .map(|_| {
                let target = rng.below(n);
                let probe = photo_of(&centres[target], &within, &mut rng);
                cosine += dot(&probe, &vectors[target]) / queries as f32;
                let t = Instant::now();
                let exact = index.search_exact(&probe, 1).first().map(|e| e.0);
                exact_us.push(t.elapsed().as_secs_f64() * 1e6);
                (probe, exact)
            })
            .collect();
        exact_us.sort_by(f64::total_cmp);
        let mut rows = Vec::new();
        for &(ef, candidates) in &settings {
            index.tune(ef, candidates);
            let (mut ann_us, mut hits) = (vec![], 0);
            for (probe, exact) in &probes {
                let t = Instant::now();
                let ann = index.search_ann(probe, 1);
                ann_us.push(t.elapsed().as_secs_f64() * 1e6);
                hits += usize::from(ann.first().map(|a| a.0) == *exact);
            }
            ann_us.sort_by(f64::total_cmp);
            rows.push((ef, candidates, ann_us, hits as f64 / queries as f64));
        }
        // Updates on the full index: each is one in-place insert or delete.
        let (mut insert_us, mut remove_us) = (vec![], vec![]);
        for k in 0..200u64 {
            let v = population.unit(&mut rng);
            let t = Instant::now();
            index.insert(n as Key + k, &v).unwrap();
            insert_us.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            assert!(index.remove(k * 3));
            remove_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        for v in [&mut insert_us, &mut remove_us] {
            v.sort_by(f64::total_cmp);
        }
        for (ef, candidates, ann_us, recall) in &rows {
            println!(
                "| {n} | {ef} / {candidates} | {:.1} s | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {recall:.4} | {cosine:.3} | {:.0} µs | {:.0} µs |",
                build.as_secs_f64(),
                percentile(&exact_us, 0.5),
                percentile(&exact_us, 0.99),
                percentile(ann_us, 0.5),
                percentile(ann_us, 0.99),
                percentile(&insert_us, 0.99),
                percentile(&remove_us, 0.99),
            );
        }
        let recall = rows.iter().map(|r| r.3).fold(0.0, f64::max);
        // Under `cargo test` (small sizes) a broken index must fail the run.
        assert!(
            bench || recall >= 0.95,
            "recall@1 {recall} at {n}: the index is not finding the exact neighbours"
        );
    }
}
