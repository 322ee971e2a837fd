//! Finding the person wherever the media hides, end to end: the real binary on its embedded
//! default (every path, both directions, no extra configuration), a real recording upstream,
//! the real face models and real photos of one enrolled person — sent in every shape real
//! services use. The request side checks the upstream never receives the media; the response
//! side checks the client never does.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use support::{Canned, Likeguard, TOKEN, Upstream, client, media};

const X1: &str = "images/faces/deepface/img1.jpg";
const X2: &str = "images/faces/deepface/img2.jpg";
/// A different photo of the enrolled person.
const X_OTHER: &str = "images/faces/deepface/img6.jpg";
/// Someone else.
const Y: &str = "images/faces/deepface/img20.jpg";

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

/// `rel` converted with `heif-enc` (libheif-examples): HEIC, or AVIF with `-A`.
fn heif(rel: &str, avif: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(if avif { "x.avif" } else { "x.heic" });
    let src = support::testdata().join(rel);
    let mut cmd = std::process::Command::new("heif-enc");
    if avif {
        cmd.arg("-A");
    }
    let status = cmd
        .args([
            "-q",
            "70",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("heif-enc (libheif-examples; scripts/setup-system installs it)");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

async fn enrol(lg: &Likeguard) {
    let mut form = Form::new()
        .text("name", "Person X")
        .text("protection", "strict")
        .text("consent_by", "the person")
        .text("consent_method", "signed form");
    for p in [X1, X2] {
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

/// POST `body` as `content_type` (plus `extra` headers) to a fresh path; the status, and
/// whether the upstream received anything on that path.
async fn post(
    lg: &Likeguard,
    up: &Upstream,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, Vec<support::Received>) {
    let mut req = client()
        .post(lg.url(path))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, up.received_on(path))
}

fn multipart_form(parts: Vec<(&str, Part)>) -> Form {
    parts
        .into_iter()
        .fold(Form::new().text("prompt", "a portrait"), |f, (n, p)| {
            f.part(n.to_string(), p)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrolled_person_is_found_in_every_request_shape() {
    let up = Upstream::start().await;
    let lg = Likeguard::start_embedded(&up.url());
    enrol(&lg).await;
    let x = media(X_OTHER);
    let y = media(Y);
    let zip = zip_of(&[
        ("train/001.jpg", &y),
        ("train/002.jpg", &x),
        ("captions.txt", b"hi"),
    ]);

    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let form_field = form_urlencoded::Serializer::new(String::new())
        .append_pair("prompt", "a portrait")
        .append_pair("init_image", &b64(&x))
        .finish();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "img2img JSON",
            "application/json",
            json(serde_json::json!({"prompt": "a portrait", "init_image": b64(&x)})),
        ),
        (
            "data URL in JSON",
            "application/json",
            json(
                serde_json::json!({"input": {"image": format!("data:image/jpeg;base64,{}", b64(&x))}}),
            ),
        ),
        (
            "form field",
            "application/x-www-form-urlencoded",
            form_field.into_bytes(),
        ),
        ("raw zip", "application/zip", zip.clone()),
        ("tar.gz", "application/gzip", tar_gz(&[("set/a.jpg", &x)])),
        ("zip as text/plain", "text/plain", zip.clone()),
        ("HEIC", "image/heic", heif(X_OTHER, false)),
        ("AVIF", "image/avif", heif(X_OTHER, true)),
    ];
    for (n, (what, ct, body)) in cases.into_iter().enumerate() {
        let path = format!("/v1/req/{n}");
        let (status, got) = post(&lg, &up, &path, ct, &[], body).await;
        assert_eq!(status, 451, "{what}");
        assert!(got.is_empty(), "{what}: the upstream received the media");
    }

    // Multipart: the zip as a part, and a zip inside JSON inside a part.
    let zip_part = Part::bytes(zip.clone())
        .file_name("train.zip")
        .mime_str("application/zip")
        .unwrap();
    let nested = serde_json::to_vec(&serde_json::json!({"dataset": b64(&zip)})).unwrap();
    let json_part = Part::bytes(nested).mime_str("application/json").unwrap();
    for (n, form) in [
        multipart_form(vec![("training_data", zip_part)]),
        multipart_form(vec![("meta", json_part)]),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/v1/fine-tunes/{n}");
        let r = client()
            .post(lg.url(&path))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 451, "multipart case {n}");
        assert!(up.received_on(&path).is_empty());
    }

    // Content-Encoding: gzip is inflated and inspected; someone else's photo goes on exactly
    // as it came (compressed, with its Content-Encoding).
    let (status, got) = post(
        &lg,
        &up,
        "/gz/x",
        "image/jpeg",
        &[("content-encoding", "gzip")],
        gzip(&x),
    )
    .await;
    assert_eq!((status, got.len()), (451, 0));
    let packed = gzip(&y);
    let (status, got) = post(
        &lg,
        &up,
        "/gz/y",
        "image/jpeg",
        &[("content-encoding", "gzip")],
        packed.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got[0].body, Bytes::from(packed));
    assert_eq!(got[0].headers["content-encoding"], "gzip");

    // Blocks are decisions, not errors: an error-rate alert must not fire on the policy working.
    let m = lg.metrics().await;
    assert!(
        m.contains(r#"likeguard_decisions_total{action="block""#),
        "{m}"
    );
    assert!(
        !m.contains(r#"likeguard_errors_total{kind="blocked"}"#),
        "{m}"
    );
    // The exposition passes Prometheus' own linter after real traffic.
    support::promtool_check_metrics(&m);

    // Someone else in the same shapes passes untouched.
    let body = json(serde_json::json!({"prompt": "a portrait", "init_image": b64(&y)}));
    let (status, got) = post(&lg, &up, "/v1/other", "application/json", &[], body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(got[0].body, Bytes::from(body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrolled_person_is_found_in_every_response_shape_and_range() {
    let up = Upstream::start().await;
    let lg = Likeguard::start_embedded(&up.url());
    enrol(&lg).await;
    let x = media(X_OTHER);
    let y = media(Y);
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    for (n, body) in [
        json(serde_json::json!({"artifacts": [{"base64": b64(&x), "seed": 42, "finishReason": "SUCCESS"}]})),
        json(serde_json::json!({"predictions": [{"bytesBase64Encoded": b64(&x), "mimeType": "image/jpeg"}]})),
        json(serde_json::json!({"images": [{"url": format!("data:image/jpeg;base64,{}", b64(&x))}]})),
        zip_of(&[("out/0.jpg", &x)]),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/v1/generation/{n}");
        let ct = if n == 3 { "application/zip" } else { "application/json" };
        up.serve(&path, Canned::ok(ct, body, Some(3)));
        let r = client().get(lg.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 451, "response shape {n}");
        let got = r.bytes().await.unwrap();
        assert!(!got.windows(64).any(|w| x.windows(64).next() == Some(w)), "media leaked");
    }

    // Ranges: no piece of a blocked image leaves; someone else's is served from the whole.
    up.serve("/photo/x.jpg", Canned::ok("image/jpeg", x.clone(), None));
    up.serve("/photo/y.jpg", Canned::ok("image/jpeg", y.clone(), None));
    for range in ["bytes=0-2999", "bytes=3000-", "bytes=-500", "bytes=0-0"] {
        let r = client()
            .get(lg.url("/photo/x.jpg"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 451, "{range}");
    }
    let r = client()
        .get(lg.url("/photo/y.jpg"))
        .header("range", "bytes=0-2999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-2999/{}", y.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), Bytes::copy_from_slice(&y[..3000]));
    let r = client()
        .get(lg.url("/photo/y.jpg"))
        .header("range", format!("bytes={}-", y.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert!(
        up.received_on("/photo/y.jpg")
            .iter()
            .chain(up.received_on("/photo/x.jpg").iter())
            .all(|r| !r.headers.contains_key("range")),
        "the upstream must be asked for the whole representation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_behind_allow_listed_urls_is_fetched_and_bombs_are_refused() {
    let up = Upstream::start().await;
    let port = up.addr.port();
    let routes = |allow_private: bool| {
        format!(
            "routes:\n  - name: gen\n    upstream: {}\n    inspect:\n      extract:\n        fetch:\n          hosts: [localhost]\n          schemes: [http]\n          ports: [{port}]\n          allow_private: {allow_private}\n",
            up.url()
        )
    };
    let lg = Likeguard::start(&routes(true));
    enrol(&lg).await;
    let x = media(X_OTHER);
    up.serve("/files/x.jpg", Canned::ok("image/jpeg", x.clone(), None));
    let openai = |file: &str| {
        serde_json::to_vec(&serde_json::json!({
            "created": 1, "data": [{"url": format!("http://localhost:{port}/files/{file}?sig=secret")}]
        }))
        .unwrap()
    };
    up.serve(
        "/v1/images/generations",
        Canned::ok("application/json", openai("x.jpg"), None),
    );
    let r = client()
        .get(lg.url("/v1/images/generations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    assert_eq!(up.received_on("/files/x.jpg").len(), 1, "fetched once");
    let fetch = &up.received_on("/files/x.jpg")[0];
    assert!(!fetch.headers.contains_key("authorization") && !fetch.headers.contains_key("cookie"));
    // A URL off the allow-list is not fetched and the response passes.
    up.serve(
        "/v1/other",
        Canned::ok(
            "application/json",
            serde_json::to_vec(&serde_json::json!({"url": "http://127.0.0.2:1/x.jpg"})).unwrap(),
            None,
        ),
    );
    assert_eq!(
        client()
            .get(lg.url("/v1/other"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A gzip bomb (1 GiB of zeros in 1 MiB) is refused quickly, with the route's failure mode.
    let ten_mib = gzip(&vec![0u8; 10 << 20]);
    let bomb: Vec<u8> = ten_mib
        .iter()
        .copied()
        .cycle()
        .take(ten_mib.len() * 100)
        .collect();
    let started = Instant::now();
    let r = client()
        .post(lg.url("/v1/bomb"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "fail_closed on a bound");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(up.received_on("/v1/bomb").is_empty());
    drop(lg);

    // Without allow_private, an allow-listed name that resolves to loopback is never fetched:
    // the response fails closed (502) instead of passing unseen.
    let lg = Likeguard::start(&routes(false));
    enrol(&lg).await;
    up.serve(
        "/v1/images/private",
        Canned::ok("application/json", openai("y.jpg"), None),
    );
    let r = client()
        .get(lg.url("/v1/images/private"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().find("secret").is_none(),
        "query leaked"
    );
    assert!(up.received_on("/files/y.jpg").is_empty());
}
