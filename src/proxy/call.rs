//! One request to an upstream over pingora's client (the same pool and HTTP/1.1 implementation
//! pingora's own proxy path uses): send the head and a held, streamed or empty body, and hand
//! back the session positioned at the final response head.

use bytes::Bytes;
use http::StatusCode;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use tokio::time::timeout;

use super::hold::read_error;
use crate::actions::{Problem, ProblemKind};
use crate::capture::CaptureError;

/// The request body to send upstream.
pub enum UpBody {
    None,
    /// Held (and maybe rewritten): can be sent again on a fresh connection.
    Held(Bytes),
    /// Streamed from the client as it arrives, after these opening bytes (already read).
    Stream(Bytes),
}

/// A session whose final response head has been read.
pub struct Answered {
    pub up: HttpSession,
    /// The client's request body was read to its end (else the client connection must close).
    pub request_done: bool,
}

/// Send `head` + `body` to `peer` (`client` is read from for a streamed body only). A failure on a reused (pooled) connection before any
/// answer is retried once on a fresh one when the body can be sent again.
pub async fn send(
    connector: &Connector,
    peer: &HttpPeer,
    head: RequestHeader,
    body: &UpBody,
    mut client: Option<&mut Session>,
    t: &crate::config::Timeouts,
) -> Result<Answered, Problem> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut up, reused) = connector
            .get_http_session(peer)
            .await
            .map_err(|e| connect_problem(&e))?;
        up.set_read_timeout(Some(t.upstream_response));
        up.set_write_timeout(Some(t.upstream_response));
        match exchange(&mut up, head.clone(), body, client.as_deref_mut(), t).await {
            Ok(request_done) => {
                return Ok(Answered { up, request_done });
            }
            Err(Failure::Replayable(_)) if reused && attempt == 1 => continue,
            Err(Failure::Replayable(p) | Failure::Final(p)) => return Err(p),
        }
    }
}

enum Failure {
    /// Nothing was answered and the body can be sent again.
    Replayable(Problem),
    Final(Problem),
}

async fn exchange(
    up: &mut HttpSession,
    head: RequestHeader,
    body: &UpBody,
    client: Option<&mut Session>,
    t: &crate::config::Timeouts,
) -> Result<bool, Failure> {
    let replay = |e: Box<pingora::Error>| match body {
        UpBody::Stream(_) => Failure::Final(upstream_problem(&e)),
        _ => Failure::Replayable(upstream_problem(&e)),
    };
    // Nothing of the body has been read from the client yet: always safe to send again.
    up.write_request_header(Box::new(head))
        .await
        .map_err(|e| Failure::Replayable(upstream_problem(&e)))?;
    match body {
        UpBody::None => up.finish_request_body().await.map_err(replay)?,
        UpBody::Held(b) => {
            up.write_request_body(b.clone(), true)
                .await
                .map_err(replay)?;
            up.finish_request_body().await.map_err(replay)?;
        }
        UpBody::Stream(prefix) => {
            let Some(client) = client else {
                return Err(Failure::Final(Problem::new(
                    ProblemKind::Internal,
                    "a streamed body needs its client",
                )));
            };
            if !prefix.is_empty() {
                up.write_request_body(prefix.clone(), false)
                    .await
                    .map_err(|e| Failure::Final(upstream_problem(&e)))?;
            }
            // Returns with the final head read, early or not.
            return pump(up, client, t).await.map_err(Failure::Final);
        }
    }
    // The whole head within the response timeout (pingora's is per read: a head dripped a
    // line at a time would never time out).
    match timeout(t.upstream_response, read_final_head(up)).await {
        Err(_) => return Err(Failure::Final(head_timeout())),
        Ok(r) => r.map_err(|e| match e {
            Read::Io(e) => replay(e),
            Read::Bad(p) => Failure::Final(p),
        })?,
    }
    Ok(true)
}

/// Stream the client's body upstream while watching for an early answer (an upstream may
/// answer, e.g. 413, before the body ends). Returns whether the whole body was sent; `false`
/// means the upstream answered first (its head has been read).
async fn pump(
    up: &mut HttpSession,
    client: &mut Session,
    t: &crate::config::Timeouts,
) -> Result<bool, Problem> {
    let read_timeout = t.client_read;
    let mut ended = false;
    loop {
        if ended || client.is_body_done() {
            up.finish_request_body()
                .await
                .map_err(|e| upstream_problem(&e))?;
            tokio::select! {
                r = timeout(t.upstream_response, read_final_head(up)) => r
                    .map_err(|_| head_timeout())?
                    .map_err(|e| match e {
                        Read::Io(e) => upstream_problem(&e),
                        Read::Bad(p) => p,
                    })?,
                () = client_left(client) => return Err(left()),
            }
            return Ok(true);
        }
        tokio::select! {
            // pingora's response-head reader keeps partial reads across cancellation.
            r = up.read_response_header() => {
                r.map_err(|e| upstream_problem(&e))?;
                check_head(up)?;
                if is_interim(up) {
                    continue; // a 100 Continue from the upstream: keep sending
                }
                return Ok(false);
            }
            chunk = timeout(read_timeout, client.read_request_body()) => {
                let chunk = match chunk {
                    Err(_) => Err(CaptureError::Timeout),
                    Ok(r) => r.map_err(|e| read_error(&e)),
                }
                .map_err(super::exchange::capture_problem)?;
                // The end of the body is handled at the top of the loop.
                match chunk {
                    Some(data) => up
                        .write_request_body(data, false)
                        .await
                        .map_err(|e| upstream_problem(&e))?,
                    None => ended = true,
                }
            }
        }
    }
}

/// Resolves when a client whose request is complete closes its connection; pending otherwise.
pub async fn client_left(session: &mut Session) {
    // The probe reads at most one byte. With pipelining on (pingora serves pipelined requests
    // one after another), a byte of the client's next request is kept as that request's start
    // instead of failing this one; `is_body_done` first sets up the body reader that keeps it
    // (for a request without a body it is not set up yet).
    session.set_pipelining_enabled(true);
    let done = session.is_body_done();
    if session.read_body_or_idle(done).await.is_err() {
        return;
    }
    std::future::pending().await
}

pub fn left() -> Problem {
    Problem::new(
        ProblemKind::ClientError,
        "the client closed its connection before the upstream answered",
    )
}

fn head_timeout() -> Problem {
    Problem::new(
        ProblemKind::UpstreamTimeout,
        "the upstream did not send its response head in time",
    )
}

enum Read {
    Io(Box<pingora::Error>),
    Bad(Problem),
}

/// Read response heads until the final one (interim 1xx are skipped).
async fn read_final_head(up: &mut HttpSession) -> Result<(), Read> {
    loop {
        up.read_response_header().await.map_err(Read::Io)?;
        check_head(up).map_err(Read::Bad)?;
        if !is_interim(up) {
            return Ok(());
        }
    }
}

fn is_interim(up: &HttpSession) -> bool {
    up.response_header()
        .is_some_and(|h| h.status.is_informational())
}

/// A 101 is never a tunnel here: the inspected path never asks for an upgrade.
fn check_head(up: &HttpSession) -> Result<(), Problem> {
    match up.response_header().map(|h| h.status) {
        Some(StatusCode::SWITCHING_PROTOCOLS) => Err(Problem::new(
            ProblemKind::UpstreamError,
            "the upstream switched protocols on a request that asked for no upgrade",
        )),
        _ => Ok(()),
    }
}

pub fn connect_problem(e: &pingora::Error) -> Problem {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout => Problem::new(
            ProblemKind::UpstreamTimeout,
            "connecting to the upstream timed out",
        ),
        _ => Problem::new(
            ProblemKind::UpstreamUnreachable,
            "cannot connect to the upstream",
        ),
    }
}

pub fn upstream_problem(e: &pingora::Error) -> Problem {
    use pingora::ErrorType::*;
    match e.etype() {
        ReadTimedout | WriteTimedout => Problem::new(
            ProblemKind::UpstreamTimeout,
            "the upstream did not answer in time",
        ),
        _ => {
            // pingora's message may quote what the upstream sent: keep the answer short.
            let mut detail = format!("upstream exchange failed: {e}");
            if detail.len() > 240 {
                let cut = (0..=240)
                    .rev()
                    .find(|i| detail.is_char_boundary(*i))
                    .unwrap_or(0);
                detail.truncate(cut);
                detail.push('…');
            }
            Problem::new(ProblemKind::UpstreamError, detail)
        }
    }
}
