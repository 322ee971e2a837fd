//! The SQLite file: schema, the writer's inserts, erasure and retention, and the queries.
//!
//! Every record is one row of `decisions` (the record as JSON, plus the columns queries filter
//! on) and one row of `matches` per identity it names. Ids are UUID v7 text, which sorts by
//! time, so `(column, id)` indexes answer "this rule/licensee/action/route, newest first, from
//! this cursor" and a time range is an id range. `matches` is keyed `(identity, id)` and carries
//! the columns a person's report counts by, so a report never reads `decisions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::time::{id_floor, rfc3339_ms};
use super::{AuditError, Record};
use crate::policy::Action;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    route TEXT NOT NULL,
    action TEXT NOT NULL,
    rule TEXT NOT NULL,
    licensee TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_rule ON decisions (rule, id);
CREATE INDEX IF NOT EXISTS decisions_licensee ON decisions (licensee, id);
CREATE INDEX IF NOT EXISTS decisions_action ON decisions (action, id);
CREATE INDEX IF NOT EXISTS decisions_route ON decisions (route, id);
CREATE TABLE IF NOT EXISTS matches (
    identity TEXT NOT NULL,
    id TEXT NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    licensee TEXT,
    route TEXT NOT NULL,
    similarity REAL NOT NULL,
    PRIMARY KEY (identity, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS matches_by_id ON matches (id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identity_marks (mark TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased (mark TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// Longest a query may run.
pub const QUERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most records one page (or one export step) returns.
pub const MAX_LIMIT: usize = 1000;
/// Rows deleted per retention step, so the writer never holds the file for long.
const RETENTION_STEP: usize = 5000;

fn err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// The writer's connection: creates the file (owner-only: it holds client addresses) and the
/// schema.
pub fn open_writer(path: &Path) -> Result<Connection, AuditError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::Other(format!("{}: {e}", dir.display())))?;
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::Other(format!("{}: {e}", path.display())))?;
    }
    let conn = Connection::open(path).map_err(err(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err(path))?;
    // WAL: readers never wait for the writer. NORMAL: a committed batch survives the process
    // being killed (not a power cut — the log is an audit aid, not a ledger).
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err(path))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err(path))?;
    // Deleted rows are overwritten, not just unlinked: erasure must not leave the bytes in
    // free pages (the WAL is truncated after an erasure for the same reason).
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(err(path))?;
    conn.execute_batch(SCHEMA).map_err(err(path))?;
    Ok(conn)
}

/// What became of a record handed to [`insert`].
#[derive(Debug, PartialEq)]
pub enum Inserted {
    /// Stored as given, or with erased identities taken out (`scrubbed`; the stored version).
    New { record: Box<Record>, scrubbed: bool },
    /// Its id is already stored (the stream brings an instance's own records back too).
    Duplicate,
    /// It names only identities that have been erased: not stored.
    Erased,
}

/// Insert one record. Identities erased before it arrived — a decision still in flight when
/// the erasure ran, or one from an instance that had not heard of it yet — are taken out
/// first, exactly as `erase` would have done had the record been there.
pub fn insert(tx: &Transaction<'_>, mut r: Record) -> rusqlite::Result<Inserted> {
    let mut erased = Vec::new();
    for m in &r.identities {
        let gone = tx
            .prepare_cached("SELECT 1 FROM erased WHERE mark = ?1")?
            .exists([erasure_mark(&m.identity)])?;
        if gone {
            erased.push(m.identity.clone());
        }
    }
    if !erased.is_empty() {
        r.identities.retain(|m| !erased.contains(&m.identity));
        if r.identities.is_empty() {
            return Ok(Inserted::Erased);
        }
        for identity in &erased {
            scrub(&mut r, identity);
        }
    }
    let json =
        serde_json::to_string(&r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO decisions (id, at, route, action, rule, licensee, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            r.id,
            r.at,
            r.route,
            r.action.as_str(),
            r.rule,
            r.licensee,
            json
        ])?;
    if added == 0 {
        return Ok(Inserted::Duplicate);
    }
    let mut m = tx.prepare_cached(
        "INSERT OR IGNORE INTO matches (identity, id, at, action, licensee, route, similarity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut marks =
        tx.prepare_cached("INSERT OR IGNORE INTO identity_marks (mark, identity) VALUES (?1, ?2)")?;
    for i in &r.identities {
        m.execute(params![
            i.identity,
            r.id,
            r.at,
            r.action.as_str(),
            r.licensee,
            r.route,
            f64::from(i.similarity)
        ])?;
        marks.execute(params![erasure_mark(&i.identity), i.identity])?;
    }
    Ok(Inserted::New {
        record: Box::new(r),
        scrubbed: !erased.is_empty(),
    })
}

/// Take an erased identity out of a record that names others too: its match, its id in the
/// explanation, and the license (it may be the erased identity's).
fn scrub(r: &mut Record, identity: &str) {
    r.identities.retain(|m| m.identity != identity);
    r.explanation = r.explanation.replace(identity, "(erased identity)");
    r.license = None;
}

/// Art. 17: records naming `identity` go, now and — through the `erased` marks — whenever one
/// arrives later. A record that names only this identity is deleted (time, media hash and
/// client of a sighting are about the person); one that also names others keeps them, with
/// this identity taken out (`scrub`).
pub fn erase(tx: &Transaction<'_>, identity: &str) -> rusqlite::Result<Erasure> {
    let mark = erasure_mark(identity);
    let again = tx.execute("INSERT OR IGNORE INTO erased (mark) VALUES (?1)", [&mark])? == 0;
    tx.execute("DELETE FROM identity_marks WHERE mark = ?1", [&mark])?;
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM matches WHERE identity = ?1")?
        .query_map([identity], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let json: Option<String> = tx
            .query_row("SELECT record FROM decisions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(mut record) = json.and_then(|j| serde_json::from_str::<Record>(&j).ok()) else {
            tx.execute("DELETE FROM decisions WHERE id = ?1", [id])?;
            continue;
        };
        scrub(&mut record, identity);
        if record.identities.is_empty() {
            tx.execute("DELETE FROM decisions WHERE id = ?1", [id])?;
        } else {
            let json = serde_json::to_string(&record)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            tx.execute(
                "UPDATE decisions SET record = ?2 WHERE id = ?1",
                params![id, json],
            )?;
        }
    }
    tx.execute("DELETE FROM matches WHERE identity = ?1", [identity])?;
    Ok(Erasure {
        records: ids.len(),
        again,
    })
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// Records that named the identity.
    pub records: usize,
    /// The identity had been erased here before (a repeated erasure finishing one that failed
    /// part-way).
    pub again: bool,
}

/// Forget the id behind an erasure mark once no record names it (retention took the last).
pub fn prune_marks(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM identity_marks WHERE identity NOT IN (SELECT identity FROM matches)",
        [],
    )
}

/// The SHA-256 (hex) the fleet stream's erasure marker carries instead of the identity's id.
pub fn erasure_mark(identity: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(identity.as_bytes()))
}

/// `erase` for the identity whose `erasure_mark` is `mark` (a marker from the fleet stream).
/// The mark is kept even when this file never named the identity, so a record naming it that
/// arrives later is not stored.
pub fn erase_marked(tx: &Transaction<'_>, mark: &str) -> rusqlite::Result<Erasure> {
    let identity: Option<String> = tx
        .query_row(
            "SELECT identity FROM identity_marks WHERE mark = ?1",
            [mark],
            |r| r.get(0),
        )
        .optional()?;
    match identity {
        Some(identity) => erase(tx, &identity),
        None => {
            let again = tx.execute("INSERT OR IGNORE INTO erased (mark) VALUES (?1)", [mark])? == 0;
            Ok(Erasure { records: 0, again })
        }
    }
}

/// Delete one step of records (and identity matches) older than `before_ms`; returns how many
/// records and how many matches went ((0, 0): nothing older is left).
pub fn expire_step(conn: &Connection, before_ms: i64) -> rusqlite::Result<(usize, usize)> {
    let bound = id_floor(before_ms);
    let decisions = conn.execute(
        "DELETE FROM decisions WHERE rowid IN
           (SELECT rowid FROM decisions WHERE id < ?1 ORDER BY id LIMIT ?2)",
        params![bound, RETENTION_STEP as i64],
    )?;
    let matches = conn.execute(
        "DELETE FROM matches WHERE (identity, id) IN
           (SELECT identity, id FROM matches INDEXED BY matches_by_id WHERE id < ?1 ORDER BY id LIMIT ?2)",
        params![bound, RETENTION_STEP as i64],
    )?;
    Ok((decisions, matches))
}

/// Copy the WAL into the file and truncate it, so pages an erasure overwrote leave no older
/// copy behind in the WAL. A reader in the middle of a query can hold the WAL for a moment:
/// retried for up to a second, then an error (the erasure is reported unfinished).
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    // No busy handler inside: each try answers at once, the loop bounds the whole.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut busy = 1;
    while busy != 0 && std::time::Instant::now() < deadline {
        busy = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(1);
        if busy != 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if busy == 0 {
        return Ok(());
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some(
            "readers kept the WAL busy for a second; it still holds pages the erasure replaced"
                .into(),
        ),
    ))
}

pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn meta_set(tx: &Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// What to list. Every field narrows; times are milliseconds since the epoch.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub identity: Option<String>,
    pub licensee: Option<String>,
    pub rule: Option<String>,
    pub action: Option<Action>,
    pub route: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// 1..=MAX_LIMIT (0 is read as the default, 50).
    pub limit: usize,
    /// The last id of the previous page: this page starts after it.
    pub cursor: Option<String>,
}

/// One page, newest first.
#[derive(Debug, Serialize)]
pub struct Page {
    pub decisions: Vec<Record>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Where a person's likeness was seen: counts and the latest decisions.
#[derive(Debug, Serialize)]
pub struct Report {
    pub identity: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub total: u64,
    pub by_action: BTreeMap<String, u64>,
    pub by_licensee: BTreeMap<String, u64>,
    pub by_route: BTreeMap<String, u64>,
    pub by_day: Vec<DayCount>,
    pub recent: Vec<Record>,
}

#[derive(Debug, Serialize)]
pub struct DayCount {
    pub day: String,
    pub count: u64,
}

/// The read side: a few read-only connections, reused.
pub struct Db {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Db {
    /// Readers of a file the writer has created.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let db = Self {
            path: path.to_path_buf(),
            pool: Mutex::new(Vec::new()),
        };
        let c = db.connect()?;
        db.give_back(c);
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<Connection, AuditError> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err(&self.path))?;
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err(&self.path))?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < 4
        {
            pool.push(c);
        }
    }

    /// `f` on a pooled read connection, stopped after `QUERY_LIMIT` (filters that no index
    /// narrows well — say a licensee with no blocks, asked for its blocks — would otherwise scan
    /// the whole log while the admin waits).
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, AuditError> {
        let mut conn = match self.pool.lock().ok().and_then(|mut p| p.pop()) {
            Some(c) => c,
            None => self.connect()?,
        };
        let deadline = std::time::Instant::now() + QUERY_LIMIT;
        conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline))
            .map_err(err(&self.path))?;
        let out = f(&conn).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => AuditError::TooBroad(QUERY_LIMIT),
            _ => err(&self.path)(e),
        });
        self.give_back(conn);
        out
    }

    pub fn get(&self, id: &str) -> Result<Option<Record>, AuditError> {
        self.with(|c| {
            c.prepare_cached("SELECT record FROM decisions WHERE id = ?1")?
                .query_row([id], |r| r.get::<_, String>(0))
                .optional()
        })
        .and_then(|j| match j.map(|j| serde_json::from_str(&j)) {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(AuditError::Other(format!(
                "decision {id} is stored but unreadable (written by a newer version?): {e}"
            ))),
        })
    }

    /// One page of records matching `q`, newest first.
    pub fn list(&self, q: &Query) -> Result<Page, AuditError> {
        let limit = match q.limit {
            0 => 50,
            n => n.min(MAX_LIMIT),
        };
        let low = id_floor(q.since.unwrap_or(0));
        let mut high = q
            .until
            .map_or_else(|| "~".to_string(), |u| id_floor(u.saturating_add(1)));
        if let Some(c) = &q.cursor
            && *c < high
        {
            high.clone_from(c);
        }
        let (from, key) = match &q.identity {
            Some(_) => ("matches m JOIN decisions d ON d.id = m.id", "m.id"),
            None => ("decisions d", "d.id"),
        };
        let mut sql = format!("SELECT d.id, d.record FROM {from} WHERE {key} >= ? AND {key} < ?");
        let mut args: Vec<String> = vec![low, high];
        for (column, value) in [
            ("m.identity", q.identity.clone()),
            ("d.licensee", q.licensee.clone()),
            ("d.rule", q.rule.clone()),
            ("d.action", q.action.map(|a| a.as_str().to_string())),
            ("d.route", q.route.clone()),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(v);
            }
        }
        sql.push_str(&format!(" ORDER BY {key} DESC LIMIT {}", limit + 1));
        let rows: Vec<(String, String)> = self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
        })?;
        // Paging goes by the rows, not by what parsed: an unreadable record (a newer
        // version's, or damaged) is skipped with a warning, never the end of the listing.
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next_cursor = more
            .then(|| rows.last().map(|(id, _)| id.clone()))
            .flatten();
        let decisions = rows
            .iter()
            .filter_map(|(id, j)| match serde_json::from_str(j) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(decision = %id, error = %e, "decision log: unreadable record skipped");
                    None
                }
            })
            .collect();
        Ok(Page {
            decisions,
            next_cursor,
        })
    }

    /// The report on one identity over `[since, until]`.
    pub fn report(
        &self,
        identity: &str,
        since: Option<i64>,
        until: Option<i64>,
        recent: usize,
    ) -> Result<Report, AuditError> {
        let low = id_floor(since.unwrap_or(0));
        let high = until.map_or_else(|| "~".to_string(), |u| id_floor(u.saturating_add(1)));
        let count_by = |c: &Connection, column: &str| -> rusqlite::Result<BTreeMap<String, u64>> {
            let sql = format!(
                "SELECT coalesce({column}, '-'), count(*) FROM matches
                 WHERE identity = ?1 AND id >= ?2 AND id < ?3 GROUP BY 1"
            );
            c.prepare_cached(&sql)?
                .query_map(params![identity, low, high], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect()
        };
        let (by_action, by_licensee, by_route, by_day) = self.with(|c| {
            let by_day = c
                .prepare_cached(
                    "SELECT at / 86400000, count(*) FROM matches
                     WHERE identity = ?1 AND id >= ?2 AND id < ?3 GROUP BY 1 ORDER BY 1",
                )?
                .query_map(params![identity, low, high], |r| {
                    Ok(DayCount {
                        day: rfc3339_ms(r.get::<_, i64>(0)? * 86_400_000)[..10].to_string(),
                        count: r.get::<_, i64>(1)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((
                count_by(c, "action")?,
                count_by(c, "licensee")?,
                count_by(c, "route")?,
                by_day,
            ))
        })?;
        let recent = match recent {
            0 => Vec::new(),
            n => {
                self.list(&Query {
                    identity: Some(identity.to_string()),
                    since,
                    until,
                    limit: n,
                    ..Query::default()
                })?
                .decisions
            }
        };
        Ok(Report {
            identity: identity.to_string(),
            since: since.map(rfc3339_ms),
            until: until.map(rfc3339_ms),
            total: by_action.values().sum(),
            by_action,
            by_licensee,
            by_route,
            by_day,
            recent,
        })
    }

    /// The last fleet-stream entry applied to this file.
    pub fn last_applied(&self) -> Result<Option<String>, AuditError> {
        self.with(|c| meta_get(c, super::stream::LAST_APPLIED))
    }

    /// Bytes the file (and its WAL) take on disk.
    pub fn size(&self) -> u64 {
        let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        len(self.path.clone()) + len(PathBuf::from(wal))
    }

    /// Records stored (an exact count: an admin question, not a hot path).
    pub fn count(&self) -> Result<u64, AuditError> {
        self.with(|c| c.query_row("SELECT count(*) FROM decisions", [], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_that_never_ends_is_stopped_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sqlite");
        drop(open_writer(&path).unwrap());
        let db = Db::open(&path).unwrap();
        let started = std::time::Instant::now();
        let out = db.with(|c| {
            c.query_row(
                "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r",
                [],
                |r| r.get::<_, i64>(0),
            )
        });
        assert!(matches!(out, Err(AuditError::TooBroad(_))), "{out:?}");
        assert!(started.elapsed() < QUERY_LIMIT + std::time::Duration::from_secs(2));
        // The connection goes back to the pool usable.
        assert_eq!(db.count().unwrap(), 0);
    }
}
