//! The decision log end to end: the real binary and a real SQLite file (and a real Redis for
//! the fleet), real face models and real photos. A 451's `decision_id` is looked up, a person's
//! report counts what was seen, erasure leaves no byte naming the identity, a record written
//! survives `kill -9`, retention removes old rows, and two instances on one Redis see each
//! other's decisions.

mod support;

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use support::{Likeguard, TOKEN, Upstream, client, media, wait_until};

const X1: &str = "images/faces/deepface/img1.jpg";
const X2: &str = "images/faces/deepface/img2.jpg";
const X_OTHER: &str = "images/faces/deepface/img6.jpg";
const Y: &str = "images/faces/deepface/img20.jpg";

fn route(up: &Upstream) -> String {
    format!(
        "routes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        up.url()
    )
}

fn photo(rel: &str) -> Part {
    Part::bytes(media(rel))
        .file_name(rel.rsplit('/').next().unwrap().to_string())
        .mime_str("image/jpeg")
        .unwrap()
}

async fn admin(lg: &Likeguard, path: &str) -> (u16, serde_json::Value) {
    let r = client()
        .get(lg.admin_url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn enrol(lg: &Likeguard) -> String {
    let form = Form::new()
        .text("name", "Person X")
        .text("protection", "strict")
        .text("consent_by", "the person")
        .text("consent_method", "signed form")
        .part("photo", photo(X1))
        .part("photo", photo(X2));
    let r = client()
        .post(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

async fn upload(lg: &Likeguard, rel: &str, licensee: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = client().post(lg.url("/upload")).multipart(
        Form::new()
            .text("prompt", "a painting")
            .part("image", photo(rel)),
    );
    if let Some(l) = licensee {
        req = req.header("likeguard-licensee", l);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Every byte of the log's files (database and WAL).
fn file_bytes(state: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["decisions.sqlite", "decisions.sqlite-wal"] {
        if let Ok(b) = std::fs::read(state.join(name)) {
            all.extend(b);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_looked_up_reported_exported_and_erasure_leaves_no_byte_naming_the_identity() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&route(&up));
    let id = enrol(&lg).await;

    let (status, body) = upload(&lg, X_OTHER, None).await;
    assert_eq!(status, 451);
    let decision = body["decision_id"].as_str().unwrap().to_string();
    // Someone else: an allow naming nobody, not kept (sample_allows: 0).
    assert_eq!(upload(&lg, Y, None).await.0, 200);
    // A licensed use: an allow that names X, kept (the person's report shows licensed uses).
    let r = client()
        .post(lg.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"identity_id": id, "licensee": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(upload(&lg, X_OTHER, Some("acme")).await.0, 200);

    // The 451, by its id: rule, policy version, identity and similarity, the item's hash.
    let (status, rec) = wait_for_record(&lg, &decision).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["id"], decision.as_str());
    assert_eq!(rec["action"], "block");
    assert_eq!(rec["rule"], "strict-unlicensed");
    assert_eq!(rec["route"], "uploads");
    assert_eq!(rec["side"], "request");
    assert!(
        rec["policy_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{rec}"
    );
    assert_eq!(rec["identities"][0]["identity"], id.as_str());
    assert!(
        rec["identities"][0]["similarity"].as_f64().unwrap() > 0.3,
        "{rec}"
    );
    assert_eq!(rec["client"], "127.0.0.1");
    assert_eq!(rec["items"][0]["kind"], "image");
    assert_eq!(
        rec["items"][0]["sha256"],
        hex::encode(Sha256::digest(media(X_OTHER))).as_str()
    );
    assert!(
        rec["items"][0]["location"]
            .as_str()
            .unwrap()
            .contains("image"),
        "{rec}"
    );
    let text = rec.to_string();
    assert!(
        !text.contains("Person X"),
        "the record names the person: {text}"
    );

    // Listing by identity: both decisions naming X, newest first, in pages of one.
    let (status, page) = admin(&lg, &format!("/admin/v1/decisions?identity={id}&limit=1")).await;
    assert_eq!(status, 200, "{page}");
    let first = page["decisions"][0].clone();
    assert_eq!(first["licensee"], "acme");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = admin(
        &lg,
        &format!("/admin/v1/decisions?identity={id}&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(page2["decisions"][0]["id"], decision.as_str());
    assert!(page2["next_cursor"].is_null(), "{page2}");
    // Filters narrow; the allow naming nobody was not kept.
    let hour_ago =
        humantime::format_rfc3339(std::time::SystemTime::now() - Duration::from_secs(3600));
    let (_, blocks) = admin(
        &lg,
        &format!("/admin/v1/decisions?action=block&since={hour_ago}"),
    )
    .await;
    assert_eq!(blocks["decisions"].as_array().unwrap().len(), 1, "{blocks}");
    let (_, none) = admin(&lg, &format!("/admin/v1/decisions?until={hour_ago}")).await;
    assert_eq!(none["decisions"].as_array().unwrap().len(), 0, "{none}");
    let (_, allows) = admin(&lg, "/admin/v1/decisions?action=allow").await;
    assert_eq!(allows["decisions"].as_array().unwrap().len(), 1, "{allows}");
    let (status, _) = admin(&lg, "/admin/v1/decisions?action=maybe").await;
    assert_eq!(status, 400);
    let (status, _) = admin(&lg, "/admin/v1/decisions?since=1h").await;
    assert_eq!(status, 400, "the API takes RFC 3339 date-times");

    // The person's report.
    let (status, report) = admin(&lg, &format!("/admin/v1/identities/{id}/report")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["total"], 2);
    assert_eq!(report["by_action"]["block"], 1);
    assert_eq!(report["by_action"]["allow"], 1);
    assert_eq!(report["by_licensee"]["acme"], 1);
    assert_eq!(report["by_route"]["uploads"], 2);
    assert_eq!(report["by_day"][0]["count"], 2);
    assert_eq!(report["recent"].as_array().unwrap().len(), 2);

    // CSV export (parsed back) and the Art. 20 export carry the records.
    let csv = client()
        .get(lg.admin_url(&format!(
            "/admin/v1/decisions/export?format=csv&identity={id}"
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[0].starts_with("id,at,"), "{csv}");
    assert!(rows[2].starts_with(&decision), "{csv}");
    let (_, exported) = admin(&lg, &format!("/admin/v1/identities/{id}/export")).await;
    assert_eq!(exported["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(exported["decisions_truncated"], false);

    // The CLI reads the same file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(["decisions", "show", &decision])
        .current_dir(lg.state_dir.path())
        .env(
            "LIKEGUARD_CONFIG",
            lg.state_dir.path().join("likeguard.yaml"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("strict-unlicensed"));

    // Erasure: the records go, and no byte of the files names the identity.
    assert!(
        file_bytes(lg.state_dir.path())
            .windows(id.len())
            .any(|w| w == id.as_bytes()),
        "the log never held the identity: the check below would prove nothing"
    );
    let r = client()
        .delete(lg.admin_url(&format!("/admin/v1/identities/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        admin(&lg, &format!("/admin/v1/decisions/{decision}"))
            .await
            .0,
        404
    );
    let (_, listed) = admin(&lg, &format!("/admin/v1/decisions?identity={id}")).await;
    assert_eq!(listed["decisions"].as_array().unwrap().len(), 0);
    let bytes = file_bytes(lg.state_dir.path());
    assert!(
        !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
        "a byte of the decision log still names the erased identity"
    );
    let metrics = lg.metrics().await;
    assert!(
        metrics.contains("likeguard_decision_log_written_total{sink=\"sqlite\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("likeguard_decision_log_queue_depth 0"),
        "{metrics}"
    );
}

async fn wait_for_record(lg: &Likeguard, id: &str) -> (u16, serde_json::Value) {
    let mut last = (0, serde_json::Value::Null);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        last = admin(lg, &format!("/admin/v1/decisions/{id}")).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_decision_survives_kill_9() {
    let up = Upstream::start().await;
    let state = tempfile::tempdir().unwrap();
    let lg = Likeguard::start_with_state(&route(&up), state.path());
    enrol(&lg).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, body) = upload(&lg, X_OTHER, None).await;
        assert_eq!(status, 451);
        ids.push(body["decision_id"].as_str().unwrap().to_string());
    }
    // The writer commits as records arrive: once a record can be read back it is on disk.
    wait_for_record(&lg, ids.last().unwrap()).await;
    std::process::Command::new("kill")
        .args(["-KILL", &lg.pid().to_string()])
        .status()
        .unwrap();
    drop(lg);
    let lg = Likeguard::start_with_state(&route(&up), state.path());
    for id in &ids {
        assert_eq!(
            admin(&lg, &format!("/admin/v1/decisions/{id}")).await.0,
            200,
            "{id} lost"
        );
    }
}

#[test]
fn retention_removes_old_records_and_keeps_recent_ones() {
    use likeguard::audit::{DecisionLog, Pending, Record};
    let dir = tempfile::tempdir().unwrap();
    let config: likeguard::config::DecisionLogConfig =
        serde_yaml_ng::from_str("{retention: 30days}").unwrap();
    let metrics = likeguard::telemetry::Metrics::new();
    let record = |days_ago: u64| {
        let at = std::time::SystemTime::now() - Duration::from_secs(days_ago * 86_400);
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        Record {
            id: uuid::Uuid::new_v7(ts).to_string(),
            at: since.as_millis() as i64,
            instance: "test".into(),
            route: "uploads".into(),
            side: "request".into(),
            action: likeguard::policy::Action::Block,
            rule: "r".into(),
            policy_version: None,
            licensee: None,
            license: None,
            explanation: String::new(),
            client: None,
            watermark: None,
            failure: None,
            identities: Vec::new(),
            items: Vec::new(),
        }
    };
    let named = |mut r: Record| {
        r.identities = vec![likeguard::audit::Matched {
            identity: "person-i".into(),
            similarity: 0.8,
        }];
        r
    };
    let (old, recent) = (named(record(45)), named(record(3)));
    {
        let log =
            DecisionLog::open(&config, dir.path(), None, metrics.decision_log.clone()).unwrap();
        for r in [&old, &recent] {
            log.record(Pending {
                record: r.clone(),
                unhashed: Vec::new(),
            });
        }
        assert!(log.flush(Duration::from_secs(5)));
        assert!(log.db().get(&old.id).unwrap().is_some());
        log.close(Duration::from_secs(5));
    }
    // Retention runs when the writer starts (and every ten minutes after).
    let log = DecisionLog::open(&config, dir.path(), None, metrics.decision_log.clone()).unwrap();
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(
        log.db().get(&old.id).unwrap(),
        None,
        "a 45-day-old record outlived 30 days"
    );
    assert_eq!(log.db().get(&recent.id).unwrap().as_ref(), Some(&recent));
    assert_eq!(metrics.decision_log.expired.get(), 1);
    // The person's report forgets the old sighting too, and time filters see only the recent.
    let report = log.db().report("person-i", None, None, 10).unwrap();
    assert_eq!(report.total, 1, "{report:?}");
    let ten_days_ago = likeguard::audit::now_ms() - 10 * 86_400_000;
    let page = log
        .db()
        .list(&likeguard::audit::Query {
            until: Some(ten_days_ago),
            ..Default::default()
        })
        .unwrap();
    assert!(page.decisions.is_empty(), "{page:?}");
    log.close(Duration::from_secs(5));
}

#[test]
fn a_record_arriving_after_an_erasure_does_not_bring_the_identity_back() {
    use likeguard::audit::{DecisionLog, Matched, Pending, Record};
    let dir = tempfile::tempdir().unwrap();
    let metrics = likeguard::telemetry::Metrics::new();
    let log = DecisionLog::open(
        &Default::default(),
        dir.path(),
        None,
        metrics.decision_log.clone(),
    )
    .unwrap();
    let decision = |who: &[&str]| Record {
        id: uuid::Uuid::now_v7().to_string(),
        at: likeguard::audit::now_ms(),
        instance: "test".into(),
        route: "uploads".into(),
        side: "request".into(),
        action: likeguard::policy::Action::Block,
        rule: "strict-unlicensed".into(),
        policy_version: None,
        licensee: None,
        license: Some("license-of-x".into()),
        explanation: format!("face matches identity {}", who[0]),
        client: None,
        watermark: None,
        failure: None,
        identities: who
            .iter()
            .map(|w| Matched {
                identity: w.to_string(),
                similarity: 0.7,
            })
            .collect(),
        items: Vec::new(),
    };
    // Erased before any record named it (a decision still in flight when the erasure ran).
    assert_eq!(log.erase("person-x").unwrap().records, 0);
    let (only_x, x_and_y) = (decision(&["person-x"]), decision(&["person-x", "person-y"]));
    for r in [&only_x, &x_and_y] {
        log.record(Pending {
            record: r.clone(),
            unhashed: Vec::new(),
        });
    }
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(log.db().get(&only_x.id).unwrap(), None);
    let kept = log.db().get(&x_and_y.id).unwrap().unwrap();
    assert_eq!(kept.identities.len(), 1);
    assert_eq!(kept.identities[0].identity, "person-y");
    assert!(
        !kept.explanation.contains("person-x"),
        "{}",
        kept.explanation
    );
    assert_eq!(
        kept.license, None,
        "the license may be the erased identity's"
    );
    assert_eq!(
        log.db().report("person-x", None, None, 10).unwrap().total,
        0
    );
    assert_eq!(
        log.db().report("person-y", None, None, 10).unwrap().total,
        1
    );
    log.close(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_list_each_others_decisions_and_erasure_reaches_both() {
    let prefix = format!("likeguard-test-{}", uuid::Uuid::now_v7());
    let store =
        format!("store: {{kind: redis, url: 'redis://127.0.0.1:6379', prefix: '{prefix}'}}\n");
    let up = Upstream::start().await;
    let a = Likeguard::start(&format!("{store}{}", route(&up)));
    let b = Likeguard::start(&format!("{store}{}", route(&up)));
    let id = enrol(&a).await;
    wait_until("enrolment reaches B", Duration::from_secs(2), async || {
        admin(&b, &format!("/admin/v1/identities/{id}")).await.0 == 200
    })
    .await;

    let (status, body) = upload(&a, X_OTHER, None).await;
    assert_eq!(status, 451);
    let decision = body["decision_id"].as_str().unwrap().to_string();
    let took = wait_until(
        "A's decision listed on B",
        Duration::from_secs(2),
        async || {
            let (_, page) = admin(&b, &format!("/admin/v1/decisions?identity={id}")).await;
            page["decisions"][0]["id"] == decision.as_str()
        },
    )
    .await;
    eprintln!("decided on A, listed on B after {took:?}");
    let (_, rec) = admin(&b, &format!("/admin/v1/decisions/{decision}")).await;
    assert_eq!(rec["rule"], "strict-unlicensed");

    let r = client()
        .delete(a.admin_url(&format!("/admin/v1/identities/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    wait_until(
        "erasure reaches B's log",
        Duration::from_secs(2),
        async || {
            admin(&b, &format!("/admin/v1/decisions/{decision}"))
                .await
                .0
                == 404
        },
    )
    .await;
    // Nothing in the stream names the identity, not even the erasure marker.
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:decisions"))
        .arg("-")
        .arg("+")
        .query(&mut redis)
        .unwrap();
    for (entry, fields) in &entries {
        for (field, value) in fields {
            assert!(
                !value.contains(&id),
                "stream entry {entry} ({field}) names {id}"
            );
        }
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:decisions"))
        .query(&mut redis)
        .unwrap();
}
