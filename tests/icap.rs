//! The ICAP service with real clients: Debian's Squid in front of a real upstream asking
//! likeguard over REQMOD and RESPMOD, the c-icap project's `c-icap-client`, and raw sockets
//! sending what a broken or hostile client would.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use likeguard::actions::watermark::{ImageWatermarker, payload_for};
use likeguard::config::WatermarkConfig;
use reqwest::multipart::{Form, Part};
use support::squid::Squid;
use support::{Canned, Likeguard, TOKEN, Upstream, client, free_port, media, wait_until};

const KEY: &str = "test-watermark-key";
const X1: &str = "images/faces/deepface/img1.jpg";
const X2: &str = "images/faces/deepface/img2.jpg";
/// Another photo of X.
const X_OTHER: &str = "images/faces/deepface/img6.jpg";
/// Someone else (never enrolled).
const Y: &str = "images/faces/deepface/img20.jpg";

fn icap_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// likeguard with its ICAP service: uploads inspected on `/upload`, generated media on
/// `/v1/images`, everything else passed.
fn likeguard(up: &Upstream, icap: SocketAddr, extra: &str) -> Likeguard {
    let u = up.url();
    Likeguard::start(&format!(
        "watermark: {{key: {KEY}}}\nicap: {{listen: '{icap}'{extra}}}\nroutes:
  - name: uploads
    match: {{path_prefix: /upload}}
    upstream: {u}
    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}
  - name: generated
    match: {{path_prefix: /v1/images}}
    upstream: {u}
    inspect: {{direction: response, max_body: 16MiB, time_budget: 20s, on_failure: fail_closed}}
  - name: rest
    upstream: {u}
    inspect: {{direction: none}}
"
    ))
}

fn photo_part(rel: &str) -> Part {
    Part::bytes(media(rel))
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .unwrap()
}

async fn enrol_x(lg: &Likeguard) -> String {
    let form = Form::new()
        .text("name", "Person X")
        .text("protection", "strict")
        .text("consent_by", "the person")
        .text("consent_method", "signed form")
        .part("photo", photo_part(X1))
        .part("photo", photo_part(X2));
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

async fn license_acme(lg: &Likeguard, identity: &str) {
    let r = client()
        .post(lg.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "identity_id": identity, "licensee": "acme", "usages": ["commercial"],
            "valid_until": "2999-01-01T00:00:00Z", "obligations": ["tag"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// `data` scaled to `width` pixels wide, as a JPEG.
fn small_jpeg(data: &[u8], width: u32) -> Vec<u8> {
    let img = image::load_from_memory(data).unwrap();
    let small = img.resize(width, u32::MAX, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    small.to_rgb8().write_with_encoder(enc).unwrap();
    out.into_inner()
}

fn watermarker() -> ImageWatermarker {
    ImageWatermarker::new(&WatermarkConfig {
        key: Some(KEY.into()),
        ..Default::default()
    })
}

/// The value of one series in a Prometheus exposition (0 when absent).
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_with_likeguard_as_its_icap_service_enforces_every_outcome() {
    let up = Upstream::start().await;
    let icap = icap_addr();
    let lg = likeguard(&up, icap, "");
    let squid = Squid::start(Some(icap));
    let via = squid.client();
    let x = enrol_x(&lg).await;
    license_acme(&lg, &x).await;

    // An upload of an enrolled, unlicensed person: the 451 comes from likeguard through Squid,
    // and the upstream never sees the upload.
    let upload = |who: Option<&'static str>| {
        let mut r = via.post(format!("{}/upload", up.url())).multipart(
            Form::new()
                .text("prompt", "a painting")
                .part("image", photo_part(X_OTHER)),
        );
        if let Some(who) = who {
            r = r.header("likeguard-licensee", who);
        }
        r.send()
    };
    let r = upload(None).await.unwrap();
    assert_eq!(r.status(), 451, "{}", squid.log());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:likeguard:problem:blocked");
    assert!(
        up.received_on("/upload").is_empty(),
        "a blocked upload reached the upstream"
    );

    // The licensee's upload passes, with the decision's headers at the upstream.
    let r = upload(Some("acme")).await.unwrap();
    assert_eq!(r.status(), 200);
    let got = up.received_on("/upload");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["likeguard-decision"], "tag");
    assert_eq!(got[0].headers["likeguard-rule"], "license-tag");
    assert!(!got[0].body.is_empty());

    // A generated image with a watermark obligation comes back through Squid marked, and the
    // mark names the decision. (Under 64 KiB: Squid 5.7 stops feeding a RESPMOD body past its
    // 64 KiB pipe until the service answers — docs/icap.md, "Squid and large responses".)
    let original = small_jpeg(&media(Y), 480);
    assert!(original.len() < 64 * 1024);
    lg.register(original.clone(), "watermark").await;
    up.serve(
        "/v1/images/1",
        Canned::ok("image/jpeg", original.clone(), Some(4)),
    );
    let r = via
        .get(format!("{}/v1/images/1", up.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", squid.log()));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["likeguard-decision"], "watermark");
    let decision = r.headers()["likeguard-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    assert_ne!(body.as_ref(), original.as_slice());
    assert_eq!(
        watermarker().detect_file(&body).unwrap().payload,
        Some(payload_for(&decision))
    );

    // Non-media traffic is answered 204 (from the preview on inspected routes).
    let before = lg.metrics().await;
    up.serve(
        "/v1/images/list",
        Canned::ok("application/json", r#"{"images": []}"#, None),
    );
    let r = via
        .get(format!("{}/v1/images/list", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"images": []}"#);
    let r = via
        .post(format!("{}/upload/meta", up.url()))
        .header("content-type", "text/plain")
        .body("just words, nothing of media ".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = lg.metrics().await;
    for method in ["REQMOD", "RESPMOD"] {
        let s =
            format!("likeguard_icap_requests_total{{method=\"{method}\",outcome=\"unmodified\"}}");
        assert!(series(&after, &s) > series(&before, &s), "{s}");
    }
    assert!(after.contains("likeguard_icap_seconds_bucket"));
    assert_eq!(
        series(
            &after,
            "likeguard_icap_requests_total{method=\"REQMOD\",outcome=\"error\"}"
        ),
        0.0
    );
}

/// Run `c-icap-client` (Debian's `c-icap`) against the service; its output file and stdout.
fn c_icap_client(icap: SocketAddr, args: &[&str]) -> (Vec<u8>, String) {
    // c-icap-client will not write over an existing file: a fresh name in a fresh folder.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = std::process::Command::new("c-icap-client")
        .args(["-i", "127.0.0.1", "-p", &icap.port().to_string(), "-v"])
        .args(args)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("c-icap-client (Debian package `c-icap`; scripts/setup-system installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (std::fs::read(&out).unwrap_or_default(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_icap_client_round_trips_with_and_without_preview() {
    let up = Upstream::start().await;
    let icap = icap_addr();
    let lg = likeguard(&up, icap, "");
    enrol_x(&lg).await;
    let photo = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(photo.path(), media(X_OTHER)).unwrap();
    let file = photo.path().to_str().unwrap();

    // OPTIONS.
    let (_, text) = c_icap_client(icap, &["-s", "reqmod"]);
    for h in [
        "Methods: REQMOD",
        "Preview: 4096",
        "Allow: 204",
        "Max-Connections: 256",
        "ISTag: \"lg-",
    ] {
        assert!(text.contains(h), "{h} missing from:\n{text}");
    }
    let (_, text) = c_icap_client(icap, &["-s", "respmod"]);
    assert!(text.contains("Methods: RESPMOD"), "{text}");

    // REQMOD of an upload of X: the answer is the 451, with and without a preview.
    for extra in [&[][..], &["-nopreview"][..], &["-w", "1024"][..]] {
        let mut args = vec![
            "-s",
            "reqmod",
            "-req",
            "http://up.example/upload",
            "-f",
            file,
        ];
        args.extend_from_slice(extra);
        let (body, text) = c_icap_client(icap, &args);
        assert!(text.contains("HTTP/1.1 451"), "{extra:?}:\n{text}");
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(
            p["type"], "urn:likeguard:problem:blocked",
            "{extra:?}: {text}"
        );
    }

    // REQMOD of a non-media body: unmodified (204 after the preview; echoed without one when
    // 204 is not allowed).
    let words = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(words.path(), "plain words ".repeat(2000)).unwrap();
    let w = words.path().to_str().unwrap();
    let (_, text) = c_icap_client(
        icap,
        &["-s", "reqmod", "-req", "http://up.example/upload", "-f", w],
    );
    assert!(text.contains("ICAP/1.0 204"), "{text}");
    let (body, text) = c_icap_client(
        icap,
        &[
            "-s",
            "reqmod",
            "-req",
            "http://up.example/upload",
            "-f",
            w,
            "-nopreview",
            "-no204",
        ],
    );
    assert!(text.contains("ICAP/1.0 200"), "{text}");
    assert_eq!(
        body,
        "plain words ".repeat(2000).into_bytes(),
        "echoed body differs"
    );

    // RESPMOD echo (no preview, no 204): the response comes back whole, without the request
    // head (a RESPMOD answer carries only res-hdr).
    let (body, text) = c_icap_client(
        icap,
        &[
            "-s",
            "respmod",
            "-resp",
            "http://up.example/v1/images/list",
            "-f",
            w,
            "-nopreview",
            "-no204",
        ],
    );
    assert!(text.contains("ICAP/1.0 200"), "{text}");
    assert!(
        text.contains("Encapsulated: res-hdr=0, res-body="),
        "{text}"
    );
    assert_eq!(
        body,
        "plain words ".repeat(2000).into_bytes(),
        "echoed response differs"
    );

    // RESPMOD of generated media with a watermark obligation: the image comes back marked.
    let y = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(y.path(), media(Y)).unwrap();
    lg.register(media(Y), "watermark").await;
    for extra in [&[][..], &["-nopreview"][..]] {
        let mut args = vec![
            "-s",
            "respmod",
            "-resp",
            "http://up.example/v1/images/2",
            "-f",
        ];
        args.push(y.path().to_str().unwrap());
        args.extend_from_slice(extra);
        let (body, text) = c_icap_client(icap, &args);
        assert!(text.contains("ICAP/1.0 200"), "{extra:?}:\n{text}");
        assert!(text.contains("likeguard-decision: watermark"), "{text}");
        assert_ne!(body, media(Y));
        assert!(
            watermarker().detect_file(&body).unwrap().payload.is_some(),
            "{extra:?}"
        );
    }
}

/// Send `bytes` on a fresh connection and read the answer until the server closes (or 5 s).
fn raw(icap: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(icap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_icap_is_a_400_and_the_service_keeps_serving() {
    let up = Upstream::start().await;
    let icap = icap_addr();
    let lg = likeguard(&up, icap, ", max_connections: 3");
    let req = "POST http://up.example/upload HTTP/1.1\r\nHost: up.example\r\nContent-Type: image/jpeg\r\n\r\n";
    let n = req.len();
    let reqmod = |enc: &str, rest: &str| {
        format!(
            "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\nEncapsulated: {enc}\r\n\r\n{rest}"
        )
    };
    let cases = [
        // Offsets that do not add up: past the head's end, into the body, backwards.
        reqmod(
            &format!("req-hdr=0, req-body={}", n + 7),
            &format!("{req}5\r\nhello\r\n0\r\n\r\n"),
        ),
        reqmod(
            &format!("req-hdr=0, req-body={}", n - 10),
            &format!("{req}0\r\n\r\n"),
        ),
        reqmod(&format!("req-hdr=10, req-body={n}"), req),
        reqmod("req-hdr=0, req-body=99999999999", ""),
        // Chunking errors: not hex, data longer than its size, bare LF, ieof with data.
        reqmod(
            &format!("req-hdr=0, req-body={n}"),
            &format!("{req}zz\r\nhello\r\n0\r\n\r\n"),
        ),
        reqmod(
            &format!("req-hdr=0, req-body={n}"),
            &format!("{req}3\r\nhello\r\n0\r\n\r\n"),
        ),
        reqmod(
            &format!("req-hdr=0, req-body={n}"),
            &format!("{req}5\nhello\r\n0\r\n\r\n"),
        ),
        reqmod(
            &format!("req-hdr=0, req-body={n}"),
            &format!("{req}5; ieof\r\nhello\r\n0\r\n\r\n"),
        ),
        // A preview longer than announced.
        format!(
            "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nPreview: 2\r\nEncapsulated: req-hdr=0, req-body={n}\r\n\r\n{req}5\r\nhello\r\n0\r\n\r\n"
        ),
        // Not ICAP at all, or a bare-LF head.
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\nHost: x\n\n".to_string(),
    ];
    for case in &cases {
        let answer = raw(icap, case.as_bytes());
        assert!(
            answer.starts_with("ICAP/1.0 400 ") || answer.starts_with("ICAP/1.0 501 "),
            "{case:?} → {answer:?}"
        );
        assert!(answer.contains("Connection: close"), "{answer}");
    }
    // Unknown service, wrong method for the service.
    let answer = raw(icap, b"OPTIONS icap://127.0.0.1/nothing ICAP/1.0\r\n\r\n");
    assert!(answer.starts_with("ICAP/1.0 404 "), "{answer}");
    let answer = raw(
        icap,
        reqmod(&format!("req-hdr=0, null-body={n}"), req)
            .replace("/reqmod", "/respmod")
            .as_bytes(),
    );
    assert!(
        answer.starts_with("ICAP/1.0 400 ") || answer.starts_with("ICAP/1.0 405 "),
        "{answer}"
    );

    // A CONNECT (a tunnel ICAP cannot see into) is passed, not refused.
    let connect = "CONNECT up.example:443 HTTP/1.1\r\nHost: up.example:443\r\n\r\n";
    let answer = raw(
        icap,
        format!(
            "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nAllow: 204\r\nConnection: close\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{connect}",
            connect.len()
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("ICAP/1.0 204 "), "{answer}");

    // Still serving: a whole exchange on one connection, twice (keep-alive).
    let ok = reqmod(&format!("req-hdr=0, null-body={n}"), req);
    let mut s = TcpStream::connect(icap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        s.write_all(
            ok.replace("ICAP/1.0\r\n", "ICAP/1.0\r\nAllow: 204\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let got = s.read(&mut buf).unwrap();
        assert!(buf[..got].starts_with(b"ICAP/1.0 204 No Content\r\n"));
    }

    // Max-Connections: with 3 open (this one and two idle), the next is told 503.
    let _idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(icap).unwrap()).collect();
    wait_until(
        "three ICAP connections open",
        Duration::from_secs(5),
        async || series(&lg.metrics().await, "likeguard_icap_connections ") >= 3.0,
    )
    .await;
    let answer = raw(icap, b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n");
    assert!(answer.starts_with("ICAP/1.0 503 "), "{answer}");
    let m = lg.metrics().await;
    assert!(series(&m, "likeguard_icap_connections_refused_total") >= 1.0);
    assert!(
        series(
            &m,
            "likeguard_icap_requests_total{method=\"-\",outcome=\"error\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istag_changes_when_what_rulings_depend_on_changes() {
    let up = Upstream::start().await;
    let icap = icap_addr();
    let lg = likeguard(&up, icap, "");
    let istag = || {
        let a = raw(
            icap,
            b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\nConnection: close\r\n\r\n",
        );
        a.lines()
            .find_map(|l| l.strip_prefix("ISTag: "))
            .unwrap_or_else(|| panic!("no ISTag in {a}"))
            .to_string()
    };
    let first = istag();
    assert_eq!(first, istag(), "the ISTag changed with nothing changed");
    assert!(first.len() <= 34, "ISTag is at most 32 characters: {first}");
    enrol_x(&lg).await;
    let enrolled = istag();
    assert_ne!(first, enrolled, "enrolling did not change the ISTag");
    lg.register(media(Y), "block").await;
    assert_ne!(
        enrolled,
        istag(),
        "a known-media entry did not change the ISTag"
    );
}
