//! The proxy end to end: the real binary, a real upstream, a real HTTP client, real media.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use sha2::{Digest, Sha256};
use support::*;

const KNOWN: &str = "images/faces/deepface/img11.jpg";
const OTHER: &str = "images/faces/deepface/img14.jpg";
const PNG: &str = "images/faces/misc/skimage_astronaut.png";

fn routes(upstream: &str) -> String {
    format!(
        r#"
routes:
  - name: passthrough
    match: {{path_prefix: /plain}}
    upstream: {upstream}
    inspect: {{direction: none}}
  - name: strict
    match: {{path_prefix: /strict}}
    upstream: {upstream}
    inspect: {{direction: both, max_body: 4MiB, time_budget: 1ns, on_failure: fail_closed}}
  - name: lenient
    match: {{path_prefix: /lenient}}
    upstream: {upstream}
    inspect: {{direction: both, time_budget: 1ns, on_failure: fail_open}}
  - name: inspected
    upstream: {upstream}
    inspect:
      direction: both
      max_body: 4MiB
      extract: {{json_pointers: [/data/*/b64_json, /image]}}
timeouts:
  client_read: 1s
  client_body: 3s
"#
    )
}

async fn setup() -> (Upstream, Likeguard) {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&routes(&up.url()));
    (up, lg)
}

/// POST a body with a Content-Type through likeguard.
async fn post(
    c: &reqwest::Client,
    url: String,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    c.post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

async fn problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "problem responses are RFC 9457"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(
        v["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:likeguard:problem:")
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_streams_get_post_put_chunked_and_large_bodies() {
    let (up, lg) = setup().await;
    let c = client();

    let r = c.get(lg.url("/plain/hello?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(up.received_on("/plain/hello")[0].method, "GET");

    // 16 MiB of pseudo-random bytes, streamed in chunks (chunked transfer encoding).
    let big: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = c
        .post(lg.url("/plain/echo-stream"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    assert_eq!(sha(&back), sha(&big));
    let got = up.received_on("/plain/echo-stream");
    assert_eq!(got[0].headers["transfer-encoding"], "chunked");
    assert_eq!(sha(&got[0].body), sha(&big));

    let r = c
        .put(lg.url("/plain/echo-put"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.received_on("/plain/echo-put")[0].method, "PUT");
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&big));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspected_route_passes_non_media_and_unknown_media_unchanged() {
    let (up, lg) = setup().await;
    let c = client();
    // 1 MB of text on an inspected route: not media, forwarded as is, response echoed.
    let text = "likeguard ".repeat(100_000);
    let r = post(&c, lg.url("/echo-text"), "text/plain", text.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), text);

    // An image nobody registered: reaches the upstream byte for byte, no decision headers.
    lg.register(media(KNOWN), "block").await;
    let other = media(OTHER);
    let r = post(&c, lg.url("/echo-img"), "image/jpeg", other.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("likeguard-decision").is_none());
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&other));
    let got = up.received_on("/echo-img");
    assert_eq!(sha(&got[0].body), sha(&other));
    assert!(got[0].headers.get("likeguard-decision").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_media_upload_is_blocked_before_the_upstream_sees_it() {
    let (up, lg) = setup().await;
    let c = client();
    let known = media(KNOWN);
    let entry = lg.register(known.clone(), "block").await;
    assert_eq!(entry["action"], "block");
    assert!(entry["pdq"].as_str().is_some_and(|p| p.len() == 64));

    // Exact copy, raw body.
    let r = post(&c, lg.url("/upload/raw"), "image/jpeg", known.clone()).await;
    let v = problem(r, 451).await;
    assert_eq!(v["rule"], "known-media");
    assert!(v["decision_id"].as_str().is_some_and(|d| d.len() == 36));

    // A resized, re-encoded copy inside a multipart form: caught by PDQ.
    let copy = resized_copy(&known);
    assert_ne!(sha(&copy), sha(&known));
    let form = reqwest::multipart::Form::new()
        .text("prompt", "make it pop")
        .part(
            "image",
            reqwest::multipart::Part::bytes(copy)
                .file_name("x.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let r = c
        .post(lg.url("/upload/form"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    problem(r, 451).await;

    // Base64 in JSON, OpenAI style.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&known);
    let r = c
        .post(lg.url("/upload/json"))
        .json(&serde_json::json!({"data": [{"b64_json": b64}]}))
        .send()
        .await
        .unwrap();
    problem(r, 451).await;

    // Chunked upload without Content-Length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = known
        .chunks(4096)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = c
        .post(lg.url("/upload/chunked"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    problem(r, 451).await;

    // None of the blocked uploads reached the upstream — not even their headers.
    assert!(
        up.received().iter().all(|r| !r.path.starts_with("/upload")),
        "upstream saw a blocked upload: {:?}",
        up.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );

    // The decision is counted.
    let m = lg.metrics().await;
    assert!(
        m.contains(r#"likeguard_decisions_total{action="block",rule="known-media"} 4"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_headers_go_upstream_on_requests_and_to_the_client_on_responses() {
    let (up, lg) = setup().await;
    let c = client();
    let png = media(PNG);
    lg.register(png.clone(), "tag").await;

    let r = post(&c, lg.url("/tagged-up"), "image/png", png.clone()).await;
    assert_eq!(r.status(), 200);
    // Request side: the client's response carries no tag, the upstream's request does.
    assert!(r.headers().get("likeguard-decision").is_none());
    let got = &up.received_on("/tagged-up")[0];
    assert_eq!(got.headers["likeguard-decision"], "tag");
    assert_eq!(got.headers["likeguard-rule"], "known-media");
    assert_eq!(sha(&got.body), sha(&png));

    // Response side: a generation service returns the tagged image.
    up.serve("/gen/tagged", Canned::ok("image/png", png.clone(), Some(7)));
    let r = c.get(lg.url("/gen/tagged")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["likeguard-decision"], "tag");
    assert!(r.headers().get("likeguard-decision-id").is_some());
    assert_eq!(r.headers()["content-length"], png.len().to_string());
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&png));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_media_in_a_response_becomes_451() {
    let (up, lg) = setup().await;
    let c = client();
    let known = media(KNOWN);
    lg.register(known.clone(), "block").await;
    up.serve("/gen/raw", Canned::ok("image/jpeg", known.clone(), Some(3)));
    let r = c.get(lg.url("/gen/raw")).send().await.unwrap();
    let v = problem(r, 451).await;
    assert_eq!(v["rule"], "known-media");

    let b64 = base64::engine::general_purpose::STANDARD.encode(resized_copy(&known));
    let json = serde_json::json!({"created": 1, "data": [{"b64_json": b64}]});
    up.serve(
        "/gen/json",
        Canned::ok("application/json", serde_json::to_vec(&json).unwrap(), None),
    );
    let r = c
        .post(lg.url("/gen/json"))
        .json(&serde_json::json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    problem(r, 451).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_malformed_bodies_get_precise_problems() {
    let (up, lg) = setup().await;
    let c = client();

    // Over max_body (4 MiB) with Content-Length: refused before reading.
    let r = post(
        &c,
        lg.url("/big"),
        "image/jpeg",
        vec![0xFFu8; 5 * 1024 * 1024],
    )
    .await;
    problem(r, 413).await;
    // ...and chunked, discovered while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..80)
        .map(|_| Ok(Bytes::from(vec![0xFFu8; 64 * 1024])))
        .collect();
    let r = c
        .post(lg.url("/big-chunked"))
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The proxy answers 413 and closes; the client may see the answer or a reset mid-upload.
    if let Ok(r) = r {
        problem(r, 413).await;
    }

    // Broken JSON that may hold media (a long base64 run) is refused; broken JSON with nothing
    // that could be media is not parsed at all (the upstream answers it).
    let broken = format!(r#"{{"image": "{}"#, "QUJD".repeat(40));
    let r = post(&c, lg.url("/bad-json"), "application/json", broken).await;
    let v = problem(r, 400).await;
    assert!(v["detail"].as_str().unwrap().contains("JSON"), "{v}");

    // A data URL that says base64 and is not.
    let r = c
        .post(lg.url("/bad-b64"))
        .json(&serde_json::json!({"image": "data:image/jpeg;base64,%%%not-base64%%%"}))
        .send()
        .await
        .unwrap();
    let v = problem(r, 400).await;
    assert!(v["detail"].as_str().unwrap().contains("/image"), "{v}");

    let r = post(&c, lg.url("/bad-form"), "multipart/form-data; boundary=XyZ", &b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n\xFF\xD8\xFF"[..]).await;
    problem(r, 400).await;

    let r = post(
        &c,
        lg.url("/no-boundary"),
        "multipart/form-data",
        "whatever",
    )
    .await;
    problem(r, 400).await;

    let r = post(&c, lg.url("/not-an-image"), "image/png", "this is text").await;
    problem(r, 415).await;

    // A truncated real image still sniffs as JPEG and passes (nothing known matches it).
    let mut cut = media(OTHER);
    cut.truncate(cut.len() / 3);
    let r = post(&c, lg.url("/truncated"), "image/jpeg", cut).await;
    assert_eq!(r.status(), 200);

    let refused = [
        "/big",
        "/big-chunked",
        "/bad-json",
        "/bad-b64",
        "/bad-form",
        "/no-boundary",
        "/not-an-image",
    ];
    assert!(
        up.received()
            .iter()
            .all(|r| !refused.contains(&r.path.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_modes_are_honoured() {
    let (up, lg) = setup().await;
    let c = client();
    lg.register(media(KNOWN), "block").await;
    let other = media(OTHER);
    // time_budget 1ns: inspection of a real image cannot finish in time.
    let r = post(&c, lg.url("/strict/x"), "image/jpeg", other.clone()).await;
    let v = problem(r, 503).await;
    assert!(v["detail"].as_str().unwrap().contains("time budget"), "{v}");
    assert!(up.received_on("/strict/x").is_empty());

    let r = post(&c, lg.url("/lenient/x"), "image/jpeg", other.clone()).await;
    assert_eq!(r.status(), 200);
    let got = &up.received_on("/lenient/x")[0];
    assert_eq!(got.headers["likeguard-decision"], "error");
    assert_eq!(sha(&got.body), sha(&other));
}

/// Send headers and 3 of 1000 body bytes, then stall; return the status line and the wait.
fn stall(addr: std::net::SocketAddr, path: &str) -> (String, Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = std::time::Instant::now();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n").unwrap();
    s.write_all(b"\xFF\xD8\xFF").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    (
        String::from_utf8_lossy(&buf[..n]).to_string(),
        start.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_with_408_on_both_paths() {
    let (up, lg) = setup().await;
    let addr = lg.addr;
    let (inspected, plain) =
        tokio::task::spawn_blocking(move || (stall(addr, "/slow"), stall(addr, "/plain/slow")))
            .await
            .unwrap();
    for (status, elapsed) in [&inspected, &plain] {
        assert!(status.starts_with("HTTP/1.1 408"), "{status}");
        assert!(status.contains("application/problem+json"), "{status}");
        assert!(*elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
    // Held bodies never reach the upstream; the pass-through one streamed (headers went ahead).
    assert!(up.received_on("/slow").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_works_on_both_paths() {
    let (_up, lg) = setup().await;
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for path in ["/plain/a", "/inspected/b", "/plain/c", "/inspected/d"] {
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            // Read one full response: headers then a 2-byte body "ok".
            while !got.ends_with(b"ok") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed after {path}");
                got.extend_from_slice(&buf[..n]);
            }
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&got)
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_and_no_route() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let lg = Likeguard::start(&format!(
        "routes:\n  - {{name: a, match: {{path_prefix: /a}}, upstream: '{dead}'}}\n  - {{name: b, match: {{path_prefix: /b}}, upstream: '{dead}', inspect: {{direction: none}}}}\n"
    ));
    let c = client();
    problem(c.get(lg.url("/a")).send().await.unwrap(), 502).await;
    problem(c.get(lg.url("/b")).send().await.unwrap(), 502).await;
    problem(c.get(lg.url("/elsewhere")).send().await.unwrap(), 404).await;

    // Readiness says so once a route's upstream keeps failing, naming the route; the metric
    // counts the failures by kind. (Route b is pass-through: the same exchange.)
    let ready = || async {
        let r = c.get(lg.admin_url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "still serving");
        r.json::<serde_json::Value>().await.unwrap()
    };
    assert_eq!(ready().await["status"], "ready");
    for _ in 0..2 {
        problem(c.get(lg.url("/a")).send().await.unwrap(), 502).await;
    }
    let v = ready().await;
    assert_eq!(v["status"], "degraded", "{v}");
    let a = v["checks"]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["route"] == "a")
        .unwrap()
        .clone();
    assert_eq!(
        (a["failing"].as_bool(), a["consecutive_failures"].as_u64()),
        (Some(true), Some(3))
    );
    let m = lg.metrics().await;
    assert!(
        m.contains(r#"likeguard_upstream_failures_total{kind="connect",route="a"} 3"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_inspects_every_path_both_ways() {
    let up = Upstream::start().await;
    let lg = Likeguard::start_embedded(&up.url());
    let c = client();
    let known = media(KNOWN);
    lg.register(known.clone(), "block").await;
    let r = c
        .put(lg.url("/any/path"))
        .header("content-type", "image/jpeg")
        .body(known.clone())
        .send()
        .await
        .unwrap();
    problem(r, 451).await;
    up.serve("/generated.jpg", Canned::ok("image/jpeg", known, None));
    problem(c.get(lg.url("/generated.jpg")).send().await.unwrap(), 451).await;
    assert_eq!(up.received_on("/any/path").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_manages_the_bank() {
    let (_up, lg) = setup().await;
    let c = client();
    // The framework's own refusals are problem+json too, saying what to send instead.
    let r = c
        .post(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(support::TOKEN)
        .json(&serde_json::json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["detail"].as_str().unwrap().contains("docs/openapi.yaml"),
        "{v}"
    );
    // A body over the admin limit gets a problem+json 413; the server may answer and close
    // while the body is still being written, so a failed write is not a failure here.
    let r = c
        .post(lg.admin_url("/admin/v1/known-media?action=block"))
        .bearer_auth(support::TOKEN)
        .header("content-type", "image/jpeg")
        .body(vec![0u8; 70 * 1024 * 1024])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(
        c.get(lg.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: serde_json::Value = c
        .get(lg.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    problem(c.get(lg.admin_url("/metrics")).send().await.unwrap(), 401).await;
    problem(
        c.get(lg.admin_url("/admin/v1/known-media"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;

    // Hashes shared by someone else, without the media.
    let r = c
        .post(lg.admin_url("/admin/v1/known-media"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"sha256": "ab".repeat(32), "action": "tag", "label": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(lg.admin_url("/admin/v1/known-media"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"sha256": "nothex", "action": "tag"}))
        .send()
        .await
        .unwrap();
    problem(r, 400).await;
    let r = c
        .post(lg.admin_url("/admin/v1/known-media"))
        .bearer_auth(TOKEN)
        .body("not media")
        .send()
        .await
        .unwrap();
    problem(r, 415).await;

    let list: serde_json::Value = c
        .get(lg.admin_url("/admin/v1/known-media"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["entries"].as_array().unwrap().len(), 1);
    // Persisted crash-safely in the state dir.
    let saved = std::fs::read_to_string(lg.state_dir.path().join("known-media.json")).unwrap();
    assert!(saved.contains(&id));

    let del = |id: String| {
        c.delete(lg.admin_url(&format!("/admin/v1/known-media/{id}")))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(del(id.clone()).await.unwrap().status(), 204);
    problem(del(id).await.unwrap(), 404).await;
}

/// The test upstream tells an upload that was broken off from a whole one (what the `tee`
/// mode's abort must look like from the upstream's side): a Content-Length body short of its
/// length, and a chunked body without its last chunk, are kept and marked incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_upstream_tells_an_aborted_upload_from_a_whole_one() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let send = |head: &'static str, body: &'static [u8]| {
        let addr = up.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(body).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
        }
    };
    send(
        "POST /whole HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n",
        b"hello",
    )
    .await;
    send(
        "POST /short HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n",
        b"only this",
    )
    .await;
    send(
        "POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n",
        b"4\r\nsome\r\n",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while up.received().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let by = |p: &str| {
        up.received_on(p)
            .pop()
            .unwrap_or_else(|| panic!("{p} not recorded"))
    };
    let whole = by("/whole");
    assert!(whole.complete);
    assert_eq!(&whole.body[..], b"hello");
    let short = by("/short");
    assert!(!short.complete);
    assert_eq!(&short.body[..], b"only this");
    let chunked = by("/chunked");
    assert!(!chunked.complete);
    assert_eq!(&chunked.body[..], b"some");
}
