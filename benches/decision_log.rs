//! Decision-log queries over a large stored log (issue 19 floor: `identity=X&since=…` over 10
//! million decisions ≤ 50 ms p99), and the cost of recording one decision on the request path.
//! Results and machine: benches/RESULTS.md ("Decision log").
//!
//! The file is generated once (10 million records over 89 days, 10,000 identities named by 60%
//! of them, 30 licensees, 20 rules, 5 routes) under `$CARGO_TARGET_DIR/bench-data/` and reused;
//! `LIKEGUARD_BENCH_DECISIONS=N` changes the count. Without `--bench` (`cargo test
//! --all-targets`) it runs once over 2,000 records in a temporary folder.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use likeguard::audit::db::{self, Db, Query};
use likeguard::audit::{DecisionLog, Item, Matched, Pending, Record};
use likeguard::policy::Action;

const IDENTITIES: u64 = 10_000;
const DAY_MS: i64 = 86_400_000;

fn identity(n: u64) -> String {
    // Identity ids are UUID v7 in practice; any stable 36-character text does here.
    format!("01900000-0000-7000-8000-{n:012}")
}

/// An independent pseudo-random pick in 0..n for record `i` (a different `salt` per field, so
/// rule, licensee, action and route are not correlated).
fn pick(i: u64, salt: u64, n: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x % n
}

fn record(i: u64, n: u64, now: i64) -> Record {
    let span = 89 * DAY_MS;
    let at = now - span + (i as i64 * span) / n as i64;
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        (at / 1000) as u64,
        ((at % 1000) * 1_000_000) as u32,
    );
    let action = match pick(i, 1, 10) {
        0 => Action::Allow,
        1 | 2 => Action::Tag,
        _ => Action::Block,
    };
    let who = pick(i, 2, IDENTITIES);
    let named = pick(i, 3, 5) < 3;
    Record {
        id: uuid::Uuid::new_v7(ts).to_string(),
        at,
        instance: "bench-1".into(),
        route: format!("route-{}", pick(i, 4, 5)),
        side: "request".into(),
        action,
        rule: format!("rule-{}", pick(i, 5, 20)),
        policy_version: Some("3f2a9c1d".into()),
        licensee: (pick(i, 6, 3) != 0).then(|| format!("licensee-{}", pick(i, 7, 30))),
        license: None,
        explanation: if named {
            format!(
                "item 0 at part \"image\": face matches identity {} (strict) with similarity 0.712 in frame 0 at [112, 80, 96, 118], policy 3f2a9c1d",
                identity(who)
            )
        } else {
            "item 0 at part \"image\": matches known media km-17 by sha256".into()
        },
        client: Some(format!("10.0.{}.{}", (i >> 8) % 256, i % 256)),
        watermark: None,
        failure: None,
        identities: if named {
            vec![Matched {
                identity: identity(who),
                similarity: 0.712,
            }]
        } else {
            Vec::new()
        },
        items: vec![Item {
            kind: "image".into(),
            format: "jpg".into(),
            size: 182_311,
            sha256: Some(format!("{:064x}", u128::from(i as u32) * 0x9e37_79b9)),
            location: "part \"image\"".into(),
        }],
    }
}

/// The bench file with `n` records (generated when missing or of another size).
fn file(n: u64, dir: &std::path::Path) -> PathBuf {
    let path = dir.join(format!("decisions-v2-{n}.sqlite"));
    if let Ok(conn) = rusqlite::Connection::open(&path)
        && let Ok(Some(v)) = db::meta_get(&conn, "bench_rows")
        && v == n.to_string()
    {
        return path;
    }
    let _ = std::fs::remove_file(&path);
    let started = Instant::now();
    let mut conn = db::open_writer(&path).unwrap();
    conn.pragma_update(None, "cache_size", -1_000_000).unwrap();
    conn.pragma_update(None, "secure_delete", "OFF").unwrap();
    let now = likeguard::audit::now_ms();
    let step = 100_000;
    for start in (0..n).step_by(step) {
        let tx = conn.transaction().unwrap();
        for i in start..(start + step as u64).min(n) {
            db::insert(&tx, record(i, n, now)).unwrap();
        }
        db::meta_set(&tx, "bench_rows", "generating").unwrap();
        tx.commit().unwrap();
        if start.is_multiple_of(1_000_000) && start > 0 {
            eprintln!("  {start} records in {:.0?}", started.elapsed());
        }
    }
    let tx = conn.transaction().unwrap();
    db::meta_set(&tx, "bench_rows", &n.to_string()).unwrap();
    tx.commit().unwrap();
    db::checkpoint(&conn).unwrap();
    eprintln!(
        "generated {n} records in {:.1?} ({} MB)",
        started.elapsed(),
        std::fs::metadata(&path).unwrap().len() / 1_000_000
    );
    path
}

/// p50 / p99 / max of `runs` calls of `f(k)` with k varying (identities, rules).
fn percentiles(name: &str, runs: u64, mut f: impl FnMut(u64)) {
    let mut t: Vec<Duration> = (0..runs)
        .map(|k| {
            let s = Instant::now();
            f(k.wrapping_mul(2_654_435_761));
            s.elapsed()
        })
        .collect();
    t.sort();
    let at = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
    println!(
        "{name}: {runs} runs, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let tmp = tempfile::tempdir().unwrap();
    let (n, dir) = if bench {
        let n = std::env::var("LIKEGUARD_BENCH_DECISIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000u64);
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let dir = PathBuf::from(target).join("bench-data");
        std::fs::create_dir_all(&dir).unwrap();
        (n, dir)
    } else {
        (2_000, tmp.path().to_path_buf())
    };
    let path = file(n, &dir);
    let db = Db::open(&path).unwrap();
    let now = likeguard::audit::now_ms();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group(format!("decision_log_{n}"));
    g.sample_size(50);
    let some_id = db.list(&Query::default()).unwrap().decisions[0].id.clone();
    g.bench_function("get_by_id", |b| b.iter(|| db.get(&some_id).unwrap()));
    let mut k = 0u64;
    g.bench_function("identity_since_7d_limit_50", |b| {
        b.iter(|| {
            k += 7;
            db.list(&Query {
                identity: Some(identity(k % IDENTITIES)),
                since: Some(now - 7 * DAY_MS),
                limit: 50,
                ..Query::default()
            })
            .unwrap()
        })
    });
    g.bench_function("rule_since_24h_limit_50", |b| {
        b.iter(|| {
            k += 1;
            db.list(&Query {
                rule: Some(format!("rule-{}", k % 20)),
                since: Some(now - DAY_MS),
                limit: 50,
                ..Query::default()
            })
            .unwrap()
        })
    });
    g.bench_function("licensee_block_limit_50", |b| {
        b.iter(|| {
            k += 1;
            db.list(&Query {
                licensee: Some(format!("licensee-{}", k % 30)),
                action: Some(Action::Block),
                limit: 50,
                ..Query::default()
            })
            .unwrap()
        })
    });
    g.bench_function("identity_report_90d", |b| {
        b.iter(|| {
            k += 13;
            db.report(&identity(k % IDENTITIES), Some(now - 90 * DAY_MS), None, 10)
                .unwrap()
        })
    });
    g.finish();

    // What the request path pays: one record handed to the writer (a bounded-channel send).
    let log_dir = tempfile::tempdir().unwrap();
    let metrics = likeguard::telemetry::Metrics::new();
    let config: likeguard::config::DecisionLogConfig =
        serde_yaml_ng::from_str("{queue: 1000000}").unwrap();
    let log =
        DecisionLog::open(&config, log_dir.path(), None, metrics.decision_log.clone()).unwrap();
    let mut i = 0u64;
    c.bench_function("decision_log_record_enqueue", |b| {
        b.iter(|| {
            i += 1;
            log.record(Pending {
                record: record(i, 1_000_000, now),
                unhashed: Vec::new(),
            })
        })
    });
    log.close(Duration::from_secs(60));

    let runs = if bench { 2_000 } else { 20 };
    percentiles("identity=X&since=7d limit 50", runs, |k| {
        db.list(&Query {
            identity: Some(identity(k % IDENTITIES)),
            since: Some(now - 7 * DAY_MS),
            limit: 50,
            ..Query::default()
        })
        .unwrap();
    });
    percentiles("identity=X (all time) limit 50, page 2", runs, |k| {
        let q = Query {
            identity: Some(identity(k % IDENTITIES)),
            limit: 50,
            ..Query::default()
        };
        let first = db.list(&q).unwrap();
        db.list(&Query {
            cursor: first.next_cursor,
            ..q
        })
        .unwrap();
    });
    percentiles("report identity=X 90 days", runs, |k| {
        db.report(&identity(k % IDENTITIES), Some(now - 90 * DAY_MS), None, 10)
            .unwrap();
    });
    c.final_summary();
}
