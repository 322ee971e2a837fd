//! Protected identities: who is enrolled, at what protection level, with which reference
//! embeddings; nearest-neighbour search over them (`index`: exact, or HNSW when large).
//!
//! Changes are serialised, written to `state_dir/identities.json` atomically (or to Redis),
//! then applied in place under a short write lock: no change rebuilds the search index. Erasure removes the identity and
//! every embedding from memory and from the file before it returns (GDPR Art. 17).
//! Embeddings never appear in logs, listings or errors; only `export` returns them (Art. 20).

mod index;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

pub use index::{IndexError, Key, VectorIndex};

use crate::config::SearchConfig;

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

#[derive(Default, Deserialize)]
struct Stored {
    identities: Vec<Identity>,
}

/// What the embedded file holds (written from references, without cloning embeddings).
#[derive(Serialize)]
struct StoredRef<'a> {
    identities: Vec<&'a Identity>,
}

/// The identities and the search index over their reference embeddings, changed in place.
struct State {
    /// By id; uuid v7 ids sort by enrolment time.
    identities: BTreeMap<String, Arc<Identity>>,
    /// Index key → the identity that reference belongs to.
    owner_of: HashMap<Key, Arc<Identity>>,
    /// Identity id → its references' keys (erasure finds them without a scan).
    keys_of: HashMap<String, Vec<Key>>,
    index: VectorIndex,
    next_key: Key,
    version: u64,
}

impl State {
    fn new(config: &SearchConfig, version: u64) -> Self {
        Self {
            identities: BTreeMap::new(),
            owner_of: HashMap::new(),
            keys_of: HashMap::new(),
            index: VectorIndex::new(config),
            next_key: 0,
            version,
        }
    }

    /// A whole state at once (start-up, resync): one parallel index build.
    fn build(config: &SearchConfig, identities: Vec<Arc<Identity>>, version: u64) -> Self {
        let mut state = Self::new(config, version);
        state.put_many(identities);
        state
    }

    /// Adds identities (replacing any with the same id) and indexes their references.
    fn put_many(&mut self, identities: Vec<Arc<Identity>>) {
        for identity in &identities {
            self.remove(&identity.id);
        }
        let mut items: Vec<(Key, &[f32])> = Vec::new();
        for identity in &identities {
            let mut keys = Vec::with_capacity(identity.embeddings.len());
            for e in &identity.embeddings {
                let key = self.next_key;
                self.next_key += 1;
                self.owner_of.insert(key, identity.clone());
                keys.push(key);
                items.push((key, e.as_slice()));
            }
            self.keys_of.insert(identity.id.clone(), keys);
        }
        if let Err(e) = self.index.insert_many(&items) {
            // Only a dimension mismatch (a changed embedder): those references cannot match.
            tracing::error!(error = %e, "reference embeddings not indexed");
        }
        for identity in identities {
            self.identities.insert(identity.id.clone(), identity);
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        if self.identities.remove(id).is_none() {
            return false;
        }
        for key in self.keys_of.remove(id).unwrap_or_default() {
            self.owner_of.remove(&key);
            self.index.remove(key);
        }
        true
    }
}

/// Where changes are kept.
enum Storage {
    /// `state_dir/identities.json`.
    File(PathBuf),
    /// Redis, shared with other instances (see `store::redis`).
    Shared(Arc<RedisStore>),
}

/// What one change does.
enum Change {
    Put(Vec<Arc<Identity>>),
    Delete(String),
}

pub struct Registry {
    storage: Storage,
    state: RwLock<State>,
    search: SearchConfig,
    /// Serialises changes: storage write, then the in-memory update, in one order.
    write: Mutex<()>,
}

fn read(lock: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write(lock: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Opens (or starts) the registry kept in `state_dir`.
    pub fn open(state_dir: &Path, search: &SearchConfig) -> Result<Self, RegistryError> {
        let path = state_dir.join(FILE);
        let stored: Stored = read_json(&path)?.unwrap_or_default();
        let identities = stored.identities.into_iter().map(Arc::new).collect();
        Ok(Self {
            storage: Storage::File(path),
            state: RwLock::new(State::build(search, identities, 0)),
            search: search.clone(),
            write: Mutex::new(()),
        })
    }

    /// A registry shared through Redis: loads everything now; call `refresh`/`resync` with the
    /// store's events to follow other instances' changes.
    pub fn shared(store: Arc<RedisStore>, search: &SearchConfig) -> Result<Self, RegistryError> {
        let registry = Self {
            storage: Storage::Shared(store),
            state: RwLock::new(State::new(search, 0)),
            search: search.clone(),
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

    /// Reloads every identity from the shared store. The new state (and its index) is built
    /// aside and swapped in: searches keep using the old one meanwhile.
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
        let version = read(&self.state).version + 1;
        let fresh = State::build(&self.search, ids, version);
        *write(&self.state) = fresh;
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
        let mut state = write(&self.state);
        state.remove(id);
        state.put_many(fresh.into_iter().collect());
        state.version += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        read(&self.state).identities.is_empty()
    }

    pub fn len(&self) -> usize {
        read(&self.state).identities.len()
    }

    /// Changes since start; part of cache keys and decisions.
    pub fn version(&self) -> u64 {
        read(&self.state).version
    }

    pub fn list(&self) -> Vec<IdentityView> {
        read(&self.state)
            .identities
            .values()
            .map(|i| i.view())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Identity>> {
        read(&self.state).identities.get(id).cloned()
    }

    /// Enrols a new identity; returns it once it is stored and visible to searches.
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
        self.change(Change::Put(vec![identity.clone()]))?;
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
        self.change(Change::Put(added))?;
        Ok(count)
    }

    /// Erases an identity and all its embeddings. `false` when there was none.
    pub fn remove(&self, id: &str) -> Result<bool, RegistryError> {
        if self.get(id).is_none() {
            return Ok(false);
        }
        self.change(Change::Delete(id.to_string()))?;
        Ok(true)
    }

    /// Stores a change, then applies it in memory (so memory never shows what storage lacks).
    fn change(&self, change: Change) -> Result<(), RegistryError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        match (&self.storage, &change) {
            (Storage::File(path), _) => {
                let state = read(&self.state);
                let mut identities: Vec<&Identity> = match &change {
                    // New first: after the stable sort, `dedup` keeps them over older copies.
                    Change::Put(new) => new
                        .iter()
                        .map(|i| &**i)
                        .chain(state.identities.values().map(|i| &**i))
                        .collect(),
                    Change::Delete(id) => state
                        .identities
                        .values()
                        .filter(|i| &i.id != id)
                        .map(|i| &**i)
                        .collect(),
                };
                identities.sort_by(|a, b| a.id.cmp(&b.id));
                identities.dedup_by(|a, b| a.id == b.id);
                write_json_atomic(path, &StoredRef { identities })?;
            }
            (Storage::Shared(store), Change::Put(new)) => {
                let [identity] = new.as_slice() else {
                    return Err(RegistryError::Invalid(
                        "bulk enrolment is for the embedded store".into(),
                    ));
                };
                let json = serde_json::to_string(&**identity)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                store.put(Kind::Identity, &identity.id, &json)?;
            }
            (Storage::Shared(store), Change::Delete(id)) => store.delete(Kind::Identity, id)?,
        }
        let mut state = write(&self.state);
        match change {
            Change::Put(new) => state.put_many(new),
            Change::Delete(id) => {
                state.remove(&id);
            }
        }
        state.version += 1;
        Ok(())
    }

    /// The identity whose closest reference embedding is most similar to `face`, when that
    /// similarity reaches `threshold`.
    pub fn search(&self, face: &Embedding, threshold: f32) -> Option<Match> {
        self.search_top(face, 1, threshold).into_iter().next()
    }

    /// Up to `k` distinct identities whose references reach `threshold`, most similar first.
    /// Exact below `search.ann_min_references` references, ANN (re-scored) above.
    pub fn search_top(&self, face: &Embedding, k: usize, threshold: f32) -> Vec<Match> {
        let state = read(&self.state);
        // Several references per identity: ask for more rows than identities wanted.
        let rows = state
            .index
            .search(face.as_slice(), k.saturating_mul(4).max(1));
        let mut out: Vec<Match> = Vec::with_capacity(k);
        for (key, similarity) in rows {
            if similarity < threshold || out.len() == k {
                break;
            }
            let Some(identity) = state.owner_of.get(&key) else {
                continue;
            };
            if out.iter().all(|m| m.identity.id != identity.id) {
                out.push(Match {
                    identity: identity.clone(),
                    similarity,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Embedding {
        Embedding::normalised(v).unwrap()
    }

    #[test]
    fn enrol_search_erase_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path(), &SearchConfig::default()).unwrap();
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

        let reopened = Registry::open(dir.path(), &SearchConfig::default()).unwrap();
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
