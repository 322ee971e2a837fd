//! The fast front: likeguard's own HTTP/1.1 listener on `listen`.
//!
//! Requests on routes that inspect nothing are streamed to their upstream here, in one task per
//! client connection on a single-threaded runtime per worker thread (like nginx's workers: no
//! channels, no locks, idle upstream connections pooled per thread). Everything else — inspected
//! routes, upgrades, `Expect: 100-continue`, `https://` upstreams, HTTP/2 prior knowledge,
//! absolute-form targets — is handed to pingora with the rest of the connection, over a private
//! Unix socket, untouched. Why: pingora's own pass-through cost ~1.7× nginx's CPU per request
//! (docs/decisions/0006-fast-front.md).

mod body;
mod conn;
mod head;
mod pool;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use super::Router;
use crate::actions::{Problem, ProblemKind};
use crate::config::{Config, Timeouts};
use crate::telemetry::{Metrics, status_class};

/// Everything the front's threads share (read-only).
pub struct Front {
    router: Router,
    /// Per route: streamed here (true) or handed to pingora.
    streamable: Vec<bool>,
    /// Per route: index into `upstreams` (routes to one upstream share its idle connections).
    upstream_of: Vec<usize>,
    upstreams: Vec<String>,
    timeouts: Timeouts,
    /// pingora's private listener.
    handover: PathBuf,
    stats: Stats,
    metrics: Arc<Metrics>,
    /// Shutdown: set once, then listeners close and connections end after their exchange.
    stopping: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
    /// Client connections the front is serving (handed-over ones are pingora's).
    active: AtomicUsize,
}

/// Counters resolved once, so a request touches no label maps.
struct Stats {
    /// Per route, per status class (1xx..5xx).
    requests: Vec<[IntCounter; 5]>,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
}

impl Front {
    pub fn new(config: &Config, metrics: Arc<Metrics>, handover: PathBuf) -> Self {
        let router = Router::new(&config.routes);
        let mut upstreams: Vec<String> = Vec::new();
        let mut upstream_of = Vec::new();
        let mut streamable = Vec::new();
        let mut requests = Vec::new();
        for route in router.routes() {
            let authority = &route.upstream.authority;
            let i = upstreams
                .iter()
                .position(|u| u == authority)
                .unwrap_or_else(|| {
                    upstreams.push(authority.clone());
                    upstreams.len() - 1
                });
            upstream_of.push(i);
            streamable.push(!route.inspect.direction.any() && !route.upstream.tls);
            requests.push(["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                metrics
                    .requests
                    .with_label_values(&[route.name.as_str(), "passthrough", class])
            }));
        }
        let stats = Stats {
            requests,
            request_bytes: metrics.bytes.with_label_values(&["request"]),
            response_bytes: metrics.bytes.with_label_values(&["response"]),
        };
        Self {
            router,
            streamable,
            upstream_of,
            upstreams,
            timeouts: config.timeouts.clone(),
            handover,
            stats,
            metrics,
            stopping: AtomicBool::new(false),
            stop: tokio::sync::watch::Sender::new(false),
            active: AtomicUsize::new(0),
        }
    }

    /// Graceful shutdown: stop accepting, close idle connections, let exchanges in flight finish
    /// (their connections close after), for at most `grace`.
    pub async fn drain(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.stop.send_replace(true);
        let deadline = Instant::now() + grace;
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.active.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                connections = left,
                "shutdown grace over with exchanges in flight"
            );
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Listen on `addr` with `workers` threads, each with its own socket (SO_REUSEPORT: the
    /// kernel spreads connections) and single-threaded runtime. Binding errors are returned here.
    pub fn start(self: Arc<Self>, addr: SocketAddr, workers: usize) -> std::io::Result<()> {
        for n in 0..workers.max(1) {
            let listener = bind(addr)?;
            let front = self.clone();
            std::thread::Builder::new()
                .name(format!("likeguard-front-{n}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => return tracing::error!(error = %e, "front runtime failed"),
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, front.accept(listener));
                })?;
        }
        Ok(())
    }

    async fn accept(self: Arc<Self>, listener: std::net::TcpListener) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "front listener failed"),
        };
        let mut stop = self.stop.subscribe();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.wait_for(|s| *s) => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let front = self.clone();
                    front.active.fetch_add(1, Ordering::AcqRel);
                    tokio::task::spawn_local(async move { conn::serve(&front, stream).await });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // Shutting down: closing this thread's socket refuses new connections; the runtime (and
        // the exchanges in flight on it) lives on until the process exits.
        drop(listener);
        std::future::pending::<()>().await;
    }

    async fn connect(&self, upstream: usize) -> Result<TcpStream, Problem> {
        let authority = &self.upstreams[upstream];
        match tokio::time::timeout(
            self.timeouts.upstream_connect,
            TcpStream::connect(authority.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            _ => Err(Problem::new(
                ProblemKind::UpstreamUnreachable,
                "the request could not be proxied",
            )),
        }
    }

    fn count_error(&self, p: &Problem) {
        self.metrics.errors.with_label_values(&[p.slug()]).inc();
    }

    /// Answer with a problem (nothing was sent to the client yet) and close.
    async fn fail(&self, client: &mut TcpStream, route: usize, p: Problem) -> conn::After {
        self.count_error(&p);
        let _ = conn::write_problem(client, &p, self.timeouts.client_read).await;
        self.done(route, p.status, 0, conn::After::Close)
    }

    /// Count a finished exchange.
    fn done(
        &self,
        route: usize,
        status: u16,
        response_bytes: u64,
        after: conn::After,
    ) -> conn::After {
        let class = match status_class(status) {
            "1xx" => 0,
            "2xx" => 1,
            "3xx" => 2,
            "4xx" => 3,
            _ => 4,
        };
        self.stats.requests[route][class].inc();
        self.stats.response_bytes.inc_by(response_bytes);
        after
    }
}

/// Relay buffer each way: large bodies (held uploads) cross in fewer system calls than with
/// tokio's default 8 KiB.
const RELAY_BUF: usize = 64 * 1024;

/// Give pingora the connection from this request on: the bytes read so far, then both ways
/// until either side closes (pingora's timeouts and limits apply from here).
async fn handover(front: &Front, mut client: TcpStream, read: BytesMut) {
    // pingora binds its socket as the server starts, a moment after the front: wait a little.
    let mut tries = 0;
    let connected = loop {
        match UnixStream::connect(&front.handover).await {
            Err(_) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    let mut pingora = match connected {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "pingora's handover socket is unreachable");
            let p = Problem::new(ProblemKind::Internal, "the request could not be proxied");
            front.count_error(&p);
            let _ = conn::write_problem(&mut client, &p, front.timeouts.client_read).await;
            return;
        }
    };
    if pingora.write_all(&read).await.is_err() {
        return;
    }
    drop(read);
    let (mut client_in, mut client_out) = client.split();
    let (mut pingora_in, mut pingora_out) = pingora.split();
    let client_ended = {
        let mut to_pingora = std::pin::pin!(async {
            // Ends at the client's end of input (Ok), or when pingora stops reading (Err: it may
            // have answered early, e.g. 413, 451): the answer still has to get through.
            let mut from = tokio::io::BufReader::with_capacity(RELAY_BUF, &mut client_in);
            let copied = tokio::io::copy_buf(&mut from, &mut pingora_out).await;
            let _ = pingora_out.shutdown().await;
            copied.is_ok()
        });
        let mut to_client = std::pin::pin!(async {
            let mut from = tokio::io::BufReader::with_capacity(RELAY_BUF, &mut pingora_in);
            let _ = tokio::io::copy_buf(&mut from, &mut client_out).await;
            let _ = client_out.shutdown().await;
        });
        let mut client_ended = None;
        loop {
            tokio::select! {
                ended = &mut to_pingora, if client_ended.is_none() => client_ended = Some(ended),
                () = &mut to_client => break client_ended.unwrap_or(false),
            }
        }
    };
    if !client_ended {
        // pingora has answered and closed while the client may still send: read and discard
        // for a moment, so closing does not reset the connection and lose the answer.
        conn::linger(&mut client_in).await;
    }
}

/// A non-blocking listening socket with SO_REUSEPORT, so each worker thread has its own.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
