//! `inference:` — which face models run, where their files are, and how they are served.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Environment variable that overrides `inference.models_dir`.
pub const MODELS_DIR_ENV: &str = "LIKEGUARD_MODELS_DIR";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Load the face models and recognise enrolled identities in traffic. `false` runs the
    /// proxy without face recognition (no models needed).
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Folder holding `manifest.json` and the files `likeguard models fetch` placed there.
    /// `LIKEGUARD_MODELS_DIR` overrides it (applied when a config file is loaded).
    #[serde(default = "d_models_dir")]
    pub models_dir: PathBuf,
    /// Detector models by manifest name, merged in order: faces of a later detector are added
    /// where they do not overlap an earlier one's (short-range for close-ups, full-range for
    /// small faces).
    #[serde(default = "d_detectors")]
    pub detectors: Vec<String>,
    /// Embedder model by manifest name. Another licensed model (e.g. an ArcFace R50 the operator
    /// brings) drops in by adding it to the manifest.
    #[serde(default = "d_embedder")]
    pub embedder: String,
    /// Cosine similarity at or above which two faces are the same person. Default: the
    /// embedder's threshold in the manifest (chosen from data, see docs/inference.md).
    #[serde(default)]
    pub match_threshold: Option<f32>,
    /// Detector score threshold override (default: each detector's manifest threshold).
    #[serde(default)]
    pub detect_threshold: Option<f32>,
    /// Faces narrower than this many source pixels are ignored.
    #[serde(default = "d_min_face")]
    pub min_face_px: u32,
    /// Look at each face a second time, cropped, for more precise landmarks (better
    /// alignment, one more short-range detector run per face).
    #[serde(default = "d_true")]
    pub refine_landmarks: bool,
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// Threads inside one operator, in the pool all model sessions share (the first engine
    /// loaded in a process sets the pool).
    #[serde(default = "d_intra")]
    pub intra_threads: usize,
    /// Threads across independent operators (shared pool).
    #[serde(default = "d_inter")]
    pub inter_threads: usize,
    /// Let idle pool threads spin briefly for the next operator (faster small models, more CPU
    /// while idle-waiting).
    #[serde(default = "d_spin")]
    pub spin: bool,
    #[serde(default)]
    pub batch: BatchConfig,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            models_dir: d_models_dir(),
            detectors: d_detectors(),
            embedder: d_embedder(),
            match_threshold: None,
            detect_threshold: None,
            min_face_px: d_min_face(),
            refine_landmarks: true,
            execution_provider: ExecutionProvider::default(),
            intra_threads: d_intra(),
            inter_threads: d_inter(),
            spin: d_spin(),
            batch: BatchConfig::default(),
        }
    }
}

/// Where inference runs. CUDA and TensorRT need a build with the `cuda` / `tensorrt` feature and
/// the GPU runtime (`onnxruntime-gpu`); asking for one that is not there is a start-up error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda {
        #[serde(default)]
        device: i32,
    },
    Tensorrt {
        #[serde(default)]
        device: i32,
    },
}

/// Dynamic batching: concurrent requests share one inference call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most items in one call (models with a fixed batch size run one item per call).
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
    /// Longest the worker waits for a batch to fill to the size of the previous one (a lone
    /// request never waits).
    #[serde(default = "d_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Items waiting per model before new work is refused (overload → 503, never unbounded memory).
    #[serde(default = "d_queue")]
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: d_max_batch(),
            max_wait: d_max_wait(),
            queue: d_queue(),
        }
    }
}

impl InferenceConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, reason: &str| Err((format!("inference.{field}"), reason.into()));
        if self.detectors.is_empty() {
            return bad("detectors", "name at least one detector");
        }
        if let Some(t) = self.match_threshold
            && !(-1.0..=1.0).contains(&t)
        {
            return bad("match_threshold", "must be a cosine similarity in [-1, 1]");
        }
        if let Some(t) = self.detect_threshold
            && !(0.0..1.0).contains(&t)
        {
            return bad("detect_threshold", "must be in [0, 1)");
        }
        if self.intra_threads == 0 || self.inter_threads == 0 {
            return bad("intra_threads", "threads must be at least 1");
        }
        if !(1..=256).contains(&self.batch.max_batch) {
            return bad("batch.max_batch", "must be 1..=256");
        }
        if self.batch.queue == 0 {
            return bad("batch.queue", "must be at least 1");
        }
        Ok(())
    }
}

fn d_models_dir() -> PathBuf {
    PathBuf::from("models")
}
fn d_detectors() -> Vec<String> {
    vec!["blazeface-short".into(), "blazeface-full".into()]
}
fn d_embedder() -> String {
    "mobilefacenet".into()
}
fn d_min_face() -> u32 {
    12
}
fn d_intra() -> usize {
    2
}
fn d_inter() -> usize {
    1
}
fn d_spin() -> bool {
    true
}
fn d_true() -> bool {
    true
}
fn d_max_batch() -> usize {
    8
}
fn d_max_wait() -> Duration {
    Duration::from_millis(2)
}
fn d_queue() -> usize {
    256
}
