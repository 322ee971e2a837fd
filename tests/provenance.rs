//! C2PA manifests: signed with a certificate the test makes with openssl, read back and
//! verified, tampering detected, the operator CLI, and the proxy signing what it marks.

mod support;

use likeguard::actions::provenance::{DecisionRecord, Provenance, read};
use likeguard::actions::watermark::{ImageWatermarker, payload_for};
use likeguard::config::{ProvenanceConfig, WatermarkConfig};
use support::*;

const JPEG: &str = "images/faces/deepface/img11.jpg";
const PNG: &str = "images/faces/misc/skimage_astronaut.png";

/// A test CA + signing certificate (scripts/make-c2pa-test-cert) in a temp dir.
fn test_cert() -> (tempfile::TempDir, ProvenanceConfig) {
    let dir = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-c2pa-test-cert");
    let ok = std::process::Command::new(script)
        .arg(dir.path())
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "making the test certificate failed");
    let config = ProvenanceConfig {
        enabled: true,
        cert_file: Some(dir.path().join("chain.pem")),
        key_file: Some(dir.path().join("key.pem")),
        algorithm: "es256".into(),
    };
    (dir, config)
}

fn record() -> DecisionRecord {
    DecisionRecord {
        action: "tag".into(),
        rule: "license-tag".into(),
        decision_id: "0190f0aa-test".into(),
        license_id: Some("lic-1".into()),
        policy_version: Some("abcdef123456".into()),
        time: "2026-11-26T23:00:00Z".into(),
        watermark: None,
    }
}

#[test]
fn manifests_are_written_read_back_verified_and_tampering_shows() {
    let (_dir, config) = test_cert();
    let p = Provenance::load(&config).unwrap();
    for (rel, mime) in [(JPEG, "image/jpeg"), (PNG, "image/png")] {
        let original = media(rel);
        let unsigned = read(&original, mime).unwrap();
        assert!(!unsigned.present, "{rel} already carries a manifest");

        let signed = p.sign(&original, mime, &record()).unwrap();
        let r = read(&signed, mime).unwrap();
        assert!(
            r.present && r.valid,
            "{rel}: {:?} {:?}",
            r.state,
            r.failures
        );
        assert_eq!(r.decision.as_ref(), Some(&record()));
        // The pixels are untouched: it still decodes to the same image.
        assert_eq!(
            image::load_from_memory(&signed).unwrap().to_rgb8(),
            image::load_from_memory(&original).unwrap().to_rgb8()
        );

        // Change pixel data after signing: the hash no longer matches.
        let mut tampered = signed.clone();
        let at = tampered.len() - tampered.len() / 4;
        tampered[at] ^= 0x55;
        // An error is also a refusal; a report must say invalid.
        if let Ok(r) = read(&tampered, mime) {
            assert!(!r.valid, "{rel}: tampering not detected ({})", r.state);
        }
    }
    // Formats C2PA cannot carry here are refused, not mangled.
    assert!(p.sign(b"GIF89a....", "image/gif", &record()).is_err());
}

#[test]
fn bad_keys_and_certificates_are_refused_naming_the_field() {
    let (dir, mut config) = test_cert();
    config.key_file = Some(dir.path().join("missing.pem"));
    let e = Provenance::load(&config).err().unwrap().to_string();
    assert!(
        e.contains("provenance.key_file") && e.contains("missing.pem"),
        "{e}"
    );
    config.key_file = Some(dir.path().join("ca.pem"));
    let e = Provenance::load(&config).err().unwrap().to_string();
    assert!(e.contains("provenance.key_file"), "{e}");
    config.key_file = Some(dir.path().join("key.pem"));
    config.algorithm = "rot13".into();
    assert!(
        Provenance::load(&config)
            .err()
            .unwrap()
            .to_string()
            .contains("algorithm")
    );
}

#[test]
fn cli_reads_manifests_and_fails_without_a_valid_one() {
    let (dir, config) = test_cert();
    let signed = Provenance::load(&config)
        .unwrap()
        .sign(&media(JPEG), "image/jpeg", &record())
        .unwrap();
    let path = dir.path().join("signed.jpg");
    std::fs::write(&path, signed).unwrap();
    let bin = env!("CARGO_BIN_EXE_likeguard");
    let o = std::process::Command::new(bin)
        .args(["provenance", "read", "--json", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["decision"]["rule"], "license-tag");
    assert_eq!(v["decision"]["license_id"], "lic-1");
    let unsigned = testdata().join(JPEG);
    let o = std::process::Command::new(bin)
        .args(["provenance", "read", unsigned.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("no C2PA manifest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_marks_and_signs_what_it_decides_to_watermark() {
    let (_dir, config) = test_cert();
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "watermark: {{key: prov-key}}\nprovenance: {{enabled: true, cert_file: '{}', key_file: '{}'}}\ninference: {{enabled: false}}\nroutes:\n  - name: all\n    upstream: {}\n    inspect: {{direction: both, max_body: 16MiB, on_failure: fail_closed}}\n",
        config.cert_file.as_ref().unwrap().display(),
        config.key_file.as_ref().unwrap().display(),
        up.url()
    ));
    let original = media(JPEG);
    lg.register(original.clone(), "watermark").await;
    up.serve("/v1/images/7", Canned::ok("image/jpeg", original, None));
    let r = client().get(lg.url("/v1/images/7")).send().await.unwrap();
    let (decision, body) = decided(r).await;
    let w = ImageWatermarker::new(&WatermarkConfig {
        key: Some("prov-key".into()),
        ..Default::default()
    });
    assert_eq!(
        w.detect_file(&body).unwrap().payload,
        Some(payload_for(&decision))
    );
    let m = read(&body, "image/jpeg").unwrap();
    assert!(m.valid, "{} {:?}", m.state, m.failures);
    let d = m.decision.unwrap();
    assert_eq!(d.decision_id, decision);
    assert_eq!(d.action, "watermark");
    assert_eq!(d.rule, "known-media");
    assert_eq!(d.watermark, Some(format!("{:08x}", payload_for(&decision))));

    // A generated video: re-encoded with every frame marked, then signed.
    let clip = media("video/faces/liveportrait/driving_d18.mp4");
    lg.register(clip.clone(), "watermark").await;
    up.serve("/v1/videos/7", Canned::ok("video/mp4", clip, None));
    let r = client().get(lg.url("/v1/videos/7")).send().await.unwrap();
    let (decision, body) = decided(r).await;
    let m = read(&body, "video/mp4").unwrap();
    assert!(m.valid, "{} {:?}", m.state, m.failures);
    assert_eq!(m.decision.unwrap().decision_id, decision);
    let image = ImageWatermarker::new(&WatermarkConfig {
        key: Some("prov-key".into()),
        ..Default::default()
    });
    let video =
        likeguard::actions::watermark::VideoWatermarker::new(&image, &Default::default()).unwrap();
    assert_eq!(
        video.detect(body).unwrap().detection.payload,
        Some(payload_for(&decision))
    );
}

#[test]
fn mp4_clips_carry_a_manifest_too_even_after_marking() {
    use likeguard::actions::watermark::VideoWatermarker;
    let (_dir, config) = test_cert();
    let p = Provenance::load(&config).unwrap();
    let clip = media("video/faces/liveportrait/driving_d18.mp4");
    assert!(!read(&clip, "video/mp4").unwrap().present);
    // As the proxy does for a watermark decision: mark every frame, then sign.
    let image = ImageWatermarker::new(&WatermarkConfig::default());
    let marked = VideoWatermarker::new(&image, &Default::default())
        .unwrap()
        .embed(clip.into(), 0xABCD_0123, None)
        .unwrap()
        .data;
    let rec = DecisionRecord {
        action: "watermark".into(),
        watermark: Some("abcd0123".into()),
        ..record()
    };
    let signed = p.sign(&marked, "video/mp4", &rec).unwrap();
    let r = read(&signed, "video/mp4").unwrap();
    assert!(r.present && r.valid, "{:?} {:?}", r.state, r.failures);
    assert_eq!(r.decision, Some(rec));
    // The mark is still there: signing adds a box, it does not touch the samples.
    let w = VideoWatermarker::new(&image, &Default::default()).unwrap();
    assert_eq!(
        w.detect(signed.clone().into()).unwrap().detection.payload,
        Some(0xABCD_0123)
    );
    // A flipped byte in the media data breaks the hash.
    let mut tampered = signed;
    let at = tampered.len() - tampered.len() / 3;
    tampered[at] ^= 0x55;
    if let Ok(r) = read(&tampered, "video/mp4") {
        assert!(!r.valid, "tampering not detected ({})", r.state);
    }
}

/// The C2PA reference SDK (c2pa-python from PyPI, run by `scripts/c2pa-validate`; `.ci/run`
/// installs it and sets `LIKEGUARD_TOOLS_PYTHON`) finds what we sign Trusted, with the test CA
/// as the only trust anchor: tagged and watermarked JPEG, PNG and MP4 — a watermark declared
/// as a soft binding bound to the manifest.
#[test]
fn the_reference_sdk_trusts_what_we_sign() {
    use likeguard::actions::watermark::VideoWatermarker;
    let (dir, config) = test_cert();
    let p = Provenance::load(&config).unwrap();
    let marked = DecisionRecord {
        action: "watermark".into(),
        watermark: Some("abcd0123".into()),
        ..record()
    };
    let image = ImageWatermarker::new(&WatermarkConfig {
        key: Some("reference-sdk-test-key".into()),
        ..Default::default()
    });
    let clip = VideoWatermarker::new(&image, &Default::default())
        .unwrap()
        .embed(
            media("video/faces/liveportrait/driving_d18.mp4").into(),
            0xABCD_0123,
            None,
        )
        .unwrap()
        .data;
    let mut files = Vec::new();
    for (name, data, mime, rec) in [
        ("tag.jpg", media(JPEG), "image/jpeg", record()),
        (
            "mark.jpg",
            image.embed_file(&media(JPEG), 0xABCD_0123).unwrap(),
            "image/jpeg",
            marked.clone(),
        ),
        (
            "mark.png",
            image.embed_file(&media(PNG), 0xABCD_0123).unwrap(),
            "image/png",
            marked.clone(),
        ),
        ("mark.mp4", clip.to_vec(), "video/mp4", marked.clone()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, p.sign(&data, mime, &rec).unwrap()).unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    let python = std::env::var("LIKEGUARD_TOOLS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/c2pa-validate");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(dir.path().join("ca.pem"))
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (pip install c2pa-python, or run .ci/run)"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.lines().count() == files.len(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["state"], "Trusted", "{v}");
        assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    }
}

/// A watermark action without a soft binding (what likeguard itself wrote before): our reader
/// reports what the reference SDK reports — Invalid, `assertion.action.softBindingMissing`.
#[test]
fn a_watermark_action_without_a_soft_binding_reads_invalid_as_in_the_reference_sdk() {
    let (dir, config) = test_cert();
    let cert = std::fs::read(config.cert_file.as_ref().unwrap()).unwrap();
    let key = std::fs::read(config.key_file.as_ref().unwrap()).unwrap();
    let signer =
        c2pa::create_signer::from_keys(&cert, &key, c2pa::SigningAlg::Es256, None).unwrap();
    let mut builder = c2pa::Builder::from_context(c2pa::Context::new())
        .with_definition(serde_json::json!({"title": "bare watermark"}))
        .unwrap();
    builder
        .add_action(serde_json::json!({"action": "c2pa.watermarked"}))
        .unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    builder
        .sign(
            signer.as_ref(),
            "image/jpeg",
            &mut std::io::Cursor::new(media(JPEG)),
            &mut out,
        )
        .unwrap();
    let signed = out.into_inner();
    let ours = read(&signed, "image/jpeg").unwrap();
    assert!(!ours.valid && ours.state == "Invalid", "{:?}", ours.state);
    assert!(
        ours.failures
            .iter()
            .any(|f| f == "assertion.action.softBindingMissing")
    );
    let path = dir.path().join("bare.jpg");
    std::fs::write(&path, &signed).unwrap();
    let python = std::env::var("LIKEGUARD_TOOLS_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/c2pa-validate"
        ))
        .arg(dir.path().join("ca.pem"))
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("assertion.action.softBindingMissing"),
        "{text}"
    );
}
