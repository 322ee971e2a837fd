//! `likeguard watermark embed|detect|eval` (the invisible mark) and `likeguard provenance read`
//! (C2PA manifests), for operators.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::actions::watermark::attack::{Attack, psnr, ssim};
use crate::actions::watermark::{Detection, ImageWatermarker, MIN_SIDE, MediaWatermarker};
use crate::config::WatermarkConfig;
use crate::media::{MediaKind, sniff};

/// Marks an image, or re-encodes a video with every frame marked.
pub fn embed(
    w: &MediaWatermarker,
    input: &Path,
    output: &Path,
    payload: &str,
    visible: bool,
) -> anyhow::Result<()> {
    let payload = parse_payload(payload)?;
    let stamp = match (visible, w.stamp()) {
        (false, _) => None,
        (true, Some(s)) => Some(s.clone()),
        (true, None) => anyhow::bail!("--visible needs watermark.visible in the configuration"),
    };
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let marking = || format!("marking {}", input.display());
    let (marked, note) = if is_video(&data) {
        let r = w
            .video()
            .embed(data.into(), payload, stamp)
            .with_context(marking)?;
        let note = format!(
            " ({} frames, {} {}{}, {} audio stream(s) copied)",
            r.frames,
            r.container,
            r.codec,
            if r.codec_kept {
                ""
            } else {
                " re-encoded with the default encoder"
            },
            r.audio_streams
        );
        (r.data, note)
    } else {
        let marked = w
            .image()
            .embed_file_with(&data, payload, stamp.as_deref())
            .with_context(marking)?;
        (marked, String::new())
    };
    std::fs::write(output, marked).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: marked with payload {payload:08x}{note}",
        output.display()
    );
    Ok(())
}

fn is_video(data: &[u8]) -> bool {
    sniff(data).is_some_and(|m| m.kind == MediaKind::Video)
}

fn parse_payload(s: &str) -> anyhow::Result<u32> {
    let hex = s.trim().trim_start_matches("0x");
    anyhow::ensure!(
        !hex.is_empty() && hex.len() <= 8,
        "--payload takes 1 to 8 hex digits (32 bits), got {s:?}"
    );
    u32::from_str_radix(hex, 16).with_context(|| format!("--payload {s:?} is not hex"))
}

#[derive(Serialize)]
struct DetectOut<'a> {
    file: &'a str,
    marked: bool,
    payload: Option<String>,
    confidence: f32,
    sync_z: f32,
    scale: f32,
    /// Video frames whose residuals were summed (absent for images).
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<u64>,
}

/// Reads images and videos. Exit status 0 either way: "not marked" is an answer, not an error.
pub fn detect(w: &MediaWatermarker, files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    for file in files {
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let reading = || format!("reading the mark of {}", file.display());
        let (d, frames): (Detection, _) = if is_video(&data) {
            let c = w.video().detect(data.into()).with_context(reading)?;
            (c.detection, Some(c.frames))
        } else {
            (w.image().detect_file(&data).with_context(reading)?, None)
        };
        let name = file.display().to_string();
        let out = DetectOut {
            file: &name,
            marked: d.marked,
            payload: d.payload.map(|p| format!("{p:08x}")),
            confidence: d.confidence,
            sync_z: d.sync_z,
            scale: d.scale,
            frames,
        };
        if json {
            println!("{}", serde_json::to_string(&out)?);
        } else if let Some(p) = &out.payload {
            println!(
                "{name}: marked, payload {p}, confidence {:.4}, scale {:.3}",
                d.confidence, d.scale
            );
        } else {
            println!("{name}: not marked (sync z {:.1})", d.sync_z);
        }
    }
    Ok(())
}

/// Per-attack results over the evaluated photos.
#[derive(Debug, Default, Serialize)]
pub struct AttackRow {
    pub attack: String,
    pub photos: usize,
    /// Photos whose payload came back exactly (after error correction).
    pub recovered: usize,
    /// Mean share of the 32 payload bits right (best guess, CRC or not).
    pub bit_accuracy: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub photos: usize,
    pub psnr_min: f64,
    pub psnr_mean: f64,
    pub ssim_min: f64,
    pub ssim_mean: f64,
    pub attacks: Vec<AttackRow>,
    /// Unmarked images (every decodable testdata image, originals and attacked) read as marked.
    pub unmarked_checked: usize,
    pub false_positives: usize,
    pub embed_ms_mean: f64,
    pub detect_ms_mean: f64,
    /// `attack: file (sync z)` for every payload not recovered.
    pub misses: Vec<String>,
}

/// Images under `root` (recursively), sorted: those with a long side ≥ MIN_SIDE are marked and
/// attacked (up to `limit`); every image is also checked unmarked for false positives.
pub fn eval(config: &WatermarkConfig, root: &Path, limit: usize) -> anyhow::Result<EvalReport> {
    let w = ImageWatermarker::new(config);
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let images: Vec<(PathBuf, image::RgbImage)> = files
        .into_iter()
        .filter_map(|f| {
            let data = std::fs::read(&f).ok()?;
            image::guess_format(&data).ok()?;
            let img = image::load_from_memory(&data).ok()?.to_rgb8();
            Some((f, img))
        })
        .collect();
    anyhow::ensure!(!images.is_empty(), "no images under {}", root.display());
    let marked_set: Vec<&(PathBuf, image::RgbImage)> = images
        .iter()
        .filter(|(_, i)| i.width().max(i.height()) >= MIN_SIDE)
        .take(limit)
        .collect();
    anyhow::ensure!(
        !marked_set.is_empty(),
        "no image with a long side of {MIN_SIDE}+ px under {}",
        root.display()
    );

    let results: Vec<PhotoResult> = par_map(&marked_set, |(path, img)| one_photo(&w, path, img));
    let unmarked: Vec<bool> = par_map(&images, |(_, img)| {
        [Attack::None, Attack::Jpeg(75), Attack::Crop(0.9)].map(|a| w.detect(&a.apply(img)).marked)
    })
    .into_iter()
    .flatten()
    .collect();

    let n = results.len() as f64;
    let attacks = Attack::TABLE
        .iter()
        .enumerate()
        .map(|(k, a)| AttackRow {
            attack: a.name(),
            photos: results.len(),
            recovered: results.iter().filter(|r| r.recovered[k]).count(),
            bit_accuracy: results.iter().map(|r| r.bits[k]).sum::<f64>() / n,
        })
        .collect();
    Ok(EvalReport {
        photos: results.len(),
        psnr_min: results.iter().map(|r| r.psnr).fold(f64::INFINITY, f64::min),
        psnr_mean: results.iter().map(|r| r.psnr).sum::<f64>() / n,
        ssim_min: results.iter().map(|r| r.ssim).fold(f64::INFINITY, f64::min),
        ssim_mean: results.iter().map(|r| r.ssim).sum::<f64>() / n,
        attacks,
        unmarked_checked: unmarked.len(),
        false_positives: unmarked.iter().filter(|m| **m).count(),
        embed_ms_mean: results.iter().map(|r| r.embed_ms).sum::<f64>() / n,
        detect_ms_mean: results.iter().map(|r| r.detect_ms).sum::<f64>() / n,
        misses: results
            .iter()
            .flat_map(|r| r.misses.iter().cloned())
            .collect(),
    })
}

/// `f` over `items` on every core, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads).max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("eval thread"))
            .collect()
    })
}

struct PhotoResult {
    psnr: f64,
    ssim: f64,
    recovered: Vec<bool>,
    bits: Vec<f64>,
    embed_ms: f64,
    detect_ms: f64,
    misses: Vec<String>,
}

fn one_photo(w: &ImageWatermarker, path: &Path, img: &image::RgbImage) -> PhotoResult {
    let payload = crate::actions::watermark::payload_for(&path.display().to_string());
    let mut marked = img.clone();
    let t = std::time::Instant::now();
    w.embed(&mut marked, payload).expect("size checked");
    let embed_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mut recovered, mut bits, mut detect_ms, mut misses) =
        (Vec::new(), Vec::new(), 0.0, Vec::new());
    for a in Attack::TABLE {
        let attacked = a.apply(&marked);
        let t = std::time::Instant::now();
        let d = w.detect(&attacked);
        if a == Attack::None {
            detect_ms = t.elapsed().as_secs_f64() * 1e3;
        }
        recovered.push(d.payload == Some(payload));
        if d.payload != Some(payload) {
            misses.push(format!(
                "{}: {} ({}x{}, sync z {:.1}, scale {:.3})",
                a.name(),
                path.display(),
                img.width(),
                img.height(),
                d.sync_z,
                d.scale
            ));
        }
        bits.push(1.0 - f64::from((d.raw_payload ^ payload).count_ones()) / 32.0);
    }
    PhotoResult {
        psnr: psnr(img, &marked),
        ssim: ssim(img, &marked),
        recovered,
        bits,
        embed_ms,
        detect_ms,
        misses,
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

pub fn print_report(r: &EvalReport) {
    println!(
        "{} photos marked: PSNR min {:.2} / mean {:.2} dB, SSIM min {:.4} / mean {:.4}",
        r.photos, r.psnr_min, r.psnr_mean, r.ssim_min, r.ssim_mean
    );
    println!("| attack | payload recovered | bit accuracy |\n|---|---|---|");
    for a in &r.attacks {
        println!(
            "| {} | {}/{} ({:.1}%) | {:.4} |",
            a.attack,
            a.recovered,
            a.photos,
            100.0 * a.recovered as f64 / a.photos as f64,
            a.bit_accuracy
        );
    }
    for m in &r.misses {
        println!("  missed {m}");
    }
    println!(
        "unmarked images read as marked: {}/{}\nmean embed {:.1} ms, detect {:.1} ms (per photo, this machine)",
        r.false_positives, r.unmarked_checked, r.embed_ms_mean, r.detect_ms_mean
    );
}

/// Prints the manifest report; fails (exit 1) when there is no valid manifest.
pub fn provenance_read(file: &Path, json: bool) -> anyhow::Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mime = crate::media::sniff(&data)
        .map(|m| m.mime)
        .with_context(|| format!("{}: not a media file", file.display()))?;
    let r = crate::actions::provenance::read(&data, mime)
        .with_context(|| format!("reading the manifest of {}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else if !r.present {
        println!("{}: no C2PA manifest", file.display());
    } else {
        println!(
            "{}: manifest {} ({}){}",
            file.display(),
            if r.valid { "valid" } else { "INVALID" },
            r.state,
            if r.failures.is_empty() {
                String::new()
            } else {
                format!(", failures: {}", r.failures.join(", "))
            }
        );
        if let Some(d) = &r.decision {
            println!("likeguard decision: {}", serde_json::to_string(d)?);
        }
        if let Some(m) = &r.manifest {
            println!("{}", serde_json::to_string_pretty(m)?);
        }
    }
    anyhow::ensure!(
        r.present && r.valid,
        "{}: no valid manifest",
        file.display()
    );
    Ok(())
}
