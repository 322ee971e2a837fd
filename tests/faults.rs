//! Faults, one at a time but with traffic flowing (issue 18; the load-scale versions are in
//! benches/load/): an upstream that never answers (bounded connections, 503 + Retry-After,
//! clients that leave released at once), SIGTERM with requests in flight, a rule file
//! replaced by a broken one, a full disk under the state directory, and Redis killed and
//! restarted with its data.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use support::{Likeguard, RedisServer, TOKEN, Upstream, client, media, readiness};

const X1: &str = "images/faces/deepface/img1.jpg";
const X2: &str = "images/faces/deepface/img2.jpg";

/// An upstream that accepts connections and reads requests, answering after `delay` (or
/// never). Counts the connections it has accepted and how many are open now.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl RawUpstream {
    fn start(delay: Option<Duration>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, o) = (accepted.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") => {
                                let Some(d) = delay else { continue };
                                std::thread::sleep(d);
                                let _ =
                                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                            }
                            Ok(_) => {}
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            open,
        }
    }
}

/// Client sockets on `port` in CLOSE-WAIT (the client closed, the proxy has not).
fn close_wait(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 3
                && c[3] == "08"
                && u16::from_str_radix(c[1].rsplit(':').next().unwrap_or(""), 16).ok() == Some(port)
        })
        .count()
}

fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

fn read_head(s: &mut TcpStream, within: Duration) -> String {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn upstream_connections_are_bounded_and_clients_that_leave_are_released_at_once() {
    let up = RawUpstream::start(None); // accepts, reads, never answers
    let lg = Likeguard::start(&format!(
        "connections: {{upstream_max: 8, upstream_queue: 300ms, retry_after: 2s}}\ntimeouts: {{upstream_response: 30s}}\nroutes:\n  - name: pass\n    upstream: http://{}\n    inspect: {{direction: none}}\n",
        up.addr
    ));
    // 8 take the slots; the rest wait 300 ms and get 503 + Retry-After.
    let mut waiting: Vec<TcpStream> = (0..8)
        .map(|i| raw_get(lg.addr, &format!("/w/{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused: Vec<String> = (0..24)
        .map(|i| raw_get(lg.addr, &format!("/r/{i}")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|mut s| read_head(&mut s, Duration::from_secs(5)))
        .collect();
    for head in &refused {
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 2"),
            "{head}"
        );
        assert!(head.contains("application/problem+json"), "{head}");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        8,
        "connections beyond the bound were opened"
    );

    // The 8 clients leave: their sockets and upstream connections are released at once,
    // not when the upstream times out (30 s here).
    for s in waiting.drain(..) {
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while (close_wait(lg.addr.port()) > 0 || up.open.load(Ordering::SeqCst) > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        close_wait(lg.addr.port()),
        0,
        "client sockets left in CLOSE-WAIT"
    );
    assert_eq!(
        up.open.load(Ordering::SeqCst),
        0,
        "upstream connections kept open"
    );
    // And the slots are free again.
    let s = raw_get(lg.addr, "/again");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 9);
    s.shutdown(std::net::Shutdown::Both).unwrap();
}

#[test]
fn sigterm_lets_requests_in_flight_finish_refuses_new_ones_and_exits_in_time() {
    let up = RawUpstream::start(Some(Duration::from_millis(1500)));
    let mut lg = Likeguard::start(&format!(
        "timeouts: {{shutdown_grace: 5s}}\nroutes:\n  - name: pass\n    upstream: http://{}\n    inspect: {{direction: none}}\n",
        up.addr
    ));
    let in_flight: Vec<_> = (0..10)
        .map(|i| {
            let addr = lg.addr;
            std::thread::spawn(move || {
                let mut s = raw_get(addr, &format!("/slow/{i}"));
                read_head(&mut s, Duration::from_secs(10))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let lg_addr = lg.addr;
    let exited = std::thread::scope(|scope| {
        let t = scope.spawn(|| lg.terminate(Duration::from_secs(8)));
        // New connections are refused once the listener has closed.
        std::thread::sleep(Duration::from_millis(500));
        let refused = TcpStream::connect_timeout(&lg_addr, Duration::from_secs(1)).is_err();
        (t.join().unwrap(), refused)
    });
    for t in in_flight {
        let head = t.join().unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "an in-flight request was cut: {head:?}"
        );
    }
    let (status, refused) = exited;
    assert!(refused, "a new connection was accepted after SIGTERM");
    let status = status.expect("likeguard did not exit within the grace period");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
}

async fn enrol(lg: &Likeguard, name: &str, photo: &str) -> reqwest::Response {
    let form = Form::new().text("name", name.to_string()).part(
        "photo",
        Part::bytes(media(photo))
            .file_name("x.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    client()
        .post(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn upload(lg: &Likeguard, n: usize) -> u16 {
    client()
        .post(lg.url(&format!("/up/{n}")))
        .header("content-type", "image/jpeg")
        .body(media(X2))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_under_traffic_leaves_the_old_rules_in_force() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, likeguard::policy::store::DEFAULT_POLICY).unwrap();
    let lg = Likeguard::start(&format!(
        "policy: {{file: '{}'}}\nroutes:\n  - name: up\n    upstream: {}\n    inspect: {{direction: request, time_budget: 20s}}\n",
        policy.display(),
        up.url()
    ));
    assert_eq!(enrol(&lg, "Person X", X1).await.status(), 201);
    let lg = Arc::new(lg);
    let traffic = {
        let lg = lg.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..30 {
                statuses.push(upload(&lg, n).await);
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Written in place (not renamed), as an editor would: the watcher may see it half-written.
    std::fs::write(
        &policy,
        "name: broken\nrules:\n  - id: x\n    when: 'this is not CEL ((('\n",
    )
    .unwrap();
    let statuses = traffic.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 451), "{statuses:?}");
    let m = lg.metrics().await;
    assert!(
        metric(&m, "likeguard_policy_reloads_total{outcome=\"refused\"}") >= 1.0,
        "{m}"
    );
    // Fixed: the next reload takes.
    std::fs::write(
        &policy,
        likeguard::policy::store::DEFAULT_POLICY.replace("\n", "\n\n"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = lg.metrics().await;
    assert!(
        metric(&m, "likeguard_policy_reloads_total{outcome=\"ok\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(upload(&lg, 99).await, 451);
}

/// A tmpfs of `size` at a fresh directory (root only: the machines this runs on are root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (this test simulates a full disk)"
        );
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_enrolment_clearly_and_keeps_what_was_stored() {
    let disk = SmallDisk::mount("48k");
    let up = Upstream::start().await;
    let state = disk.dir.path().join("state");
    // The decision log's empty file alone (tables and indexes) would not fit the 48 KB disk:
    // it lives elsewhere, so the disk fills with identities as this test means it to.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = format!(
        "decision_log: {{file: '{}'}}\nroutes:\n  - name: up\n    upstream: {}\n    inspect: {{direction: request, time_budget: 20s}}\n",
        elsewhere.path().join("decisions.sqlite").display(),
        up.url()
    );
    // likeguard's state_dir is on the small disk.
    let lg = Likeguard::start_with_state(&config, &state);
    let mut enrolled = 0;
    let mut refusal = None;
    for i in 0..40 {
        let r = enrol(&lg, &format!("Person {i}"), X1).await;
        match r.status().as_u16() {
            201 => enrolled += 1,
            status => {
                let ct = r.headers()["content-type"].to_str().unwrap().to_string();
                refusal = Some((status, ct, r.text().await.unwrap()));
                break;
            }
        }
    }
    let (status, ct, body) = refusal.expect("the disk never filled");
    assert!(enrolled >= 1, "nothing fitted on the disk");
    assert_eq!(status, 503, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert!(body.contains("No space left on device"), "{body}");
    // Still enforcing, and what was stored is intact and whole on disk.
    assert_eq!(upload(&lg, 1).await, 451);
    drop(lg);
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial temp files left: {leftovers:?}"
    );
    let lg = Likeguard::start_with_state(&config, &state);
    let list: serde_json::Value = client()
        .get(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["identities"].as_array().unwrap().len(), enrolled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_traffic_loses_no_enrolment() {
    let port = support::free_port();
    let data = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(port, Some(data.path()));
    let up = Upstream::start().await;
    let lg = Arc::new(Likeguard::start(&format!(
        "store: {{kind: redis, url: 'redis://127.0.0.1:{port}'}}\nroutes:\n  - name: up\n    upstream: {}\n    inspect: {{direction: request, time_budget: 20s}}\n",
        up.url()
    )));
    assert_eq!(enrol(&lg, "Person X", X1).await.status(), 201);
    let traffic = {
        let lg = lg.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..40 {
                statuses.push(upload(&lg, n).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(redis); // SIGKILL
    let deadline = Instant::now() + Duration::from_secs(5);
    while readiness(&lg).await != "degraded" {
        assert!(Instant::now() < deadline, "readiness never said degraded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Changes are refused while it is down (the client is told; nothing half-written).
    let r = enrol(&lg, "Person Y", "images/faces/deepface/img20.jpg").await;
    assert_eq!(r.status(), 503);
    let _redis = RedisServer::start(port, Some(data.path()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while readiness(&lg).await != "ready" {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = traffic.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 451),
        "enforcement lapsed: {statuses:?}"
    );
    // The enrolment made before the outage is still there after the resync.
    assert_eq!(upload(&lg, 100).await, 451);
    let list: serde_json::Value = client()
        .get(lg.admin_url("/admin/v1/identities"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["identities"].as_array().unwrap().len(), 1);
    assert_eq!(
        enrol(&lg, "Person Y", "images/faces/deepface/img20.jpg")
            .await
            .status(),
        201
    );
}

/// The client watch reads one byte while a request waits for its answer; a pipelined next
/// request arriving meanwhile must still be served whole, in order (RFC 9112 §9.3.2).
#[test]
fn a_request_pipelined_while_the_first_waits_is_served_whole() {
    let up = RawUpstream::start(Some(Duration::from_millis(400)));
    let lg = Likeguard::start(&format!(
        "routes:\n  - name: pass\n    upstream: http://{}\n    inspect: {{direction: none}}\n",
        up.addr
    ));
    let mut s = TcpStream::connect(lg.addr).unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    s.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < 2
        && Instant::now() < deadline
    {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}
