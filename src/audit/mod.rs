//! The decision log: every decision that matters, kept so people can ask about it later — a
//! support engineer holding a 451's `decision_id`, a policy admin asking what a rule blocked,
//! the protected person asking where their likeness was seen (docs/decision-log.md).
//!
//! What a record holds: ids, time, route, side, action, rule, policy version, licensee, the
//! identities matched (id and similarity), each item's kind/format/size/SHA-256/location, the
//! watermark payload and the client address. Never images, embeddings or body bytes.
//!
//! Writes never touch the request path: [`DecisionLog::record`] puts the record on a bounded
//! queue and returns; a full queue drops the record and counts it. One writer thread owns the
//! SQLite file in `state_dir` (WAL) and, with `store: redis`, appends every record to a Redis
//! Stream that every instance follows into its own file, so one query on any instance sees the
//! whole fleet. Queries read the file on their own connections (WAL readers never wait for the
//! writer).

pub mod db;
mod export;
mod stream;
mod time;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::DecisionLogConfig;
use crate::policy::Action;
use crate::telemetry::LogMetrics;

pub use db::{Db, MAX_LIMIT, Page, Query, Report};
pub use export::{csv_rows, jsonl};
pub use time::{now_ms, parse_instant, parse_instant_or_ago, rfc3339_ms};

/// One decision as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The decision id (UUID v7: its first 48 bits are the time, so ids sort by time).
    pub id: String,
    /// When, in milliseconds since the Unix epoch (RFC 3339 in JSON).
    #[serde(with = "time::serde_ms")]
    pub at: i64,
    /// The instance that decided (its host name).
    pub instance: String,
    pub route: String,
    pub side: String,
    pub action: Action,
    pub rule: String,
    pub policy_version: Option<String>,
    pub licensee: Option<String>,
    pub license: Option<String>,
    pub explanation: String,
    pub client: Option<String>,
    /// The watermark payload (hex) a marked file carries back to this record.
    pub watermark: Option<String>,
    /// Why a tag or watermark could not be carried out (the route's `on_failure` applied then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Identities matched in the media, best similarity per identity.
    pub identities: Vec<Matched>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matched {
    pub identity: String,
    pub similarity: f32,
}

/// One media item of the decided body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub kind: String,
    pub format: String,
    pub size: u64,
    /// Hex; `None` only when the log's hashing budget was spent (see `Pending`).
    pub sha256: Option<String>,
    pub location: String,
}

/// A record on its way to the writer: items whose SHA-256 no inspector computed carry their
/// bytes (shared, not copied) so the writer hashes them off the request path.
pub struct Pending {
    pub record: Record,
    pub unhashed: Vec<(usize, Bytes)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("decision log {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("the query ran longer than {0:?}: narrow it (since/until, identity, rule)")]
    TooBroad(Duration),
    #[error("decision log: {0}")]
    Other(String),
}

/// Bytes of unhashed items the queue may hold at once; past it, items are logged without a
/// SHA-256 (counted) rather than pin more request bodies in memory.
const UNHASHED_BUDGET: usize = 64 * 1024 * 1024;

/// The handle the decider records through and the admin API queries through.
pub struct DecisionLog {
    tx: SyncSender<writer::Msg>,
    db: Arc<Db>,
    stream: Option<stream::Stream>,
    metrics: LogMetrics,
    sample_allows: f64,
    instance: String,
    unhashed: Arc<AtomicUsize>,
    /// The writer thread, and the channel that disconnects when it ends.
    writer: std::sync::Mutex<Option<(std::thread::JoinHandle<()>, mpsc::Receiver<()>)>>,
}

impl DecisionLog {
    /// Open (creating) the file and start the writer (and the stream follower when a Redis URL
    /// is given).
    pub fn open(
        config: &DecisionLogConfig,
        state_dir: &std::path::Path,
        redis: Option<stream::Target>,
        metrics: LogMetrics,
    ) -> Result<Arc<Self>, AuditError> {
        let path = file_path(config, state_dir);
        let conn = db::open_writer(&path)?;
        let db = Arc::new(Db::open(&path)?);
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let (exited, ended) = mpsc::sync_channel(1);
        let unhashed = Arc::new(AtomicUsize::new(0));
        let instance = instance_name();
        let stream = redis
            .map(|t| stream::Stream::new(t, config.stream_max_len))
            .transpose()
            .map_err(AuditError::Other)?;
        if let Some(s) = &stream {
            s.follow(tx.clone(), db.clone(), metrics.clone());
        }
        let w = writer::Writer {
            conn,
            path: path.display().to_string(),
            rx,
            stream: stream.clone(),
            metrics: metrics.clone(),
            retention: config.retention,
            unhashed: unhashed.clone(),
            checkpoint_pending: false,
            exited,
        };
        let handle = std::thread::Builder::new()
            .name("likeguard-decision-log".into())
            .spawn(move || w.run())
            .map_err(|e| AuditError::Other(format!("starting the writer: {e}")))?;
        Ok(Arc::new(Self {
            tx,
            db,
            stream,
            metrics,
            sample_allows: config.sample_allows,
            instance,
            unhashed,
            writer: std::sync::Mutex::new(Some((handle, ended))),
        }))
    }

    /// Whether a decision is kept: every block, tag and watermark, every decision naming an
    /// identity (a licensed use is part of the person's report), and `sample_allows` of the
    /// rest.
    pub fn keeps(&self, action: Action, named: bool) -> bool {
        action != Action::Allow
            || named
            || (self.sample_allows > 0.0 && sample() < self.sample_allows)
    }

    /// This instance's name, as records carry it.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Queue a record; never blocks. A full queue drops it (counted).
    pub fn record(&self, mut pending: Pending) {
        let want: usize = pending.unhashed.iter().map(|(_, b)| b.len()).sum();
        if want > 0 {
            let held = self.unhashed.fetch_add(want, Ordering::AcqRel);
            if held + want > UNHASHED_BUDGET {
                self.unhashed.fetch_sub(want, Ordering::AcqRel);
                self.metrics.unhashed.inc_by(pending.unhashed.len() as u64);
                pending.unhashed.clear();
            }
        }
        let bytes: usize = pending.unhashed.iter().map(|(_, b)| b.len()).sum();
        match self.tx.try_send(writer::Msg::Record(Box::new(pending))) {
            Ok(()) => self.metrics.queue.inc(),
            Err(TrySendError::Full(_)) => {
                self.unhashed.fetch_sub(bytes, Ordering::AcqRel);
                self.metrics
                    .dropped
                    .with_label_values(&["queue_full"])
                    .inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.unhashed.fetch_sub(bytes, Ordering::AcqRel);
                self.metrics.dropped.with_label_values(&["stopped"]).inc();
            }
        }
    }

    /// The read side (blocking: call from a blocking context).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Remove every record naming `identity` here and, with a stream, from the stream and
    /// every other instance (Art. 17). Blocking; says what went locally.
    pub fn erase(&self, identity: &str) -> Result<db::Erasure, AuditError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.tx
            .send(writer::Msg::Erase {
                identity: identity.to_string(),
                reply: Some(reply),
            })
            .map_err(|_| AuditError::Other("the writer has stopped".into()))?;
        let local = done
            .recv()
            .map_err(|_| AuditError::Other("the writer has stopped".into()))??;
        if let Some(s) = &self.stream {
            s.erase(identity)
                .map_err(|e| AuditError::Other(format!("erasing from the fleet stream: {e}")))?;
        }
        Ok(local)
    }

    /// Write everything queued so far (blocking, at most `wait`); used at shutdown and by
    /// tests. Returns whether the writer caught up in time.
    pub fn flush(&self, wait: Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        let (reply, done) = mpsc::sync_channel(1);
        if !self.send_by(writer::Msg::Flush(reply), deadline) {
            return false;
        }
        done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// Flush and stop the writer, waiting at most about `wait` (a writer that has not caught
    /// up by then is left to the process exit).
    pub fn close(&self, wait: Duration) {
        let deadline = std::time::Instant::now() + wait;
        if self.flush(wait)
            && self.send_by(writer::Msg::Stop, deadline)
            && let Some((h, ended)) = self.writer.lock().ok().and_then(|mut w| w.take())
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Err(mpsc::RecvTimeoutError::Disconnected) = ended.recv_timeout(left) {
                let _ = h.join();
            }
        }
    }

    /// Queue `msg`, waiting for room until `deadline` at most.
    fn send_by(&self, mut msg: writer::Msg, deadline: std::time::Instant) -> bool {
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
    }
}

/// Where the SQLite file lives: `decision_log.file`, relative to `state_dir`.
pub fn file_path(config: &DecisionLogConfig, state_dir: &std::path::Path) -> PathBuf {
    if config.file.is_absolute() {
        config.file.clone()
    } else {
        state_dir.join(&config.file)
    }
}

pub use stream::Target as StreamTarget;

fn instance_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "likeguard".into())
}

/// A uniform sample in [0, 1) from the OS random source (sampling needs no seedable RNG).
fn sample() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}
