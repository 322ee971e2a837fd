//! The policy in force: loaded at start, replaced atomically on reload (file change or admin
//! call). A file that fails to load never replaces the one in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::rules::{Policy, PolicyError};

/// `policies/default.yaml`, built in: what runs when no policy file is configured.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.yaml");

pub struct PolicyStore {
    current: ArcSwap<Policy>,
    path: Option<PathBuf>,
}

impl PolicyStore {
    /// Loads `path`, or the built-in default when `None`.
    pub fn open(path: Option<&Path>) -> Result<Self, PolicyError> {
        let policy = match path {
            Some(p) => Policy::load(p)?,
            None => Policy::parse(DEFAULT_POLICY, "policies/default.yaml (built in)")?,
        };
        Ok(Self {
            current: ArcSwap::from_pointee(policy),
            path: path.map(Path::to_path_buf),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Re-reads the file. On error the policy in force stays; the error says why.
    pub fn reload(&self) -> Result<Arc<Policy>, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(self.current());
        };
        let policy = Arc::new(Policy::load(path)?);
        self.current.store(policy.clone());
        Ok(policy)
    }

    /// Watches the file's modification time and reloads on change, until the store is dropped.
    pub fn watch(
        self: &Arc<Self>,
        every: Duration,
        on_reload: impl Fn(&Result<Arc<Policy>, PolicyError>) + Send + 'static,
    ) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = mtime(&path);
        let spawned = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(store) = weak.upgrade() else { return };
                    let now = mtime(&path);
                    if now != seen {
                        seen = now;
                        on_reload(&store.reload());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy file watcher");
        }
    }
}
