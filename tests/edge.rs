//! The request path from the attacker's side: raw client sockets (no HTTP library between the
//! test and likeguard), a strict recording origin (hyper, through `support::Upstream`) that logs
//! exactly the requests it parsed, raw upstreams for what a library would not send, and nginx as
//! the judge of which handler an origin routes a path to. Every case: inspected or refused,
//! never at the origin uninspected.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A body that claims to be a PNG and is not: an inspected route refuses it (415), a
/// pass-through route forwards it. So a 415 proves inspection ran.
const NOT_PNG: &[u8] = b"not a png";

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read one response: head, then a body framed by Content-Length or chunked (chunked bodies
/// come back decoded), or to the close.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-head: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap().to_ascii_lowercase();
    let mut body = Vec::new();
    let line = |s: &mut TcpStream| {
        let mut l = Vec::new();
        let mut b = [0u8; 1];
        while !l.ends_with(b"\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1);
            l.push(b[0]);
        }
        String::from_utf8(l).unwrap()
    };
    if head.contains("transfer-encoding: chunked") {
        loop {
            let size = usize::from_str_radix(line(s).trim(), 16).unwrap();
            if size == 0 {
                while line(s) != "\r\n" {}
                break;
            }
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        s.read_exact(&mut body).unwrap();
    } else if !head.starts_with("http/1.1 1") && !head.contains(" 204 ") && !head.contains(" 304 ")
    {
        s.read_to_end(&mut body).unwrap();
    }
    (head, body)
}

/// One request on a fresh connection; the response.
fn send(addr: SocketAddr, raw: &[u8]) -> (String, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_response(&mut s)
}

fn status(head: &str) -> u16 {
    head[9..12].parse().unwrap()
}

/// Read until the server closes the connection.
fn drain(s: &mut TcpStream) {
    let _ = s.read_to_end(&mut Vec::new());
}

/// Whether the server closed the connection (EOF or reset) within the read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// A POST of `body` with these extra header lines.
fn post(target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {target} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A raw upstream: answers every request head it reads with `answer`, one per connection.
fn raw_upstream(answer: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = s.write_all(answer);
        }
    });
    addr
}

/// nginx as an origin: `location /upload` answers "upload-handler", everything else "other".
struct Nginx {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Self {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is needed as the origin judge: run scripts/setup-system");
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1; daemon off; pid {d}/pid; error_log {d}/err.log;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d};\n\
               server {{ listen {addr};\n\
                 location /upload {{ return 200 \"upload-handler\"; }}\n\
                 location / {{ return 200 \"other\"; }} }} }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .args(["-p", &d.to_string(), "-c", "nginx.conf"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every variant of `/upload` that nginx routes to its upload handler is inspected (or refused)
/// by likeguard; so is every variant of a host-matched route's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_hosts_are_matched_as_the_origin_reads_them() {
    let nginx = Nginx::start();
    let origin = format!("http://{}", nginx.addr);
    let lg = Likeguard::start(&format!(
        r#"
inference: {{enabled: false}}
routes:
  - name: hosted
    match: {{host: up.example}}
    upstream: {origin}
    inspect: {{direction: request}}
  - name: upload
    match: {{path_prefix: /upload}}
    upstream: {origin}
    inspect: {{direction: request}}
  - name: rest
    upstream: {origin}
    inspect: {{direction: none}}
"#
    ));
    let (lg_addr, ngx_addr) = (lg.addr, nginx.addr);
    tokio::task::spawn_blocking(move || {
        let png = "Host: other.example\r\nContent-Type: image/png\r\n";
        let variants = [
            "/upload",
            "//upload",
            "/./upload",
            "/x/../upload",
            "/%75pload",
            "/%2fupload",
            "/upload%2f",
            "/upload;x",
            "/UPLOAD",
            "/uploads",
            "/x/..;/upload",
            "/%2e%2e/upload",
            "http://other.example/upload",
        ];
        let mut routed_to_upload = 0;
        for target in variants {
            let raw = post(target, png, NOT_PNG);
            let (_, direct) = send(ngx_addr, &raw);
            let (head, body) = send(lg_addr, &raw);
            if direct == b"upload-handler" {
                routed_to_upload += 1;
            }
            // Never at the origin's upload handler uninspected; whatever nginx does with it,
            // likeguard inspected it (415) or refused it as ambiguous (400).
            assert_ne!(body, b"upload-handler", "{target}: {head}");
            assert!(
                matches!(status(&head), 400 | 415),
                "{target}: {head} {}",
                String::from_utf8_lossy(&body)
            );
            assert!(
                head.contains("application/problem+json"),
                "{target}: {head}"
            );
        }
        assert!(
            routed_to_upload >= 8,
            "nginx routed {routed_to_upload} to /upload"
        );

        for host in [
            "up.example",
            "UP.example",
            "up.example.",
            "up.example:80",
            "up.example.:8080",
        ] {
            let raw = post(
                "/any",
                &format!("Host: {host}\r\nContent-Type: image/png\r\n"),
                NOT_PNG,
            );
            let (head, _) = send(lg_addr, &raw);
            assert_eq!(status(&head), 415, "Host: {host}: {head}");
        }
        // Hosts origins would split differently are refused, never routed past the host route.
        for host in ["up.example:80:90", "up.example:x:"] {
            let raw = post(
                "/any",
                &format!("Host: {host}\r\nContent-Type: image/png\r\n"),
                NOT_PNG,
            );
            let (head, body) = send(lg_addr, &raw);
            assert_eq!(status(&head), 400, "Host: {host}: {head}");
            assert_ne!(body, b"other", "Host: {host}");
        }
        // A target that is not a path is refused, not forwarded as some other path.
        let (head, _) = send(lg_addr, &post("upload", png, NOT_PNG));
        assert_eq!(status(&head), 400, "{head}");
        // A pass-through path still passes (to nginx's other handler).
        let (head, body) = send(lg_addr, &post("/other", png, NOT_PNG));
        assert_eq!(status(&head), 200, "{head}");
        assert_eq!(body, b"other");
    })
    .await
    .unwrap();
}

fn recording_config(upstream: &str, raw: &str) -> String {
    format!(
        r#"
inference: {{enabled: false}}
timeouts: {{client_read: 2s}}
routes:
  - name: upload
    match: {{path_prefix: /upload}}
    upstream: {upstream}
    inspect: {{direction: request}}
  - name: raw-inspected
    match: {{path_prefix: /raw-inspected}}
    upstream: {raw}
    inspect: {{direction: both}}
  - name: raw
    match: {{path_prefix: /raw}}
    upstream: {raw}
    inspect: {{direction: none}}
  - name: rest
    upstream: {upstream}
    inspect: {{direction: none}}
"#
    )
}

/// The recording origin, a raw upstream answering "ok", and likeguard routing to both.
async fn recording_setup() -> (Upstream, Likeguard) {
    let up = Upstream::start().await;
    let raw = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let lg = Likeguard::start(&recording_config(&up.url(), &format!("http://{raw}")));
    (up, lg)
}

/// Smuggling through hop-by-hop headers, upgrades, repeated or missing headers: the origin
/// never parses an uninspected `/upload`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_and_ambiguous_requests_never_reach_the_origin_uninspected() {
    let (up, lg) = recording_setup().await;
    let addr = lg.addr;
    let inner = post("/upload", "Host: a\r\nContent-Type: image/png\r\n", NOT_PNG);
    let inner_len = inner.len();
    let statuses = tokio::task::spawn_blocking(move || {
        let mut statuses = Vec::new();
        // Connection names Content-Length: the body must still end where Content-Length says.
        let mut raw = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: {inner_len}\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&inner);
        raw.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut s = connect(addr);
        s.write_all(&raw).unwrap();
        drain(&mut s);
        // Connection names Transfer-Encoding, with a chunked body holding a request.
        let mut raw = b"POST /y HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(format!("{inner_len:x}\r\n").as_bytes());
        raw.extend_from_slice(&inner);
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        raw.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut s = connect(addr);
        s.write_all(&raw).unwrap();
        drain(&mut s);
        // Content-Length and Transfer-Encoding together: chunked wins (RFC 9112 §6.3), the
        // connection closes after.
        let mut raw = format!(
            "POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{inner_len:x}\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&inner);
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut s = connect(addr);
        s.write_all(&raw).unwrap();
        let (head, _) = read_response(&mut s);
        statuses.push(("cl+te", status(&head)));
        assert!(closed(&mut s), "connection kept after CL+TE");

        let png = "Host: a\r\nContent-Type: image/png\r\n";
        let cases: [(&str, Vec<u8>); 8] = [
            ("upgrade", post("/upload", &format!("{png}Upgrade: foo\r\n"), NOT_PNG)),
            (
                "upgrade+connection",
                post("/upload", &format!("{png}Connection: upgrade\r\nUpgrade: websocket\r\n"), NOT_PNG),
            ),
            ("two content-types", post("/upload", "Host: a\r\nContent-Type: text/plain\r\nContent-Type: image/png\r\n", NOT_PNG)),
            ("two content-types, pass-through", post("/x", "Host: a\r\nContent-Type: text/plain\r\nContent-Type: image/png\r\n", NOT_PNG)),
            ("two hosts", post("/upload", "Host: a\r\nHost: b\r\nContent-Type: image/png\r\n", NOT_PNG)),
            ("no host", post("/upload", "Content-Type: image/png\r\n", NOT_PNG)),
            (
                "no host, 1.0",
                b"POST /upload HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: 9\r\n\r\nnot a png".to_vec(),
            ),
            ("encoded slash", post("/x/%2e%2e%2fupload", png, NOT_PNG)),
        ];
        for (name, raw) in cases {
            let mut s = connect(addr);
            s.write_all(&raw).unwrap();
            let (head, _) = read_response(&mut s);
            statuses.push((name, status(&head)));
            assert_eq!(status(&head), 400, "{name}: {head}");
            // likeguard's refusals are problem+json; what pingora refuses while parsing the
            // head (two Hosts) gets pingora's bare 400. Either way the connection ends.
            assert!(
                head.contains("application/problem+json") || head.contains("server: pingora"),
                "{name}: {head}"
            );
            assert!(closed(&mut s), "{name}: connection kept");
        }
        statuses
    })
    .await
    .unwrap();
    let received = up.received();
    assert!(
        received.iter().all(|r| !r.path.contains("upload")),
        "the origin parsed an uninspected upload: {:?} ({statuses:?})",
        received.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // The smuggled requests arrived as bodies, byte for byte.
    let bodies: Vec<_> = received
        .iter()
        .filter(|r| ["/x", "/y", "/z"].contains(&r.path.as_str()))
        .map(|r| r.body.len())
        .collect();
    assert_eq!(bodies, [inner_len; 3], "{statuses:?}");
}

/// Chunk syntax errors close the connection with a 400, and nothing reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunked_framing_closes_the_connection() {
    let (up, lg) = recording_setup().await;
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        let bodies = [&b"5 zz\r\nhello\r\n0\r\n\r\n"[..], b"zz\r\nhello\r\n0\r\n\r\n"];
        // Several times each: whether the connection is kept must not depend on timing.
        for body in bodies.iter().cycle().take(10) {
            let mut s = connect(addr);
            s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            s.write_all(body).unwrap();
            s.write_all(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            let text = String::from_utf8_lossy(&all);
            assert!(!text.contains("HTTP/1.1 200"), "{text}");
        }
    })
    .await
    .unwrap();
    assert!(
        up.received()
            .iter()
            .all(|r| r.path != "/upload" && r.path != "/after")
    );
}

/// The response side: an upstream's Content-Length beside Transfer-Encoding is dropped, an
/// unsolicited 101 is a 502 and never a tunnel, an HTTP/1.0 client never gets chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_responses_are_framed_for_the_client() {
    let up = Upstream::start().await;
    let both = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let switch = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nTUNNEL",
    );
    let chunked = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let lgs = [both, switch, chunked]
        .map(|raw| Likeguard::start(&recording_config(&up.url(), &format!("http://{raw}"))));
    let addrs = lgs.each_ref().map(|l| l.addr);
    tokio::task::spawn_blocking(move || {
        for path in ["/raw/a", "/raw-inspected/a"] {
            let get = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            let (head, body) = send(addrs[0], get.as_bytes());
            assert_eq!(status(&head), 200, "{path}: {head}");
            assert!(
                !(head.contains("content-length") && head.contains("transfer-encoding")),
                "{path}: {head}"
            );
            assert_eq!(body, b"hello", "{path}");

            let (head, body) = send(addrs[1], get.as_bytes());
            assert_eq!(status(&head), 502, "{path}: {head}");
            assert!(!String::from_utf8_lossy(&body).contains("TUNNEL"), "{path}");

            if path == "/raw/a" {
                // Asked for, on a pass-through route: pingora's tunnel (it passes WebSocket
                // upgrades only).
                let mut s = connect(addrs[1]);
                s.write_all(b"GET /raw/a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
                let (head, _) = read_response(&mut s);
                assert_eq!(status(&head), 101, "{head}");
                let mut tunnel = [0u8; 6];
                s.read_exact(&mut tunnel).unwrap();
                assert_eq!(&tunnel, b"TUNNEL");
            }

            let get10 = format!("GET {path} HTTP/1.0\r\nHost: a\r\n\r\n");
            let (head, body) = send(addrs[2], get10.as_bytes());
            assert_eq!(status(&head), 200, "{path}: {head}");
            assert!(!head.contains("transfer-encoding"), "{path}: {head}");
            assert_eq!(body, b"hello", "{path}");
        }
    })
    .await
    .unwrap();
}

/// `Expect: 100-continue` then a refusal: the client always gets a final status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_refusals_end_with_a_final_status() {
    let (up, lg) = recording_setup().await;
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        // Too large for the inspection limit: refused before the body is invited.
        let mut s = connect(addr);
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nContent-Length: 999999999999\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let (head, _) = read_response(&mut s);
        assert_eq!(status(&head), 413, "{head}");
        // Invited, sent, refused after inspection.
        let mut s = connect(addr);
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let (head, _) = read_response(&mut s);
        assert_eq!(status(&head), 100, "{head}");
        s.write_all(NOT_PNG).unwrap();
        let (head, _) = read_response(&mut s);
        assert_eq!(status(&head), 415, "{head}");
    })
    .await
    .unwrap();
    assert!(up.received().is_empty());
}

/// One keep-alive connection alternating inspected and pass-through requests: all answered in
/// order on that connection, and the origin sees the client's address in X-Forwarded-For.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_alternates_inspected_and_pass_through_requests() {
    let (up, lg) = recording_setup().await;
    let addr = lg.addr;
    let photo = media("images/faces/deepface/img1.jpg");
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        for i in 0..6 {
            let mut req = if i % 2 == 0 {
                format!(
                    "POST /upload/{i} HTTP/1.1\r\nHost: a\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
                    photo.len()
                )
                .into_bytes()
            } else {
                format!("GET /plain/{i} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
            };
            if i % 2 == 0 {
                req.extend_from_slice(&photo);
            }
            s.write_all(&req).unwrap();
            let (head, body) = read_response(&mut s);
            assert_eq!(status(&head), 200, "request {i}: {head}");
            assert_eq!(body, b"ok", "request {i}");
        }
    })
    .await
    .unwrap();
    let received = up.received();
    assert_eq!(received.len(), 6);
    for r in &received {
        let xff = r
            .headers
            .get("x-forwarded-for")
            .map(|v| v.to_str().unwrap());
        let want = if r.path.starts_with("/upload") {
            "203.0.113.9, 127.0.0.1"
        } else {
            "127.0.0.1"
        };
        assert_eq!(xff, Some(want), "{}", r.path);
    }
    assert_eq!(received[0].body.len(), photo_len());
}

fn photo_len() -> usize {
    media("images/faces/deepface/img1.jpg").len()
}

/// What the headers do not call media is still looked at: a registered photo is blocked under
/// any Content-Type, or none, on both sides; agreeing Content-Length lists keep the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_is_found_whatever_the_headers_say() {
    let (up, lg) = recording_setup().await;
    let photo = media("images/faces/deepface/img1.jpg");
    lg.register(photo.clone(), "block").await;
    up.serve(
        "/raw-inspected-not-here",
        Canned::ok("text/plain", "x", None),
    );
    let addr = lg.addr;
    let sent = photo.clone();
    tokio::task::spawn_blocking(move || {
        for headers in [
            "Host: a\r\nContent-Type: text/plain\r\n",
            "Host: a\r\nContent-Type: image /png\r\n",
            "Host: a\r\nContent-Type: text/plain, image/png\r\n",
            "Host: a\r\n",
            "Host: a\r\nContent-Type: image/png\r\nConnection: content-type\r\n",
        ] {
            let (head, _) = send(addr, &post("/upload", headers, &sent));
            assert_eq!(status(&head), 451, "{headers:?}: {head}");
        }
        let mut raw = format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: image/jpeg\r\nContent-Length: {n}, {n}\r\nConnection: close\r\n\r\n",
            n = sent.len()
        )
        .into_bytes();
        raw.extend_from_slice(&sent);
        let (head, _) = send(addr, &raw);
        assert_eq!(status(&head), 451, "CL list: {head}");
    })
    .await
    .unwrap();
    assert!(up.received().iter().all(|r| r.path != "/upload"));

    // Response side: the upstream calls the photo text.
    up.serve("/disguised", Canned::ok("text/plain", photo, Some(7)));
    let cfg = format!(
        "inference: {{enabled: false}}\nroutes:\n  - name: out\n    upstream: {}\n    inspect: {{direction: response}}\n",
        up.url()
    );
    let lg2 = Likeguard::start(&cfg);
    let photo_hash = lg2
        .register(media("images/faces/deepface/img1.jpg"), "block")
        .await;
    assert!(photo_hash.is_object());
    let addr = lg2.addr;
    tokio::task::spawn_blocking(move || {
        let (head, _) = send(
            addr,
            b"GET /disguised HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status(&head), 451, "{head}");
    })
    .await
    .unwrap();
}

/// A streamed body on an inspected route: the client gets exactly the upstream's response,
/// whatever the bodies contain (a body that looks like a response head stays a body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_exchanges_keep_response_bodies_as_bodies() {
    let (_up, lg) = recording_setup().await;
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        let evil = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: pwned=1\r\nContent-Length: 5\r\n\r\nEVIL!";
        let mut s = connect(addr);
        for _ in 0..3 {
            let mut raw = format!(
                "POST /upload/echo HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                evil.len()
            )
            .into_bytes();
            raw.extend_from_slice(evil);
            s.write_all(&raw).unwrap();
            let (head, body) = read_response(&mut s);
            assert_eq!(status(&head), 200, "{head}");
            assert!(!head.contains("pwned"), "{head}");
            assert_eq!(body, evil);
        }
        // An empty chunked body: answered at once.
        s.write_all(b"POST /upload/echo HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut s);
        assert_eq!(status(&head), 200, "{head}");
        assert!(body.is_empty());
    })
    .await
    .unwrap();
}
