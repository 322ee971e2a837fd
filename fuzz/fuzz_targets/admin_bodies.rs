//! The admin API's request bodies, through its real router (token-checked): known-media
//! entries (JSON hashes or media), licenses (JSON), verify (media or multipart), policy
//! reload. Every answer must be a response, never a panic; errors are problem+json.
#![no_main]
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use likeguard::admin::{AdminState, router};
use likeguard::config::{Config, KnownMediaConfig};
use likeguard::knownmedia::Bank;
use likeguard::license::requester::Requester;
use likeguard::telemetry::Metrics;
use tower::ServiceExt;

static APP: LazyLock<(tokio::runtime::Runtime, axum::Router)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("likeguard-fuzz-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state dir");
    let metrics = Arc::new(Metrics::new());
    let bank = Bank::open(&dir, &KnownMediaConfig::default(), metrics.known_media.clone())
        .expect("bank");
    let c = Config::parse("{}", "fuzz").expect("config");
    let requester = Arc::new(Requester::new(&c.licensing).expect("requester"));
    let state = AdminState::new(metrics, Arc::new(bank), None, requester, Some("t".into()), false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (rt, router(state))
});

const CALLS: [(&str, &str, &str); 8] = [
    ("POST", "/admin/v1/known-media", "application/json"),
    ("POST", "/admin/v1/known-media?action=block&label=x", "image/png"),
    ("POST", "/admin/v1/licenses", "application/json"),
    ("POST", "/admin/v1/identities", "multipart/form-data; boundary=XyZ"),
    ("POST", "/v1/verify", "image/jpeg"),
    ("POST", "/v1/verify", "multipart/form-data; boundary=XyZ"),
    ("POST", "/admin/v1/policy/reload", "application/json"),
    ("DELETE", "/admin/v1/known-media/%00..%2F", "application/json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path, ct) = CALLS[usize::from(pick) % CALLS.len()];
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer t")
        .header("content-type", ct)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (rt, app) = &*APP;
    let res = rt.block_on(app.clone().oneshot(req)).expect("infallible");
    if !res.status().is_success() {
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(ct, Some("application/problem+json"), "{method} {path}: {}", res.status());
    }
});
