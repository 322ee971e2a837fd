//! State: embedded on local disk (the default), or shared through Redis (`redis.rs`).
//! Files are replaced atomically (write a temporary file, fsync, rename, fsync the directory) so
//! a crash leaves either the old or the new version, never half.

pub mod redis;

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid state file: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("redis: {0}")]
    Redis(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Read a JSON state file; `Ok(None)` when it does not exist yet.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            path: path.display().to_string(),
            source,
        })
}

/// Replace `path` with `value` as JSON, atomically and durably.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    // A failed write (a full disk) leaves the previous file in place and no partial temp file.
    let written = write_file(&tmp, value);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn write_file<T: Serialize>(tmp: &Path, value: &T) -> Result<(), StoreError> {
    {
        // State holds biometric data (reference embeddings): owner-only.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(tmp)
                .map_err(io(tmp))?
        };
        let mut out = std::io::BufWriter::new(&mut file);
        serde_json::to_writer_pretty(&mut out, value).map_err(|e| io(tmp)(e.into()))?;
        out.write_all(b"\n").map_err(io(tmp))?;
        out.flush().map_err(io(tmp))?;
        drop(out);
        file.sync_all().map_err(io(tmp))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), None);
        write_json_atomic(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        std::fs::write(&path, b"[1, 2").unwrap();
        let err = read_json::<Vec<u32>>(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid state file"), "{err}");
    }
}
