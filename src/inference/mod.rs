//! Face inference with ONNX Runtime (`ort`): detect faces with landmarks, align each to the
//! embedder's template, embed, L2-normalise.
//!
//! `FaceEngine::load` verifies every model file against `models/manifest.json`, loads the
//! runtime once, builds one session per model and starts one batching worker per session; all
//! requests share them. The calls block (preprocessing is CPU work and they wait on the
//! workers): call them from `spawn_blocking` or a plain thread, never on the async runtime.
//! See docs/inference.md.

mod align;
mod batcher;
mod blazeface;
mod embed;
pub mod manifest;
mod runtime;

use std::path::PathBuf;

use serde::Serialize;

pub use align::{ARCFACE_112, Similarity};
pub use batcher::{Batcher, Model, Pending};
pub use embed::Embedding;
pub use manifest::{FileState, Manifest, Role};
pub use runtime::ORT_DYLIB_ENV;

use crate::config::InferenceConfig;
use blazeface::{BlazeFace, Detection, Region};
use manifest::{DetectorDecoder, Dim, Entry};

/// IoU above which two detections are the same face (NMS and merging detectors).
const SAME_FACE_IOU: f32 = 0.3;
/// Most faces reported (and embedded) per image: bounds the work a crowd photo can cause.
const MAX_FACES: usize = 64;
/// Side of the landmark-refinement crop, in face-box widths.
const REFINE_CONTEXT: f32 = 2.0;
/// Refine only faces the crop magnifies at least this much over the first pass (faces under a
/// third of the image's longer side). Measured in docs/inference.md.
const REFINE_MIN_GAIN: f32 = 1.5;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("no {role:?} model named {name:?} in {manifest}")]
    UnknownModel {
        name: String,
        role: Role,
        manifest: PathBuf,
    },
    #[error("model file {path} is missing: run `likeguard models fetch`")]
    ModelMissing { path: PathBuf },
    #[error(
        "model file {path} is corrupt (sha256 {actual}, manifest pins {expected}): run `likeguard models fetch` to replace it"
    )]
    ModelCorrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot load ONNX Runtime from {path}: {reason} (run `likeguard models fetch`, or set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31)"
    )]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot load model {path}: {reason}")]
    Session { path: PathBuf, reason: String },
    #[error("model {name:?} in the manifest: {reason}")]
    BadModel { name: String, reason: String },
    #[error("execution provider {provider} unavailable: {reason}")]
    ProviderUnavailable {
        provider: &'static str,
        reason: String,
    },
    #[error("inference worker for {model}: {reason}")]
    Worker { model: String, reason: String },
    #[error("inference with {model} failed: {reason}")]
    Run { model: String, reason: String },
    #[error("inference queue for {model} is full")]
    Overloaded { model: String },
    #[error("image buffer holds {len} bytes, {width}×{height} RGB needs {need}")]
    BadImage {
        width: u32,
        height: u32,
        len: usize,
        need: usize,
    },
}

/// A packed RGB image (`width * 3` bytes per row) borrowed from a decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    rgb: &'a [u8],
    width: u32,
    height: u32,
}

impl<'a> Image<'a> {
    pub fn new(rgb: &'a [u8], width: u32, height: u32) -> Result<Self, InferenceError> {
        let need = width as usize * height as usize * 3;
        if rgb.len() != need || width == 0 || height == 0 {
            return Err(InferenceError::BadImage {
                width,
                height,
                len: rgb.len(),
                need,
            });
        }
        Ok(Self { rgb, width, height })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }
}

impl<'a> TryFrom<&'a crate::media::Frame> for Image<'a> {
    type Error = InferenceError;
    fn try_from(frame: &'a crate::media::Frame) -> Result<Self, InferenceError> {
        Image::new(&frame.rgb, frame.width, frame.height)
    }
}

/// A detected face, in the pixels of the image it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Face {
    /// Left, top, width, height.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Image-left eye, image-right eye, nose tip, image-left and image-right mouth corners.
    /// (BlazeFace finds the mouth centre; its corners are placed from the template fit.)
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

impl Face {
    /// This face with coordinates multiplied by `k` (e.g. back to the source resolution).
    pub fn scaled(mut self, k: f32) -> Self {
        self.bbox.iter_mut().for_each(|v| *v *= k);
        self.landmarks.iter_mut().flatten().for_each(|v| *v *= k);
        self
    }
}

struct DetectorHandle {
    name: String,
    size: usize,
    batcher: Batcher<Vec<Detection>>,
}

impl DetectorHandle {
    fn submit(
        &self,
        image: &Image<'_>,
        region: &Region,
    ) -> Result<Pending<Vec<Detection>>, InferenceError> {
        let mut buf = self.batcher.buffer();
        blazeface::preprocess(image, region, self.size, &mut buf);
        self.batcher.submit(buf)
    }
}

/// Detectors + embedder, loaded once and shared by every request.
pub struct FaceEngine {
    detectors: Vec<DetectorHandle>,
    embedder: Batcher<Embedding>,
    embedder_name: String,
    embed_size: usize,
    template: [[f32; 2]; 5],
    threshold: f32,
    min_face_px: f32,
    refine: bool,
}

impl FaceEngine {
    /// Items waiting for each model's worker, by model name (`likeguard_inference_queue_depth`).
    pub fn queue_depths(&self) -> Vec<(&str, usize)> {
        self.detectors
            .iter()
            .map(|d| &d.batcher)
            .map(|b| (b.name(), b.waiting()))
            .chain(std::iter::once((
                self.embedder.name(),
                self.embedder.waiting(),
            )))
            .collect()
    }

    /// Verifies and loads every configured model. Errors name the file and the fix.
    pub fn load(config: &InferenceConfig) -> Result<Self, InferenceError> {
        let manifest = Manifest::load(&config.models_dir)?;
        runtime::init(&manifest, config)?;
        let mut detectors = Vec::new();
        for name in &config.detectors {
            detectors.push(load_detector(&manifest, name, config)?);
        }
        let entry = manifest.model(&config.embedder, Role::Embedder)?;
        let bad = |reason: &str| InferenceError::BadModel {
            name: entry.name.clone(),
            reason: reason.into(),
        };
        let template = match entry.template.as_deref() {
            Some("arcface-112") => ARCFACE_112,
            other => return Err(bad(&format!("unknown alignment template {other:?}"))),
        };
        let (input, output) = io_names(entry)?;
        let spec = entry.input.as_ref().ok_or_else(|| bad("no input spec"))?;
        let size = spec.fixed(2).ok_or_else(|| bad("input height unknown"))?;
        let dim = entry.dim.ok_or_else(|| bad("no `dim`"))?;
        let max_batch = match spec.shape.first() {
            Some(Dim::Fixed(n)) => *n,
            _ => config.batch.max_batch,
        };
        let session = runtime::session(&manifest.verified_path(entry)?, config)?;
        let embedder = Batcher::spawn(
            &entry.name,
            embed::Embedder::new(session, size, dim, [input, output], max_batch),
            &config.batch,
        )?;
        let threshold = config
            .match_threshold
            .or(entry.threshold)
            .ok_or_else(|| bad("no default threshold; set inference.match_threshold"))?;
        let engine = Self {
            detectors,
            embedder,
            embedder_name: entry.name.clone(),
            embed_size: size,
            template,
            threshold,
            min_face_px: config.min_face_px as f32,
            refine: config.refine_landmarks,
        };
        engine.warm_up()?;
        Ok(engine)
    }

    /// One run through every model: checks the I/O names and shapes now rather than on the
    /// first request, and takes the first-run cost out of request latency.
    fn warm_up(&self) -> Result<(), InferenceError> {
        let rgb = vec![128u8; 64 * 64 * 3];
        let image = Image::new(&rgb, 64, 64)?;
        self.detect(&image)?;
        let face = Face {
            bbox: [16.0, 16.0, 32.0, 32.0],
            landmarks: [
                [24.0, 28.0],
                [40.0, 28.0],
                [32.0, 36.0],
                [26.0, 44.0],
                [38.0, 44.0],
            ],
            score: 1.0,
        };
        self.embed(&image, &[face])?;
        Ok(())
    }

    /// Cosine similarity at or above which two embeddings are the same person.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn embedder_name(&self) -> &str {
        &self.embedder_name
    }

    /// Every face in `image` (all detectors run in parallel, results merged), most confident
    /// first.
    pub fn detect(&self, image: &Image<'_>) -> Result<Vec<Face>, InferenceError> {
        let whole = Region::letterbox(image.width, image.height);
        let mut pending = Vec::with_capacity(self.detectors.len());
        for d in &self.detectors {
            pending.push(d.submit(image, &whole)?);
        }
        let mut kept: Vec<Detection> = Vec::new();
        for p in pending {
            let found = blazeface::weighted_nms(p.wait_blocking()?, SAME_FACE_IOU);
            let new: Vec<_> = found
                .into_iter()
                .filter(|d| {
                    kept.iter()
                        .all(|k| blazeface::iou(&k.bbox, &d.bbox) <= SAME_FACE_IOU)
                })
                .collect();
            kept.extend(new);
        }
        let mut faces: Vec<Face> = kept
            .iter()
            .map(|d| self.to_face(d, &whole))
            .filter(|f| f.bbox[2] >= self.min_face_px)
            .collect();
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        faces.truncate(MAX_FACES);
        if self.refine {
            self.refine_landmarks(image, &mut faces)?;
        }
        Ok(faces)
    }

    /// Second look at each smaller face: the first detector on a square around it, where the
    /// face fills the input as close-range detectors expect. Landmarks from a face a few dozen
    /// pixels wide in the first pass become those of a face ~60 pixels wide.
    fn refine_landmarks(
        &self,
        image: &Image<'_>,
        faces: &mut [Face],
    ) -> Result<(), InferenceError> {
        let Some(refiner) = self.detectors.first() else {
            return Ok(());
        };
        let whole = image.width.max(image.height) as f32;
        let mut pending = Vec::with_capacity(faces.len());
        for face in faces.iter() {
            let [x, y, w, h] = face.bbox;
            let side = w.max(h) * REFINE_CONTEXT;
            // A face already large in the first pass gains too little resolution to pay for a
            // second run.
            if whole / side < REFINE_MIN_GAIN {
                pending.push(None);
                continue;
            }
            let region = Region {
                x0: x + w / 2.0 - side / 2.0,
                y0: y + h / 2.0 - side / 2.0,
                side,
            };
            pending.push(Some((region, refiner.submit(image, &region)?)));
        }
        for (face, item) in faces.iter_mut().zip(pending) {
            let Some((region, p)) = item else { continue };
            let found = p.wait_blocking()?;
            // The face is centred in the crop: take the confident detection nearest the centre.
            let best = found
                .iter()
                .filter(|d| (d.bbox[0] - 0.5).abs() < 0.2 && (d.bbox[1] - 0.5).abs() < 0.2)
                .max_by(|a, b| a.score.total_cmp(&b.score));
            if let Some(d) = best {
                let refined = self.to_face(d, &region);
                face.landmarks = refined.landmarks;
            }
        }
        Ok(())
    }

    fn to_face(&self, d: &Detection, region: &Region) -> Face {
        let [cx, cy, w, h] = d.bbox;
        let [x, y] = region.to_source([cx - w / 2.0, cy - h / 2.0]);
        let kp: [[f32; 2]; 4] = std::array::from_fn(|i| region.to_source(d.keypoints[i]));
        let template4 = align::fit_points(&self.template);
        // Mouth corners: the template's, mapped back through the fit of the four points found.
        let (left, right) = match Similarity::estimate(&kp, &template4) {
            Some(t) => {
                let back = t.inverse();
                (back.apply(self.template[3]), back.apply(self.template[4]))
            }
            None => (kp[3], kp[3]),
        };
        Face {
            bbox: [x, y, w * region.side, h * region.side],
            landmarks: [kp[0], kp[1], kp[2], left, right],
            score: d.score,
        }
    }

    /// One embedding per face, in order. The faces are submitted together, so they share
    /// batches with each other and with concurrent requests.
    pub fn embed(
        &self,
        image: &Image<'_>,
        faces: &[Face],
    ) -> Result<Vec<Embedding>, InferenceError> {
        let template4 = align::fit_points(&self.template);
        let mut pending = Vec::with_capacity(faces.len());
        for face in faces {
            let t = Similarity::estimate(&align::fit_points(&face.landmarks), &template4)
                .unwrap_or(Similarity {
                    a: 1.0,
                    b: 0.0,
                    tx: 0.0,
                    ty: 0.0,
                });
            let mut buf = self.embedder.buffer();
            align::warp(image, &t, self.embed_size, 127.5, 1.0 / 128.0, &mut buf);
            pending.push(self.embedder.submit(buf)?);
        }
        pending.into_iter().map(Pending::wait_blocking).collect()
    }

    /// Detect, then embed every face found.
    pub fn analyze(&self, image: &Image<'_>) -> Result<Vec<(Face, Embedding)>, InferenceError> {
        let faces = self.detect(image)?;
        let embeddings = self.embed(image, &faces)?;
        Ok(faces.into_iter().zip(embeddings).collect())
    }

    /// Names of the loaded detectors, in merge order.
    pub fn detector_names(&self) -> impl Iterator<Item = &str> {
        self.detectors.iter().map(|d| d.name.as_str())
    }
}

fn io_names(entry: &Entry) -> Result<(String, String), InferenceError> {
    let input = entry.input.as_ref().map(|t| t.name.clone());
    let output = entry.outputs.first().map(|t| t.name.clone());
    input.zip(output).ok_or_else(|| InferenceError::BadModel {
        name: entry.name.clone(),
        reason: "input/output names missing".into(),
    })
}

fn load_detector(
    manifest: &Manifest,
    name: &str,
    config: &InferenceConfig,
) -> Result<DetectorHandle, InferenceError> {
    let entry = manifest.model(name, Role::Detector)?;
    let bad = |reason: String| InferenceError::BadModel {
        name: name.to_string(),
        reason,
    };
    let Some(DetectorDecoder::Blazeface {
        strides,
        anchors_per_cell,
    }) = &entry.decoder
    else {
        return Err(bad("no decoder spec".into()));
    };
    let size = entry
        .input
        .as_ref()
        .and_then(|t| t.fixed(2))
        .ok_or_else(|| bad("input size unknown".into()))?;
    let anchors = blazeface::anchors(size, strides, *anchors_per_cell);
    let [reg, score] = match entry.outputs.as_slice() {
        [r, s] => [r, s],
        _ => return Err(bad("needs two outputs (regressors, scores)".into())),
    };
    if reg.fixed(1) != Some(anchors.len()) {
        return Err(bad(format!(
            "{} anchors from the decoder spec, output has {:?}",
            anchors.len(),
            reg.shape.get(1)
        )));
    }
    let threshold = config
        .detect_threshold
        .or(entry.threshold)
        .unwrap_or(0.5)
        .clamp(0.01, 0.99);
    let (input, _) = io_names(entry)?;
    let session = runtime::session(&manifest.verified_path(entry)?, config)?;
    let model = BlazeFace::new(
        session,
        size,
        anchors,
        [input, reg.name.clone(), score.name.clone()],
        threshold,
    );
    Ok(DetectorHandle {
        name: name.to_string(),
        size,
        batcher: Batcher::spawn(name, model, &config.batch)?,
    })
}
