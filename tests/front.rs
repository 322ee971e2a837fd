//! The fast front (likeguard's own HTTP/1.1 listener) at the byte level: the real binary, real
//! upstreams (axum, and a raw TCP one for what axum would not send), raw client sockets.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::*;

fn config(upstream: &str, raw: &str) -> String {
    format!(
        r#"
routes:
  - name: raw
    match: {{path_prefix: /raw}}
    upstream: {raw}
    inspect: {{direction: none}}
  - name: plain
    match: {{path_prefix: /plain}}
    upstream: {upstream}
    inspect: {{direction: none}}
  - name: early
    match: {{path_prefix: /early}}
    upstream: {raw}
    inspect: {{direction: request}}
  - name: inspected
    upstream: {upstream}
    inspect: {{direction: both}}
timeouts:
  client_read: 1s
"#
    )
}

/// Connect with a read timeout, so a wrong answer fails the test instead of hanging it.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read one response: head, then a body framed by Content-Length or chunked (raw bytes kept).
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    read_response_to(s, false)
}

/// `read_response`, for a HEAD request when `head` (no body whatever the length says).
fn read_response_to(s: &mut TcpStream, head_request: bool) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-head: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if head_request {
        return (head, body);
    }
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        s.read_exact(&mut body).unwrap();
    } else if lower.contains("transfer-encoding: chunked") {
        while !body.ends_with(b"0\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1);
            body.push(byte[0]);
        }
    } else if !head.starts_with("HTTP/1.1 204") && !head.starts_with("HTTP/1.1 304") {
        s.read_to_end(&mut body).unwrap();
    }
    (head, body)
}

/// A raw upstream: answers each accepted connection's requests with `answer(request_head)`,
/// keeping the connection for `requests_per_conn` requests.
fn raw_upstream(
    requests_per_conn: usize,
    answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            for _ in 0..requests_per_conn {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if head.is_empty() {
                    break;
                }
                let _ = s.write_all(&answer(&String::from_utf8_lossy(&head)));
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_chunked_and_head_requests_keep_their_order_and_framing() {
    let up = Upstream::start().await;
    let raw = raw_upstream(1, |_| b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
    let lg = Likeguard::start(&config(&up.url(), &format!("http://{raw}")));
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        // Three requests in one write: a chunked POST with a trailer, a HEAD, a GET.
        s.write_all(
            b"POST /plain/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n\
              HEAD /plain/h HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /plain/g HTTP/1.1\r\nHost: x\r\nConnection: x-drop\r\nX-Drop: 1\r\n\r\n",
        )
        .unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"hello, world");
        let (head, _) = read_response_to(&mut s, true);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-length: 2"), "{head}");
        let (head, body) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
        // An upstream answer without any length ends at its close; the client is told so.
        s.write_all(b"GET /raw/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut s);
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
        assert!(body.is_empty());
    })
    .await
    .unwrap();
    let got = up.received_on("/plain/echo");
    assert_eq!(&got[0].body[..], b"hello, world");
    let g = &up.received_on("/plain/g")[0];
    assert!(
        g.headers.get("x-drop").is_none(),
        "named in Connection: hop-by-hop"
    );
    assert_eq!(up.received_on("/plain/h")[0].method, "HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_oversized_heads_are_refused_before_the_upstream() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &up.url()));
    let addr = lg.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for raw in [
            "POST /plain/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            "POST /plain/b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd".to_string(),
            "POST /plain/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_string(),
            format!("GET /plain/d HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000)),
        ] {
            let mut s = connect(addr);
            s.write_all(raw.as_bytes()).unwrap();
            out.push(read_response(&mut s));
        }
        out
    })
    .await
    .unwrap();
    for ((head, body), status) in answers.iter().zip([400, 400, 400, 431]) {
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["status"], status);
    }
    // The malformed chunked body was refused after its head went up; the others never did.
    for path in ["/plain/a", "/plain/b", "/plain/d"] {
        assert!(
            up.received_on(path).is_empty(),
            "{path} reached the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_costs_no_request() {
    // Each upstream connection serves one request and closes: every pooled connection is dead
    // by the time it is taken again.
    let raw = raw_upstream(1, |head| {
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        )
        .into_bytes()
    });
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &format!("http://{raw}")));
    let addr = lg.addr;
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        for i in 0..20 {
            let path = format!("/raw/{i}");
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let (head, body) = read_response(&mut s);
            assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
            assert_eq!(body, path.as_bytes());
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingora_takes_over_inspected_routes_and_expect_on_the_same_connection() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &up.url()));
    let addr = lg.addr;
    let png = media("images/faces/misc/skimage_astronaut.png");
    // Registered to be tagged: the tag on the upstream's copy shows pingora inspected it.
    lg.register(png.clone(), "tag").await;
    let sent = png.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /plain/1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_response(&mut s).0.starts_with("HTTP/1.1 200"));
        // Inspected: handed to pingora with the connection, which then serves what follows.
        write!(s, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", sent.len()).unwrap();
        s.write_all(&sent).unwrap();
        let (head, _) = read_response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s.write_all(b"GET /plain/2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_response(&mut s).0.starts_with("HTTP/1.1 200"));
        // Expect: 100-continue on a plain route, new connection: answered by pingora.
        let mut s = connect(addr);
        s.write_all(b"PUT /plain/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
        let started = Instant::now();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        if &first == b"HTTP/1.1 100" {
            let mut rest = [0u8; 1];
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut rest).unwrap();
                line.push(rest[0]);
            }
            s.write_all(b"hello").unwrap();
            let (head, body) = read_response(&mut s);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(body, b"hello");
        } else {
            panic!("expected 100 Continue, got {:?}", String::from_utf8_lossy(&first));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await
    .unwrap();
    let inspected = &up.received_on("/up")[0];
    assert_eq!(inspected.body.len(), png.len());
    assert_eq!(inspected.headers["likeguard-decision"], "tag");
    assert_eq!(up.received_on("/plain/2").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_is_counted_in_metrics() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &up.url()));
    let c = client();
    for _ in 0..3 {
        let r = c
            .post(lg.url("/plain/echo"))
            .body("12345")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], b"12345");
    }
    let text = lg.metrics().await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("likeguard_requests_total")
                && l.contains("route=\"plain\"")
                && l.contains("path=\"passthrough\"")
                && l.contains("status=\"2xx\"")
        })
        .unwrap_or_else(|| panic!("no plain 2xx line in:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_pass_through_exchange_in_flight_finish() {
    // An upstream that takes 1 s to answer.
    let raw = raw_upstream(1, |_| {
        std::thread::sleep(Duration::from_secs(1));
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec()
    });
    let up = Upstream::start().await;
    let mut lg = Likeguard::start(&config(&up.url(), &format!("http://{raw}")));
    let addr = lg.addr;
    let (answer, exit) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let mut idle = connect(addr);
        s.write_all(b"GET /raw/slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        idle.write_all(b"GET /plain/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(read_response(&mut idle).0.starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(200));
        let exit = lg.terminate(Duration::from_secs(10));
        // The idle keep-alive connection was closed, not left hanging.
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
        // New connections are refused once the front stopped listening.
        assert!(TcpStream::connect(addr).is_err());
        (read_response(&mut s), exit)
    })
    .await
    .unwrap();
    let (head, body) = answer;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, b"slow");
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_from_pingora_reaches_a_client_still_uploading() {
    // An upstream that answers as soon as it has the head and then discards the body (as nginx
    // does for `return 200`): pingora answers the client and closes mid-upload.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let early = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 16384];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &format!("http://{early}")));
    let addr = lg.addr;
    let answers = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|_| {
                let mut s = connect(addr);
                let body = vec![b'a'; 4 << 20];
                write!(s, "POST /early/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
                // The client reads only once it has sent everything (as curl does).
                let _ = s.write_all(&body);
                read_response(&mut s)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (head, body) in answers {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dripped_byte_by_byte_times_out_with_408() {
    let up = Upstream::start().await;
    let lg = Likeguard::start(&config(&up.url(), &up.url()));
    let addr = lg.addr;
    let (head, elapsed) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let started = Instant::now();
        s.write_all(b"GET /plain/drip HTTP/1.1\r\n").unwrap();
        // One header byte every 200 ms: each read is quick, the whole head is not.
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        (read_response(&mut s).0, started.elapsed())
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(up.received_on("/plain/drip").is_empty());
}
