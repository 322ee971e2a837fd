//! What `deploy/` promises, checked against the real binary: every shipped config and policy
//! loads; the policy follows a Kubernetes ConfigMap update (the kubelet's `..data` symlink
//! swap); the dashboard and alert rules name only metrics a real `/metrics` scrape has, and the
//! alert rules pass Prometheus' own `promtool` (check and unit tests).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use support::{Likeguard, TOKEN, Upstream, client, media};

fn deploy(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn likeguard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(args)
        // The Redis URL comes from a Secret in every deployment (LIKEGUARD_REDIS_URL).
        .env("LIKEGUARD_REDIS_URL", "redis://127.0.0.1:6379/0")
        .output()
        .expect("run likeguard")
}

#[test]
fn every_shipped_config_and_policy_loads() {
    for config in [
        "container/likeguard.yaml",
        "compose/likeguard.yaml",
        "k8s/base/config/likeguard.yaml",
        "k8s/overlays/sidecar/likeguard.yaml",
    ] {
        let out = likeguard(&["config", "check", deploy(config).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let policy = deploy("k8s/policy/policy.yaml");
    let out = likeguard(&["policy", "check", policy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A redis store with no URL anywhere is refused at load, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "store: {kind: redis}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(["config", "check", file.to_str().unwrap()])
        .env_remove("LIKEGUARD_REDIS_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("store.url") && err.contains("LIKEGUARD_REDIS_URL"),
        "{err}"
    );
}

async fn policy_name(lg: &Likeguard) -> String {
    let r = client()
        .get(lg.admin_url("/admin/v1/policy"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["name"].as_str().unwrap_or_default().to_string()
}

/// A ConfigMap volume as the kubelet lays it out: the data in a timestamped folder, `..data`
/// a symlink to it, and each key a symlink through `..data`. An update writes a new folder and
/// renames a new `..data` link over the old one; the key's own symlink never changes.
fn configmap_version(
    dir: &Path,
    version: &str,
    policy: &str,
    modified: Option<std::time::SystemTime>,
) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("policy.yaml"), policy).unwrap();
    if let Some(t) = modified {
        std::fs::File::options()
            .write(true)
            .open(data.join("policy.yaml"))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("policy.yaml").exists() {
        std::os::unix::fs::symlink("..data/policy.yaml", dir.join("policy.yaml")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_follows_a_configmap_volume_update() {
    let up = Upstream::start().await;
    let volume = tempfile::tempdir().unwrap();
    configmap_version(
        volume.path(),
        "2026_12_02_10_00_00.1",
        "name: first\nrules: []\n",
        None,
    );
    let lg = Likeguard::start(&format!(
        "policy: {{file: '{}'}}\nroutes:\n  - {{name: all, upstream: '{}'}}\n",
        volume.path().join("policy.yaml").display(),
        up.url()
    ));
    assert_eq!(policy_name(&lg).await, "first");

    // Same size and the same modification time as the first: only the swap differs.
    let first = volume.path().join("policy.yaml");
    let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
    configmap_version(
        volume.path(),
        "2026_12_02_10_05_00.2",
        "name: secnd\nrules: []\n",
        Some(modified),
    );
    std::fs::remove_dir_all(volume.path().join("..2026_12_02_10_00_00.1")).unwrap();
    let start = Instant::now();
    while policy_name(&lg).await != "secnd" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the swapped ConfigMap was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = lg.metrics().await;
    assert!(
        metrics.contains("likeguard_policy_info{name=\"secnd\""),
        "{metrics}"
    );
}

/// `likeguard_*` metric families named in a text (PromQL), without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("likeguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_exported_metrics() {
    let dashboard = std::fs::read_to_string(deploy("monitoring/grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let exprs: Vec<&str> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 12, "{} queries", exprs.len());
    let alerts = std::fs::read_to_string(deploy("monitoring/alerts.yaml")).unwrap();
    let mut wanted = metric_names(&exprs.join("\n"));
    wanted.extend(metric_names(&alerts));
    // The instance picker reads build_info.
    wanted.extend(metric_names(
        parsed["templating"]["list"][1]["query"].as_str().unwrap(),
    ));

    // Traffic that touches every family: a pass, an inspected upload, a policy reload, and
    // a route whose upstream is down.
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "name: p\nrules: []\n").unwrap();
    let dead = support::free_port();
    let lg = Likeguard::start(&format!(
        "policy: {{file: '{}'}}\nroutes:\n  - {{name: down, match: {{path_prefix: /down}}, upstream: 'http://127.0.0.1:{dead}'}}\n  - {{name: all, upstream: '{}', inspect: {{direction: request, time_budget: 20s}}}}\n",
        policy.display(),
        up.url()
    ));
    let c = client();
    assert_eq!(c.get(lg.url("/hello")).send().await.unwrap().status(), 200);
    let photo = Part::bytes(media("images/faces/deepface/img20.jpg"))
        .file_name("p.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    let r = c
        .post(lg.url("/upload"))
        .multipart(Form::new().part("image", photo))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(lg.url("/down")).send().await.unwrap().status(), 502);
    let r = c
        .post(lg.admin_url("/admin/v1/policy/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let scraped = lg.metrics().await;
    let exported: BTreeSet<String> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/monitoring but not exported: {missing:?}\n{scraped}"
    );
    // The scrape itself lints clean with Prometheus' checker.
    support::promtool_check_metrics(&scraped);
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    for args in [
        vec!["check", "rules", "alerts.yaml"],
        vec!["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(deploy("monitoring"))
            .output()
            .expect("promtool (Debian's prometheus package; scripts/setup-system installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
