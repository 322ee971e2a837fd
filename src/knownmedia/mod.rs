//! Known-media matching, like the hash banks platforms share: an operator registers media (or
//! just its hashes) with an action; traffic carrying the same media — byte-identical by SHA-256,
//! or a resized / re-encoded copy of an image by PDQ distance — gets that action.
//!
//! Reads are lock-free (an `ArcSwap` snapshot); writes are serialised, persisted atomically to
//! `state_dir/known-media.json`, then published.

mod fingerprint;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use fingerprint::{Fingerprint, Pdq, fingerprint, hamming, pdq_from_hex, pdq_to_hex};

use crate::extract::MediaItem;
use crate::inspect::{InspectError, Inspector};
use crate::media::MediaType;
use crate::policy::{Action, Finding};
use crate::store::{self, StoreError};

/// Rule id of every known-media finding (entry ids go into the detail, not into metric labels).
pub const RULE: &str = "known-media";

/// Actions a known-media entry may ask for (allow-listing is not a thing here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownAction {
    Block,
    Watermark,
    Tag,
}

impl From<KnownAction> for Action {
    fn from(a: KnownAction) -> Self {
        match a {
            KnownAction::Block => Action::Block,
            KnownAction::Watermark => Action::Watermark,
            KnownAction::Tag => Action::Tag,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// Hex SHA-256 of the registered bytes.
    pub sha256: Option<String>,
    /// Hex PDQ hash (images only).
    pub pdq: Option<String>,
    pub pdq_quality: Option<f32>,
    pub action: KnownAction,
    /// Operator's note (e.g. a case reference). Shown in the audit log, never to clients.
    #[serde(default)]
    pub label: String,
    /// Unix seconds.
    pub added_at: u64,
}

/// An entry to add: hex hashes (at least one), the action and an operator's note.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub sha256: Option<String>,
    /// Hex PDQ hash and, when known, its quality (0–100).
    pub pdq: Option<(String, Option<f32>)>,
    pub action: KnownAction,
    pub label: String,
}

impl NewEntry {
    fn validate(&self) -> Result<(), BankError> {
        if self.sha256.is_none() && self.pdq.is_none() {
            return Err(BankError::Invalid("give sha256, pdq or media".into()));
        }
        if let Some(s) = &self.sha256
            && sha_from_hex(s).is_none()
        {
            return Err(BankError::Invalid(format!(
                "sha256 {s:?} is not 64 hex digits"
            )));
        }
        if let Some((p, _)) = &self.pdq
            && pdq_from_hex(p).is_none()
        {
            return Err(BankError::Invalid(format!(
                "pdq {p:?} is not 64 hex digits"
            )));
        }
        Ok(())
    }
}

/// How an item matched an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Perceptual { distance: u32 },
}

#[derive(Debug, Clone)]
pub struct Match {
    pub entry: Entry,
    pub kind: MatchKind,
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Default)]
struct Snapshot {
    entries: Vec<Entry>,
    by_sha: HashMap<[u8; 32], usize>,
    pdqs: Vec<(Pdq, usize)>,
}

impl Snapshot {
    fn build(entries: Vec<Entry>) -> Self {
        let mut by_sha = HashMap::new();
        let mut pdqs = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(sha) = e.sha256.as_deref().and_then(sha_from_hex) {
                by_sha.entry(sha).or_insert(i);
            }
            if let Some(p) = e.pdq.as_deref().and_then(pdq_from_hex) {
                pdqs.push((p, i));
            }
        }
        Self {
            entries,
            by_sha,
            pdqs,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

pub struct Bank {
    path: PathBuf,
    max_distance: u32,
    max_pixels: u64,
    snapshot: ArcSwap<Snapshot>,
    write: Mutex<()>,
    gauge: prometheus::IntGauge,
}

impl Bank {
    /// Open (or start) the bank at `state_dir/known-media.json`.
    pub fn open(
        state_dir: &std::path::Path,
        cfg: &crate::config::KnownMediaConfig,
        gauge: prometheus::IntGauge,
    ) -> Result<Self, BankError> {
        let path = state_dir.join("known-media.json");
        let entries = store::read_json::<File>(&path)?
            .map(|f| f.entries)
            .unwrap_or_default();
        gauge.set(entries.len() as i64);
        Ok(Self {
            path,
            max_distance: cfg.pdq_max_distance,
            max_pixels: cfg.max_pixels,
            snapshot: ArcSwap::from_pointee(Snapshot::build(entries)),
            write: Mutex::new(()),
            gauge,
        })
    }

    pub fn list(&self) -> Vec<Entry> {
        self.snapshot.load().entries.clone()
    }

    pub fn len(&self) -> usize {
        self.snapshot.load().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fingerprint media bytes (CPU work: call from a blocking context).
    pub fn fingerprint(&self, data: &[u8], media: MediaType) -> Fingerprint {
        fingerprint(data, media, self.max_pixels)
    }

    /// `fingerprint` when the SHA-256 is already known.
    pub fn fingerprint_hashed(
        &self,
        sha256: [u8; 32],
        data: &[u8],
        media: MediaType,
    ) -> Fingerprint {
        fingerprint::fingerprint_hashed(sha256, data, media, self.max_pixels)
    }

    /// Exact match first, else the nearest PDQ hash within the configured distance.
    pub fn lookup(&self, fp: &Fingerprint) -> Option<Match> {
        let snap = self.snapshot.load();
        if let Some(&i) = snap.by_sha.get(&fp.sha256) {
            return Some(Match {
                entry: snap.entries[i].clone(),
                kind: MatchKind::Exact,
            });
        }
        let (pdq, _) = fp.pdq.as_ref()?;
        snap.pdqs
            .iter()
            .map(|(p, i)| (hamming(p, pdq), *i))
            .filter(|(d, _)| *d <= self.max_distance)
            .min_by_key(|(d, _)| *d)
            .map(|(distance, i)| Match {
                entry: snap.entries[i].clone(),
                kind: MatchKind::Perceptual { distance },
            })
    }

    /// Register hashes. At least one of `sha256` / `pdq` (hex) is required.
    pub fn add(
        &self,
        sha256: Option<String>,
        pdq: Option<(String, Option<f32>)>,
        action: KnownAction,
        label: String,
    ) -> Result<Entry, BankError> {
        let mut added = self.add_all(vec![NewEntry {
            sha256,
            pdq,
            action,
            label,
        }])?;
        added
            .pop()
            .ok_or_else(|| BankError::Invalid("nothing added".into()))
    }

    /// Register many hash entries in one write (e.g. importing a shared hash list).
    /// All are validated first: one bad entry adds none.
    pub fn add_all(&self, new: Vec<NewEntry>) -> Result<Vec<Entry>, BankError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut added = Vec::with_capacity(new.len());
        for n in new {
            n.validate()?;
            added.push(Entry {
                id: uuid::Uuid::now_v7().to_string(),
                sha256: n.sha256.map(|s| s.to_ascii_lowercase()),
                pdq_quality: n.pdq.as_ref().and_then(|(_, q)| *q),
                pdq: n.pdq.map(|(p, _)| p.to_ascii_lowercase()),
                action: n.action,
                label: n.label,
                added_at: now,
            });
        }
        self.update(|entries| entries.extend(added.iter().cloned()))?;
        Ok(added)
    }

    /// Register media bytes (CPU work: call from a blocking context).
    pub fn add_media(
        &self,
        data: &[u8],
        media: MediaType,
        action: KnownAction,
        label: String,
    ) -> Result<Entry, BankError> {
        let fp = self.fingerprint(data, media);
        self.add(
            Some(hex::encode(fp.sha256)),
            fp.pdq.map(|(p, q)| (pdq_to_hex(&p), Some(q))),
            action,
            label,
        )
    }

    /// Remove an entry; false when there is none with that id.
    pub fn remove(&self, id: &str) -> Result<bool, BankError> {
        let mut found = false;
        self.update(|entries| {
            let before = entries.len();
            entries.retain(|e| e.id != id);
            found = entries.len() != before;
        })?;
        Ok(found)
    }

    /// Copy-on-write: persist first, publish second, so readers never see unsaved state.
    fn update(&self, change: impl FnOnce(&mut Vec<Entry>)) -> Result<(), BankError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.snapshot.load().entries.clone();
        change(&mut entries);
        store::write_json_atomic(
            &self.path,
            &File {
                version: 1,
                entries: entries.clone(),
            },
        )?;
        self.gauge.set(entries.len() as i64);
        self.snapshot.store(Arc::new(Snapshot::build(entries)));
        Ok(())
    }
}

fn sha_from_hex(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The inspector over a bank.
pub struct KnownMediaInspector {
    bank: Arc<Bank>,
}

impl KnownMediaInspector {
    pub fn new(bank: Arc<Bank>) -> Self {
        Self { bank }
    }
}

#[async_trait]
impl Inspector for KnownMediaInspector {
    fn name(&self) -> &'static str {
        RULE
    }

    async fn inspect(
        &self,
        item: &MediaItem,
        _ctx: &crate::inspect::Context,
    ) -> Result<Vec<Finding>, InspectError> {
        if self.bank.is_empty() {
            return Ok(Vec::new());
        }
        let bank = self.bank.clone();
        let data = item.data.clone();
        let (media, digest) = (item.media, item.digest.clone());
        // Hashing and image decoding are CPU work: off the async runtime.
        let found = tokio::task::spawn_blocking(move || {
            bank.lookup(&bank.fingerprint_hashed(digest.of(&data), &data, media))
        })
        .await
        .map_err(|e| InspectError {
            inspector: RULE,
            detail: format!("hashing task failed: {e}"),
            cause: crate::inspect::Cause::Failed,
        })?;
        Ok(found
            .map(|m| {
                let how = match m.kind {
                    MatchKind::Exact => "sha256".to_string(),
                    MatchKind::Perceptual { distance } => format!("pdq distance {distance}"),
                };
                Finding {
                    item: item.index,
                    inspector: RULE,
                    action: m.entry.action.into(),
                    rule: RULE.into(),
                    detail: format!("matches known media {} by {how}", m.entry.id),
                    headers: Vec::new(),
                    visible: false,
                    license: None,
                    policy_version: None,
                    identity: None,
                }
            })
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(dir: &std::path::Path) -> Bank {
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        Bank::open(dir, &Default::default(), gauge).unwrap()
    }

    #[test]
    fn add_lookup_persist_remove() {
        let dir = tempfile::tempdir().unwrap();
        let b = bank(dir.path());
        let sha = "ab".repeat(32);
        let pdq = "0f".repeat(32);
        let e = b
            .add(
                Some(sha.clone()),
                Some((pdq.clone(), None)),
                KnownAction::Block,
                "case 1".into(),
            )
            .unwrap();
        let mut fp = Fingerprint {
            sha256: sha_from_hex(&sha).unwrap(),
            pdq: None,
        };
        assert_eq!(b.lookup(&fp).unwrap().kind, MatchKind::Exact);
        fp.sha256 = [0; 32];
        let mut near = pdq_from_hex(&pdq).unwrap();
        near[0] ^= 0b111; // 3 bits off
        fp.pdq = Some((near, 1.0));
        assert_eq!(
            b.lookup(&fp).unwrap().kind,
            MatchKind::Perceptual { distance: 3 }
        );
        fp.pdq = Some(([!0, 0, 0, 0], 1.0));
        assert!(b.lookup(&fp).is_none());

        // A fresh process sees the same bank.
        let again = bank(dir.path());
        assert_eq!(again.list().len(), 1);
        assert!(again.remove(&e.id).unwrap());
        assert!(!again.remove(&e.id).unwrap());
        assert!(bank(dir.path()).is_empty());
    }

    #[test]
    fn bad_hashes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = bank(dir.path());
        assert!(
            b.add(Some("xyz".into()), None, KnownAction::Tag, String::new())
                .is_err()
        );
        assert!(b.add(None, None, KnownAction::Tag, String::new()).is_err());
    }
}
