//! The TLS listener: HTTP/1.1 and HTTP/2 (ALPN) clients reach the same routes, pass-through
//! and inspected alike, with a certificate made by scripts/make-tls-test-cert.

mod support;

use support::*;

fn cert_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-tls-test-cert");
    let o = std::process::Command::new(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir
}

fn tls_client(dir: &std::path::Path, http2: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false);
    let b = if http2 { b } else { b.http1_only() };
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http1_and_http2_on_every_route() {
    let certs = cert_dir();
    let up = Upstream::start().await;
    let tls_port = free_port();
    let lg = Likeguard::start(&format!(
        "tls: {{listen: '127.0.0.1:{tls_port}', cert_file: '{}', key_file: '{}'}}\ninference: {{enabled: false}}\nroutes:\n  - name: uploads\n    match: {{path_prefix: /upload}}\n    upstream: {}\n    inspect: {{direction: request}}\n  - name: plain\n    upstream: {}\n    inspect: {{direction: none}}\n",
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display(),
        up.url(),
        up.url()
    ));
    let blocked = media("images/faces/deepface/img11.jpg");
    lg.register(blocked.clone(), "block").await;
    // The plain listener keeps working beside it.
    assert_eq!(
        client()
            .get(lg.url("/plain"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    for http2 in [false, true] {
        let c = tls_client(certs.path(), http2);
        let base = format!("https://localhost:{tls_port}");
        let want = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        // Pass-through.
        let r = c.get(format!("{base}/plain/a")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), want);
        assert_eq!(r.text().await.unwrap(), "ok");
        // Inspected: a known image is blocked before it reaches the upstream.
        let before = up.received_on("/upload").len();
        let r = c
            .post(format!("{base}/upload"))
            .header("content-type", "image/jpeg")
            .body(blocked.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 451, "http2={http2}");
        assert_eq!(r.version(), want);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(up.received_on("/upload").len(), before);
        // Inspected and allowed: the body arrives whole.
        let r = c
            .post(format!("{base}/upload"))
            .header("content-type", "application/octet-stream")
            .body(vec![7u8; 300_000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "http2={http2}");
        let got = up.received_on("/upload").pop().unwrap();
        assert_eq!(got.body.len(), 300_000);
        // HTTP/2's :authority reaches the HTTP/1.1 upstream as Host.
        let host = format!("localhost:{tls_port}");
        assert_eq!(got.headers["host"], host.as_str(), "http2={http2}");
        let plain = up.received_on("/plain/a").pop().unwrap();
        assert_eq!(plain.headers["host"], host.as_str(), "http2={http2}");
    }
}

#[test]
fn a_missing_certificate_is_a_config_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "tls: {listen: '127.0.0.1:0', cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_likeguard"))
        .args(["config", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tls.cert_file"), "{err}");
}

/// A real HTTPS upstream: Python's http.server behind its ssl module, answering
/// `tls-ok <bytes received>` to every GET and POST.
struct HttpsUpstream {
    child: std::process::Child,
    port: u16,
}

impl HttpsUpstream {
    fn start(certs: &std::path::Path) -> Self {
        let port = free_port();
        let script = format!(
            r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        got = self.rfile.read(n)
        body = ("tls-ok %d" % len(got)).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("{cert}", "{key}")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
            cert = certs.join("cert.pem").display(),
            key = certs.join("key.pem").display(),
        );
        let child = std::process::Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for HttpsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_on_both_paths() {
    let certs = cert_dir();
    let up = HttpsUpstream::start(certs.path());
    let routes = format!(
        "inference: {{enabled: false}}\nroutes:\n  - name: uploads\n    match: {{path_prefix: /upload}}\n    upstream: https://localhost:{p}\n    inspect: {{direction: request}}\n  - name: plain\n    upstream: https://localhost:{p}\n    inspect: {{direction: none}}\n",
        p = up.port
    );
    let lg = Likeguard::start(&format!(
        "upstream_ca_file: '{}'\n{routes}",
        certs.path().join("ca.pem").display()
    ));
    let c = client();
    // Pass-through (pingora's peer) and inspected (likeguard's own client), both over TLS.
    let r = c.get(lg.url("/plain")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tls-ok 0");
    let r = c
        .post(lg.url("/upload"))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tls-ok 200000");

    // Without the CA the upstream's certificate is not trusted: no request goes through.
    let untrusting = Likeguard::start(&routes);
    for path in ["/plain", "/upload"] {
        let r = c
            .post(untrusting.url(path))
            .header("content-type", "application/octet-stream")
            .body(vec![1u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{path}");
    }
}
