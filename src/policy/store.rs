//! The policy in force: loaded at start, replaced atomically on reload (file change or admin
//! call). A file that fails to load never replaces the one in force.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::rules::{Policy, PolicyError};
use crate::telemetry::Metrics;

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

    /// Re-reads the file. On error the policy in force stays; the error says why. Either way
    /// the outcome is logged and the version gauge follows the policy in force.
    pub fn reload(&self, metrics: &Metrics) -> Result<Arc<Policy>, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(self.current());
        };
        match Policy::load(path) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                self.current.store(policy.clone());
                metrics.set_policy(&policy.name, &policy.version);
                metrics.policy_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(target: "likeguard::audit", policy = %policy.name, version = %policy.version, "policy reloaded");
                Ok(policy)
            }
            Err(e) => {
                metrics.policy_reloads.with_label_values(&["refused"]).inc();
                tracing::error!(error = %e, "policy reload refused; the previous policy stays in force");
                Err(e)
            }
        }
    }

    /// Watches the file and reloads on change, until the store is dropped. The path is
    /// followed through symlinks each time, and a change of the file it leads to (device,
    /// inode) counts as well as a change of its time or size: a Kubernetes ConfigMap volume
    /// updates by swapping a `..data` symlink to a new folder, which a watch on the first
    /// file's inode or on the link itself would never see.
    pub fn watch(self: &Arc<Self>, every: Duration, metrics: Arc<Metrics>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let version = |p: &Path| std::fs::metadata(p).ok().map(|m| Identity::of(&m));
        let mut seen: Option<Identity> = version(&path);
        let spawned = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(store) = weak.upgrade() else { return };
                    let now = version(&path);
                    if now != seen {
                        seen = now;
                        let _ = store.reload(&metrics);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy file watcher");
        }
    }
}

/// What identifies one version of the policy file.
#[derive(PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        }
    }
}
