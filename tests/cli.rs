//! The command line: config example/check and start-up errors, through the real binary.

use std::process::Command;

fn likeguard(args: &[&str]) -> (bool, String, String) {
    // The checkout's models, wherever a test's config file lives (relative paths in a config
    // are read next to the file).
    let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(args)
        .env_remove("LIKEGUARD_CONFIG")
        .env(
            "LIKEGUARD_MODELS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_config_is_complete_and_checks_clean() {
    let (ok, example, _) = likeguard(&["config", "example"]);
    assert!(ok);
    for key in [
        "listen:",
        "admin:",
        "routes:",
        "on_failure:",
        "max_body:",
        "json_pointers:",
        "inference:",
    ] {
        assert!(example.contains(key), "example lacks {key}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.yaml");
    std::fs::write(&path, example).unwrap();
    let (ok, out, err) = likeguard(&["config", "check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok (3 routes)"), "{out}");
}

#[test]
fn a_bad_config_names_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "routes:\n  - name: up\n    upstream: http://127.0.0.1:3000\n    inspect:\n      max_body: lots\n",
    )
    .unwrap();
    let (ok, _, err) = likeguard(&["config", "check", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("routes[0].inspect.max_body"), "{err}");
    assert!(err.contains("\"lots\""), "{err}");
    // Several mistakes: all of them, each once, at its field, in file order.
    std::fs::write(
        &path,
        "routes:\n  - name: a\n    upstream: http://127.0.0.1:3000\n    inspect:\n      max_body: lots\n  - name: b\n    upstream: ftp://x\nwatermark: {strength: \"x\"}\n",
    )
    .unwrap();
    let (ok, _, err) = likeguard(&["config", "check", path.to_str().unwrap()]);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("routes[0].inspect.max_body"), "{err}");
    assert!(lines[1].contains("routes[1].upstream"), "{err}");
    assert!(lines[2].contains("watermark.strength"), "{err}");
    assert!(err.matches("line 5").count() == 1, "position once: {err}");

    let (ok, _, err) = likeguard(&["config", "check", "/nonexistent/likeguard.yaml"]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/likeguard.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn serve_explains_what_it_needs() {
    let (ok, _, err) = likeguard(&["serve"]);
    assert!(!ok);
    assert!(err.contains("--upstream"), "{err}");
    let (ok, _, err) = likeguard(&["serve", "--upstream", "ftp://x"]);
    assert!(!ok);
    assert!(err.contains("http:// or https://"), "{err}");
    // Models missing: the absolute path it looked in, and what fixes it.
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            &free(),
            "--admin-listen",
            &free(),
        ])
        .current_dir(dir.path())
        .env_remove("LIKEGUARD_MODELS_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let looked = dir.path().join("models/manifest.json");
    assert!(
        err.contains(looked.to_str().unwrap())
            && err.contains("likeguard models fetch")
            && err.contains("LIKEGUARD_MODELS_DIR"),
        "{err}"
    );
}

#[test]
fn a_taken_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            &addr,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn scan_reports_each_file_as_json_and_fails_on_a_bad_one() {
    let td = std::env::var_os("LIKEGUARD_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata")
        });
    let clip = td.join("video/faces/face_recognition/short_hamilton_clip.mp4");
    let photo = td.join("images/faces/deepface/img1.jpg");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mp4");
    let bytes = std::fs::read(&clip).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 20]).unwrap();

    let (ok, out, _) = likeguard(&[
        "scan",
        "--json",
        clip.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(ok);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for key in [
        "path",
        "kind",
        "format",
        "width",
        "height",
        "duration_s",
        "frames",
        "error",
    ] {
        assert!(lines[0].get(key).is_some(), "missing {key}: {}", lines[0]);
    }
    assert_eq!(lines[0]["kind"], "video");
    assert_eq!(
        (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
        (Some(640), Some(360))
    );
    // 10.01 s at 1 fps: frames at 0, 1, ..., 9 s (the last frame starts before 10 s).
    assert_eq!(lines[0]["frames"], 10);
    assert!(lines[0]["error"].is_null());
    assert_eq!(lines[1]["kind"], "image");
    assert_eq!(lines[1]["frames"], 1);
    // Faces: one in the portrait, boxes in source pixels (1382×1868), five landmarks each.
    let faces = lines[1]["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1, "{}", lines[1]);
    let b: Vec<f64> = serde_json::from_value(faces[0]["box"].clone()).unwrap();
    assert!(
        b[2] > 300.0 && b[0] + b[2] <= 1400.0,
        "box {b:?} not in source pixels"
    );
    assert_eq!(faces[0]["landmarks"].as_array().unwrap().len(), 5);
    assert_eq!(faces[0]["frame"], 0);
    assert!(faces[0]["score"].as_f64().unwrap() > 0.5);
    assert!(
        !lines[0]["faces"].as_array().unwrap().is_empty(),
        "no face in the clip"
    );

    let (ok, out, err) = likeguard(&[
        "scan",
        "--json",
        photo.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!ok, "a failed file must fail the scan");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(
        last["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{last}"
    );
    assert!(
        err.contains("1 of 2 file(s) failed") && err.contains("broken.mp4"),
        "{err}"
    );
}

#[test]
fn scan_finds_media_inside_archives_and_json_and_says_where() {
    use std::io::Write;
    let td = testdata();
    let face = std::fs::read(td.join("images/faces/deepface/img1.jpg")).unwrap();
    let plain = std::fs::read(td.join("images/noface/skimage/coffee.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("set.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in [("set/face.jpg", &face), ("set/cup.png", &plain)] {
        z.start_file(name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.start_file("set/notes.txt", opts).unwrap();
    z.write_all(b"captions").unwrap();
    z.finish().unwrap();
    let json_path = dir.path().join("response.json");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &face);
    std::fs::write(
        &json_path,
        serde_json::to_vec(&serde_json::json!({"artifacts": [{"base64": b64}]})).unwrap(),
    )
    .unwrap();
    let (ok, out, err) = likeguard(&[
        "scan",
        "--json",
        "--no-faces",
        zip_path.to_str().unwrap(),
        json_path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap().to_string(),
                l["format"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (r#"member "set/face.jpg""#.to_string(), "jpg".to_string()),
            (r#"member "set/cup.png""#.to_string(), "png".to_string()),
            ("json /artifacts/0/base64".to_string(), "jpg".to_string()),
        ]
    );
    assert_eq!(lines[0]["width"], 1382);
    // A file with no media at all is reported as such, and fails the scan.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "nothing to see").unwrap();
    let (ok, _, err) = likeguard(&["scan", "--no-faces", text.to_str().unwrap()]);
    assert!(
        !ok && err.contains("no image, video or audio found"),
        "{err}"
    );
}

fn testdata() -> std::path::PathBuf {
    std::env::var_os("LIKEGUARD_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata")
        })
}

#[test]
fn eval_pairs_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(
        &pairs,
        "path_a\tpath_b\tsame\torigin\tnote\n\
         images/faces/deepface/img1.jpg\timages/faces/deepface/img2.jpg\t1\tt\t\n\
         images/faces/deepface/img20.jpg\timages/faces/deepface/img21.jpg\t1\tt\t\n\
         images/faces/deepface/img1.jpg\timages/faces/deepface/img20.jpg\t0\tt\t\n\
         images/faces/deepface/img2.jpg\timages/noface/face_api_js/test_white.png\t0\tt\t\n",
    )
    .unwrap();
    let root = testdata();
    let (ok, out, err) = likeguard(&[
        "eval",
        "pairs",
        pairs.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "pairs",
        "missing",
        "threshold",
        "accuracy",
        "best_threshold",
        "best_accuracy",
        "auc",
        "tar_far_1e2",
        "tar_far_1e3",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert_eq!(r["pairs"], 4);
    // The blank image has no face: that pair counts as wrong.
    assert_eq!(r["missing"], 1);
    assert_eq!(r["accuracy"], 0.75);
    assert_eq!(r["auc"], 1.0);
}

#[test]
fn eval_detect_counts_faces_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"[
          {"path": "images/faces/deepface/img1.jpg", "kind": "face"},
          {"path": "images/noface/skimage/coffee.png", "kind": "noface", "n_faces": 0},
          {"path": "images/group/face_recognition/two_people.jpg", "kind": "group", "n_faces": 2}
        ]"#,
    )
    .unwrap();
    let root = testdata();
    let (ok, out, err) = likeguard(&[
        "eval",
        "detect",
        "--manifest",
        manifest.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (r["single_found"].as_u64(), r["single_total"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(r["false_faces"], 0);
    assert_eq!(
        (r["group_found"].as_u64(), r["group_known"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn models_verify_passes_and_names_a_corrupt_file() {
    let models = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let (ok, out, err) = likeguard(&["models", "verify", "--dir", models.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("loaded   detectors"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        models.join("manifest.json"),
        dir.path().join("manifest.json"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("runtime")).unwrap();
    std::os::unix::fs::symlink(
        models.join("runtime/libonnxruntime.so"),
        dir.path().join("runtime/libonnxruntime.so"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        models.join("blazeface-short.onnx"),
        dir.path().join("blazeface-short.onnx"),
    )
    .unwrap();
    std::fs::write(dir.path().join("blazeface-full.onnx"), b"not a model").unwrap();
    let (ok, out, err) = likeguard(&["models", "verify", "--dir", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("CORRUPT") && out.contains("blazeface-full.onnx"),
        "{out}"
    );
    assert!(
        out.contains("MISSING") && out.contains("mobilefacenet.onnx"),
        "{out}"
    );
    assert!(err.contains("likeguard models fetch"), "{err}");
}

#[test]
fn shipped_policies_check_and_pass_their_cases() {
    for (policy, cases) in [
        ("policies/default.yaml", "policies/default.cases.yaml"),
        ("policies/editorial.yaml", "policies/editorial.cases.yaml"),
    ] {
        let (ok, out, err) = likeguard(&["policy", "check", policy]);
        assert!(ok && out.contains(": ok"), "{out}{err}");
        let (ok, out, err) = likeguard(&["policy", "test", policy, cases]);
        assert!(ok, "{out}{err}");
        assert!(!out.contains("FAIL"), "{out}");
    }
}

#[test]
fn a_broken_policy_names_file_line_and_reason_and_failing_cases_fail() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - id: fine\n    when: 'true'\n    action: tag\n  - id: broken\n    when: license.active &&\n    action: block\n",
    )
    .unwrap();
    let (ok, _, err) = likeguard(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.yaml:5") && err.contains("broken"),
        "{err}"
    );

    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: wrong on purpose\n    context: {match: {protection: strict}}\n    expect: {action: allow}\n",
    )
    .unwrap();
    let (ok, out, err) = likeguard(&[
        "policy",
        "test",
        "policies/default.yaml",
        cases.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(out.contains("FAIL wrong on purpose"), "{out}");
    assert!(err.contains("1 of 1 case(s) failed"), "{err}");
}

#[test]
fn the_openapi_document_covers_every_admin_route() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // The routes src/admin/mod.rs registers.
    let routes =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/admin/mod.rs")).unwrap();
    for line in routes.lines() {
        let line = line.trim();
        if let Some(rest) = line
            .strip_prefix(".route(\"")
            .or_else(|| line.strip_prefix("\"/"))
            && let Some(path) = rest.split('"').next()
        {
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            assert!(paths.contains_key(&path), "docs/openapi.yaml lacks {path}");
        }
    }
    assert!(paths.len() >= 13);
}

/// The OpenAPI document passes the ecosystem's reference validator (openapi-spec-validator from
/// PyPI; `.ci/run` installs it and sets `LIKEGUARD_OPENAPI_VALIDATOR`).
#[test]
fn the_openapi_document_passes_the_reference_validator() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let validator = std::env::var("LIKEGUARD_OPENAPI_VALIDATOR")
        .unwrap_or_else(|_| "openapi-spec-validator".into());
    let out = std::process::Command::new(&validator)
        .arg(doc)
        .output()
        .unwrap_or_else(|e| {
            panic!("{validator}: {e} (pip install openapi-spec-validator, or run .ci/run)")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

/// schemathesis (the OpenAPI reference fuzzer) against a real running admin listener, every
/// check enabled (`schemathesis.toml` lists the statuses a schema-valid request may still get).
/// A fixed seed keeps CI repeatable; run it with other seeds by hand for more.
#[test]
fn the_admin_api_passes_schemathesis_with_every_check() {
    let tools = std::env::var("LIKEGUARD_TOOLS_PYTHON")
        .map(|p| std::path::PathBuf::from(p).with_file_name("schemathesis"))
        .unwrap_or_else(|_| "schemathesis".into());
    let state = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, admin) = (free(), free());
    let config = state.path().join("lg.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {listen}\nadmin: {{listen: {admin}}}\nstate_dir: {}\nroutes:\n  - name: all\n    upstream: http://127.0.0.1:9\n",
            state.path().display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("LIKEGUARD_ADMIN_TOKEN", "schemathesis-token")
        .env(
            "LIKEGUARD_MODELS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
        )
        .env("LIKEGUARD_LOG", "error")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "admin listener did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(&tools)
        .current_dir(state.path())
        .args([
            "--config-file",
            &format!("{root}/schemathesis.toml"),
            "run",
            &format!("{root}/docs/openapi.yaml"),
            "--url",
            &format!("http://{admin}"),
            "-H",
            "Authorization: Bearer schemathesis-token",
            "--checks",
            "all",
            "--max-examples",
            "20",
            "--seed",
            "20261201",
        ])
        .output();
    let _ = child.kill();
    let _ = child.wait();
    let out = out.unwrap_or_else(|e| {
        panic!(
            "{}: {e} (pip install schemathesis, or run .ci/run)",
            tools.display()
        )
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(" passed"), "{text}");
}

/// Docs that say something is not built must be right: every such sentence names a feature on
/// this list, and each listed feature is still refused by the binary — so building one makes
/// this test fail until the docs are updated.
#[test]
fn docs_say_not_built_only_about_what_is_not_built() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("src/config/example.yaml")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    // (words that identify the feature in the sentence, how the binary shows it is not built)
    let unbuilt = [("tee", "tee"), ("async", "async")];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text
            .lines()
            .filter(|l| l.to_lowercase().contains("not built"))
        {
            // "asking for one that is not built" (execution providers) is about the build, not us.
            if line.contains("asking for one that is not built") {
                continue;
            }
            assert!(
                unbuilt.iter().any(|(word, _)| line.contains(word)),
                "{}: {line:?} says something is not built that this test does not know",
                file.display()
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (_, mode) in unbuilt {
        let path = dir.path().join(format!("{mode}.yaml"));
        std::fs::write(
            &path,
            format!("routes:\n  - {{name: a, upstream: 'http://127.0.0.1:1', inspect: {{mode: {mode}}}}}\n"),
        )
        .unwrap();
        let (ok, _, err) = likeguard(&["config", "check", path.to_str().unwrap()]);
        assert!(
            !ok && err.contains("not built"),
            "mode {mode} is accepted now: update the docs ({err})"
        );
    }
}

/// Relative paths in a config file are read next to the file, wherever likeguard is started:
/// `identity list` from another folder sees the identities `identity add` stored.
#[test]
fn relative_paths_in_a_config_are_next_to_the_file() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("likeguard.yaml");
    std::fs::write(&config, "state_dir: state\n").unwrap();
    let photo = testdata().join("images/faces/deepface/img1.jpg");
    let run_in = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
            .args(args)
            .current_dir(cwd)
            .env(
                "LIKEGUARD_MODELS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let c = config.to_str().unwrap();
    run_in(
        a.path(),
        &[
            "identity",
            "-c",
            c,
            "add",
            "--name",
            "Person X",
            photo.to_str().unwrap(),
        ],
    );
    assert!(
        home.path().join("state").is_dir(),
        "state next to the config"
    );
    assert!(
        !a.path().join("state").exists(),
        "not in the working directory"
    );
    assert!(run_in(b.path(), &["identity", "-c", c, "list"]).contains("Person X"));
}

#[test]
fn identity_and_license_commands_work_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("likeguard.yaml");
    std::fs::write(&config, format!("state_dir: {}\n", dir.path().display())).unwrap();
    let c = config.to_str().unwrap();
    let photo = testdata().join("images/faces/deepface/img1.jpg");
    let group = testdata().join("images/group/face_recognition/two_people.jpg");

    let (ok, _, err) = likeguard(&[
        "identity",
        "-c",
        c,
        "add",
        "--name",
        "G",
        group.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("2 faces"), "{err}");

    let (ok, out, err) = likeguard(&[
        "identity",
        "-c",
        c,
        "add",
        "--name",
        "Person X",
        "--consent-by",
        "X",
        photo.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let x: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = x["id"].as_str().unwrap();
    assert_eq!(
        (x["references"].as_u64(), x["protection"].as_str()),
        (Some(1), Some("strict"))
    );

    let (ok, out, err) = likeguard(&[
        "license",
        "-c",
        c,
        "grant",
        "--identity",
        id,
        "--licensee",
        "acme",
        "--usage",
        "commercial",
        "--obligation",
        "tag",
        "--until",
        "2999-01-01T00:00:00Z",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"licensee\":\"acme\""), "{out}");
    let (_, out, _) = likeguard(&["license", "-c", c, "list"]);
    assert_eq!(out.lines().count(), 1);

    let (ok, out, err) = likeguard(&["identity", "-c", c, "rm", id]);
    assert!(ok && out.contains("1 license(s)"), "{out}{err}");
    let (_, out, _) = likeguard(&["identity", "-c", c, "list"]);
    assert!(out.trim().is_empty(), "{out}");
    let (_, out, _) = likeguard(&["license", "-c", c, "list"]);
    assert!(out.trim().is_empty(), "{out}");
}
