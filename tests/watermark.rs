//! The invisible watermark on real photos: round trips under ordinary handling, format-keeping
//! files, the operator CLI, and the proxy's `watermark` action end to end.

mod support;

use likeguard::actions::watermark::attack::{Attack, psnr, ssim};
use likeguard::actions::watermark::{ImageWatermarker, payload_for};
use likeguard::config::WatermarkConfig;
use support::*;

const KEY: &str = "test-watermark-key";
/// Real photos of different sizes and content (long side 465 to 2173 px).
const PHOTOS: [&str; 5] = [
    "images/faces/deepface/img11.jpg",
    "images/faces/deepface/img26.jpg",
    "images/faces/deepface/img27.jpg",
    "images/faces/openface/clapton-1.jpg",
    "images/group/ultralytics/zidane.jpg",
];
const PNG: &str = "images/faces/misc/skimage_astronaut.png";

fn watermarker() -> ImageWatermarker {
    ImageWatermarker::new(&WatermarkConfig {
        key: Some(KEY.into()),
        ..Default::default()
    })
}

fn rgb(rel: &str) -> image::RgbImage {
    image::load_from_memory(&media(rel)).unwrap().to_rgb8()
}

#[test]
fn marks_survive_ordinary_handling_on_real_photos() {
    let w = watermarker();
    for (n, rel) in PHOTOS.iter().enumerate() {
        let original = rgb(rel);
        assert!(
            !w.detect(&original).marked,
            "{rel} reads as marked before marking"
        );
        let payload = 0x5EED_0000 + n as u32;
        let mut marked = original.clone();
        w.embed(&mut marked, payload).unwrap();
        let (p, s) = (psnr(&original, &marked), ssim(&original, &marked));
        assert!(p >= 40.0, "{rel}: PSNR {p:.2} dB");
        assert!(s >= 0.97, "{rel}: SSIM {s:.4}");
        for attack in Attack::TABLE {
            let d = w.detect(&attack.apply(&marked));
            assert_eq!(
                d.payload,
                Some(payload),
                "{rel} after {}: sync z {:.1}, scale {:.3}",
                attack.name(),
                d.sync_z,
                d.scale
            );
            assert!(d.confidence > 0.99);
        }
        // Another key sees nothing.
        let other = ImageWatermarker::new(&WatermarkConfig {
            key: Some("another key".into()),
            ..Default::default()
        });
        assert!(
            !other.detect(&marked).marked,
            "{rel}: read with the wrong key"
        );
    }
}

#[test]
fn files_keep_their_format_and_bad_input_is_refused() {
    let w = watermarker();
    let jpeg = media(PHOTOS[0]);
    let marked = w.embed_file(&jpeg, 0xCAFE_F00D).unwrap();
    assert_eq!(
        image::guess_format(&marked).unwrap(),
        image::ImageFormat::Jpeg
    );
    // Similar quality: the size stays within a third of the original's.
    let ratio = marked.len() as f64 / jpeg.len() as f64;
    assert!((0.67..1.5).contains(&ratio), "size ratio {ratio:.2}");
    assert_eq!(w.detect_file(&marked).unwrap().payload, Some(0xCAFE_F00D));

    let png = media(PNG);
    let marked = w.embed_file(&png, 7).unwrap();
    assert_eq!(
        image::guess_format(&marked).unwrap(),
        image::ImageFormat::Png
    );
    let (a, b) = (
        image::load_from_memory(&png).unwrap(),
        image::load_from_memory(&marked).unwrap(),
    );
    assert_eq!(
        (a.width(), a.height(), a.color()),
        (b.width(), b.height(), b.color())
    );
    assert_eq!(w.detect_file(&marked).unwrap().payload, Some(7));

    // Refusals, never panics: not an image, truncated, too small, unsupported format.
    assert!(w.embed_file(b"hello", 1).is_err());
    assert!(w.embed_file(&jpeg[..jpeg.len() / 3], 1).is_err());
    assert!(w.detect_file(&jpeg[..200]).is_err());
    let mut small = Vec::new();
    image::RgbImage::new(200, 150)
        .write_to(
            &mut std::io::Cursor::new(&mut small),
            image::ImageFormat::Png,
        )
        .unwrap();
    let e = w.embed_file(&small, 1).unwrap_err().to_string();
    assert!(e.contains("at least 384"), "{e}");
    let mut gif = Vec::new();
    image::DynamicImage::ImageRgb8(rgb(PHOTOS[0]))
        .write_to(&mut std::io::Cursor::new(&mut gif), image::ImageFormat::Gif)
        .unwrap();
    assert!(
        w.embed_file(&gif, 1)
            .unwrap_err()
            .to_string()
            .contains("Gif")
    );
}

#[test]
fn cli_embeds_and_detects_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("marked.jpg");
    let bin = env!("CARGO_BIN_EXE_likeguard");
    let run = |args: &[&str]| watermark_cli(KEY, args);
    let src = testdata().join(PHOTOS[3]);
    run(&[
        "watermark",
        "embed",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--payload",
        "1a2b3c4d",
    ]);
    let lines = run(&[
        "watermark",
        "detect",
        "--json",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let v: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["marked"], true);
    assert_eq!(v[0]["payload"], "1a2b3c4d");
    assert!(v[0]["confidence"].as_f64().unwrap() > 0.99);
    assert_eq!(v[1]["marked"], false);
    assert!(v[1]["payload"].is_null());
    // A bad payload is a clear error.
    let o = std::process::Command::new(bin)
        .args([
            "watermark",
            "embed",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--payload",
            "xyz",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not hex"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_decision_marks_the_image_on_both_sides() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "watermark: {{key: {KEY}}}\ninference: {{enabled: false}}\nroutes:\n  - name: all\n    upstream: {}\n    inspect: {{direction: both, max_body: 16MiB, on_failure: fail_closed}}\n",
        up.url()
    ));
    let original = media(PHOTOS[0]);
    lg.register(original.clone(), "watermark").await;
    let w = watermarker();

    // Response side: a generation service returns the image; the client gets it marked.
    up.serve(
        "/v1/images/1",
        Canned::ok("image/jpeg", original.clone(), Some(5)),
    );
    let (decision, body) = lg
        .get_decided("/v1/images/1", "image/jpeg", "watermark")
        .await;
    assert_ne!(body.as_ref(), original.as_slice());
    let d = w.detect_file(&body).unwrap();
    assert_eq!(
        d.payload,
        Some(payload_for(&decision)),
        "the mark names the decision"
    );

    // Request side: an upload reaches the upstream marked.
    let r = client()
        .post(lg.url("/upload"))
        .header("content-type", "image/jpeg")
        .body(original.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.received_on("/upload").pop().unwrap();
    let decision = got.headers["likeguard-decision-id"].to_str().unwrap();
    assert_eq!(got.headers["content-length"], got.body.len().to_string());
    assert_eq!(
        w.detect_file(&got.body).unwrap().payload,
        Some(payload_for(decision))
    );

    // A compressed upload is inflated, marked, and sent on uncompressed (headers fixed).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &original).unwrap();
    let r = client()
        .post(lg.url("/upload-gz"))
        .header("content-type", "image/jpeg")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.received_on("/upload-gz").pop().unwrap();
    assert!(!got.headers.contains_key("content-encoding"));
    assert_eq!(got.headers["content-length"], got.body.len().to_string());
    let decision = got.headers["likeguard-decision-id"].to_str().unwrap();
    assert_eq!(
        w.detect_file(&got.body).unwrap().payload,
        Some(payload_for(decision))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_inside_forms_and_json_is_marked_where_it_sits() {
    use base64::Engine;
    let up = Upstream::start().await;
    let lg = Likeguard::start(&format!(
        "watermark: {{key: {KEY}}}\ninference: {{enabled: false}}\nroutes:\n  - name: all\n    upstream: {}\n    inspect: {{direction: both, max_body: 16MiB, on_failure: fail_closed}}\n",
        up.url()
    ));
    let photo = media(PHOTOS[1]);
    let other = media(PHOTOS[2]);
    lg.register(photo.clone(), "watermark").await;
    let w = watermarker();

    // An upload form: the registered photo, another photo and a text field.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a portrait")
        .part(
            "image",
            reqwest::multipart::Part::bytes(photo.clone())
                .file_name("me.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        )
        .part(
            "reference",
            reqwest::multipart::Part::bytes(other.clone())
                .file_name("ref.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let r = client()
        .post(lg.url("/v1/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.received_on("/v1/edits").pop().unwrap();
    let decision = got.headers["likeguard-decision-id"].to_str().unwrap();
    assert_eq!(got.headers["content-length"], got.body.len().to_string());
    let boundary = got.headers["content-type"]
        .to_str()
        .unwrap()
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_string();
    let mut parts = multer::Multipart::new(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(got.body) }),
        boundary,
    );
    let mut seen = Vec::new();
    while let Some(field) = parts.next_field().await.unwrap() {
        let name = field.name().unwrap().to_string();
        let data = field.bytes().await.unwrap();
        match name.as_str() {
            "prompt" => assert_eq!(&data[..], b"a portrait"),
            // A watermark decision marks every image of the body, each still a JPEG.
            _ => {
                assert_eq!(
                    image::guess_format(&data).unwrap(),
                    image::ImageFormat::Jpeg
                );
                assert_eq!(
                    w.detect_file(&data).unwrap().payload,
                    Some(payload_for(decision)),
                    "part {name}"
                );
            }
        }
        seen.push(name);
    }
    assert_eq!(seen, ["prompt", "image", "reference"]);

    // A generation response in OpenAI's shape: the image comes back marked, the JSON intact.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&photo);
    up.serve(
        "/v1/images/generations",
        Canned::ok(
            "application/json",
            format!(r#"{{"created":1,"data":[{{"b64_json":"{b64}","revised_prompt":"p"}}]}}"#),
            Some(3),
        ),
    );
    let r = client()
        .post(lg.url("/v1/images/generations"))
        .header("content-type", "application/json")
        .body(r#"{"prompt":"p"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let decision = r.headers()["likeguard-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with(r#"{"created":1,"data":[{"b64_json":""#),
        "keys keep their order: {}",
        &text[..60.min(text.len())]
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["created"], 1);
    assert_eq!(v["data"][0]["revised_prompt"], "p");
    let image = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_ne!(image, photo);
    assert_eq!(
        w.detect_file(&image).unwrap().payload,
        Some(payload_for(&decision))
    );
}

#[test]
fn eval_reports_the_robustness_table_as_json() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [PHOTOS[2], PHOTOS[3]] {
        std::fs::copy(
            testdata().join(rel),
            dir.path().join(rel.rsplit('/').next().unwrap()),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(["watermark", "eval", "--json", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["photos"], 2);
    assert!(r["psnr_min"].as_f64().unwrap() >= 40.0);
    assert_eq!(r["attacks"].as_array().unwrap().len(), 7);
    for row in r["attacks"].as_array().unwrap() {
        assert_eq!(row["recovered"], 2, "{row}");
    }
    assert_eq!(r["unmarked_checked"], 6);
    assert_eq!(r["false_positives"], 0);
}

fn decision(visible: bool) -> likeguard::policy::Decision {
    likeguard::policy::Decision::combine(vec![likeguard::policy::Finding {
        item: 0,
        inspector: "test",
        action: likeguard::policy::Action::Watermark,
        rule: "stamp-it".into(),
        detail: "test".into(),
        headers: Vec::new(),
        visible,
        license: None,
        policy_version: None,
        identity: None,
    }])
}

#[test]
fn a_rule_asking_for_it_gets_the_visible_stamp_as_well() {
    use likeguard::actions::Watermarker;
    use likeguard::actions::watermark::MediaWatermarker;
    use likeguard::config::{MediaConfig, VisibleConfig};

    let photo = media(PHOTOS[0]);
    let item = likeguard::extract::MediaItem::new(
        0,
        likeguard::extract::Location::body(),
        likeguard::media::sniff(&photo).unwrap(),
        photo.clone().into(),
    );
    let visible: VisibleConfig =
        serde_yaml_ng::from_str("{text: AI-generated, position: bottom_right, opacity: 0.8}")
            .unwrap();
    let config = WatermarkConfig {
        key: Some(KEY.into()),
        visible: Some(visible),
        ..Default::default()
    };
    let w = MediaWatermarker::new(&config, &MediaConfig::default()).unwrap();
    let original = image::load_from_memory(&photo).unwrap().to_rgb8();
    let (width, height) = original.dimensions();
    // Mean absolute change in a corner region.
    let change = |img: &image::RgbImage, left: bool, top: bool| {
        let (rw, rh) = (width / 4, height / 10);
        let (x0, y0) = (
            if left { 0 } else { width - rw },
            if top { 0 } else { height - rh },
        );
        let mut sum = 0f64;
        for y in y0..y0 + rh {
            for x in x0..x0 + rw {
                let (a, b) = (img.get_pixel(x, y), original.get_pixel(x, y));
                sum +=
                    a.0.iter()
                        .zip(b.0)
                        .map(|(p, q)| (*p as f64 - q as f64).abs())
                        .sum::<f64>();
            }
        }
        sum / (rw * rh * 3) as f64
    };

    let d = decision(true);
    let stamped = w.mark(&item, &d).unwrap();
    let img = image::load_from_memory(&stamped).unwrap().to_rgb8();
    assert!(change(&img, false, false) > 15.0, "no stamp bottom right");
    assert!(
        change(&img, true, true) < 4.0,
        "top left changed beyond the invisible mark"
    );
    // The invisible mark is still read under the stamp.
    assert_eq!(
        watermarker().detect_file(&stamped).unwrap().payload,
        Some(payload_for(&d.id))
    );

    // Without the rule's ask: no stamp.
    let plain = w.mark(&item, &decision(false)).unwrap();
    let img = image::load_from_memory(&plain).unwrap().to_rgb8();
    assert!(change(&img, false, false) < 4.0);

    // A rule asking for a stamp that is not configured: an action failure, never a silent pass.
    let bare = MediaWatermarker::new(
        &WatermarkConfig {
            key: Some(KEY.into()),
            ..Default::default()
        },
        &MediaConfig::default(),
    )
    .unwrap();
    let e = bare.mark(&item, &decision(true)).unwrap_err();
    assert!(e.to_string().contains("watermark.visible"), "{e}");

    // Bad stamp settings are refused at start, naming the field.
    let bad: VisibleConfig =
        serde_yaml_ng::from_str("{text: x, font_file: /nonexistent.ttf}").unwrap();
    let e = MediaWatermarker::new(
        &WatermarkConfig {
            visible: Some(bad),
            ..Default::default()
        },
        &MediaConfig::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("font_file"), "{e}");
}

#[test]
fn without_a_key_one_is_generated_privately_and_a_well_known_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lg.yaml");
    let state = dir.path().join("state");
    std::fs::write(&config, format!("state_dir: {}\n", state.display())).unwrap();
    let bin = env!("CARGO_BIN_EXE_likeguard");
    let photo = testdata().join(PHOTOS[3]);
    let marked = dir.path().join("marked.jpg");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env_remove("LIKEGUARD_WATERMARK_KEY")
            .output()
            .unwrap()
    };
    let embed = run(&[
        "watermark",
        "embed",
        "--config",
        config.to_str().unwrap(),
        photo.to_str().unwrap(),
        marked.to_str().unwrap(),
        "--payload",
        "1a2b3c4d",
    ]);
    assert!(
        embed.status.success(),
        "{}",
        String::from_utf8_lossy(&embed.stderr)
    );
    let key_file = state.join("watermark.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.len(), 64, "256 random bits, hex");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The same state_dir reads its own marks; the old public default is not that key.
    let detect = run(&[
        "watermark",
        "detect",
        "--config",
        config.to_str().unwrap(),
        "--json",
        marked.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&detect.stdout).unwrap();
    assert_eq!(v["payload"], "1a2b3c4d");
    assert_ne!(key.trim(), "likeguard-public-default");
    // A well-known key is refused with a clear message.
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nwatermark: {{key: likeguard-public-default}}\n",
            state.display()
        ),
    )
    .unwrap();
    let refused = run(&[
        "watermark",
        "detect",
        "--config",
        config.to_str().unwrap(),
        marked.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("well-known"));
}
