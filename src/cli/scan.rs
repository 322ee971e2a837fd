//! `likeguard scan FILE... [--json]`: find the media in files offline (the way the proxy finds
//! it in bodies: raw, in JSON, multipart, archives, base64 text), decode it and report what is
//! in it, one line per item with where it was found.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use crate::config::{ExtractConfig, MediaConfig};
use crate::extract::{BodyClass, MediaItem, extract_blocking};
use crate::inference::{Face, FaceEngine};
use crate::inspect::faces::faces_in_media;
use crate::media::{Decoder, Input, MediaKind, Output, Summary};

/// One JSON line per media item (or per file that failed).
#[derive(Serialize)]
struct Report<'a> {
    path: &'a str,
    /// Where in the file the item was found (`body` for a plain media file).
    location: String,
    kind: Option<&'static str>,
    format: Option<String>,
    codec: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration_s: Option<f64>,
    /// Frames sampled (what inspection would see).
    frames: u64,
    frames_decoded: u64,
    audio_samples: u64,
    /// Sampling stopped before the end of the medium (what inspection would call incomplete).
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<String>,
    /// Faces per sampled frame, in source pixels (absent with `--no-faces`).
    #[serde(skip_serializing_if = "Option::is_none")]
    faces: Option<Vec<FaceReport>>,
    error: Option<String>,
}

#[derive(Serialize)]
struct FaceReport {
    frame: u64,
    #[serde(flatten)]
    face: Face,
}

pub fn scan(
    files: &[PathBuf],
    json: bool,
    media: &MediaConfig,
    engine: Option<&FaceEngine>,
) -> anyhow::Result<()> {
    let decoder = Decoder::new(media)?;
    let progress = (!json && files.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut failed = Vec::new();
    let mut out = std::io::stdout().lock();
    for path in files {
        if let Some(bar) = &progress {
            bar.set_message(path.display().to_string());
        }
        let shown = path.display().to_string();
        let results = match items_in(path) {
            Ok(items) => items
                .into_iter()
                .map(|i| {
                    let r = scan_item(&decoder, engine, i.data, i.media.kind);
                    (i.location.to_string(), r)
                })
                .collect(),
            Err(e) => vec![("body".to_string(), Err(e))],
        };
        for (location, result) in results {
            let report = match &result {
                Ok((s, faces)) => report(&shown, location.clone(), s, faces.clone(), None),
                Err(e) => report(
                    &shown,
                    location.clone(),
                    &Summary::default(),
                    None,
                    Some(e.clone()),
                ),
            };
            if let Err(e) = &result {
                failed.push(format!("{shown} ({location}): {e}"));
            }
            let line = if json {
                serde_json::to_string(&report)?
            } else {
                human(&report)
            };
            match &progress {
                Some(bar) => bar.println(line),
                None => writeln!(out, "{line}")?,
            }
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} file(s) failed:\n  {}",
            failed.len(),
            files.len(),
            failed.join("\n  ")
        )
    }
}

type Scanned = (Summary, Option<Vec<(u64, Face)>>);

/// The media items in a file, found as the proxy finds them in a body.
fn items_in(path: &Path) -> Result<Vec<MediaItem>, String> {
    let data = Bytes::from(std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?);
    let cfg = ExtractConfig::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let found = extract_blocking(&BodyClass::Sniff, data, &cfg, MAX_ITEMS, deadline)
        .map_err(|e| e.to_string())?;
    if found.items.is_empty() {
        return Err("no image, video or audio found in the file".into());
    }
    Ok(found.items)
}

/// Most items reported from one file.
const MAX_ITEMS: usize = 10_000;

fn scan_item(
    decoder: &Decoder,
    engine: Option<&FaceEngine>,
    data: Bytes,
    kind: MediaKind,
) -> Result<Scanned, String> {
    let kind = Some(kind);
    match engine {
        Some(engine) => {
            let (summary, found) =
                faces_in_media(decoder, engine, data, kind, false).map_err(|e| e.to_string())?;
            let faces = found.into_iter().map(|f| (f.frame, f.face)).collect();
            Ok((summary, Some(faces)))
        }
        None => decoder
            .decode(Input::Bytes(data), kind, &mut |_: Output<'_>| {
                ControlFlow::Continue(())
            })
            .map(|s| (s, None))
            .map_err(|e| e.to_string()),
    }
}

fn report<'a>(
    path: &'a str,
    location: String,
    s: &Summary,
    faces: Option<Vec<(u64, Face)>>,
    error: Option<String>,
) -> Report<'a> {
    Report {
        path,
        location,
        kind: s.kind.map(|k| k.as_str()),
        format: s.format.clone(),
        codec: s.codec.clone(),
        width: s.width,
        height: s.height,
        duration_s: s.duration.map(|d| d.as_secs_f64()),
        frames: s.frames_sampled,
        frames_decoded: s.frames_decoded,
        audio_samples: s.audio_samples,
        incomplete: s.incomplete.as_ref().map(ToString::to_string),
        faces: faces.map(|v| {
            v.into_iter()
                .map(|(frame, face)| FaceReport { frame, face })
                .collect()
        }),
        error,
    }
}

fn human(r: &Report<'_>) -> String {
    let at = match r.location.as_str() {
        "body" => String::new(),
        other => format!(" › {other}"),
    };
    if let Some(e) = &r.error {
        return format!("{}{at}: ERROR {e}", r.path);
    }
    let mut line = format!(
        "{}{at}: {} {}",
        r.path,
        r.kind.unwrap_or("?"),
        r.format.as_deref().unwrap_or("?")
    );
    if let Some(c) = &r.codec {
        line.push_str(&format!(" ({c})"));
    }
    if let (Some(w), Some(h)) = (r.width, r.height) {
        line.push_str(&format!(" {w}×{h}"));
    }
    if let Some(d) = r.duration_s {
        line.push_str(&format!(" {d:.2}s"));
    }
    if r.kind == Some("audio") {
        line.push_str(&format!(", {} samples at 16 kHz", r.audio_samples));
    } else {
        line.push_str(&format!(
            ", {} frame(s) sampled of {} decoded",
            r.frames, r.frames_decoded
        ));
    }
    if let Some(faces) = &r.faces {
        line.push_str(&format!(", {} face(s)", faces.len()));
        for f in faces.iter().take(8) {
            let [x, y, w, h] = f.face.bbox;
            line.push_str(&format!(
                "\n    frame {}: box {x:.0},{y:.0} {w:.0}×{h:.0} score {:.2}",
                f.frame, f.face.score
            ));
        }
    }
    line
}
