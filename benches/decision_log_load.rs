//! Open-loop load for the decision log's floor (issue 19): POST the same body at a fixed rate
//! through the proxy and report verdict latency percentiles, measured from each request's
//! scheduled send time (no coordinated omission: a stall shows up as latency, not as fewer
//! requests). Driven by benches/decision_log/run.sh, which runs it against likeguard with the
//! log off, embedded and on Redis.
//!
//!   decision_log_load --bench --proxy 127.0.0.1:18303 --body face.jpg [--rate 500]
//!     [--seconds 20] [--connections 32] [--expect 451] [--path /upload/x]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

struct Args {
    proxy: SocketAddr,
    body: Bytes,
    rate: u64,
    seconds: u64,
    connections: usize,
    expect: u16,
    path: String,
}

fn args() -> Args {
    let mut a = Args {
        proxy: "127.0.0.1:18303".parse().unwrap(),
        body: Bytes::new(),
        rate: 500,
        seconds: 20,
        connections: 32,
        expect: 451,
        path: "/upload/x".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("a value after the flag");
        match k.as_str() {
            "--proxy" => a.proxy = v().parse().expect("--proxy host:port"),
            "--body" => a.body = std::fs::read(v()).expect("--body file").into(),
            "--rate" => a.rate = v().parse().expect("--rate n"),
            "--seconds" => a.seconds = v().parse().expect("--seconds n"),
            "--connections" => a.connections = v().parse().expect("--connections n"),
            "--expect" => a.expect = v().parse().expect("--expect status"),
            "--path" => a.path = v(),
            _ => {}
        }
    }
    a
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do.
        return;
    }
    let a = Arc::new(args());
    assert!(!a.body.is_empty(), "--body FILE is required");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let total = a.rate * a.seconds;
        let interval = Duration::from_nanos(1_000_000_000 / a.rate.max(1));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
        let unexpected = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(200);
        let mut workers = Vec::new();
        for w in 0..a.connections {
            let (a, latencies, unexpected) = (a.clone(), latencies.clone(), unexpected.clone());
            workers.push(tokio::spawn(async move {
                let mut sender = connect(a.proxy).await;
                let mut mine = Vec::new();
                let mut i = w as u64;
                while i < total {
                    let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(due.into()).await;
                    if sender.ready().await.is_err() {
                        sender = connect(a.proxy).await;
                    }
                    let req = Request::post(a.path.as_str())
                        .header("host", a.proxy.to_string())
                        .header("content-type", "image/jpeg")
                        .body(Full::new(a.body.clone()))
                        .unwrap();
                    let status = match sender.send_request(req).await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.into_body().collect().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    mine.push(due.elapsed());
                    if status != a.expect {
                        unexpected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    i += a.connections as u64;
                }
                latencies.lock().await.extend(mine);
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let took = start.elapsed();
        let mut l = latencies.lock().await.clone();
        l.sort();
        let pct = |p: f64| {
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1000.0
        };
        println!(
            "{{\"requests\": {}, \"rate\": {:.0}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"p999_ms\": {:.3}, \"max_ms\": {:.3}, \"unexpected\": {}}}",
            l.len(),
            l.len() as f64 / took.as_secs_f64(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            pct(1.0),
            unexpected.load(std::sync::atomic::Ordering::Relaxed)
        );
    });
}
