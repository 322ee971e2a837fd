//! The fleet's log: one Redis Stream (`P:decisions`, `P` = `store.prefix`) every instance
//! appends its records to and follows into its own SQLite file.
//!
//! Entries carry one field: `r` (a record as JSON) or `e` (the SHA-256 of an erased identity's
//! id: every follower removes that identity's records from its file; the stream never names an
//! erased identity, not even in the marker). The stream is capped by length on
//! every append (`MAXLEN ~ decision_log.stream_max_len`) and by age at each retention pass
//! (`XTRIM MINID`). Each follower keeps the last entry id it applied in its file, so a restart
//! resumes where it stopped; a follower that was away longer than the stream keeps lost only
//! what the cap trimmed.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use redis::Value;

use super::writer::{Entry, Msg};
use super::{Db, Record};
use crate::telemetry::LogMetrics;

use crate::store::redis::TIMEOUT;
/// How long one XREAD waits for new entries.
const BLOCK_MS: u64 = 1000;
/// Meta key of the last stream entry applied.
pub const LAST_APPLIED: &str = "stream_last_id";

/// Where the fleet's stream lives.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub prefix: String,
}

#[derive(Clone)]
pub struct Stream {
    client: redis::Client,
    key: String,
    max_len: u64,
}

fn err(e: redis::RedisError) -> String {
    // Never the URL: it may hold a password.
    e.to_string()
}

impl Stream {
    pub fn new(t: Target, max_len: u64) -> Result<Self, String> {
        Ok(Self {
            client: redis::Client::open(t.url.as_str()).map_err(err)?,
            key: format!("{}:decisions", t.prefix),
            max_len: max_len.max(1),
        })
    }

    pub fn connect(&self) -> Result<redis::Connection, String> {
        crate::store::redis::connect(&self.client).map_err(err)
    }

    /// Append records in one round trip.
    pub fn append(&self, con: &mut redis::Connection, records: &[Record]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for r in records {
            let json = serde_json::to_string(r).map_err(|e| e.to_string())?;
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("r")
                .arg(json)
                .ignore();
        }
        pipe.query::<()>(con).map_err(err)
    }

    /// Delete entries by stream id.
    pub fn delete(&self, con: &mut redis::Connection, ids: &[String]) -> Result<(), String> {
        redis::cmd("XDEL")
            .arg(&self.key)
            .arg(ids)
            .query::<i64>(con)
            .map(|_| ())
            .map_err(err)
    }

    /// Drop entries older than `before_ms` (entry ids start with their time in ms).
    pub fn trim(&self, con: &mut redis::Connection, before_ms: i64) -> Result<(), String> {
        redis::cmd("XTRIM")
            .arg(&self.key)
            .arg("MINID")
            .arg("~")
            .arg(before_ms.max(0))
            .query::<i64>(con)
            .map(|_| ())
            .map_err(err)
    }

    /// Delete every entry naming `identity`, then append the tombstone that tells every
    /// follower to erase it from its own file. Returns the entries deleted.
    pub fn erase(&self, identity: &str) -> Result<usize, String> {
        let mut con = self.connect()?;
        let mut start = "-".to_string();
        let mut deleted = 0;
        loop {
            let page: Value = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .map_err(err)?;
            let entries = parse_entries(&page);
            let Some((last, _)) = entries.last() else {
                break;
            };
            start = format!("({last}");
            let naming: Vec<&String> = entries
                .iter()
                .filter(|(_, e)| {
                    matches!(e, Some(Entry::Record(r)) if r.identities.iter().any(|m| m.identity == identity))
                })
                .map(|(id, _)| id)
                .collect();
            if !naming.is_empty() {
                deleted += redis::cmd("XDEL")
                    .arg(&self.key)
                    .arg(&naming)
                    .query::<usize>(&mut con)
                    .map_err(err)?;
            }
        }
        redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg("e")
            .arg(super::db::erasure_mark(identity))
            .query::<String>(&mut con)
            .map_err(err)?;
        Ok(deleted)
    }

    /// Follow the stream into this instance's file, from the last entry applied, until the
    /// writer goes away. Reconnects with backoff while Redis is unreachable.
    pub fn follow(&self, tx: SyncSender<Msg>, db: Arc<Db>, metrics: LogMetrics) {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("likeguard-decision-stream".into())
            .spawn(move || {
                let mut last = db
                    .last_applied()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "0".to_string());
                let mut backoff = Duration::from_millis(200);
                loop {
                    let mut con = match this.connect() {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "decision stream: Redis unreachable; retrying");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    };
                    if con
                        .set_read_timeout(Some(TIMEOUT + Duration::from_millis(BLOCK_MS)))
                        .is_err()
                    {
                        continue;
                    }
                    backoff = Duration::from_millis(200);
                    loop {
                        let read: Result<Value, _> = redis::cmd("XREAD")
                            .arg("COUNT")
                            .arg(500)
                            .arg("BLOCK")
                            .arg(BLOCK_MS)
                            .arg("STREAMS")
                            .arg(&this.key)
                            .arg(&last)
                            .query(&mut con);
                        let reply = match read {
                            Ok(v) => v,
                            Err(e) => {
                                tracing::warn!(error = %err(e), "decision stream: read failed; reconnecting");
                                break;
                            }
                        };
                        let entries = parse_xread(&reply);
                        // Past every entry read, readable or not (one this version cannot
                        // read is skipped, never read again and again).
                        let Some((newest, _)) = entries.last() else {
                            continue;
                        };
                        let newest = newest.clone();
                        let read = entries.len() as u64;
                        let (done, applied) = std::sync::mpsc::sync_channel(1);
                        let msg = Msg::Imported {
                            last: newest.clone(),
                            entries: entries
                                .into_iter()
                                .filter_map(|(id, e)| e.map(|e| (id, e)))
                                .collect(),
                            done,
                        };
                        // Blocking: a busy writer slows the follower, never drops entries.
                        if tx.send(msg).is_err() {
                            return;
                        }
                        match applied.recv() {
                            Ok(true) => {
                                metrics.imported.inc_by(read);
                                last = newest;
                            }
                            Ok(false) => std::thread::sleep(Duration::from_secs(1)),
                            Err(_) => return,
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "decision stream: cannot start the follower");
        }
    }
}

/// `XREAD`'s reply (RESP2 arrays or RESP3 map) → its entries.
fn parse_xread(v: &Value) -> Vec<(String, Option<Entry>)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => parse_entries(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]` → entries by stream id; `None` for one that cannot be
/// read (logged).
fn parse_entries(v: &Value) -> Vec<(String, Option<Entry>)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            let fields = match pair.get(1) {
                Some(Value::Array(f)) => f.as_slice(),
                _ => &[],
            };
            let field = fields.first().and_then(text);
            let value = fields.get(1).and_then(text);
            let entry = match (field.as_deref(), value) {
                (Some("r"), Some(v)) => match serde_json::from_str::<Record>(&v) {
                    Ok(r) => Some(Entry::Record(Box::new(r))),
                    Err(e) => {
                        tracing::warn!(entry = %id, error = %e, "decision stream: unreadable record skipped");
                        None
                    }
                },
                (Some("e"), Some(v)) => Some(Entry::Erase(v)),
                _ => {
                    tracing::warn!(entry = %id, "decision stream: unknown entry skipped");
                    None
                }
            };
            Some((id, entry))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
