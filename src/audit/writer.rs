//! The one writer: drains the queue in batches (one transaction each), hashes items no
//! inspector hashed, appends this instance's records to the fleet stream, applies what the
//! stream brings from other instances, and enforces retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::stream::{LAST_APPLIED, Stream};
use super::time::now_ms;
use super::{AuditError, Pending, Record, db};
use crate::telemetry::LogMetrics;

/// Most messages written in one transaction.
const BATCH: usize = 512;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// What the stream carries.
pub enum Entry {
    Record(Record),
    /// An erased identity, by its `db::erasure_mark` (the stream never names it).
    Erase(String),
}

pub enum Msg {
    Record(Pending),
    /// Entries read from the fleet stream, up to and including entry id `last`.
    Imported {
        last: String,
        entries: Vec<Entry>,
    },
    Erase {
        identity: String,
        reply: Option<SyncSender<Result<usize, AuditError>>>,
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
}

impl Writer {
    pub fn run(mut self) {
        let mut redis: Option<redis::Connection> = None;
        let mut next_retention = Instant::now();
        let mut sized = Instant::now();
        loop {
            if Instant::now() >= next_retention {
                self.expire(&mut redis);
                next_retention = Instant::now() + RETENTION_EVERY;
            }
            let wait = next_retention.saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
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
                        records.push(self.hashed(p));
                    }
                    Msg::Imported { last, entries } => {
                        self.commit(&mut records, &mut redis);
                        self.import(&last, entries);
                    }
                    Msg::Erase { identity, reply } => {
                        self.commit(&mut records, &mut redis);
                        let out = self.erase(&identity);
                        if let Some(reply) = reply {
                            let _ = reply.send(out);
                        }
                    }
                    Msg::Flush(reply) => {
                        self.commit(&mut records, &mut redis);
                        let _ = reply.send(());
                    }
                    Msg::Stop => stop = true,
                }
            }
            self.commit(&mut records, &mut redis);
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

    /// Write this instance's records: the file first (one transaction), then the stream.
    fn commit(&mut self, records: &mut Vec<Record>, redis: &mut Option<redis::Connection>) {
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        let written = self.conn.transaction().and_then(|tx| {
            for r in records.iter() {
                db::insert(&tx, r)?;
            }
            tx.commit()
        });
        match written {
            Ok(()) => self
                .metrics
                .written
                .with_label_values(&["sqlite"])
                .inc_by(n),
            Err(e) => {
                self.metrics
                    .dropped
                    .with_label_values(&["store_error"])
                    .inc_by(n);
                tracing::warn!(file = %self.path, error = %e, records = n, "decision log: write failed; records dropped");
            }
        }
        if let Some(stream) = &self.stream {
            let appended = connected(stream, redis).and_then(|c| stream.append(c, records));
            match appended {
                Ok(()) => self.metrics.written.with_label_values(&["redis"]).inc_by(n),
                Err(e) => {
                    *redis = None;
                    self.metrics
                        .dropped
                        .with_label_values(&["stream_error"])
                        .inc_by(n);
                    tracing::warn!(error = %e, records = n, "decision log: stream append failed; kept in this instance's file only");
                }
            }
        }
        records.clear();
    }

    /// Apply entries from the fleet stream and remember how far we got, in one transaction.
    fn import(&mut self, last: &str, entries: Vec<Entry>) {
        let erasing = entries.iter().any(|e| matches!(e, Entry::Erase(_)));
        let done = self.conn.transaction().and_then(|tx| {
            let mut added = 0u64;
            for e in &entries {
                match e {
                    Entry::Record(r) => added += u64::from(db::insert(&tx, r)?),
                    Entry::Erase(mark) => {
                        db::erase_marked(&tx, mark)?;
                    }
                }
            }
            db::meta_set(&tx, LAST_APPLIED, last)?;
            tx.commit().map(|()| added)
        });
        let done = done.and_then(|added| {
            if erasing {
                db::checkpoint(&self.conn)?;
            }
            Ok(added)
        });
        match done {
            Ok(added) => self
                .metrics
                .written
                .with_label_values(&["sqlite"])
                .inc_by(added),
            Err(e) => {
                tracing::warn!(file = %self.path, error = %e, "decision log: applying stream entries failed")
            }
        }
    }

    fn erase(&mut self, identity: &str) -> Result<usize, AuditError> {
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

    /// Retention: old records out of the file (in steps) and out of the stream.
    fn expire(&mut self, redis: &mut Option<redis::Connection>) {
        let before =
            now_ms().saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let mut removed = 0u64;
        loop {
            match db::expire_step(&self.conn, before) {
                Ok(0) => break,
                Ok(n) => removed += n as u64,
                Err(e) => {
                    tracing::warn!(file = %self.path, error = %e, "decision log: retention failed");
                    break;
                }
            }
        }
        self.metrics.expired.inc_by(removed);
        if let Some(stream) = &self.stream
            && let Err(e) = connected(stream, redis).and_then(|c| stream.trim(c, before))
        {
            *redis = None;
            tracing::warn!(error = %e, "decision log: stream trim failed");
        }
    }

    fn size(&self) -> u64 {
        let len = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.path) + len(&format!("{}-wal", self.path))
    }
}

fn connected<'a>(
    stream: &Stream,
    con: &'a mut Option<redis::Connection>,
) -> Result<&'a mut redis::Connection, String> {
    if con.is_none() {
        *con = Some(stream.connect()?);
    }
    con.as_mut().ok_or_else(|| "no connection".to_string())
}
