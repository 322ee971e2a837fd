//! The command line: config example/check and start-up errors, through the real binary.

use std::process::Command;

fn likeguard(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(args)
        .env_remove("LIKEGUARD_CONFIG")
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
    let (ok, _, err) = likeguard(&["serve", "--upstream", "https://x"]);
    assert!(!ok);
    assert!(err.contains("only http://"), "{err}");
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
