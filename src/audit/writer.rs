//! The one writer: drains the queue in batches (one transaction each), hashes items no
//! inspector hashed, appends this instance's records to the fleet stream, applies what the
//! stream brings from other instances, and enforces retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::db::Inserted;
use super::stream::{LAST_APPLIED, Stream};
use super::time::now_ms;
use super::{AuditError, Pending, Record, db};
use crate::telemetry::LogMetrics;

/// Most messages written in one transaction.
const BATCH: usize = 512;
/// How long the writer sleeps between looks at an empty queue: short while records flow,
/// growing to `TICK_MAX` when idle (a record waits at most that long to be written).
const TICK_MIN: Duration = Duration::from_millis(5);
const TICK_MAX: Duration = Duration::from_millis(50);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// Retention steps per turn before the writer goes back to the queue (a large backlog is
/// removed a turn per second, never by holding the queue up).
const RETENTION_STEPS: usize = 20;
/// Longest wait between attempts to reach an unreachable Redis (records still go to the file).
const STREAM_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the stream carries.
pub enum Entry {
    Record(Box<Record>),
    /// An erased identity, by its `db::erasure_mark` (the stream never names it).
    Erase(String),
}

pub enum Msg {
    Record(Box<Pending>),
    /// Entries read from the fleet stream (with their stream ids), up to and including stream
    /// entry `last`; `done` says whether they were applied (the follower re-reads if not).
    Imported {
        last: String,
        entries: Vec<(String, Entry)>,
        done: SyncSender<bool>,
    },
    Erase {
        identity: String,
        reply: Option<SyncSender<Result<db::Erasure, AuditError>>>,
    },
    Flush(SyncSender<()>),
    Stop,
}

pub struct Writer {
    pub conn: Connection,
    pub path: String,
    pub rx: Receiver<Msg>,
    pub stream: Option<Stream>,
    pub metrics: LogMetrics,
    pub retention: Duration,
    pub unhashed: Arc<AtomicUsize>,
    /// An erasure from the stream whose WAL truncate has not succeeded yet (retried each turn).
    pub checkpoint_pending: bool,
    /// Dropped when the writer ends: `DecisionLog::close` waits for that, with a deadline.
    /// Never sent on; held for its drop.
    #[allow(dead_code)]
    pub exited: SyncSender<()>,
}

/// The writer's side of the fleet stream: a connection when there is one, and when to try
/// again when there is not.
#[derive(Default)]
struct Link {
    con: Option<redis::Connection>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Link {
    /// A connection, unless Redis failed recently (then `None` until the backoff passes).
    fn get(&mut self, stream: &Stream) -> Result<&mut redis::Connection, String> {
        if self.con.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err("Redis unreachable (waiting to retry)".into());
            }
            match stream.connect() {
                Ok(c) => {
                    self.con = Some(c);
                    self.retry_at = None;
                    self.backoff = Duration::ZERO;
                }
                Err(e) => {
                    self.failed();
                    return Err(e);
                }
            }
        }
        self.con.as_mut().ok_or_else(|| "no connection".into())
    }

    /// `f` on the connection; a failure of the command drops the connection and backs off
    /// (waiting for the backoff itself does not lengthen it).
    fn run<T>(
        &mut self,
        stream: &Stream,
        f: impl FnOnce(&mut redis::Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let out = f(self.get(stream)?);
        if out.is_err() {
            self.failed();
        }
        out
    }

    fn failed(&mut self) {
        self.con = None;
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(500), STREAM_BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + self.backoff);
    }
}

impl Writer {
    pub fn run(mut self) {
        let mut link = Link::default();
        let mut next_retention = Instant::now();
        let mut sized = Instant::now();
        let mut tick = TICK_MIN;
        loop {
            if Instant::now() >= next_retention {
                let done = self.expire(&mut link);
                next_retention = Instant::now()
                    + if done {
                        RETENTION_EVERY
                    } else {
                        Duration::from_secs(1)
                    };
            }
            // The writer polls rather than blocks: a sender that finds the writer asleep in a
            // blocking receive has to wake it, and on a busy machine the woken writer can take
            // the sender's CPU — the request then waits for a SQLite commit (measured: p99 of
            // handing a record over ~1 ms blocking, see benches/RESULTS.md). Polling keeps the
            // hand-over a plain queue push; records wait at most one tick.
            let first = match self.rx.try_recv() {
                Ok(m) => {
                    tick = TICK_MIN;
                    m
                }
                Err(TryRecvError::Empty) => {
                    let until_retention = next_retention.saturating_duration_since(Instant::now());
                    std::thread::sleep(tick.min(until_retention));
                    tick = (tick * 2).min(TICK_MAX);
                    continue;
                }
                Err(TryRecvError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut records = Vec::new();
            let mut stop = false;
            for msg in batch {
                match msg {
                    Msg::Record(p) => {
                        self.metrics.queue.dec();
                        records.push(self.hashed(*p));
                    }
                    Msg::Imported {
                        last,
                        entries,
                        done,
                    } => {
                        self.commit(&mut records, &mut link);
                        let _ = done.send(self.import(&last, entries, &mut link));
                    }
                    Msg::Erase { identity, reply } => {
                        self.commit(&mut records, &mut link);
                        let out = self.erase(&identity);
                        if let Some(reply) = reply {
                            let _ = reply.send(out);
                        }
                    }
                    Msg::Flush(reply) => {
                        self.commit(&mut records, &mut link);
                        let _ = reply.send(());
                    }
                    Msg::Stop => stop = true,
                }
            }
            self.commit(&mut records, &mut link);
            if self.checkpoint_pending {
                self.checkpoint();
            }
            if sized.elapsed() >= Duration::from_secs(1) {
                self.metrics
                    .store_bytes
                    .set(i64::try_from(self.size()).unwrap_or(i64::MAX));
                sized = Instant::now();
            }
            if stop {
                return;
            }
        }
    }

    /// The record with every item hashed (the bytes it carried let go of).
    fn hashed(&self, p: Pending) -> Record {
        let Pending {
            mut record,
            unhashed,
        } = p;
        for (i, bytes) in unhashed {
            if let Some(item) = record.items.get_mut(i) {
                item.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
            }
            self.unhashed.fetch_sub(bytes.len(), Ordering::AcqRel);
        }
        record
    }

    /// Write this instance's records: the file first (one transaction), then the stream —
    /// each record as stored (identities erased meanwhile taken out).
    fn commit(&mut self, records: &mut Vec<Record>, link: &mut Link) {
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        let written = self.conn.transaction().and_then(|tx| {
            let mut stored = Vec::with_capacity(records.len());
            for r in records.drain(..) {
                if let Inserted::New { record, .. } = db::insert(&tx, r)? {
                    stored.push(*record);
                }
            }
            tx.commit().map(|()| stored)
        });
        records.clear();
        let stored = match written {
            Ok(stored) => {
                self.metrics
                    .written
                    .with_label_values(&["sqlite"])
                    .inc_by(stored.len() as u64);
                stored
            }
            Err(e) => {
                self.metrics
                    .dropped
                    .with_label_values(&["store_error"])
                    .inc_by(n);
                tracing::warn!(file = %self.path, error = %e, records = n, "decision log: write failed; records dropped");
                return;
            }
        };
        let Some(stream) = &self.stream else {
            return;
        };
        if stored.is_empty() {
            return;
        }
        let appended = link.run(stream, |c| stream.append(c, &stored));
        match appended {
            Ok(()) => self
                .metrics
                .written
                .with_label_values(&["redis"])
                .inc_by(stored.len() as u64),
            Err(e) => {
                self.metrics
                    .dropped
                    .with_label_values(&["stream_error"])
                    .inc_by(stored.len() as u64);
                tracing::warn!(error = %e, records = stored.len(), "decision log: stream append failed; kept in this instance's file only");
            }
        }
    }

    /// Apply entries from the fleet stream and remember how far we got, in one transaction.
    /// Records that arrive naming only erased identities are not stored, and are deleted from
    /// the stream too. Returns whether the entries were applied.
    fn import(&mut self, last: &str, entries: Vec<(String, Entry)>, link: &mut Link) -> bool {
        let erasing = entries.iter().any(|(_, e)| matches!(e, Entry::Erase(_)));
        let done = self.conn.transaction().and_then(|tx| {
            let mut added = 0u64;
            let mut refused = Vec::new();
            for (id, e) in entries {
                match e {
                    Entry::Record(r) => match db::insert(&tx, *r)? {
                        Inserted::New { scrubbed, .. } => {
                            added += 1;
                            // It named an erased identity: stored without it, and the
                            // stream entry (which names it) goes.
                            if scrubbed {
                                refused.push(id);
                            }
                        }
                        Inserted::Erased => refused.push(id),
                        Inserted::Duplicate => {}
                    },
                    Entry::Erase(mark) => {
                        db::erase_marked(&tx, &mark)?;
                    }
                }
            }
            db::meta_set(&tx, LAST_APPLIED, last)?;
            tx.commit().map(|()| (added, refused))
        });
        let (added, refused) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(file = %self.path, error = %e, "decision log: applying stream entries failed; they are read again");
                return false;
            }
        };
        self.metrics
            .written
            .with_label_values(&["sqlite"])
            .inc_by(added);
        if erasing {
            self.checkpoint_pending = true;
            self.checkpoint();
        }
        if !refused.is_empty()
            && let Some(stream) = &self.stream
            && let Err(e) = link.run(stream, |c| stream.delete(c, &refused))
        {
            tracing::warn!(error = %e, "decision log: stream entries naming an erased identity not deleted (trimmed later)");
        }
        true
    }

    /// Truncate the WAL after an erasure from the stream; retried next turn if readers hold it.
    fn checkpoint(&mut self) {
        match db::checkpoint(&self.conn) {
            Ok(()) => self.checkpoint_pending = false,
            Err(e) => {
                tracing::warn!(file = %self.path, error = %e, "decision log: WAL not truncated after an erasure yet; retrying")
            }
        }
    }

    fn erase(&mut self, identity: &str) -> Result<db::Erasure, AuditError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| AuditError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let n = db::erase(&tx, identity)
            .and_then(|n| tx.commit().map(|()| n))
            .and_then(|n| db::checkpoint(&self.conn).map(|()| n))
            .map_err(|source| AuditError::Sqlite { path, source })?;
        Ok(n)
    }

    /// Retention: old records out of the file (a few steps per turn) and out of the stream.
    /// Returns whether nothing older than the retention is left.
    fn expire(&mut self, link: &mut Link) -> bool {
        let before =
            now_ms().saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let mut removed = 0u64;
        let mut done = false;
        for _ in 0..RETENTION_STEPS {
            match db::expire_step(&self.conn, before) {
                Ok((0, 0)) => {
                    done = true;
                    break;
                }
                Ok((records, _)) => removed += records as u64,
                Err(e) => {
                    tracing::warn!(file = %self.path, error = %e, "decision log: retention failed");
                    done = true;
                    break;
                }
            }
        }
        self.metrics.expired.inc_by(removed);
        if done && let Err(e) = db::prune_marks(&self.conn) {
            tracing::warn!(file = %self.path, error = %e, "decision log: pruning identity marks failed");
        }
        if done
            && let Some(stream) = &self.stream
            && let Err(e) = link.run(stream, |c| stream.trim(c, before))
        {
            tracing::warn!(error = %e, "decision log: stream trim failed");
        }
        done
    }

    fn size(&self) -> u64 {
        let len = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.path) + len(&format!("{}-wal", self.path))
    }
}
