//! The hostile media corpus through the real binary (issue 18): truncated and bit-flipped files
//! of every format, decompression bombs, polyglots, wrong Content-Types, media nested in
//! multipart and JSON — `scripts/hostile-corpus` makes them (`--small` here; the full corpus
//! with `LIKEGUARD_HOSTILE_FULL=1`). Every item gets a clear answer within the time budget —
//! 451 where it carries the enrolled face, else a decision or a 4xx/503 problem+json, never a
//! 500, a reset or a hang — and afterwards the process is alive, its memory bounded and its
//! fds and threads back near where they were.

mod support;

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use support::{Likeguard, TOKEN, Upstream, client, media};

const BUDGET: Duration = Duration::from_secs(10);

fn proc_counts(pid: u32) -> (usize, usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (fds, field("Threads:") as usize, field("VmRSS:") / 1024)
}

async fn enrol(lg: &Likeguard) {
    let mut form = Form::new().text("name", "Person X");
    for p in [
        "images/faces/deepface/img1.jpg",
        "images/faces/deepface/img2.jpg",
    ] {
        form = form.part(
            "photo",
            Part::bytes(media(p))
                .file_name("x.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    }
    let r = client()
        .post(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_item_gets_a_clear_answer_in_time_and_nothing_leaks() {
    let corpus = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hostile-corpus");
    let mut corpus_gen = std::process::Command::new(script);
    corpus_gen
        .arg(corpus.path())
        .env("LIKEGUARD_TESTDATA", support::testdata());
    if std::env::var_os("LIKEGUARD_HOSTILE_FULL").is_none() {
        corpus_gen.arg("--small");
    }
    assert!(
        corpus_gen
            .status()
            .expect("scripts/hostile-corpus")
            .success()
    );
    let index = std::fs::read_to_string(corpus.path().join("index.tsv")).unwrap();

    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "routes:\n  - name: up\n    upstream: {}\n    inspect: {{direction: request, time_budget: {}s, max_body: 64MiB}}\n",
        up.url(),
        BUDGET.as_secs()
    ));
    enrol(&lg).await;
    let http = client();
    let send = |path: String, ct: String, enc: String, body: Vec<u8>| {
        let mut r = http.post(lg.url(&path)).body(body);
        if !ct.is_empty() {
            r = r.header("content-type", ct);
        }
        if !enc.is_empty() {
            r = r.header("content-encoding", enc);
        }
        r.timeout(BUDGET + Duration::from_secs(20)).send()
    };
    // Warm-up (decoder, models, worker pools), then the baseline.
    let face = media("images/faces/deepface/img1.jpg");
    for i in 0..3 {
        let r = send(
            format!("/warm/{i}"),
            "image/jpeg".into(),
            String::new(),
            face.clone(),
        );
        assert_eq!(r.await.unwrap().status(), 451);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fds0, threads0, rss0) = proc_counts(lg.pid());

    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (n, line) in index.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [name, ct, enc, expect] = cols[..] else {
            panic!("index line {line:?}");
        };
        let body = std::fs::read(corpus.path().join(name)).unwrap();
        let path = format!("/hostile/{n}");
        let started = Instant::now();
        let res = send(path.clone(), ct.into(), enc.into(), body).await;
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, name.to_string());
        }
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: no answer: {e}"));
                continue;
            }
        };
        let status = res.status().as_u16();
        *statuses.entry(status).or_default() += 1;
        let problem = res
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        let body = res.bytes().await.unwrap_or_default();
        if status == 503 {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            eprintln!("503 {name}: {}", v["detail"].as_str().unwrap_or_default());
        }
        let reached = !up.received_on(&path).is_empty();
        let ok = match expect {
            "block" => status == 451 && !reached,
            _ => match status {
                200 => true,
                400 | 408 | 413 | 415 | 422 | 451 | 503 => problem && !reached,
                _ => false,
            },
        };
        if !ok {
            failures.push(format!(
                "{name} ({ct}): {status} problem={problem} upstream-reached={reached}, want {expect}"
            ));
        }
        if took > BUDGET + Duration::from_secs(5) {
            failures.push(format!("{name}: answered after {took:?}"));
        }
    }
    // Idle worker threads (tokio's blocking pool) retire after 10 s.
    let settle = Instant::now() + Duration::from_secs(30);
    let (mut fds, mut threads, mut rss) = proc_counts(lg.pid());
    while (fds > fds0 + 4 || threads > threads0 + 4) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (fds, threads, rss) = proc_counts(lg.pid());
    }
    eprintln!(
        "hostile corpus: {} items, statuses {statuses:?}, slowest {:?} ({}); fds {fds0}→{fds}, threads {threads0}→{threads}, RSS {rss0}→{rss} MiB",
        index.lines().count(),
        slowest.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} items failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(fds <= fds0 + 4, "fds {fds0} → {fds}");
    assert!(threads <= threads0 + 4, "threads {threads0} → {threads}");
    assert!(rss < 2048, "RSS {rss} MiB");
    // Still serving.
    let r = send("/after".into(), "image/jpeg".into(), String::new(), face);
    assert_eq!(r.await.unwrap().status(), 451);
}
