//! Shared test harness: a real upstream HTTP server that records what it receives, the real
//! `likeguard` binary started on free ports, and the real media in `../shared/testdata`.
#![allow(dead_code)]

pub mod clips;
pub mod squid;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

pub const TOKEN: &str = "test-admin-token";

/// Where the shared test media lives: `LIKEGUARD_TESTDATA`, else `../shared/testdata`.
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("LIKEGUARD_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"));
    assert!(
        dir.join("manifest.json").is_file(),
        "test media not found at {} — set LIKEGUARD_TESTDATA to the shared testdata folder",
        dir.display()
    );
    dir
}

pub fn media(rel: &str) -> Vec<u8> {
    let p = testdata().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// What arrived of the body, also when the sender broke off.
    pub body: Bytes,
    /// The body ended as its framing says (Content-Length reached, or the last chunk); false
    /// when the connection broke first — an aborted upload.
    pub complete: bool,
}

/// What the upstream answers on a path (default: 200 "ok").
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    /// Send the body in this many chunks without Content-Length.
    pub chunks: Option<usize>,
}

impl Canned {
    /// A 200 with this type and body, sent in `chunks` pieces (no Content-Length) when given.
    pub fn ok(content_type: &str, body: impl Into<Bytes>, chunks: Option<usize>) -> Self {
        Self {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
            chunks,
        }
    }
}

#[derive(Clone, Default)]
struct UpState {
    received: Arc<Mutex<Vec<Received>>>,
    canned: Arc<Mutex<HashMap<String, Canned>>>,
}

/// A real HTTP server on 127.0.0.1 that records every request.
pub struct Upstream {
    pub addr: SocketAddr,
    state: UpState,
}

impl Upstream {
    /// Start on the calling test's runtime; it stops with the test.
    pub async fn start() -> Self {
        let state = UpState::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn serve(&self, path: &str, canned: Canned) {
        self.state
            .canned
            .lock()
            .unwrap()
            .insert(path.to_string(), canned);
    }
}

async fn record(State(s): State<UpState>, req: Request) -> Response {
    use http_body_util::BodyExt;
    let (parts, mut stream) = req.into_parts();
    // Frame by frame, so a body cut short is kept (and marked) rather than lost.
    let mut got = bytes::BytesMut::new();
    let complete = loop {
        match stream.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    got.extend_from_slice(data);
                }
            }
            Some(Err(_)) => break false,
            None => break true,
        }
    };
    let body = got.freeze();
    let path = parts.uri.path().to_string();
    s.received.lock().unwrap().push(Received {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
        complete,
    });
    let canned = s.canned.lock().unwrap().get(&path).cloned();
    match canned {
        Some(c) => {
            let b = match c.chunks {
                Some(n) => {
                    let size = c.body.len().div_ceil(n.max(1)).max(1);
                    let pieces: Vec<Result<Bytes, std::io::Error>> = c
                        .body
                        .chunks(size)
                        .map(|p| Ok(Bytes::copy_from_slice(p)))
                        .collect();
                    Body::from_stream(futures_util::stream::iter(pieces))
                }
                None => Body::from(c.body),
            };
            Response::builder()
                .status(c.status)
                .header("content-type", c.content_type)
                .header("etag", "\"upstream-etag\"")
                .body(b)
                .unwrap()
        }
        // Echo what was posted, so pass-through can be checked end to end.
        None if path.contains("echo") => Response::builder()
            .status(StatusCode::OK)
            .header(
                "content-type",
                parts
                    .headers
                    .get("content-type")
                    .cloned()
                    .unwrap_or_else(|| "application/octet-stream".parse().unwrap()),
            )
            .body(Body::from(body))
            .unwrap(),
        None => Response::new(Body::from("ok")),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `likeguard serve` process.
pub struct Likeguard {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    pub state_dir: tempfile::TempDir,
}

impl Likeguard {
    /// Start with a config body (YAML without listen/admin/state_dir, which are set here).
    pub fn start(config_yaml: &str) -> Self {
        let state_dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "listen: {addr}\nworkers: 2\nadmin:\n  listen: {admin}\nstate_dir: {}\n{config_yaml}",
            state_dir.path().display()
        );
        let path = state_dir.path().join("likeguard.yaml");
        std::fs::write(&path, config).unwrap();
        Self::spawn(
            &["serve", "--config", path.to_str().unwrap()],
            addr,
            admin,
            state_dir,
        )
    }

    /// `start`, keeping state in `state` (which outlives this process).
    pub fn start_with_state(config_yaml: &str, state: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "listen: {addr}\nworkers: 2\nadmin:\n  listen: {admin}\nstate_dir: {}\n{config_yaml}",
            state.display()
        );
        let path = dir.path().join("likeguard.yaml");
        std::fs::write(&path, config).unwrap();
        Self::spawn(
            &["serve", "--config", path.to_str().unwrap()],
            addr,
            admin,
            dir,
        )
    }

    /// Start with no config file: the embedded default in front of `upstream`.
    pub fn start_embedded(upstream: &str) -> Self {
        let state_dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (a, m) = (addr.to_string(), admin.to_string());
        Self::spawn(
            &[
                "serve",
                "--listen",
                &a,
                "--upstream",
                upstream,
                "--admin-listen",
                &m,
            ],
            addr,
            admin,
            state_dir,
        )
    }

    fn spawn(
        args: &[&str],
        addr: SocketAddr,
        admin: SocketAddr,
        state_dir: tempfile::TempDir,
    ) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_likeguard"))
            .args(args)
            .current_dir(state_dir.path())
            .env("LIKEGUARD_ADMIN_TOKEN", TOKEN)
            .env(
                "LIKEGUARD_MODELS_DIR",
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
            )
            // LIKEGUARD_TEST_LOG=debug shows the server's side of a failing test.
            .env(
                "LIKEGUARD_LOG",
                std::env::var("LIKEGUARD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start likeguard");
        let mut lg = Self {
            addr,
            admin,
            child,
            state_dir,
        };
        lg.wait_ready();
        lg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("likeguard exited at start-up: {status}");
            }
            let ready = std::net::TcpStream::connect(self.addr).is_ok()
                && std::net::TcpStream::connect(self.admin).is_ok();
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "likeguard did not start listening on {} / {}",
            self.addr, self.admin
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id (for /proc: fds, threads, RSS).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM (graceful shutdown) and wait up to `within` for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// GET `path` through likeguard, expecting a 200 of `content_type` that a decision with
    /// `action` touched; its decision id and body (see `decided`).
    pub async fn get_decided(
        &self,
        path: &str,
        content_type: &str,
        action: &str,
    ) -> (String, Bytes) {
        let r = client().get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], content_type);
        assert_eq!(r.headers()["likeguard-decision"], action);
        decided(r).await
    }

    /// The Prometheus text from the admin listener (with the token).
    pub async fn metrics(&self) -> String {
        let r = client()
            .get(self.admin_url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Register media in the known-media bank through the admin API.
    pub async fn register(&self, data: Vec<u8>, action: &str) -> serde_json::Value {
        let r = client()
            .post(self.admin_url(&format!("/admin/v1/known-media?action={action}&label=test")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "register failed: {:?}", r.text().await);
        r.json().await.unwrap()
    }
}

impl Drop for Likeguard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the `likeguard` command with a watermark key; it must succeed. Its standard output.
pub fn watermark_cli(key: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(args)
        .env("LIKEGUARD_WATERMARK_KEY", key)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A resized (0.5×) and re-encoded (JPEG q70) copy of an image.
pub fn resized_copy(data: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(data).unwrap();
    let small = img.resize(
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    );
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70);
    small.to_rgb8().write_with_encoder(enc).unwrap();
    out.into_inner()
}

/// A decided 200 response: its decision id, and its body, checked against its Content-Length
/// (a rewritten body must be framed anew).
pub async fn decided(r: reqwest::Response) -> (String, Bytes) {
    assert_eq!(r.status(), 200);
    let decision = r.headers()["likeguard-decision-id"]
        .to_str()
        .unwrap()
        .to_string();
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    (decision, body)
}

/// A private redis-server on `port`, killed (SIGKILL) on drop. With `data`, it keeps an
/// append-only file there, so a restart on the same folder has the data back.
pub struct RedisServer {
    child: std::process::Child,
}

impl RedisServer {
    pub fn start(port: u16, data: Option<&std::path::Path>) -> Self {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match data {
            Some(dir) => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                    .arg(dir);
            }
            None => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup-system installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/readyz`'s `status` (`ready`, `degraded`, ...).
pub async fn readiness(lg: &Likeguard) -> String {
    let v: serde_json::Value = client()
        .get(lg.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

/// Prometheus' own linter (`promtool check metrics`) over a `/metrics` exposition.
pub fn promtool_check_metrics(exposition: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup-system installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll `check` every 20 ms until it holds; fails the test after `limit`. How long it took.
pub async fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
