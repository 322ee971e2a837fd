//! Enrolled identities recognised in traffic, end to end: the real binary, a real recording
//! upstream, the real face models and real photos.

mod support;

use reqwest::multipart::{Form, Part};
use support::{Likeguard, RedisServer, TOKEN, Upstream, client, media, readiness, wait_until};

const X1: &str = "images/faces/deepface/img1.jpg";
const X2: &str = "images/faces/deepface/img2.jpg";
/// A different photo of the same person.
const X_OTHER: &str = "images/faces/deepface/img6.jpg";
/// Someone else.
const Y: &str = "images/faces/deepface/img20.jpg";

/// GET an admin endpoint (with the token) as JSON.
async fn admin_get(lg: &Likeguard, path: &str) -> serde_json::Value {
    client()
        .get(lg.admin_url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn photo_part(rel: &str) -> Part {
    Part::bytes(media(rel))
        .file_name(rel.rsplit('/').next().unwrap().to_string())
        .mime_str("image/jpeg")
        .unwrap()
}

async fn enrol(lg: &Likeguard, name: &str, photos: &[&str]) -> reqwest::Response {
    let mut form = Form::new()
        .text("name", name.to_string())
        .text("protection", "strict")
        .text("consent_by", "the person")
        .text("consent_method", "signed form");
    for p in photos {
        form = form.part("photo", photo_part(p));
    }
    client()
        .post(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn upload(lg: &Likeguard, rel: &str) -> reqwest::Response {
    let form = Form::new()
        .text("prompt", "make it look like a painting")
        .part("image", photo_part(rel));
    client()
        .post(lg.url("/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_strict_identity_is_blocked_until_erased() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "routes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        up.url()
    ));

    // Before enrolment X passes.
    assert_eq!(upload(&lg, X_OTHER).await.status(), 200);
    assert_eq!(up.received_on("/upload").len(), 1);

    let r = enrol(&lg, "Person X", &[X1, X2]).await;
    assert_eq!(r.status(), 201);
    let x: serde_json::Value = r.json().await.unwrap();
    let id = x["id"].as_str().unwrap().to_string();
    assert_eq!(x["references"], 2);
    assert_eq!(x["protection"], "strict");
    assert!(
        x.get("embeddings").is_none(),
        "enrolment answer leaks embeddings"
    );
    // It says which face each photo gave: box (source pixels) and detector score.
    let faces = x["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2);
    assert_eq!(faces[0]["photo"], "img1.jpg");
    assert_eq!(faces[0]["box"].as_array().unwrap().len(), 4);
    assert!(faces[0]["score"].as_f64().unwrap() > 0.5);

    // A different photo of X: 451, and the upstream receives nothing.
    let r = upload(&lg, X_OTHER).await;
    assert_eq!(r.status(), 451);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["rule"], "strict-unlicensed");
    assert!(body["decision_id"].is_string());
    let text = body.to_string();
    assert!(
        !text.contains("Person X") && !text.contains(&id),
        "block body names the person: {text}"
    );
    assert_eq!(
        up.received_on("/upload").len(),
        1,
        "the upstream saw a blocked upload"
    );

    // Someone else passes unchanged.
    let r = upload(&lg, Y).await;
    assert_eq!(r.status(), 200);
    let got = up.received_on("/upload");
    assert_eq!(got.len(), 2);
    let y = media(Y);
    assert!(
        got[1].body.windows(y.len()).any(|w| w == y.as_slice()),
        "the upstream did not get Y's photo unchanged"
    );

    // The verify API says the same, without sending anything upstream.
    let v: serde_json::Value = client()
        .post(lg.admin_url("/v1/verify"))
        .bearer_auth(TOKEN)
        .header("content-type", "image/jpeg")
        .body(media(X_OTHER))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["matched"], true, "{v}");
    assert_eq!(v["identity_id"], id.as_str());
    assert!(v["similarity"].as_f64().unwrap() > 0.41);
    assert_eq!(
        (v["authorized"].as_bool(), v["decision"].as_str()),
        (Some(false), Some("block"))
    );
    let v: serde_json::Value = client()
        .post(lg.admin_url("/v1/verify"))
        .bearer_auth(TOKEN)
        .multipart(Form::new().part("image", photo_part(Y)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["matched"].as_bool(), v["authorized"].as_bool()),
        (Some(false), Some(true)),
        "{v}"
    );

    // A license for acme (obligation: tag) lets acme's upload through, tagged; others stay
    // blocked; revoking it blocks acme again.
    let r = client()
        .post(lg.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "identity_id": id, "licensee": "acme", "usages": ["commercial"],
            "valid_until": "2999-01-01T00:00:00Z", "obligations": ["tag"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let license: serde_json::Value = r.json().await.unwrap();
    let as_acme = |rel: &'static str| {
        let form = Form::new().part("image", photo_part(rel));
        client()
            .post(lg.url("/upload"))
            .header("likeguard-licensee", "acme")
            .multipart(form)
            .send()
    };
    assert_eq!(as_acme(X_OTHER).await.unwrap().status(), 200);
    let last = up.received_on("/upload").pop().unwrap();
    assert_eq!(last.headers["likeguard-decision"], "tag");
    assert_eq!(last.headers["likeguard-rule"], "license-tag");
    assert_eq!(
        upload(&lg, X_OTHER).await.status(),
        451,
        "unlicensed requester passed"
    );
    let r = client()
        .delete(lg.admin_url(&format!(
            "/admin/v1/licenses/{}",
            license["id"].as_str().unwrap()
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        as_acme(X_OTHER).await.unwrap().status(),
        451,
        "revoked license still honoured"
    );
    let seen = up.received_on("/upload").len();

    // Listing and export.
    let list: serde_json::Value = admin_get(&lg, "/admin/v1/identities").await;
    assert_eq!(list["identities"].as_array().unwrap().len(), 1);
    assert!(list.to_string().find("embeddings").is_none());
    let export: serde_json::Value =
        admin_get(&lg, &format!("/admin/v1/identities/{id}/export")).await;
    assert_eq!(export["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(export["consent"]["by"], "the person");

    // Erasure: X passes again, and nothing of X is left on disk.
    let r = client()
        .delete(lg.admin_url(&format!("/admin/v1/identities/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(upload(&lg, X_OTHER).await.status(), 200);
    assert_eq!(up.received_on("/upload").len(), seen + 1);
    let stored = std::fs::read_to_string(lg.state_dir.path().join("identities.json")).unwrap();
    assert!(!stored.contains(&id), "erased identity still stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_needs_exactly_one_face_per_photo() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "routes:\n  - {{name: all, upstream: '{}'}}\n",
        up.url()
    ));
    let r = enrol(
        &lg,
        "Group",
        &[X1, "images/group/face_recognition/two_people.jpg"],
    )
    .await;
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("two_people.jpg") && detail.contains("2 faces"),
        "{detail}"
    );
    // Which faces, so the enroller can crop to the right one.
    assert_eq!(detail.matches("score").count(), 2, "{detail}");

    let r = enrol(&lg, "Nobody", &["images/noface/skimage/coffee.png"]).await;
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("no face"), "{p}");

    // Nothing was enrolled by the failed attempts.
    let list: serde_json::Value = admin_get(&lg, "/admin/v1/identities").await;
    assert!(list["identities"].as_array().unwrap().is_empty());

    let r = client()
        .post(lg.admin_url("/admin/v1/identities"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "enrolment without the token");
}

/// Frame `at_s` seconds into a clip, as a JPEG photo.
fn frame_as_jpeg(rel: &str, at_s: u64) -> Vec<u8> {
    use likeguard::media::{Decoder, Input, Output};
    let cfg = likeguard::config::MediaConfig {
        max_side: 1280,
        ..Default::default()
    };
    let decoder = Decoder::new(&cfg).unwrap();
    let mut picked = None;
    decoder
        .decode(
            Input::Bytes(media(rel).into()),
            Some(likeguard::media::MediaKind::Video),
            &mut |out: Output<'_>| {
                if let Output::Frame(f) = out
                    && f.pts.is_some_and(|p| p.as_secs() >= at_s)
                {
                    picked = Some(f.clone());
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
    let f = picked.expect("clip shorter than asked");
    let img = image::RgbImage::from_raw(f.width, f.height, f.rgb).unwrap();
    let mut jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    jpeg
}

/// Enrol person 004 of FaceForensics++ from one frame of the original clip.
async fn enrol_ffpp_004(lg: &Likeguard) {
    let form = Form::new().text("name", "FF++ 004").part(
        "photo",
        Part::bytes(frame_as_jpeg(
            "deepfake/ffpp/original_sequences/youtube/004.mp4",
            6,
        ))
        .file_name("004-frame.jpg")
        .mime_str("image/jpeg")
        .unwrap(),
    );
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
async fn a_deepfake_clip_of_an_enrolled_person_is_blocked() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "routes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 30s}}\n",
        up.url()
    ));
    enrol_ffpp_004(&lg).await;

    // The NeuralTextures re-enactment of that person, uploaded as a raw video body.
    let fake = media("deepfake/ffpp/manipulated_sequences/NeuralTextures/004_982.mp4");
    let r = client()
        .post(lg.url("/upload"))
        .header("content-type", "video/mp4")
        .body(fake)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    assert!(up.received_on("/upload").is_empty());

    // A clip of other people passes.
    let other = media("video/faces/face_recognition/short_hamilton_clip.mp4");
    let r = client()
        .post(lg.url("/upload"))
        .header("content-type", "video/mp4")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// 40 s of grey, then the NeuralTextures clip of person 004 (12 s): an MP4 of 52 s, written
/// with its index at the end, as cameras do.
fn padded_clip(dir: &std::path::Path) -> Vec<u8> {
    let out = dir.join("padded.mp4");
    let fake =
        support::testdata().join("deepfake/ffpp/manipulated_sequences/NeuralTextures/004_982.mp4");
    support::clips::padded(&fake, 40, &out);
    std::fs::read(out).unwrap()
}

/// Padding a video used to get a face past inspection: sampling stopped at
/// `media.sampling.max_frames` (32 s at 1 fps) and the rest passed unseen, with a 200. Now the
/// budget is spread over the whole clip; where it cannot be, the decision is `incomplete` and
/// the route's failure mode applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_after_40_seconds_of_padding_is_blocked_and_a_partial_look_is_never_an_allow() {
    let dir = tempfile::tempdir().unwrap();
    let padded = padded_clip(dir.path());
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "routes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 32MiB, time_budget: 60s}}\n",
        up.url()
    ));
    enrol_ffpp_004(&lg).await;
    let post = |lg: &Likeguard, path: &str| {
        client()
            .post(lg.url(path))
            .header("content-type", "video/mp4")
            .body(padded.clone())
            .send()
    };
    let r = post(&lg, "/upload").await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 451, "{text}");
    assert!(up.received_on("/upload").is_empty());
    drop(lg);

    // Every frame (fps 0) on a budget of 25: the clip cannot be covered. Fail-closed answers
    // 503 `inspection-incomplete`; fail-open passes it tagged `incomplete`.
    let lg = Likeguard::start(&format!(
        "media: {{sampling: {{fps: 0, max_frames: 25}}}}\nroutes:\n  - name: closed\n    match: {{path_prefix: /closed}}\n    upstream: {up}\n    inspect: {{direction: request, max_body: 32MiB, time_budget: 60s, on_failure: fail_closed}}\n  - name: open\n    match: {{path_prefix: /open}}\n    upstream: {up}\n    inspect: {{direction: request, max_body: 32MiB, time_budget: 60s, on_failure: fail_open}}\n",
        up = up.url()
    ));
    enrol_ffpp_004(&lg).await;
    let r = post(&lg, "/closed").await.unwrap();
    assert_eq!(r.status(), 503);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        p["type"], "urn:likeguard:problem:inspection-incomplete",
        "{p}"
    );
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("media.sampling.max_frames") && detail.contains("of 52"),
        "{detail}"
    );
    assert!(up.received_on("/closed").is_empty());
    let r = post(&lg, "/open").await.unwrap();
    assert_eq!(r.status(), 200);
    let got = up.received_on("/open");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]
            .headers
            .get("likeguard-decision")
            .map(|v| v.to_str().unwrap()),
        Some("incomplete")
    );
}

const SHADOW_POLICY: &str = "name: trial\nrules:\n  - id: strict-unlicensed\n    when: match.protection == 'strict' && !license.active\n    action: block\n  - id: would-tag-everyone\n    when: match.similarity > 0.0\n    action: tag\n    shadow: true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_files_reload_atomically_and_shadow_rules_only_record() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, SHADOW_POLICY).unwrap();
    let lg = Likeguard::start(&format!(
        "policy: {{file: '{}'}}\nroutes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        policy.display(),
        up.url()
    ));
    assert_eq!(enrol(&lg, "Person X", &[X1]).await.status(), 201);
    let shown: serde_json::Value = admin_get(&lg, "/admin/v1/policy").await;
    assert_eq!(shown["name"], "trial");

    // The shadow rule holds for every match but changes nothing; it is counted.
    assert_eq!(upload(&lg, Y).await.status(), 200);
    assert_eq!(upload(&lg, X_OTHER).await.status(), 451);
    let metrics = lg.metrics().await;
    assert!(
        metrics.contains("likeguard_policy_shadow_matches_total{rule=\"would-tag-everyone\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("likeguard_policy_info{name=\"trial\""),
        "{metrics}"
    );

    // A broken file is refused (file:line and reason) and the old policy keeps working.
    std::fs::write(
        &policy,
        "rules:\n  - id: oops\n    when: match.protecton == 'strict'\n    action: block\n",
    )
    .unwrap();
    let r = client()
        .post(lg.admin_url("/admin/v1/policy/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("policy.yaml:2") && detail.contains("oops"),
        "{detail}"
    );
    assert_eq!(
        upload(&lg, X_OTHER).await.status(),
        451,
        "old policy not in force"
    );

    // A good file replaces it on its own (watched), within about a second.
    std::fs::write(&policy, "name: open\nrules: []\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = upload(&lg, X_OTHER).await.status();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new policy not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Redis on 127.0.0.1:6379 (`.ci/run` starts one); every test uses its own key prefix.
fn shared_store_yaml(prefix: &str) -> String {
    format!("store: {{kind: redis, url: 'redis://127.0.0.1:6379', prefix: '{prefix}'}}\n")
}

async fn licenses_on(lg: &Likeguard) -> usize {
    let v: serde_json::Value = admin_get(lg, "/admin/v1/licenses").await;
    v["licenses"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_apply_each_others_changes_within_a_second() {
    let prefix = format!("likeguard-test-{}", uuid::Uuid::now_v7());
    let up = Upstream::start().await;
    let route = format!(
        "routes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        up.url()
    );
    let a = Likeguard::start(&format!("{}{route}", shared_store_yaml(&prefix)));
    let b = Likeguard::start(&format!("{}{route}", shared_store_yaml(&prefix)));

    // Enrolled on A: B blocks X.
    let r = enrol(&a, "Person X", &[X1, X2]).await;
    assert_eq!(r.status(), 201);
    let x: serde_json::Value = r.json().await.unwrap();
    let id = x["id"].as_str().unwrap().to_string();
    let seen = wait_until(
        "enrolment reaches B",
        std::time::Duration::from_secs(1),
        async || {
            let v: serde_json::Value = admin_get(&b, &format!("/admin/v1/identities/{id}")).await;
            v["id"] == id.as_str()
        },
    )
    .await;
    eprintln!("enrolment on A visible on B after {seen:?}");
    assert_eq!(upload(&b, X_OTHER).await.status(), 451);

    // A license granted on A lets acme through B; revoked on A, B blocks acme again.
    let r = client()
        .post(a.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"identity_id": id, "licensee": "acme", "obligations": ["tag"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let license: serde_json::Value = r.json().await.unwrap();
    wait_until(
        "license reaches B",
        std::time::Duration::from_secs(1),
        async || licenses_on(&b).await == 1,
    )
    .await;
    let as_acme = |lg: &Likeguard| {
        client()
            .post(lg.url("/upload"))
            .header("likeguard-licensee", "acme")
            .multipart(Form::new().part("image", photo_part(X_OTHER)))
            .send()
    };
    assert_eq!(as_acme(&b).await.unwrap().status(), 200);

    let r = client()
        .delete(a.admin_url(&format!(
            "/admin/v1/licenses/{}",
            license["id"].as_str().unwrap()
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let took = wait_until(
        "revocation reaches B",
        std::time::Duration::from_secs(1),
        async || licenses_on(&b).await == 0,
    )
    .await;
    eprintln!("revocation on A enforced on B after {took:?}");
    assert_eq!(as_acme(&b).await.unwrap().status(), 451);

    // Readiness names the shared store.
    let ready: serde_json::Value = client()
        .get(b.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "redis");

    // Erasure on B removes X everywhere, Redis included.
    let r = client()
        .delete(b.admin_url(&format!("/admin/v1/identities/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut redis)
        .unwrap();
    assert!(left.iter().all(|k| !k.contains(&id)), "{left:?}");
    wait_until(
        "erasure reaches A",
        std::time::Duration::from_secs(1),
        async || upload(&a, X_OTHER).await.status() == 200,
    )
    .await;
    let _: () = redis::cmd("DEL").arg(&left).query(&mut redis).unwrap_or(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_last_snapshot_serves_and_readiness_says_degraded() {
    let port = support::free_port();
    let redis = RedisServer::start(port, None);
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "store: {{kind: redis, url: 'redis://127.0.0.1:{port}'}}\nroutes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        up.url()
    ));
    assert_eq!(enrol(&lg, "Person X", &[X1]).await.status(), 201);
    assert_eq!(readiness(&lg).await, "ready");

    drop(redis);
    wait_until(
        "degraded readiness",
        std::time::Duration::from_secs(3),
        async || readiness(&lg).await == "degraded",
    )
    .await;
    // Still enforcing from the snapshot; changes are refused, not lost.
    assert_eq!(upload(&lg, X_OTHER).await.status(), 451);
    assert_eq!(enrol(&lg, "Person Y", &[Y]).await.status(), 503);

    // Redis back (empty: it keeps nothing): instances resync to what it holds.
    let _redis = RedisServer::start(port, None);
    wait_until(
        "ready again",
        std::time::Duration::from_secs(5),
        async || readiness(&lg).await == "ready",
    )
    .await;
    assert_eq!(
        upload(&lg, X_OTHER).await.status(),
        200,
        "resync did not apply Redis's state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_jwts_name_the_licensee_and_rules_read_headers_and_add_their_own() {
    use sha2::Digest;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    // A first tag rule with its own header (first among equals decides), and a block on an
    // exposed request header.
    let mut rules = likeguard::policy::store::DEFAULT_POLICY.replacen(
        "rules:\n",
        "rules:\n  - id: acme-usage\n    when: licensee == 'acme' && license.active\n    action: tag\n    headers: {likeguard-usage: acme-licensed}\n",
        1,
    );
    rules.push_str(
        "\n  - id: banned-tenant\n    when: '\"x-tenant\" in request.headers && request.headers[\"x-tenant\"] == \"banned\"'\n    action: block\n",
    );
    std::fs::write(&policy, rules).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(b"k-acme"));
    // An ES256 issuer key pair made with openssl, as an operator would.
    let (issuer_private, issuer_public) = es256_pair(dir.path(), "issuer");
    let (forger_private, _) = es256_pair(dir.path(), "forger");
    let lg = Likeguard::start(&format!(
        "licensing: {{trust_licensee_header: false, api_keys: {{'{digest}': acme}}, jwt: {{algorithm: ES256, public_key_file: '{}', claim: tenant, issuer: idp}}}}\npolicy: {{file: '{}', expose_headers: [X-Tenant]}}\nroutes:\n  - name: uploads\n    upstream: {}\n    inspect: {{direction: request, max_body: 8MiB, time_budget: 20s}}\n",
        issuer_public.display(),
        policy.display(),
        up.url()
    ));
    let x: serde_json::Value = enrol(&lg, "Person X", &[X1]).await.json().await.unwrap();
    let r = client()
        .post(lg.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"identity_id": x["id"], "licensee": "acme", "obligations": ["tag"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = client()
            .post(lg.url("/upload"))
            .multipart(Form::new().part("image", photo_part(X_OTHER)));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    // The plain header is not trusted here; the API key is.
    assert_eq!(
        send(&[("likeguard-licensee", "acme")])
            .await
            .unwrap()
            .status(),
        451
    );
    assert_eq!(
        send(&[("x-api-key", "k-acme")]).await.unwrap().status(),
        200
    );
    assert_eq!(
        send(&[("x-api-key", "stolen")]).await.unwrap().status(),
        451
    );
    // A rule on an exposed header.
    let r = send(&[("x-api-key", "k-acme"), ("x-tenant", "banned")])
        .await
        .unwrap();
    assert_eq!(r.status(), 451);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["rule"], "banned-tenant");

    // The deciding rule's own header reached the upstream with the tag headers.
    let last = up.received_on("/upload").pop().unwrap();
    assert_eq!(last.headers["likeguard-rule"], "acme-usage");
    assert_eq!(last.headers["likeguard-usage"], "acme-licensed");

    // JWT: a token from the configured issuer names the licensee; a forged or foreign one
    // names nobody.
    let jwt = |key: &std::path::Path, tenant: &str| {
        let claims = serde_json::json!({"tenant": tenant, "iss": "idp", "exp": jsonwebtoken::get_current_timestamp() + 300});
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key).unwrap()).unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .unwrap();
        format!("Bearer {token}")
    };
    let with_token = |token: String| {
        client()
            .post(lg.url("/upload"))
            .header("authorization", token)
            .multipart(Form::new().part("image", photo_part(X_OTHER)))
            .send()
    };
    for (key, tenant, status) in [
        (&issuer_private, "acme", 200),
        (&issuer_private, "globex", 451),
        (&forger_private, "acme", 451),
    ] {
        let got = with_token(jwt(key, tenant)).await.unwrap().status();
        assert_eq!(
            got,
            status,
            "token for {tenant} signed by {}",
            key.display()
        );
    }
}

/// `openssl` makes a P-256 key pair: (PKCS#8 private PEM, public PEM).
fn es256_pair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}
