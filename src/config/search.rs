//! `search:` — how faces are looked up among enrolled identities.

use serde::Deserialize;

/// Exact cosine search below `ann_min_references` reference embeddings, an HNSW index
/// (usearch) above it. The index is kept up to date on every change whenever `ann` is on,
/// so crossing the size never triggers a rebuild; ANN candidates are re-scored exactly, so
/// reported similarities are exact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Keep an ANN index at all (`false`: exact search at every size).
    pub ann: bool,
    /// Reference embeddings from which searches use the ANN index.
    pub ann_min_references: usize,
    /// HNSW links per node (M). More: better recall, more memory, slower inserts.
    pub connectivity: usize,
    /// Candidate list while inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidate list while searching (ef).
    pub expansion_search: usize,
    /// ANN candidates re-scored exactly against the full-precision vectors.
    pub candidates: usize,
    /// How the index stores vectors: `i8` (4× smaller, candidates re-scored anyway), `f16`,
    /// `f32`.
    pub quantization: Quantization,
    /// Searches that may run at once inside the index (more wait for a slot).
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    I8,
    F16,
    F32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            ann: true,
            ann_min_references: 20_000,
            connectivity: 32,
            expansion_add: 128,
            expansion_search: 192,
            candidates: 8,
            quantization: Quantization::I8,
            threads: 64,
        }
    }
}
