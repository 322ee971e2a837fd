//! `models/manifest.json`: what each model file is, where it came from, and its sha256.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::InferenceError;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub runtime: Entry,
    pub models: Vec<Entry>,
    #[serde(skip)]
    dir: PathBuf,
}

/// One file the manifest pins. Fields the runtime does not use (source, I/O spec) are kept in
/// the JSON for people and for the fetch tool.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub name: String,
    pub role: Role,
    pub file: PathBuf,
    pub sha256: String,
    pub licence: String,
    pub source: Source,
    /// Default decision threshold (detector score, or embedder cosine).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Alignment template of an embedder (`arcface-112`).
    #[serde(default)]
    pub template: Option<String>,
    /// Embedding length of an embedder.
    #[serde(default)]
    pub dim: Option<usize>,
    /// Input tensor (models only).
    #[serde(default)]
    pub input: Option<Tensor>,
    #[serde(default)]
    pub outputs: Vec<Tensor>,
    /// How a detector's raw outputs become faces.
    #[serde(default)]
    pub decoder: Option<DetectorDecoder>,
}

/// A model input or output: its name and shape (`"N"` marks a dynamic batch dimension).
#[derive(Debug, Clone, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<Dim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Dynamic(String),
}

impl Tensor {
    /// The fixed size of dimension `i`, if it has one.
    pub fn fixed(&self, i: usize) -> Option<usize> {
        match self.shape.get(i) {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DetectorDecoder {
    /// MediaPipe BlazeFace SSD head: anchors on a grid per stride, 16 regressors per anchor.
    Blazeface {
        strides: Vec<usize>,
        anchors_per_cell: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Runtime,
    Detector,
    Embedder,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub registry: String,
    pub package: String,
    pub version: String,
    pub path: String,
}

/// Outcome of checking one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Ok,
    Missing,
    Mismatch { actual: String },
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self, InferenceError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| InferenceError::Manifest {
            // Absolute, and what fixes it: a relative models folder is read from the
            // working directory, which is rarely what was meant.
            path: std::path::absolute(&path).unwrap_or_else(|_| path.clone()),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "not found — fetch the models with `likeguard models fetch` in the likeguard checkout, then point {} (or inference.models_dir) at its models folder; a relative folder is read from the working directory",
                    crate::config::MODELS_DIR_ENV
                ),
                _ => e.to_string(),
            },
        })?;
        let mut manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| InferenceError::Manifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        manifest.dir = dir.to_path_buf();
        Ok(manifest)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// The model called `name` with the given role.
    pub fn model(&self, name: &str, role: Role) -> Result<&Entry, InferenceError> {
        self.models
            .iter()
            .find(|m| m.name == name && m.role == role)
            .ok_or_else(|| InferenceError::UnknownModel {
                name: name.to_string(),
                role,
                manifest: self.dir.join(MANIFEST_FILE),
            })
    }

    /// Every file the manifest pins: the runtime first, then the models.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        std::iter::once(&self.runtime).chain(&self.models)
    }

    pub fn check(&self, entry: &Entry) -> Result<FileState, InferenceError> {
        let path = self.path_of(entry);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
            Err(e) => return Err(InferenceError::Io { path, source: e }),
        };
        let actual = sha256_of(file).map_err(|e| InferenceError::Io { path, source: e })?;
        Ok(if actual == entry.sha256 {
            FileState::Ok
        } else {
            FileState::Mismatch { actual }
        })
    }

    /// The file of `entry`, refused unless present with the pinned sha256.
    pub fn verified_path(&self, entry: &Entry) -> Result<PathBuf, InferenceError> {
        let path = self.path_of(entry);
        match self.check(entry)? {
            FileState::Ok => Ok(path),
            FileState::Missing => Err(InferenceError::ModelMissing { path }),
            FileState::Mismatch { actual } => Err(InferenceError::ModelCorrupt {
                path,
                expected: entry.sha256.clone(),
                actual,
            }),
        }
    }
}

fn sha256_of(mut file: std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
