//! One client connection on the fast front: read a request head, then stream the request to the
//! route's upstream and the response back, in one task, with no channels and no per-request
//! allocation beyond what the buffers already hold. Requests the front does not stream are handed
//! to pingora with the connection (see `handover`).

use std::io;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Front;
use super::body::Framing;
use super::body::{Framer, PumpError, READ_CHUNK, pump};
use super::head::{self, Dispatch, HeadError, RequestHead, ResponseHead};
use super::pool;
use crate::actions::{Problem, ProblemKind};
use crate::proxy::{LINGER_BYTES, LINGER_TIME};

/// A request head bigger than this is refused (431), a response head bigger (502).
const MAX_HEAD: usize = 64 * 1024;

/// What happens to the client connection after one exchange.
pub(super) enum After {
    KeepAlive,
    Close,
}

/// Buffers a connection keeps across its requests.
struct Buffers {
    /// Client bytes read and not yet forwarded.
    down: BytesMut,
    /// Upstream bytes read and not yet forwarded.
    up: BytesMut,
    /// The head being written out.
    head: Vec<u8>,
}

/// Counts the connection out of `Front::active` when it ends or is handed over.
struct Active<'a>(Option<&'a Front>);

impl Active<'_> {
    fn release(&mut self) {
        if let Some(front) = self.0.take() {
            front.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Serve a connection counted in `front.active` by the acceptor.
pub(super) async fn serve(front: &Front, mut client: TcpStream) {
    let mut active = Active(Some(front));
    let mut stop = front.stop.subscribe();
    let mut b = Buffers {
        down: BytesMut::with_capacity(READ_CHUNK),
        up: BytesMut::new(),
        head: Vec::with_capacity(1024),
    };
    loop {
        let req = match read_request(front, &mut client, &mut b, &mut stop).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(p) => return refuse(front, &mut client, &p).await,
        };
        let route = match req.dispatch {
            Dispatch::Stream(route) => route,
            Dispatch::Handover => {
                // pingora drains what it is given: the front's shutdown does not wait for it.
                active.release();
                return super::handover(front, client, b.down).await;
            }
            Dispatch::NoRoute => {
                let p = Problem::new(ProblemKind::NoRoute, "no route matches this host and path");
                return refuse(front, &mut client, &p).await;
            }
        };
        b.down.advance(req.len);
        match exchange(front, &mut client, &mut b, &req, route).await {
            After::KeepAlive if !front.stopping() => {}
            _ => return,
        }
    }
}

/// Read until a whole request head is in `b.down`. `None`: the client closed or idled out
/// between requests (nothing to answer).
async fn read_request(
    front: &Front,
    client: &mut TcpStream,
    b: &mut Buffers,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<RequestHead>, Problem> {
    // The whole head must arrive within `client_read` of its first byte (no drip-feeding).
    let mut deadline = None;
    loop {
        if !b.down.is_empty() {
            let parsed = head::parse_request(
                &b.down,
                |host, path| {
                    let i = front.router.position(host, path)?;
                    Some((i, front.streamable[i]))
                },
                &mut b.head,
            );
            match parsed {
                Ok(Some(req)) if req.len <= MAX_HEAD => return Ok(Some(req)),
                Ok(None) if b.down.len() <= MAX_HEAD => {}
                Ok(_) | Err(HeadError::TooLarge) => {
                    return Err(
                        Problem::new(ProblemKind::BadRequest, "request head too large")
                            .with_status(431),
                    );
                }
                Err(HeadError::Malformed(why)) => {
                    return Err(Problem::new(ProblemKind::BadRequest, why));
                }
            }
        }
        let idle = b.down.is_empty();
        b.down.reserve(READ_CHUNK);
        let read = if idle {
            // Between requests: closed at shutdown, or after `client_idle`.
            tokio::select! {
                r = tokio::time::timeout(front.timeouts.client_idle, client.read_buf(&mut b.down)) => r,
                _ = stop.wait_for(|s| *s) => return Ok(None),
            }
        } else {
            let at = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + front.timeouts.client_read);
            tokio::time::timeout_at(at, client.read_buf(&mut b.down)).await
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Err(_) if !idle => {
                return Err(Problem::new(
                    ProblemKind::ClientTimeout,
                    "the request head did not arrive in time",
                ));
            }
            _ => return Ok(None),
        }
    }
}

/// Why no usable response head came from the upstream.
enum NoResponse {
    /// Closed or reset before sending a byte: on a reused connection, worth one more try.
    Closed,
    Failed(Problem),
}

/// Read the upstream's next response head into `b.up`; its head for the client goes to `b.head`.
async fn read_response(
    front: &Front,
    up: &mut TcpStream,
    b: &mut Buffers,
    req: &RequestHead,
    close_client: bool,
) -> Result<ResponseHead, NoResponse> {
    loop {
        if !b.up.is_empty() {
            // At shutdown the client is told this connection ends with the response.
            let close = close_client || front.stopping();
            match head::parse_response(&b.up, req.is_head, close, &mut b.head) {
                Ok(Some(res)) if res.len <= MAX_HEAD => return Ok(res),
                Ok(None) if b.up.len() <= MAX_HEAD => {}
                Ok(_) | Err(HeadError::TooLarge) => {
                    return Err(NoResponse::Failed(Problem::new(
                        ProblemKind::UpstreamError,
                        "the upstream's response head is too large",
                    )));
                }
                Err(HeadError::Malformed(why)) => {
                    return Err(NoResponse::Failed(Problem::new(
                        ProblemKind::UpstreamError,
                        format!("the upstream's response is unusable: {why}"),
                    )));
                }
            }
        }
        b.up.reserve(READ_CHUNK);
        match tokio::time::timeout(front.timeouts.upstream_response, up.read_buf(&mut b.up)).await {
            Ok(Ok(n)) if n > 0 => {}
            Err(_) => {
                return Err(NoResponse::Failed(Problem::new(
                    ProblemKind::UpstreamTimeout,
                    "the upstream did not answer in time",
                )));
            }
            _ if b.up.is_empty() => return Err(NoResponse::Closed),
            _ => {
                return Err(NoResponse::Failed(upstream_error()));
            }
        }
    }
}

/// One request/response exchange with the upstream.
async fn exchange(
    front: &Front,
    client: &mut TcpStream,
    b: &mut Buffers,
    req: &RequestHead,
    route: usize,
) -> After {
    let t = &front.timeouts;
    let up_index = front.upstream_of[route];
    let mut framer = Framer::new(req.framing);
    // Send the head with whatever body bytes came with it, in one write.
    let Ok(first) = framer.take(&b.down) else {
        return front.fail(client, route, malformed_body()).await;
    };
    b.head.extend_from_slice(&b.down[..first]);
    b.down.advance(first);
    // Without a body (or with all of it in the first write), a connection the upstream closed
    // while idle can be replaced and the request sent again: nothing is lost.
    let replayable = framer.done();
    let (mut up, mut reused) = match pool::take(up_index) {
        Some(s) => (s, true),
        None => match front.connect(up_index).await {
            Ok(s) => (s, false),
            Err(p) => return front.fail(client, route, p).await,
        },
    };
    let mut req_bytes = first as u64;
    let mut body_sent;
    b.up.clear();
    let res = loop {
        if up.write_all(&b.head).await.is_err() && !(reused && replayable) {
            return front.fail(client, route, upstream_error()).await;
        }
        if !framer.done() {
            match pump(
                &mut framer,
                client,
                &mut b.down,
                &mut up,
                t.client_read,
                t.upstream_response,
            )
            .await
            {
                Ok(n) => req_bytes += n,
                Err(PumpError::ReadTimeout) => {
                    let p = Problem::new(
                        ProblemKind::ClientTimeout,
                        "the request body did not arrive in time",
                    );
                    return front.fail(client, route, p).await;
                }
                Err(PumpError::Malformed) => {
                    return front.fail(client, route, malformed_body()).await;
                }
                // The client is gone: nobody to answer.
                Err(PumpError::ReadFailed) => return After::Close,
                // The upstream stopped reading; it may have answered early (e.g. 413): pass
                // that on, and close both connections after it.
                Err(PumpError::WriteFailed) => {}
            }
        }
        body_sent = framer.done();
        let close_client = !req.keep_alive || !body_sent;
        match read_response(front, &mut up, b, req, close_client).await {
            Ok(res) => break res,
            Err(NoResponse::Closed) if reused && replayable => {
                reused = false;
                match front.connect(up_index).await {
                    Ok(s) => up = s,
                    Err(p) => return front.fail(client, route, p).await,
                }
            }
            Err(NoResponse::Closed) => return front.fail(client, route, upstream_error()).await,
            Err(NoResponse::Failed(p)) => return front.fail(client, route, p).await,
        }
    };
    front.stats.request_bytes.inc_by(req_bytes);
    let close_client = !req.keep_alive || !body_sent;

    // Interim heads (100, 103) go through as they come, then the final head and its body.
    let mut res = res;
    loop {
        let mut framer = Framer::new(res.framing);
        let Ok(n) = framer.take(&b.up[res.len..]) else {
            let p = Problem::new(
                ProblemKind::UpstreamError,
                "malformed chunked response body",
            );
            return front.fail(client, route, p).await;
        };
        b.head.extend_from_slice(&b.up[res.len..res.len + n]);
        let wrote = tokio::time::timeout(t.client_read, client.write_all(&b.head)).await;
        b.up.advance(res.len + n);
        if !matches!(wrote, Ok(Ok(()))) {
            return front.done(route, res.status, 0, After::Close);
        }
        if res.status == 101 {
            // Switched protocols (upgrades are handed to pingora, but an upstream may switch
            // anyway): a plain tunnel from here on.
            let _ = client.write_all(&b.up).await;
            let _ = tokio::io::copy_bidirectional(client, &mut up).await;
            return front.done(route, 101, 0, After::Close);
        }
        if !res.interim {
            let pumped = if framer.done() {
                Ok(0)
            } else {
                pump(
                    &mut framer,
                    &mut up,
                    &mut b.up,
                    client,
                    t.upstream_response,
                    t.client_read,
                )
                .await
            };
            let Ok(rest) = pumped else {
                // The head went out: a broken body can only be told by closing.
                return front.done(route, res.status, n as u64, After::Close);
            };
            if res.reusable && body_sent && b.up.is_empty() {
                pool::give_back(up_index, up);
            }
            let after = if close_client || res.framing == Framing::Close {
                After::Close
            } else {
                After::KeepAlive
            };
            return front.done(route, res.status, n as u64 + rest, after);
        }
        res = match read_response(front, &mut up, b, req, close_client).await {
            Ok(res) => res,
            Err(NoResponse::Closed) => return front.done(route, 502, 0, After::Close),
            Err(NoResponse::Failed(_)) => return front.done(route, 502, 0, After::Close),
        };
    }
}

fn malformed_body() -> Problem {
    Problem::new(ProblemKind::MalformedBody, "malformed chunked request body")
}

fn upstream_error() -> Problem {
    Problem::new(
        ProblemKind::UpstreamError,
        "the upstream closed the connection without a response",
    )
}

/// Answer a request the front cannot serve, and close.
async fn refuse(front: &Front, client: &mut TcpStream, p: &Problem) {
    front.count_error(p);
    let _ = write_problem(client, p, front.timeouts.client_read).await;
}

/// A problem+json response that ends the connection.
pub(super) async fn write_problem(
    client: &mut TcpStream,
    p: &Problem,
    timeout: std::time::Duration,
) -> io::Result<()> {
    let body = p.to_json();
    let reason = http::StatusCode::from_u16(p.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        p.status,
        crate::actions::PROBLEM_CONTENT_TYPE,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    match tokio::time::timeout(timeout, client.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }?;
    let _ = client.shutdown().await;
    linger(client).await;
    Ok(())
}

/// After answering and shutting down the write side: read and discard what the client still
/// sends (the proxy's lingering close, `LINGER_TIME` / `LINGER_BYTES`), ending early after a
/// quiet half second.
pub(super) async fn linger<R: AsyncRead + Unpin>(client: &mut R) {
    const QUIET: Duration = Duration::from_millis(500);
    let mut sink = [0u8; 16 * 1024];
    let drain = async {
        let mut drained = 0usize;
        while drained < LINGER_BYTES {
            match tokio::time::timeout(QUIET, client.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
