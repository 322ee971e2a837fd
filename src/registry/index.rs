//! Nearest-neighbour search over reference embeddings: an exact scan of a flat matrix, plus an
//! HNSW index (usearch) for large registries, updated in place on every change.
//!
//! Every vector lives once at full precision in `rows` (exact search, and re-scoring of ANN
//! candidates so reported similarities never carry quantisation error). Removal swaps the last
//! row into the hole: no change costs more than O(dim) here plus one HNSW insert or delete, so
//! there is never a rebuild pause (ADR 0004).

use std::collections::HashMap;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::config::{Quantization, SearchConfig};

/// A reference embedding's handle inside the index.
pub type Key = u64;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("embedding has {got} dimensions, the index holds {want}")]
    Dimensions { got: usize, want: usize },
    #[error("ANN index: {0}")]
    Ann(String),
}

pub struct VectorIndex {
    config: SearchConfig,
    /// 0 until the first vector fixes it.
    dim: usize,
    /// `len × dim` unit vectors, row-major.
    rows: Vec<f32>,
    /// Key of each row.
    keys: Vec<Key>,
    row_of: HashMap<Key, usize>,
    /// `None` when disabled, before the first vector, or after an index failure (exact search
    /// then serves every query: slower, never wrong).
    ann: Option<Index>,
}

impl VectorIndex {
    pub fn new(config: &SearchConfig) -> Self {
        Self {
            config: config.clone(),
            dim: 0,
            rows: Vec::new(),
            keys: Vec::new(),
            row_of: HashMap::new(),
            ann: None,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Changes the ANN search breadth (ef) and re-scored candidates in place (tuning, benches).
    pub fn tune(&mut self, expansion_search: usize, candidates: usize) {
        self.config.expansion_search = expansion_search;
        self.config.candidates = candidates;
        if let Some(ann) = &self.ann {
            ann.change_expansion_search(expansion_search);
        }
    }

    /// Whether searches currently go through the ANN index.
    pub fn uses_ann(&self) -> bool {
        self.ann.is_some() && self.len() >= self.config.ann_min_references
    }

    /// Adds one vector (a key already present is replaced).
    pub fn insert(&mut self, key: Key, v: &[f32]) -> Result<(), IndexError> {
        self.insert_many(&[(key, v)])
    }

    /// Adds many vectors; the ANN inserts run on every core.
    pub fn insert_many(&mut self, items: &[(Key, &[f32])]) -> Result<(), IndexError> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        if self.dim == 0 {
            self.dim = first.1.len();
        }
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.dim) {
            return Err(IndexError::Dimensions {
                got: v.len(),
                want: self.dim,
            });
        }
        for (key, v) in items {
            self.remove(*key);
            self.row_of.insert(*key, self.keys.len());
            self.keys.push(*key);
            self.rows.extend_from_slice(v);
        }
        if let Err(e) = self.ann_insert(items) {
            // Exact search keeps answering correctly; say so loudly once.
            tracing::error!(error = %e, "ANN index failed; identity search falls back to exact");
            self.ann = None;
        }
        Ok(())
    }

    fn ann_insert(&mut self, items: &[(Key, &[f32])]) -> Result<(), IndexError> {
        if !self.config.ann {
            return Ok(());
        }
        if self.ann.is_none() {
            if self.len() > items.len() {
                // It failed earlier: stay exact rather than rebuild under the write lock.
                return Ok(());
            }
            self.ann = Some(new_ann(&self.config, self.dim)?);
        }
        let ann = self.ann.as_ref().expect("set above");
        let needed = ann.size() + items.len();
        if needed > ann.capacity() {
            let capacity = needed.max(ann.capacity() * 2).max(1024);
            ann.reserve_capacity_and_threads(capacity, self.config.threads.max(1))
                .map_err(|e| IndexError::Ann(e.to_string()))?;
        }
        let add = |chunk: &[(Key, &[f32])]| -> Result<(), IndexError> {
            // Replaced keys already left the index in `remove`.
            for (key, v) in chunk {
                ann.add(*key, v)
                    .map_err(|e| IndexError::Ann(e.to_string()))?;
            }
            Ok(())
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if items.len() < 256 || threads == 1 {
            return add(items);
        }
        let chunk = items.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = items.chunks(chunk).map(|c| s.spawn(|| add(c))).collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(IndexError::Ann("insert panicked".into())))
            })
        })
    }

    /// Removes a vector; `false` when the key was not there.
    pub fn remove(&mut self, key: Key) -> bool {
        let Some(row) = self.row_of.remove(&key) else {
            return false;
        };
        let last = self.keys.len() - 1;
        if row != last {
            let moved = self.keys[last];
            self.rows
                .copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.keys[row] = moved;
            self.row_of.insert(moved, row);
        }
        self.keys.pop();
        self.rows.truncate(last * self.dim);
        if let Some(ann) = &self.ann
            && let Err(e) = ann.remove(key)
        {
            tracing::error!(error = %e, "ANN index failed to remove; falling back to exact");
            self.ann = None;
        }
        true
    }

    /// The `k` most similar vectors (key, cosine), best first: through the ANN index at or
    /// above `ann_min_references`, exact below.
    pub fn search(&self, q: &[f32], k: usize) -> Vec<(Key, f32)> {
        if self.uses_ann() {
            self.search_ann(q, k)
        } else {
            self.search_exact(q, k)
        }
    }

    /// Scans every row.
    pub fn search_exact(&self, q: &[f32], k: usize) -> Vec<(Key, f32)> {
        let mut top = TopK::new(k);
        if q.len() == self.dim && self.dim > 0 {
            for (row, key) in self.rows.chunks_exact(self.dim).zip(&self.keys) {
                top.offer(*key, dot(row, q));
            }
        }
        top.into_sorted()
    }

    /// ANN candidates, re-scored at full precision. Exact when there is no index.
    pub fn search_ann(&self, q: &[f32], k: usize) -> Vec<(Key, f32)> {
        let Some(ann) = &self.ann else {
            return self.search_exact(q, k);
        };
        if q.len() != self.dim {
            return Vec::new();
        }
        let wanted = self.config.candidates.max(k);
        let found = match ann.search(q, wanted) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "ANN search failed; answering exactly");
                return self.search_exact(q, k);
            }
        };
        let mut top = TopK::new(k);
        for key in found.keys {
            if let Some(&row) = self.row_of.get(&key) {
                top.offer(
                    key,
                    dot(&self.rows[row * self.dim..(row + 1) * self.dim], q),
                );
            }
        }
        top.into_sorted()
    }
}

fn new_ann(config: &SearchConfig, dim: usize) -> Result<Index, IndexError> {
    let options = IndexOptions {
        dimensions: dim,
        // Unit vectors: inner product is cosine.
        metric: MetricKind::IP,
        quantization: match config.quantization {
            Quantization::I8 => ScalarKind::I8,
            Quantization::F16 => ScalarKind::F16,
            Quantization::F32 => ScalarKind::F32,
        },
        connectivity: config.connectivity,
        expansion_add: config.expansion_add,
        expansion_search: config.expansion_search,
        multi: false,
    };
    Index::new(&options).map_err(|e| IndexError::Ann(e.to_string()))
}

/// The best `k` (key, score) pairs seen; k is small, so a sorted array beats a heap.
struct TopK {
    k: usize,
    items: Vec<(Key, f32)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, key: Key, score: f32) {
        if self.k == 0 || (self.items.len() == self.k && score <= self.items[self.k - 1].1) {
            return;
        }
        let at = self.items.partition_point(|(_, s)| *s >= score);
        self.items.insert(at, (key, score));
        self.items.truncate(self.k);
    }

    fn into_sorted(self) -> Vec<(Key, f32)> {
        self.items
    }
}

/// Dot product with eight independent accumulators: the compiler turns it into SIMD
/// multiply-adds (a single running sum would serialise on its dependency chain).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..197).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..197).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }

    #[test]
    fn ann_and_exact_agree_through_inserts_and_removals() {
        let config = SearchConfig {
            ann_min_references: 0,
            ..Default::default()
        };
        let mut index = VectorIndex::new(&config);
        let vectors: Vec<Vec<f32>> = (0..2000).map(|i| unit(i, 64)).collect();
        let items: Vec<(Key, &[f32])> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i as Key, v.as_slice()))
            .collect();
        index.insert_many(&items).unwrap();
        assert!(index.uses_ann());
        for i in (0..2000).step_by(3) {
            assert!(index.remove(i));
        }
        assert!(!index.remove(0));
        assert_eq!(index.len(), 2000 - 667);
        for i in (1..2000).step_by(97) {
            let (exact, ann) = (
                index.search_exact(&vectors[i as usize], 3),
                index.search_ann(&vectors[i as usize], 3),
            );
            if i % 3 == 0 {
                assert!(exact[0].0 != i && ann[0].0 != i, "removed key {i} found");
            } else {
                assert_eq!(exact[0].0, i);
                assert_eq!(ann[0], exact[0], "ANN disagrees for {i}");
            }
            assert!(exact.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        // Re-inserting a key replaces its vector.
        index.insert(1, &vectors[0]).unwrap();
        assert_eq!(index.search_exact(&vectors[0], 1)[0].0, 1);
        assert_eq!(index.search_ann(&vectors[0], 1)[0].0, 1);
        assert!(matches!(
            index.insert(5000, &[1.0, 0.0]),
            Err(IndexError::Dimensions { got: 2, want: 64 })
        ));
    }
}
