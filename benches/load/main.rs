//! Load, soak and fault traffic for likeguard (issue 18), 127.0.0.1 only, bounded in time.
//!
//! It serves its own upstream (hyper; `--upstream-mode` makes it slow, resetting or
//! malformed), opens `--connections` keep-alive connections to a running likeguard and sends a
//! mix on each (pass-through GETs, inspected uploads with and without a face, 1 MB bodies),
//! plus slow clients dripping bytes and clients that leave mid-body over raw sockets. Every
//! answer is checked: its status against what that request must get, and its body against the
//! request that was sent (the upstream echoes the path, so an answer meant for another client
//! is caught). The proxy's fds, threads, RSS and sockets are sampled before, during and after.
//!
//! Run it through `benches/load/run.sh` (it builds, configures, enrols and starts likeguard).
//! Exit status 1 when an unexpected answer or cross-talk was seen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[derive(Clone)]
struct Args {
    proxy: SocketAddr,
    upstream: SocketAddr,
    pid: u32,
    connections: usize,
    seconds: u64,
    slow: usize,
    leavers: usize,
    face: Bytes,
    noface: Bytes,
    mix: Mix,
    upstream_mode: UpstreamMode,
    /// Seconds of warm-up before RSS growth is measured (the soak: until the decision cache
    /// has filled to its bound).
    warmup: usize,
    /// Seconds after the start at which to run `--at-cmd` (fault injection).
    at: Option<(u64, String)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// Pass-through GETs, uploads with and without a face, 1 MB bodies.
    Mixed,
    /// Inspected uploads only (the soak).
    Uploads,
    /// Pass-through GETs only.
    Pass,
}

#[derive(Clone, Copy, PartialEq)]
enum UpstreamMode {
    Ok,
    /// Answers after 10 s.
    Slow,
    /// Accepts one connection every 50 ms from a backlog of 16.
    SlowAccept,
    /// Reads the request, then resets the connection.
    Reset,
    /// Answers with a head no HTTP parser accepts.
    Malformed,
}

fn parse_args() -> Args {
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue;
        }
        if let Some(name) = k.strip_prefix("--") {
            a.insert(name.to_string(), it.next().unwrap_or_default());
        }
    }
    let get = |k: &str, d: &str| a.get(k).cloned().unwrap_or_else(|| d.to_string());
    let read = |k: &str| -> Bytes {
        let p = get(k, "");
        Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("--{k} {p}: {e}")))
    };
    Args {
        proxy: get("proxy", "127.0.0.1:18203").parse().expect("--proxy"),
        upstream: get("upstream", "127.0.0.1:18201")
            .parse()
            .expect("--upstream"),
        pid: get("pid", "0").parse().expect("--pid"),
        connections: get("connections", "1000").parse().expect("--connections"),
        seconds: get("seconds", "60").parse().expect("--seconds"),
        warmup: get("warmup", "60").parse().expect("--warmup"),
        slow: get("slow", "20").parse().expect("--slow"),
        leavers: get("leavers", "20").parse().expect("--leavers"),
        face: read("face"),
        noface: read("noface"),
        mix: match get("mix", "mixed").as_str() {
            "uploads" => Mix::Uploads,
            "pass" => Mix::Pass,
            _ => Mix::Mixed,
        },
        upstream_mode: match get("upstream-mode", "ok").as_str() {
            "slow" => UpstreamMode::Slow,
            "slow-accept" => UpstreamMode::SlowAccept,
            "reset" => UpstreamMode::Reset,
            "malformed" => UpstreamMode::Malformed,
            _ => UpstreamMode::Ok,
        },
        at: a
            .get("at")
            .map(|s| (s.parse().expect("--at"), get("at-cmd", "true"))),
    }
}

/// What one kind of request must get back.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Pass,
    Upload,
    Face,
    Big,
    Slow,
    Leaver,
}

#[derive(Default)]
struct Tally {
    /// (kind, status) → count; status 0 = connection error.
    statuses: BTreeMap<(Kind, u16), u64>,
    unexpected: BTreeMap<(Kind, String), u64>,
    crosstalk: u64,
    pass_latency_us: Vec<u32>,
}

struct Shared {
    tally: Mutex<Tally>,
    requests: AtomicU64,
    open: AtomicUsize,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets without `--bench`.
        eprintln!("load: a load generator; run benches/load/run.sh");
        return;
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bad = rt.block_on(run(args));
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(i32::from(bad));
}

async fn run(args: Args) -> bool {
    let upstream = tokio::spawn(serve_upstream(args.upstream, args.upstream_mode));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = Sample::take(&args);
    println!("baseline: {base}");
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::default()),
        requests: AtomicU64::new(0),
        open: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        tasks.push(tokio::spawn(keepalive_client(
            args.clone(),
            c,
            deadline,
            shared.clone(),
        )));
    }
    for c in 0..args.slow {
        tasks.push(tokio::spawn(slow_client(
            args.clone(),
            c,
            deadline,
            shared.clone(),
        )));
    }
    for c in 0..args.leavers {
        tasks.push(tokio::spawn(leaving_client(
            args.clone(),
            c,
            deadline,
            shared.clone(),
        )));
    }
    let mut peak = base.clone();
    // RSS every second: the growth is the mean of the last minute over the mean of the minute
    // after warm-up (single samples swing with the bodies in flight).
    let mut rss: Vec<u64> = Vec::new();
    let mut fault_done = args.at.is_none();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = Sample::take(&args);
        peak = peak.max(&s);
        let t = started.elapsed().as_secs();
        rss.push(s.rss_kib);
        if t.is_multiple_of(10) {
            println!(
                "t={t:>4}s requests={} open-connections={} {s}",
                shared.requests.load(Ordering::Relaxed),
                shared.open.load(Ordering::Relaxed)
            );
        }
        if let Some((at, cmd)) = &args.at
            && !fault_done
            && t >= *at
        {
            fault_done = true;
            let out = std::process::Command::new("sh").arg("-c").arg(cmd).output();
            println!("t={t}s fault: {cmd} → {:?}", out.map(|o| o.status));
        }
    }
    let window = |from: usize, to: usize| -> Option<u64> {
        let w = rss.get(from..to.min(rss.len()))?;
        (!w.is_empty()).then(|| w.iter().sum::<u64>() / w.len() as u64)
    };
    // Warm-up (`--warmup`, default a minute or a fifth of a short run); then the next minute
    // vs the last.
    let warm = args.warmup.min(rss.len() / 5 * 4);
    let span = 60.min(rss.len().saturating_sub(warm) / 2);
    let rss_after_warmup = window(warm, warm + span);
    let end_rss = window(rss.len().saturating_sub(span), rss.len()).unwrap_or(0);
    // Clients stop at the deadline; a slow one may still be dripping for a moment.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    upstream.abort();
    let after5 = settle(&args, &base, Duration::from_secs(5)).await;
    let after30 = settle(&args, &base, Duration::from_secs(30)).await;
    report(
        &args,
        &shared,
        elapsed,
        &base,
        &peak,
        &after5,
        &after30,
        rss_after_warmup,
        end_rss,
    )
    .await
}

/// Wait until the proxy's counts are back at the baseline or `within` has passed.
async fn settle(args: &Args, base: &Sample, within: Duration) -> Sample {
    let until = Instant::now() + within;
    loop {
        let s = Sample::take(args);
        if s.fds <= base.fds && s.threads <= base.threads && s.close_wait == 0
            || Instant::now() >= until
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn report(
    args: &Args,
    shared: &Shared,
    elapsed: f64,
    base: &Sample,
    peak: &Sample,
    after5: &Sample,
    after30: &Sample,
    rss_after_warmup: Option<u64>,
    end_rss: u64,
) -> bool {
    let mut t = shared.tally.lock().await;
    let total: u64 = t.statuses.values().sum();
    println!();
    println!(
        "{} keep-alive connections + {} slow + {} leaving, {:.0} s: {total} answers ({:.0}/s)",
        args.connections,
        args.slow,
        args.leavers,
        elapsed,
        total as f64 / elapsed
    );
    println!("| kind | status | count |\n|---|---|---|");
    for ((kind, status), n) in &t.statuses {
        let status = if *status == 0 {
            "conn error".to_string()
        } else {
            status.to_string()
        };
        println!("| {kind:?} | {status} | {n} |");
    }
    let unexpected: u64 = t.unexpected.values().sum();
    let unexpected_5xx: u64 = t
        .unexpected
        .iter()
        .filter(|((_, what), _)| what.starts_with('5'))
        .map(|(_, n)| n)
        .sum();
    for ((kind, what), n) in &t.unexpected {
        println!("unexpected: {kind:?} {what} × {n}");
    }
    t.pass_latency_us.sort_unstable();
    let pct = |p: f64| -> String {
        let v = &t.pass_latency_us;
        if v.is_empty() {
            return "-".into();
        }
        let i = ((v.len() as f64 * p) as usize).min(v.len() - 1);
        format!("{:.2} ms", f64::from(v[i]) / 1000.0)
    };
    println!(
        "pass-through latency: p50 {} p90 {} p99 {} max {} ({} requests)",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        t.pass_latency_us.len()
    );
    println!(
        "unexpected answers: {unexpected} (5xx: {unexpected_5xx}); cross-talk: {}",
        t.crosstalk
    );
    println!("proxy baseline: {base}");
    println!("proxy peak:     {peak}");
    println!("proxy after 5s: {after5}");
    println!("proxy after 30s:{after30}");
    if let Some(w) = rss_after_warmup {
        let growth = (end_rss as f64 - w as f64) / w as f64 * 100.0;
        println!(
            "RSS (mean over a minute) after warm-up {} MiB, over the last minute {} MiB: growth {growth:.1}%",
            w / 1024,
            end_rss / 1024
        );
    }
    unexpected > 0 || t.crosstalk > 0
}

// ---------- the proxy's resources, from /proc ----------

#[derive(Clone, Default)]
struct Sample {
    fds: usize,
    threads: usize,
    rss_kib: u64,
    /// Established connections from the proxy to the upstream port.
    upstream_conns: usize,
    /// Client sockets on the proxy's port that the client closed and the proxy has not.
    close_wait: usize,
}

impl Sample {
    fn take(args: &Args) -> Self {
        let pid = args.pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        let (mut upstream_conns, mut close_wait) = (0, 0);
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() < 4 {
                    continue;
                }
                let port =
                    |c: &str| u16::from_str_radix(c.rsplit(':').next().unwrap_or(""), 16).ok();
                let (local, remote, state) = (port(cols[1]), port(cols[2]), cols[3]);
                // 01 = ESTABLISHED, 08 = CLOSE_WAIT
                if state == "01" && remote == Some(args.upstream.port()) {
                    upstream_conns += 1;
                }
                if state == "08" && local == Some(args.proxy.port()) {
                    close_wait += 1;
                }
            }
        }
        Self {
            fds,
            threads: field("Threads:") as usize,
            rss_kib: field("VmRSS:"),
            upstream_conns,
            close_wait,
        }
    }

    fn max(&self, o: &Self) -> Self {
        Self {
            fds: self.fds.max(o.fds),
            threads: self.threads.max(o.threads),
            rss_kib: self.rss_kib.max(o.rss_kib),
            upstream_conns: self.upstream_conns.max(o.upstream_conns),
            close_wait: self.close_wait.max(o.close_wait),
        }
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fds={} threads={} rss={} MiB upstream-conns={} close-wait={}",
            self.fds,
            self.threads,
            self.rss_kib / 1024,
            self.upstream_conns,
            self.close_wait
        )
    }
}

// ---------- clients ----------

async fn record(
    shared: &Shared,
    kind: Kind,
    status: u16,
    expected: &[u16],
    detail: Option<String>,
) {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let mut t = shared.tally.lock().await;
    *t.statuses.entry((kind, status)).or_default() += 1;
    if !expected.contains(&status) {
        let what = detail.unwrap_or_else(|| status.to_string());
        *t.unexpected.entry((kind, what)).or_default() += 1;
    }
}

/// The statuses each kind may get. 503 with `Retry-After` is the documented answer when an
/// upstream or inspection is saturated; it is counted apart (see `shed`), never as a pass.
fn expected(kind: Kind, mode: UpstreamMode) -> &'static [u16] {
    match (mode, kind) {
        (UpstreamMode::Ok, Kind::Pass | Kind::Upload | Kind::Big) => &[200],
        (UpstreamMode::Ok, Kind::Face) => &[451],
        // Accepted late: answered, or timed out connecting.
        (UpstreamMode::SlowAccept, Kind::Pass | Kind::Upload | Kind::Big) => &[200, 502, 503, 504],
        (UpstreamMode::SlowAccept, Kind::Slow) => &[200, 408, 502, 503, 504],
        // A bad upstream: the proxy's clean answers (a blocked face never reaches it).
        (_, Kind::Face) => &[451],
        (_, Kind::Pass | Kind::Upload | Kind::Big) => &[502, 503, 504],
        (_, Kind::Slow) => &[200, 408, 502, 503, 504],
        (_, Kind::Leaver) => &[0],
    }
}

async fn keepalive_client(args: Args, c: usize, deadline: Instant, shared: Arc<Shared>) {
    let big = Bytes::from(vec![b'x'; 1024 * 1024]);
    let mut i = 0u64;
    let mut sender = None;
    // Spread the connections' start over the first second.
    tokio::time::sleep(Duration::from_micros(
        (c as u64 * 1_000_000) / args.connections.max(1) as u64,
    ))
    .await;
    while Instant::now() < deadline {
        if sender.is_none() {
            sender = connect(&args, &shared).await;
            if sender.is_none() {
                record(&shared, Kind::Pass, 0, &[], Some("connect failed".into())).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        // A connection the proxy closed after its last answer is replaced, not counted.
        if sender.as_mut().expect("connected").ready().await.is_err() {
            sender = None;
            continue;
        }
        i += 1;
        let kind = pick(args.mix, c as u64 + i);
        let id = format!("{c}-{i}");
        let (req, path) = build(kind, &id, &args, &big);
        let s = sender.as_mut().expect("connected");
        let sent = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(90), s.send_request(req)).await;
        let res = match res {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                record(
                    &shared,
                    kind,
                    0,
                    &[],
                    Some(format!("conn error: {}", short(&e))),
                )
                .await;
                sender = None;
                continue;
            }
            Err(_) => {
                record(&shared, kind, 0, &[], Some("no answer in 90 s".into())).await;
                sender = None;
                continue;
            }
        };
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        let keep = !res
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = match res.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                record(
                    &shared,
                    kind,
                    0,
                    &[],
                    Some(format!("body error: {}", short(&e))),
                )
                .await;
                sender = None;
                continue;
            }
        };
        let took = sent.elapsed();
        if status == 200 && !body.starts_with(path.as_bytes()) {
            shared.tally.lock().await.crosstalk += 1;
        }
        let mut allowed = expected(kind, args.upstream_mode).to_vec();
        if status == 503 && retry_after {
            allowed.push(503);
        }
        if kind == Kind::Pass && status == 200 {
            shared
                .tally
                .lock()
                .await
                .pass_latency_us
                .push(took.as_micros().min(u32::MAX as u128) as u32);
        }
        // Problem bodies name the kind of failure; other bodies (an echo) are not grouped by.
        let detail = (!allowed.contains(&status)).then(|| match body.starts_with(b"{") {
            true => format!(
                "{status} {}",
                String::from_utf8_lossy(&body[..body.len().min(160)])
            ),
            false => status.to_string(),
        });
        record(&shared, kind, status, &allowed, detail).await;
        if !keep {
            sender = None;
        }
    }
}

fn short(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    s.chars().take(80).collect()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(args: &Args, shared: &Arc<Shared>) -> Option<Sender> {
    let stream = TcpStream::connect(args.proxy).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    let shared = shared.clone();
    shared.open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _ = conn.await;
        shared.open.fetch_sub(1, Ordering::Relaxed);
    });
    Some(sender)
}

/// The mix: out of 20 requests, 12 pass-through GETs, 4 uploads without a face, 1 with an
/// enrolled face, 3 bodies of 1 MB.
fn pick(mix: Mix, n: u64) -> Kind {
    match mix {
        Mix::Pass => Kind::Pass,
        Mix::Uploads => {
            if n.is_multiple_of(4) {
                Kind::Face
            } else {
                Kind::Upload
            }
        }
        Mix::Mixed => match n % 20 {
            0..=11 => Kind::Pass,
            12..=15 => Kind::Upload,
            16 => Kind::Face,
            _ => Kind::Big,
        },
    }
}

fn build(kind: Kind, id: &str, args: &Args, big: &Bytes) -> (Request<Full<Bytes>>, String) {
    let host = args.proxy.to_string();
    let (method, path, ctype, body) = match kind {
        Kind::Pass => ("GET", format!("/pass/{id}"), None, Bytes::new()),
        Kind::Upload => (
            "POST",
            format!("/upload/{id}"),
            Some("image/jpeg"),
            args.noface.clone(),
        ),
        Kind::Face => (
            "POST",
            format!("/upload/{id}"),
            Some("image/jpeg"),
            args.face.clone(),
        ),
        _ => (
            "POST",
            format!("/upload/{id}"),
            Some("application/octet-stream"),
            big.clone(),
        ),
    };
    let mut b = Request::builder()
        .method(method)
        .uri(&path)
        .header("host", host);
    if let Some(ct) = ctype {
        b = b.header("content-type", ct);
    }
    (b.body(Full::new(body)).expect("request"), path)
}

/// Sends a 4 KB non-media body 64 bytes every 250 ms (16 s per request), then reads the answer.
async fn slow_client(args: Args, c: usize, deadline: Instant, shared: Arc<Shared>) {
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let Ok(mut s) = TcpStream::connect(args.proxy).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let head = format!(
            "POST /upload/slow-{c}-{i} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\n\r\n",
            args.proxy
        );
        if s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut ok = true;
        for _ in 0..64 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if s.write_all(&[b'z'; 64]).await.is_err() {
                ok = false;
                break;
            }
        }
        let (status, retry_after) = if ok {
            read_status(&mut s).await
        } else {
            (0, false)
        };
        let mut allowed = match args.upstream_mode {
            UpstreamMode::Ok => vec![200, 408],
            m => expected(Kind::Slow, m).to_vec(),
        };
        if status == 503 && retry_after {
            allowed.push(503);
        }
        record(&shared, Kind::Slow, status, &allowed, None).await;
    }
}

/// Announces 1 MB, sends 100 KB and leaves.
async fn leaving_client(args: Args, c: usize, deadline: Instant, shared: Arc<Shared>) {
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let Ok(mut s) = TcpStream::connect(args.proxy).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let head = format!(
            "POST /upload/leave-{c}-{i} HTTP/1.1\r\nHost: {}\r\nContent-Type: image/jpeg\r\nContent-Length: 1048576\r\n\r\n",
            args.proxy
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s
            .write_all(&args.face[..args.face.len().min(100 * 1024)])
            .await;
        drop(s);
        record(&shared, Kind::Leaver, 0, &[0], None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of the answer, and whether it carries `Retry-After`.
async fn read_status(s: &mut TcpStream) -> (u16, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (status, head.contains("\r\nretry-after:"))
}

// ---------- the upstream ----------

async fn serve_upstream(addr: SocketAddr, mode: UpstreamMode) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("upstream address in use");
    let backlog = if mode == UpstreamMode::SlowAccept {
        16
    } else {
        4096
    };
    let listener: TcpListener = socket.listen(backlog).expect("listen");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if mode == UpstreamMode::SlowAccept {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::spawn(async move {
            match mode {
                UpstreamMode::Reset => reset_after_request(stream).await,
                UpstreamMode::Malformed => malformed(stream).await,
                _ => {
                    let svc = hyper::service::service_fn(move |req| echo(req, mode));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                }
            }
        });
    }
}

/// Answers with the path and the number of body bytes received.
async fn echo(
    req: Request<Incoming>,
    mode: UpstreamMode,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let n = req.into_body().collect().await?.to_bytes().len();
    if mode == UpstreamMode::Slow {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    Ok(Response::new(Full::new(Bytes::from(format!("{path} {n}")))))
}

async fn reset_after_request(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
    let _ = stream.set_zero_linger();
}

async fn malformed(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12, 13\r\nX\0: y\r\n\r\nhello")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}
