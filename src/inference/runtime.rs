//! ONNX Runtime: loaded once per process from the library `models fetch` placed (or
//! `ORT_DYLIB_PATH`), and sessions built the same way for every model.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::GlobalThreadPoolOptions;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::InferenceError;
use super::manifest::Manifest;
use crate::config::{ExecutionProvider, InferenceConfig};

/// Standard variable of the `ort` crate naming the runtime library; wins over the manifest's.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads the runtime library and creates the process's one environment with its shared
/// intra-op thread pool (first call only; later calls return the first outcome).
pub fn init(manifest: &Manifest, config: &InferenceConfig) -> Result<(), InferenceError> {
    let library = match std::env::var_os(ORT_DYLIB_ENV) {
        Some(path) => PathBuf::from(path),
        None => manifest.verified_path(&manifest.runtime)?,
    };
    ENVIRONMENT
        .get_or_init(|| load(&library, config))
        .as_ref()
        .map(|_| ())
        .map_err(|reason| InferenceError::Runtime {
            path: library,
            reason: reason.clone(),
        })
}

fn load(library: &Path, config: &InferenceConfig) -> Result<ort::environment::Environment, String> {
    // Loads the library: must come before any other ort call (they would dlopen a default).
    let builder = ort::init_from(library).map_err(|e| e.to_string())?;
    // One pool for every session: detectors and embedder running at once share the cores
    // instead of each spinning its own threads against the others (MODELS.md: 2–3× slower).
    let pool = GlobalThreadPoolOptions::default()
        .with_intra_threads(config.intra_threads)
        .and_then(|p| p.with_inter_threads(config.inter_threads))
        .and_then(|p| p.with_spin_control(config.spin))
        .map_err(|e| e.to_string())?;
    builder
        .with_name("likeguard")
        .with_telemetry(false)
        .with_global_thread_pool(pool)
        .build()
        .map_err(|e| e.to_string())
}

/// A session for the model file at `path`, configured from `inference:`. Call `init` first.
pub fn session(path: &Path, config: &InferenceConfig) -> Result<Session, InferenceError> {
    let fail = |e: &dyn std::fmt::Display| InferenceError::Session {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let Some(Ok(environment)) = ENVIRONMENT.get() else {
        return Err(fail(&"ONNX Runtime is not loaded"));
    };
    let mut builder = Session::builder(environment)
        .map_err(|e| fail(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(&e))?
        .with_intra_op_spinning(config.spin)
        .map_err(|e| fail(&e))?;
    builder = with_provider(builder, config.execution_provider).map_err(|e| match e {
        ProviderError::NotBuilt(name) => InferenceError::ProviderUnavailable {
            provider: name,
            reason: format!("this build lacks the `{name}` cargo feature"),
        },
        ProviderError::Ort(name, reason) => InferenceError::ProviderUnavailable {
            provider: name,
            reason,
        },
    })?;
    builder.commit_from_file(path).map_err(|e| fail(&e))
}

#[cfg_attr(not(any(feature = "cuda", feature = "tensorrt")), allow(dead_code))]
enum ProviderError {
    NotBuilt(&'static str),
    Ort(&'static str, String),
}

fn with_provider(
    builder: ort::session::builder::SessionBuilder,
    provider: ExecutionProvider,
) -> Result<ort::session::builder::SessionBuilder, ProviderError> {
    match provider {
        ExecutionProvider::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Cuda { device } => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device)
                .build()
                .error_on_failure()])
            .map_err(|e| ProviderError::Ort("cuda", e.to_string())),
        #[cfg(not(feature = "cuda"))]
        ExecutionProvider::Cuda { .. } => Err(ProviderError::NotBuilt("cuda")),
        #[cfg(feature = "tensorrt")]
        ExecutionProvider::Tensorrt { device } => builder
            .with_execution_providers([ort::ep::TensorRT::default()
                .with_device_id(device)
                .build()
                .error_on_failure()])
            .map_err(|e| ProviderError::Ort("tensorrt", e.to_string())),
        #[cfg(not(feature = "tensorrt"))]
        ExecutionProvider::Tensorrt { .. } => Err(ProviderError::NotBuilt("tensorrt")),
    }
}
