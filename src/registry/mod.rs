//! Protected identities: who is enrolled, at what protection level, with which reference
//! embeddings; exact cosine search over them.
//!
//! Reads are lock-free snapshots (`ArcSwap`); changes are serialised, written to
//! `state_dir/identities.json` atomically, then published. Erasure removes the identity and
//! every embedding from memory and from the file before it returns (GDPR Art. 17).
//! Embeddings never appear in logs, listings or errors; only `export` returns them (Art. 20).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::inference::Embedding;
use crate::store::redis::{Kind, RedisStore};
use crate::store::{StoreError, read_json, write_json_atomic};

const FILE: &str = "identities.json";

/// How strongly an identity's likeness is protected; the policy acts on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Blocked unless licensed.
    #[default]
    Strict,
    /// Allowed, tagged.
    Standard,
    /// Allowed, recorded.
    Monitor,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Standard => "standard",
            Self::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" => Some(Self::Strict),
            "standard" => Some(Self::Standard),
            "monitor" => Some(Self::Monitor),
            _ => None,
        }
    }
}

/// Who consented to protection, when and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub by: String,
    /// RFC 3339 or any timestamp the operator records.
    pub at: String,
    pub method: String,
}

/// An identity as stored (with its reference embeddings).
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub protection: Protection,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub consent: Option<Consent>,
    /// Unix seconds.
    pub created_at: u64,
    pub embeddings: Vec<Vec<f32>>,
}

/// An identity without its embeddings: what listings, matches and logs may show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityView {
    pub id: String,
    pub name: String,
    pub protection: Protection,
    pub owner: Option<String>,
    pub consent: Option<Consent>,
    pub created_at: u64,
    pub references: usize,
}

/// Never prints embeddings.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("protection", &self.protection)
            .field("references", &self.embeddings.len())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Identity {
    fn new(n: NewIdentity, created_at: u64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            name: n.name.trim().to_string(),
            protection: n.protection,
            owner: n.owner,
            consent: n.consent,
            created_at,
            embeddings: n.embeddings.iter().map(|e| e.as_slice().to_vec()).collect(),
        }
    }

    pub fn view(&self) -> IdentityView {
        IdentityView {
            id: self.id.clone(),
            name: self.name.clone(),
            protection: self.protection,
            owner: self.owner.clone(),
            consent: self.consent.clone(),
            created_at: self.created_at,
            references: self.embeddings.len(),
        }
    }
}

/// What enrolment supplies.
pub struct NewIdentity {
    pub name: String,
    pub protection: Protection,
    pub owner: Option<String>,
    pub consent: Option<Consent>,
    pub embeddings: Vec<Embedding>,
}

/// The best-matching identity for one face.
#[derive(Debug, Clone)]
pub struct Match {
    pub identity: Arc<Identity>,
    pub similarity: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    identities: Vec<Identity>,
}

/// One published state: identities plus a flat row-major matrix of every reference embedding.
#[derive(Default)]
struct Snapshot {
    identities: Vec<Arc<Identity>>,
    /// `rows × dim` unit vectors.
    matrix: Vec<f32>,
    /// Identity index of each row.
    owner: Vec<usize>,
    dim: usize,
    version: u64,
}

impl Snapshot {
    fn build(identities: Vec<Arc<Identity>>, version: u64) -> Self {
        let dim = identities
            .iter()
            .flat_map(|i| i.embeddings.first())
            .map(Vec::len)
            .next()
            .unwrap_or(0);
        let mut matrix = Vec::new();
        let mut owner = Vec::new();
        for (k, identity) in identities.iter().enumerate() {
            for e in identity.embeddings.iter().filter(|e| e.len() == dim) {
                matrix.extend_from_slice(e);
                owner.push(k);
            }
        }
        Self {
            identities,
            matrix,
            owner,
            dim,
            version,
        }
    }
}

/// Where changes are kept.
enum Storage {
    /// `state_dir/identities.json`.
    File(PathBuf),
    /// Redis, shared with other instances (see `store::redis`).
    Shared(Arc<RedisStore>),
}

/// What one change did (so a shared store writes only that entity).
enum Change<'a> {
    Put(&'a Identity),
    Delete(&'a str),
    /// Many at once (embedded store only).
    Bulk,
}

pub struct Registry {
    storage: Storage,
    current: ArcSwap<Snapshot>,
    /// Serialises changes (read-modify-write of the file).
    write: Mutex<()>,
}

impl Registry {
    /// Opens (or starts) the registry kept in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, RegistryError> {
        let path = state_dir.join(FILE);
        let stored: Stored = read_json(&path)?.unwrap_or_default();
        let identities = stored.identities.into_iter().map(Arc::new).collect();
        Ok(Self {
            storage: Storage::File(path),
            current: ArcSwap::from_pointee(Snapshot::build(identities, 0)),
            write: Mutex::new(()),
        })
    }

    /// A registry shared through Redis: loads everything now; call `on_event` with the store's
    /// events to follow other instances' changes.
    pub fn shared(store: Arc<RedisStore>) -> Result<Self, RegistryError> {
        let registry = Self {
            storage: Storage::Shared(store),
            current: ArcSwap::from_pointee(Snapshot::default()),
            write: Mutex::new(()),
        };
        registry.resync()?;
        Ok(registry)
    }

    /// `Some(false)` while the shared store is unreachable; `None` for the embedded file.
    pub fn shared_healthy(&self) -> Option<bool> {
        match &self.storage {
            Storage::File(_) => None,
            Storage::Shared(s) => Some(s.healthy()),
        }
    }

    /// Reloads every identity from the shared store.
    pub fn resync(&self) -> Result<(), RegistryError> {
        let Storage::Shared(store) = &self.storage else {
            return Ok(());
        };
        let mut ids = Vec::new();
        for json in store.load_all(Kind::Identity)? {
            match serde_json::from_str::<Identity>(&json) {
                Ok(i) => ids.push(Arc::new(i)),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable identity in redis"),
            }
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(Snapshot::build(ids, version)));
        Ok(())
    }

    /// Applies another instance's change to one identity (re-read from the shared store).
    pub fn refresh(&self, id: &str) -> Result<(), RegistryError> {
        let Storage::Shared(store) = &self.storage else {
            return Ok(());
        };
        let fresh = match store.get(Kind::Identity, id)? {
            Some(json) => Some(Arc::new(serde_json::from_str::<Identity>(&json).map_err(
                |e| RegistryError::Invalid(format!("identity {id} in redis: {e}")),
            )?)),
            None => None,
        };
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load();
        let mut ids: Vec<_> = current
            .identities
            .iter()
            .filter(|i| i.id != id)
            .cloned()
            .collect();
        ids.extend(fresh);
        self.current
            .store(Arc::new(Snapshot::build(ids, current.version + 1)));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.current.load().identities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.current.load().identities.len()
    }

    /// Changes since start; part of cache keys and decisions.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    pub fn list(&self) -> Vec<IdentityView> {
        self.current
            .load()
            .identities
            .iter()
            .map(|i| i.view())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Identity>> {
        self.current
            .load()
            .identities
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Enrols a new identity; returns it once it is on disk and visible to searches.
    pub fn add(&self, new: NewIdentity) -> Result<Arc<Identity>, RegistryError> {
        if new.name.trim().is_empty() {
            return Err(RegistryError::Invalid("name must not be empty".into()));
        }
        if new.embeddings.is_empty() {
            return Err(RegistryError::Invalid(
                "at least one reference photo is needed".into(),
            ));
        }
        let identity = Arc::new(Identity::new(new, unix_now()));
        self.change(Change::Put(&identity), |ids| ids.push(identity.clone()))?;
        Ok(identity)
    }

    /// Enrols many identities in one write (imports, benchmarks). Only for the embedded store.
    pub fn add_many(
        &self,
        new: impl IntoIterator<Item = NewIdentity>,
    ) -> Result<usize, RegistryError> {
        let Storage::File(_) = &self.storage else {
            return Err(RegistryError::Invalid(
                "bulk enrolment is for the embedded store".into(),
            ));
        };
        let now = unix_now();
        let added: Vec<Arc<Identity>> = new
            .into_iter()
            .map(|n| Arc::new(Identity::new(n, now)))
            .collect();
        let count = added.len();
        self.change(Change::Bulk, |ids| ids.extend(added))?;
        Ok(count)
    }

    /// Erases an identity and all its embeddings. `false` when there was none.
    pub fn remove(&self, id: &str) -> Result<bool, RegistryError> {
        if self.get(id).is_none() {
            return Ok(false);
        }
        self.change(Change::Delete(id), |ids| ids.retain(|i| i.id != id))?;
        Ok(true)
    }

    fn change(
        &self,
        change: Change<'_>,
        edit: impl FnOnce(&mut Vec<Arc<Identity>>),
    ) -> Result<(), RegistryError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load();
        let mut ids = current.identities.clone();
        edit(&mut ids);
        match (&self.storage, change) {
            (Storage::File(path), _) => {
                let stored = Stored {
                    identities: ids.iter().map(|i| (**i).clone()).collect(),
                };
                write_json_atomic(path, &stored)?;
            }
            (Storage::Shared(store), Change::Put(identity)) => {
                let json = serde_json::to_string(identity)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                store.put(Kind::Identity, &identity.id, &json)?;
            }
            (Storage::Shared(store), Change::Delete(id)) => store.delete(Kind::Identity, id)?,
            (Storage::Shared(_), Change::Bulk) => {
                return Err(RegistryError::Invalid(
                    "bulk enrolment is for the embedded store".into(),
                ));
            }
        }
        self.current
            .store(Arc::new(Snapshot::build(ids, current.version + 1)));
        Ok(())
    }

    /// The identity whose closest reference embedding is most similar to `face`, when that
    /// similarity reaches `threshold`. Exact search over every reference.
    pub fn search(&self, face: &Embedding, threshold: f32) -> Option<Match> {
        let snap = self.current.load();
        let v = face.as_slice();
        if snap.dim == 0 || v.len() != snap.dim {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (row, owner) in snap.matrix.chunks_exact(snap.dim).zip(&snap.owner) {
            let s = dot(row, v);
            if s >= threshold && best.is_none_or(|(_, b)| s > b) {
                best = Some((*owner, s));
            }
        }
        best.map(|(k, similarity)| Match {
            identity: snap.identities[k].clone(),
            similarity,
        })
    }
}

/// Dot product with eight independent accumulators: the compiler turns it into SIMD
/// multiply-adds (a single running sum would serialise on its dependency chain).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Embedding {
        Embedding::normalised(v).unwrap()
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..197).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..197).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }

    #[test]
    fn enrol_search_erase_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let x = reg
            .add(NewIdentity {
                name: "X".into(),
                protection: Protection::Strict,
                owner: None,
                consent: None,
                embeddings: vec![unit(&[1.0, 0.0, 0.0]), unit(&[0.9, 0.1, 0.0])],
            })
            .unwrap();
        reg.add(NewIdentity {
            name: "Y".into(),
            protection: Protection::Standard,
            owner: None,
            consent: None,
            embeddings: vec![unit(&[0.0, 1.0, 0.0])],
        })
        .unwrap();
        let m = reg.search(&unit(&[0.95, 0.05, 0.0]), 0.5).unwrap();
        assert_eq!(m.identity.id, x.id);
        assert!(reg.search(&unit(&[0.0, 0.0, 1.0]), 0.5).is_none());

        let reopened = Registry::open(dir.path()).unwrap();
        assert_eq!(reopened.list().len(), 2);
        assert!(reopened.remove(&x.id).unwrap());
        assert!(reopened.search(&unit(&[1.0, 0.0, 0.0]), 0.5).is_none());
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!text.contains(&x.id), "erased identity still on disk");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "identity file readable by others: {mode:o}"
        );
        assert!(!reopened.remove(&x.id).unwrap());
    }
}
