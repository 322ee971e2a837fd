//! Licenses: what a licensee may do with an identity's likeness, until when, and under which
//! obligations. Stored like the registry (atomic JSON file, lock-free snapshots); a revocation
//! is in effect for the next request once `revoke` returns.

pub mod requester;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::media::MediaKind;
use crate::store::redis::{Kind, RedisStore};
use crate::store::{StoreError, read_json, write_json_atomic};

const FILE: &str = "licenses.json";

/// What the licensee must do when using the likeness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Obligation {
    Watermark,
    Tag,
}

impl Obligation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watermark => "watermark",
            Self::Tag => "tag",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct License {
    pub id: String,
    pub identity_id: String,
    pub licensee: String,
    /// e.g. `commercial`, `editorial`, `personal`.
    #[serde(default)]
    pub usages: Vec<String>,
    /// Media kinds covered; empty = all.
    #[serde(default)]
    pub media_kinds: Vec<MediaKind>,
    /// RFC 3339; absent = from grant / forever.
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub obligations: Vec<Obligation>,
}

/// A grant request (the admin API's JSON body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    pub identity_id: String,
    pub licensee: String,
    #[serde(default)]
    pub usages: Vec<String>,
    #[serde(default)]
    pub media_kinds: Vec<MediaKind>,
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub obligations: Vec<Obligation>,
}

#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

fn parse_time(field: &str, v: &Option<String>) -> Result<Option<SystemTime>, LicenseError> {
    v.as_deref()
        .map(|s| {
            humantime::parse_rfc3339_weak(s).map_err(|e| {
                LicenseError::Invalid(format!("{field} {s:?} is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()
}

impl License {
    /// In force at `now` for `kind` (times were validated at grant).
    pub fn active(&self, now: SystemTime, kind: MediaKind) -> bool {
        let from = parse_time("valid_from", &self.valid_from).ok().flatten();
        let until = parse_time("valid_until", &self.valid_until).ok().flatten();
        from.is_none_or(|f| now >= f)
            && until.is_none_or(|u| now < u)
            && (self.media_kinds.is_empty() || self.media_kinds.contains(&kind))
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    licenses: Vec<License>,
}

enum Storage {
    File(PathBuf),
    Shared(Arc<RedisStore>),
}

enum Change<'a> {
    Put(&'a License),
    Delete(&'a str),
    DeleteMany(Vec<String>),
}

pub struct Licenses {
    storage: Storage,
    current: ArcSwap<Vec<License>>,
    /// Bumped on every change (local or from other instances): part of decision-cache keys,
    /// so no cached decision outlives a revocation.
    version: std::sync::atomic::AtomicU64,
    write: Mutex<()>,
}

impl Licenses {
    pub fn open(state_dir: &Path) -> Result<Self, LicenseError> {
        let path = state_dir.join(FILE);
        let stored: Stored = read_json(&path)?.unwrap_or_default();
        Ok(Self {
            storage: Storage::File(path),
            current: ArcSwap::from_pointee(stored.licenses),
            write: Mutex::new(()),
            version: Default::default(),
        })
    }

    /// Licenses shared through Redis (see `Registry::shared`).
    pub fn shared(store: Arc<RedisStore>) -> Result<Self, LicenseError> {
        let licenses = Self {
            storage: Storage::Shared(store),
            current: ArcSwap::from_pointee(Vec::new()),
            write: Mutex::new(()),
            version: Default::default(),
        };
        licenses.resync()?;
        Ok(licenses)
    }

    pub fn resync(&self) -> Result<(), LicenseError> {
        let Storage::Shared(store) = &self.storage else {
            return Ok(());
        };
        let all: Vec<License> = store
            .load_all(Kind::License)?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(all));
        self.bump();
        Ok(())
    }

    /// Applies another instance's change to one license.
    pub fn refresh(&self, id: &str) -> Result<(), LicenseError> {
        let Storage::Shared(store) = &self.storage else {
            return Ok(());
        };
        let fresh: Option<License> = match store.get(Kind::License, id)? {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| LicenseError::Invalid(format!("license {id} in redis: {e}")))?,
            ),
            None => None,
        };
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<License> = self
            .current
            .load()
            .iter()
            .filter(|l| l.id != id)
            .cloned()
            .collect();
        all.extend(fresh);
        self.current.store(Arc::new(all));
        self.bump();
        Ok(())
    }

    /// Changes seen so far.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn list(&self) -> Vec<License> {
        self.current.load().as_ref().clone()
    }

    /// Records a license. The caller checks that the identity exists.
    pub fn grant(&self, new: NewLicense) -> Result<License, LicenseError> {
        if new.licensee.trim().is_empty() {
            return Err(LicenseError::Invalid("licensee must not be empty".into()));
        }
        let from = parse_time("valid_from", &new.valid_from)?;
        let until = parse_time("valid_until", &new.valid_until)?;
        if let (Some(f), Some(u)) = (from, until)
            && u <= f
        {
            return Err(LicenseError::Invalid(
                "valid_until must be after valid_from".into(),
            ));
        }
        let license = License {
            id: uuid::Uuid::now_v7().to_string(),
            identity_id: new.identity_id,
            licensee: new.licensee.trim().to_string(),
            usages: new.usages,
            media_kinds: new.media_kinds,
            valid_from: new.valid_from,
            valid_until: new.valid_until,
            obligations: new.obligations,
        };
        self.change(Change::Put(&license), |all| all.push(license.clone()))?;
        Ok(license)
    }

    /// Revokes one license; `false` when there was none.
    pub fn revoke(&self, id: &str) -> Result<bool, LicenseError> {
        if !self.current.load().iter().any(|l| l.id == id) {
            return Ok(false);
        }
        self.change(Change::Delete(id), |all| all.retain(|l| l.id != id))?;
        Ok(true)
    }

    /// Removes every license of an identity (erasure).
    pub fn remove_identity(&self, identity_id: &str) -> Result<usize, LicenseError> {
        let ids: Vec<String> = self
            .current
            .load()
            .iter()
            .filter(|l| l.identity_id == identity_id)
            .map(|l| l.id.clone())
            .collect();
        let removed = ids.len();
        if removed > 0 {
            self.change(Change::DeleteMany(ids), |all| {
                all.retain(|l| l.identity_id != identity_id)
            })?;
        }
        Ok(removed)
    }

    /// The license in force for this identity, licensee and media kind, if any.
    pub fn active_for(
        &self,
        identity_id: &str,
        licensee: &str,
        kind: MediaKind,
        now: SystemTime,
    ) -> Option<License> {
        self.current
            .load()
            .iter()
            .find(|l| l.identity_id == identity_id && l.licensee == licensee && l.active(now, kind))
            .cloned()
    }

    fn change(
        &self,
        change: Change<'_>,
        edit: impl FnOnce(&mut Vec<License>),
    ) -> Result<(), LicenseError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.current.load().as_ref().clone();
        edit(&mut all);
        match (&self.storage, change) {
            (Storage::File(path), _) => write_json_atomic(
                path,
                &Stored {
                    licenses: all.clone(),
                },
            )?,
            (Storage::Shared(store), Change::Put(l)) => {
                let json =
                    serde_json::to_string(l).map_err(|e| LicenseError::Invalid(e.to_string()))?;
                store.put(Kind::License, &l.id, &json)?;
            }
            (Storage::Shared(store), Change::Delete(id)) => store.delete(Kind::License, id)?,
            (Storage::Shared(store), Change::DeleteMany(ids)) => {
                for id in ids {
                    store.delete(Kind::License, &id)?;
                }
            }
        }
        self.current.store(Arc::new(all));
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(l: &Licenses, until: Option<&str>) -> Result<License, LicenseError> {
        l.grant(NewLicense {
            identity_id: "x".into(),
            licensee: "acme".into(),
            usages: vec!["commercial".into()],
            media_kinds: vec![],
            valid_from: None,
            valid_until: until.map(str::to_string),
            obligations: vec![Obligation::Tag],
        })
    }

    #[test]
    fn grant_expire_revoke_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let l = Licenses::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let live = grant(&l, Some("2999-01-01T00:00:00Z")).unwrap();
        assert!(l.active_for("x", "acme", MediaKind::Image, now).is_some());
        assert!(l.active_for("x", "other", MediaKind::Image, now).is_none());
        assert!(grant(&l, Some("yesterday")).is_err());
        let expired = grant(&l, Some("2001-01-01T00:00:00Z")).unwrap();
        assert!(!expired.active(now, MediaKind::Image));
        assert!(l.revoke(&live.id).unwrap());
        assert!(l.active_for("x", "acme", MediaKind::Image, now).is_none());
        assert_eq!(Licenses::open(dir.path()).unwrap().list().len(), 1);
        assert_eq!(l.remove_identity("x").unwrap(), 1);
    }
}
