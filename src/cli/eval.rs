//! `likeguard eval pairs|detect`: accuracy of the full pipeline on labelled data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::inference::{Embedding, FaceEngine};
use crate::inspect::faces::{FoundFace, faces_in_media, main_face};
use crate::media::Decoder;
use crate::media::sniff;

/// Verification figures (`--json` keys are the field names).
#[derive(Debug, Serialize)]
pub struct PairsReport {
    pub pairs: usize,
    pub missing: usize,
    pub threshold: f32,
    pub accuracy: f64,
    pub best_threshold: f32,
    pub best_accuracy: f64,
    pub auc: f64,
    pub tar_far_1e2: f64,
    pub tar_far_1e3: f64,
}

struct Pair {
    a: String,
    b: String,
    same: bool,
}

fn read_pairs(path: &Path) -> anyhow::Result<Vec<Pair>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.trim().is_empty() || (n == 0 && cols.get(2) == Some(&"same")) {
            continue;
        }
        let same = match cols.get(2).map(|s| s.trim()) {
            Some("1") => true,
            Some("0") => false,
            _ => anyhow::bail!(
                "{}:{}: expected `path_a<TAB>path_b<TAB>0|1`",
                path.display(),
                n + 1
            ),
        };
        pairs.push(Pair {
            a: cols[0].to_string(),
            b: cols[1].to_string(),
            same,
        });
    }
    anyhow::ensure!(!pairs.is_empty(), "{}: no pairs", path.display());
    Ok(pairs)
}

/// The main face's embedding of one photo (None when no face was found).
fn embed_photo(
    decoder: &Decoder,
    engine: &FaceEngine,
    path: &Path,
) -> anyhow::Result<Option<Embedding>> {
    let ((w, h), faces) = faces_of(decoder, engine, path, true)?;
    Ok(main_face(&faces, w, h).and_then(|f| f.embedding.clone()))
}

fn faces_of(
    decoder: &Decoder,
    engine: &FaceEngine,
    path: &Path,
    embed: bool,
) -> anyhow::Result<((u32, u32), Vec<FoundFace>)> {
    let data =
        Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    let kind = sniff(&data).map(|m| m.kind);
    let (summary, faces) = faces_in_media(decoder, engine, data, kind, embed)
        .with_context(|| path.display().to_string())?;
    Ok((
        (summary.width.unwrap_or(0), summary.height.unwrap_or(0)),
        faces,
    ))
}

pub fn pairs(
    decoder: &Decoder,
    engine: &FaceEngine,
    file: &Path,
    root: &Path,
    scores_out: Option<&Path>,
) -> anyhow::Result<PairsReport> {
    let pairs = read_pairs(file)?;
    let mut cache: HashMap<&str, Option<Embedding>> = HashMap::new();
    for p in &pairs {
        for path in [&p.a, &p.b] {
            if !cache.contains_key(path.as_str()) {
                let e = embed_photo(decoder, engine, &root.join(path))?;
                cache.insert(path, e);
            }
        }
    }
    let scored: Vec<(Option<f32>, bool)> = pairs
        .iter()
        .map(|p| match (&cache[p.a.as_str()], &cache[p.b.as_str()]) {
            (Some(a), Some(b)) => (Some(a.cosine(b)), p.same),
            _ => (None, p.same),
        })
        .collect();
    if let Some(out) = scores_out {
        let mut tsv = String::from("path_a\tpath_b\tsame\tsimilarity\n");
        for (p, (s, _)) in pairs.iter().zip(&scored) {
            let s = s
                .map(|s| format!("{s:.5}"))
                .unwrap_or_else(|| "missing".into());
            tsv.push_str(&format!("{}\t{}\t{}\t{s}\n", p.a, p.b, u8::from(p.same)));
        }
        std::fs::write(out, tsv).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(figures(&scored, engine.threshold()))
}

/// All the verification figures from (similarity or missing, same person) pairs.
pub fn figures(scored: &[(Option<f32>, bool)], threshold: f32) -> PairsReport {
    let total = scored.len();
    let missing = scored.iter().filter(|(s, _)| s.is_none()).count();
    let correct_at = |t: f32| {
        scored
            .iter()
            .filter(|(s, same)| s.is_some_and(|s| (s >= t) == *same))
            .count()
    };
    let mut pos: Vec<f32> = scored.iter().filter(|p| p.1).filter_map(|p| p.0).collect();
    let mut neg: Vec<f32> = scored.iter().filter(|p| !p.1).filter_map(|p| p.0).collect();
    pos.sort_by(f32::total_cmp);
    neg.sort_by(|a, b| b.total_cmp(a));
    // Best threshold: try every observed score (and just above it).
    let (mut best_t, mut best_correct) = (threshold, correct_at(threshold));
    for t in pos.iter().chain(&neg).flat_map(|&s| [s, s + 1e-6]) {
        let c = correct_at(t);
        if c > best_correct {
            (best_t, best_correct) = (t, c);
        }
    }
    let auc = if pos.is_empty() || neg.is_empty() {
        f64::NAN
    } else {
        let mut wins = 0.0;
        for &p in &pos {
            for &n in &neg {
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (pos.len() * neg.len()) as f64
    };
    let tar_at = |far: f64| {
        if neg.is_empty() || pos.is_empty() {
            return f64::NAN;
        }
        // Accept at most floor(far · negatives) impostors: the threshold sits just above the
        // next-highest impostor score.
        let allowed = (far * neg.len() as f64).floor() as usize;
        let cut = neg.get(allowed).copied().unwrap_or(f32::NEG_INFINITY);
        pos.iter().filter(|&&s| s > cut).count() as f64 / pos.len() as f64
    };
    PairsReport {
        pairs: total,
        missing,
        threshold,
        accuracy: correct_at(threshold) as f64 / total.max(1) as f64,
        best_threshold: best_t,
        best_accuracy: best_correct as f64 / total.max(1) as f64,
        auc,
        tar_far_1e2: tar_at(1e-2),
        tar_far_1e3: tar_at(1e-3),
    }
}

/// One entry of a testdata-style manifest (other fields ignored).
#[derive(Deserialize)]
struct Item {
    path: PathBuf,
    kind: String,
    #[serde(default)]
    n_faces: Option<usize>,
    #[serde(default)]
    face_boxes: Option<Vec<GroundTruthBox>>,
}

#[derive(Deserialize)]
struct GroundTruthBox {
    left: f32,
    top: f32,
    width: f32,
    height: f32,
}

#[derive(Debug, Default, Serialize)]
pub struct DetectReport {
    /// Single-face photos (`kind: face`) with at least one face found.
    pub single_found: usize,
    pub single_total: usize,
    /// Faces reported on `kind: noface` images, and how many images.
    pub false_faces: usize,
    pub noface_images: usize,
    /// Group photos: faces found of those the manifest counts (`n_faces` or `face_boxes`).
    pub group_found: usize,
    pub group_known: usize,
    /// Faces found beyond the manifest's count on group photos with a count.
    pub group_extra: usize,
    /// Single-face photos with no face found.
    pub misses: Vec<String>,
    /// No-face images with faces found.
    pub false_on: Vec<String>,
}

pub fn detect(
    decoder: &Decoder,
    engine: &FaceEngine,
    manifest: &Path,
    root: &Path,
) -> anyhow::Result<DetectReport> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let items: Vec<Item> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of items", manifest.display()))?;
    let mut r = DetectReport::default();
    for item in items {
        let shown = item.path.display().to_string();
        match item.kind.as_str() {
            "face" => {
                let (_, faces) = faces_of(decoder, engine, &root.join(&item.path), false)?;
                r.single_total += 1;
                if faces.is_empty() {
                    r.misses.push(shown);
                } else {
                    r.single_found += 1;
                }
            }
            "noface" => {
                let (_, faces) = faces_of(decoder, engine, &root.join(&item.path), false)?;
                r.noface_images += 1;
                if !faces.is_empty() {
                    r.false_faces += faces.len();
                    r.false_on.push(shown);
                }
            }
            "group" => {
                let known = item
                    .face_boxes
                    .as_ref()
                    .map(Vec::len)
                    .or(item.n_faces)
                    .unwrap_or(0);
                if known == 0 {
                    continue;
                }
                let (_, faces) = faces_of(decoder, engine, &root.join(&item.path), false)?;
                let found = match &item.face_boxes {
                    Some(boxes) => matched(boxes, &faces),
                    None => faces.len().min(known),
                };
                r.group_known += known;
                r.group_found += found;
                r.group_extra += faces.len().saturating_sub(known);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Ground-truth boxes that have a detection centred inside them (each detection used once).
fn matched(boxes: &[GroundTruthBox], faces: &[FoundFace]) -> usize {
    let mut used = vec![false; faces.len()];
    let mut n = 0;
    for b in boxes {
        // Annotators' boxes are tight; allow a quarter of their size around them.
        let (mx, my) = (b.width * 0.25, b.height * 0.25);
        let hit = faces.iter().enumerate().position(|(i, f)| {
            let [x, y, w, h] = f.face.bbox;
            let (cx, cy) = (x + w / 2.0, y + h / 2.0);
            !used[i]
                && cx >= b.left - mx
                && cx <= b.left + b.width + mx
                && cy >= b.top - my
                && cy <= b.top + b.height + my
        });
        if let Some(i) = hit {
            used[i] = true;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_on_a_small_known_set() {
        let s = [
            (Some(0.9), true),
            (Some(0.7), true),
            (Some(0.2), false),
            (Some(0.5), false),
            (None, true),
        ];
        let r = figures(&s, 0.6);
        assert_eq!(r.pairs, 5);
        assert_eq!(r.missing, 1);
        assert!((r.accuracy - 0.8).abs() < 1e-9);
        assert!((r.auc - 1.0).abs() < 1e-9);
        assert!((r.best_accuracy - 0.8).abs() < 1e-9);
        assert!(r.best_threshold > 0.5 && r.best_threshold <= 0.7);
        assert!((r.tar_far_1e3 - 1.0).abs() < 1e-9);
    }
}
