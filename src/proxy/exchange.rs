//! The inspected path: hold what must be inspected, ask `decide` for the ruling, and perform the
//! upstream exchange ourselves over pingora's client (`call`). Bodies that need no inspection
//! still stream (request side chunk by chunk to the upstream, response side chunk by chunk to
//! the client), so only media-bearing bodies are held.

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, EXPECT, HOST,
    HeaderName, HeaderValue, IF_RANGE, RANGE, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use tokio::time::timeout_at;

use super::call::{self, Answered, UpBody, upstream_problem};
use super::hold::{Peeked, SNIFF_BYTES, peek_request_body, read_request_body};
use super::range::{self, Asked};
use super::upstream::{X_FORWARDED_FOR, copy_end_to_end, forwarded_for};
use super::{Ctx, Proxy, Route, linger, write_problem};
use crate::actions::{Problem, ProblemKind};
use crate::capture::{BodyBuf, CaptureError, content_length};
use crate::config::Ranges;
use crate::decide::{Failure, Outcome, RequestFacts, Side, Subject};
use crate::extract::{self, BodyClass};
use crate::inspect::Context;
use crate::telemetry::UpstreamFailure;

/// Run the exchange; any problem becomes a problem+json response.
pub(super) async fn run(
    p: &Proxy,
    session: &mut Session,
    route: &Route,
    cx: &Ctx,
) -> pingora::Result<()> {
    if let Err(problem) = exchange(p, session, route, cx).await {
        p.count_error(&problem);
        let how = match problem.kind {
            Some(ProblemKind::UpstreamUnreachable) => Some(UpstreamFailure::Connect),
            Some(ProblemKind::UpstreamTimeout) => Some(UpstreamFailure::Timeout),
            Some(ProblemKind::UpstreamError) => Some(UpstreamFailure::Exchange),
            _ => None,
        };
        if let Some(how) = how {
            p.metrics.upstreams.failed(route.index, how);
        }
        // Refusals for load are counted (`errors_total{kind="overloaded"}`), not logged one
        // by one: at load they would flood the log.
        if problem.status >= 500 && problem.kind != Some(ProblemKind::Overloaded) {
            tracing::warn!(route = %route.name, upstream = %route.upstream, status = problem.status,
                kind = problem.slug(), detail = %problem.detail, "inspected exchange failed");
        } else {
            tracing::debug!(route = %route.name, status = problem.status, kind = problem.slug(),
                detail = %problem.detail, "request refused");
        }
        let unread = !session.is_body_done();
        // Never reuse a connection whose request body we did not consume cleanly: after a
        // framing error or a timeout, pingora may count the body as done.
        let broken = matches!(
            problem.kind,
            Some(ProblemKind::ClientError | ProblemKind::ClientTimeout | ProblemKind::BodyTooLarge)
        );
        if unread || broken {
            session.set_keepalive(None);
        }
        // A `100 Continue` already sent is no answer: the final status still has to follow.
        let answered = session
            .response_written()
            .is_some_and(|h| !h.status.is_informational());
        if answered {
            session.set_keepalive(None);
        } else {
            write_problem(session, &problem).await?;
        }
        if unread {
            linger(session).await;
        }
    }
    Ok(())
}

async fn exchange(
    p: &Proxy,
    session: &mut Session,
    route: &Route,
    cx: &Ctx,
) -> Result<(), Problem> {
    let req = session.req_header();
    let method = req.method.clone();
    let client_version = req.version;
    let forward = cx.forward.as_deref().unwrap_or("/");
    // pingora has validated the framing: Transfer-Encoding ends in chunked, and a
    // Content-Length beside it is already gone.
    let chunked = req.headers.contains_key(TRANSFER_ENCODING);
    let content_length = content_length(&req.headers)?;
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    // What the policy may know, built only where something may be decided.
    let ctx = route.inspect.direction.any().then(|| {
        p.decider.context(&RequestFacts {
            method: req.method.as_str(),
            path: forward.split('?').next().unwrap_or(forward),
            route: &route.name,
            headers: &req.headers,
            client: cx.client,
        })
    });
    let mut headers = copy_end_to_end(&req.headers);
    // An HTTP/2 client names the host in `:authority`; HTTP/1.1 upstreams need it as Host.
    if !headers.contains_key(HOST)
        && let Some(authority) = req.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, v);
    }
    if let Some(client) = cx.client {
        let xff = forwarded_for(headers.get(X_FORWARDED_FOR), client);
        if let Ok(v) = HeaderValue::try_from(xff) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    let expects_continue = headers
        .remove(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut range = Asked::Whole;
    if route.inspect.direction.response() {
        // Responses are inspected whole (a piece is cut from the inspected whole), and
        // uncompressed where the upstream obliges.
        if route.inspect.ranges == Ranges::Serve {
            range = range::asked(&headers);
        }
        headers.remove(RANGE);
        headers.remove(IF_RANGE);
        headers.remove("request-range"); // the pre-RFC 2616 name some servers still honour
        headers.remove(ACCEPT_ENCODING);
    }
    let mut class = if route.inspect.direction.request() && has_body {
        extract::classify(&headers, &route.inspect.extract)
    } else {
        BodyClass::Opaque
    };
    if class.is_held() && content_length.is_some_and(|n| n > route.inspect.max_body) {
        // Refuse before inviting the body with 100-continue.
        return Err(capture_problem(CaptureError::TooLarge {
            limit: route.inspect.max_body,
        }));
    }
    if expects_continue && has_body {
        session
            .write_continue_response()
            .await
            .map_err(|e| Problem::new(ProblemKind::ClientError, e.to_string()))?;
    }

    // What the headers do not call media may still be media: look at its opening bytes.
    let mut prefix = Peeked::default();
    if route.inspect.direction.request() && has_body && !class.is_held() {
        prefix = peek_request_body(session, p.timeouts.client_read)
            .await
            .map_err(capture_problem)?;
        if extract::looks_inspectable(&prefix.bytes) {
            class = BodyClass::Sniff;
        }
    }

    // The body is framed anew for the upstream.
    headers.remove(CONTENT_LENGTH);
    let body = if let (true, Some(ctx)) = (class.is_held(), &ctx) {
        let held = read_request_body(
            session,
            prefix,
            content_length,
            route.inspect.max_body,
            p.timeouts.client_read,
            p.timeouts.client_body,
        )
        .await
        .map_err(capture_problem)?;
        let subject = Subject {
            route: &route.name,
            inspect: &route.inspect,
            side: Side::Request,
            class: &class,
            ctx,
        };
        let (extra, new) = forward_or_refuse(p.decider.decide(&subject, held.clone()).await)?;
        for (k, v) in extra {
            headers.insert(k, v);
        }
        if new.is_some() {
            // A changed body is sent without a content coding.
            headers.remove(CONTENT_ENCODING);
        }
        let held = new.unwrap_or(held);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(held.len()));
        UpBody::Held(held)
    } else if has_body {
        match content_length {
            Some(n) if !chunked => headers.insert(CONTENT_LENGTH, HeaderValue::from(n)),
            _ => headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked")),
        };
        UpBody::Stream(prefix.bytes)
    } else {
        if content_length.is_some() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        UpBody::None
    };

    let head = request_head(&method, forward, &headers)?;
    let peer = &p.peers[route.index];
    // Once the client's request is complete, nothing is read from it until the answer: watch
    // it, so a client that leaves releases its slot, its upstream connection and its socket at
    // once (not when the upstream answers or times out).
    let (slot, Answered { up, request_done }) = if matches!(body, UpBody::Stream(_)) {
        let slot = p.slots.acquire(route.index).await?;
        let sent = call::send(&p.connector, peer, head, &body, Some(session), &p.timeouts).await?;
        (slot, sent)
    } else {
        let work = async {
            let slot = p.slots.acquire(route.index).await?;
            let sent = call::send(&p.connector, peer, head, &body, None, &p.timeouts).await?;
            Ok::<_, Problem>((slot, sent))
        };
        tokio::select! {
            r = work => r?,
            () = call::client_left(session) => return Err(call::left()),
        }
    };
    if !request_done {
        // The upstream answered before the client finished sending: this connection ends.
        session.set_keepalive(None);
    }
    let asked = Ask {
        range,
        method: &method,
        client_version,
    };
    // The upstream answered: its health is what it answered.
    match up.response_header().map(|h| h.status.as_u16()) {
        Some(500..) => p
            .metrics
            .upstreams
            .failed(route.index, UpstreamFailure::ServerError),
        _ => p.metrics.upstreams.succeeded(route.index),
    }
    let free = Free {
        slot: Some(slot),
        peer: request_done.then_some(peer),
    };
    let up = respond(p, session, route, &asked, ctx.as_ref(), up, free).await?;
    if request_done && let Some(up) = up {
        p.connector
            .release_http_session(up, peer, Some(UPSTREAM_IDLE))
            .await;
    }
    Ok(())
}

/// What the client asked for that shapes the answer.
struct Ask<'a> {
    range: Asked,
    method: &'a Method,
    client_version: Version,
}

/// How long an idle upstream connection stays in pingora's pool.
const UPSTREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

fn request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<RequestHeader, Problem> {
    let bad = |e: Box<pingora::Error>| Problem::new(ProblemKind::BadRequest, e.to_string());
    let mut head = RequestHeader::build(method.clone(), target.as_bytes(), Some(headers.len()))
        .map_err(bad)?;
    for (k, v) in headers {
        head.append_header(k.clone(), v.clone()).map_err(bad)?;
    }
    Ok(head)
}

/// Answer the client from the upstream's response, holding and judging it when the route
/// inspects responses and it may carry media. Returns the upstream session when it may be
/// reused (its response was read to the end).
async fn respond(
    p: &Proxy,
    session: &mut Session,
    route: &Route,
    asked: &Ask<'_>,
    ctx: Option<&Context>,
    mut up: HttpSession,
    mut free: Free<'_>,
) -> Result<Option<HttpSession>, Problem> {
    let (method, client_version) = (asked.method, asked.client_version);
    let resp = up
        .response_header()
        .ok_or_else(|| Problem::new(ProblemKind::UpstreamError, "no response head"))?;
    let mut status = resp.status;
    let mut headers = copy_end_to_end(&resp.headers);
    let bodyless = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let ctx = ctx.filter(|_| route.inspect.direction.response() && !bodyless);
    let inspects = ctx.is_some();
    let mut class = if inspects {
        extract::classify(&headers, &route.inspect.extract)
    } else {
        BodyClass::Opaque
    };
    let deadline = tokio::time::Instant::now() + p.timeouts.upstream_response;
    // What the headers do not call media may still be media: look at its opening bytes.
    let mut prefix = Bytes::new();
    if inspects && !class.is_held() {
        prefix = peek_response_body(&mut up, deadline).await?;
        if extract::looks_inspectable(&prefix) {
            class = BodyClass::Sniff;
        }
    }
    let Some(ctx) = ctx.filter(|_| class.is_held()) else {
        if !bodyless && !headers.contains_key(CONTENT_LENGTH) {
            frame_unknown_length(session, client_version, &mut headers);
        }
        write_head(session, status, &headers).await?;
        return stream_body(session, prefix, up).await;
    };

    let content_length = content_length(&headers)?;
    let mut buf = BodyBuf::new(route.inspect.max_body, content_length);
    let mut overflow = !prefix.is_empty() && buf.push(prefix).is_err();
    while !overflow {
        let chunk = timeout_at(deadline, up.read_response_body())
            .await
            .map_err(|_| upstream_timeout())?
            .map_err(|e| upstream_problem(&e))?;
        match chunk {
            None => break,
            Some(data) => overflow = buf.push(data).is_err(),
        }
    }
    let subject = Subject {
        route: &route.name,
        inspect: &route.inspect,
        side: Side::Response,
        class: &class,
        ctx,
    };
    if overflow {
        let reason = format!(
            "response body is larger than the inspection limit of {} bytes",
            route.inspect.max_body
        );
        let (extra, _) = forward_or_refuse(p.decider.failed(&subject, Failure::new(reason)))?;
        for (k, v) in extra {
            headers.insert(k, v);
        }
        if !headers.contains_key(CONTENT_LENGTH) {
            frame_unknown_length(session, client_version, &mut headers);
        }
        write_head(session, status, &headers).await?;
        return stream_body(session, buf.finish(), up).await;
    }

    let held = buf.finish();
    // All the upstream sent is held: its connection and slot serve others while this response
    // is inspected (inspection can queue behind others for its whole time budget).
    let up = free.now(p, up).await;
    if status == StatusCode::PARTIAL_CONTENT {
        // Range was not asked for; a piece cannot be inspected as the whole it is part of.
        let reason = "the upstream answered 206 (a piece) where the whole was asked for";
        let (extra, _) = forward_or_refuse(p.decider.failed(&subject, Failure::new(reason)))?;
        for (k, v) in extra {
            headers.insert(k, v);
        }
        write_whole(session, status, &mut headers, held).await?;
        return Ok(up);
    }
    let (extra, new) = forward_or_refuse(p.decider.decide(&subject, held.clone()).await)?;
    for (k, v) in extra {
        headers.insert(k, v);
    }
    let mut out = match new {
        Some(new) => {
            // The representation changed: validators of the old one no longer hold, and it
            // goes out without a content coding.
            headers.remove(ETAG);
            headers.remove(CONTENT_ENCODING);
            new
        }
        None => held,
    };
    if let (StatusCode::OK, Asked::One(spec)) = (status, &asked.range) {
        // The piece asked for, cut from the inspected whole.
        let len = out.len() as u64;
        let content_range = match range::select(*spec, len) {
            Some(r) => {
                status = StatusCode::PARTIAL_CONTENT;
                let v = format!("bytes {}-{}/{len}", r.start(), r.end());
                out = out.slice(*r.start() as usize..=*r.end() as usize);
                v
            }
            None => {
                status = StatusCode::RANGE_NOT_SATISFIABLE;
                out = Bytes::new();
                format!("bytes */{len}")
            }
        };
        if let Ok(v) = HeaderValue::try_from(content_range) {
            headers.insert(CONTENT_RANGE, v);
        }
    }
    write_whole(session, status, &mut headers, out).await?;
    Ok(up)
}

/// The upstream slot and connection of an exchange, given back as soon as the whole response
/// has been read (`peer` is set when the connection may be reused).
struct Free<'a> {
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    peer: Option<&'a pingora::upstreams::peer::HttpPeer>,
}

impl Free<'_> {
    /// Releases both now; the session comes back only when it cannot go to the pool.
    async fn now(&mut self, p: &Proxy, up: HttpSession) -> Option<HttpSession> {
        self.slot = None;
        match self.peer.take() {
            Some(peer) => {
                p.connector
                    .release_http_session(up, peer, Some(UPSTREAM_IDLE))
                    .await;
                None
            }
            None => Some(up),
        }
    }
}

/// Answer with a whole held body: its length, the head, the body.
async fn write_whole(
    session: &mut Session,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: Bytes,
) -> Result<(), Problem> {
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    write_head(session, status, headers).await?;
    session
        .write_response_body(Some(body), true)
        .await
        .map_err(client_gone)
}

/// Read an upstream body's opening bytes (up to `SNIFF_BYTES`, or its end).
async fn peek_response_body(
    up: &mut HttpSession,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Problem> {
    let mut got = bytes::BytesMut::new();
    while got.len() < SNIFF_BYTES {
        let chunk = timeout_at(deadline, up.read_response_body())
            .await
            .map_err(|_| upstream_timeout())?
            .map_err(|e| upstream_problem(&e))?;
        match chunk {
            Some(data) if got.is_empty() && data.len() >= SNIFF_BYTES => return Ok(data),
            Some(data) => got.extend_from_slice(&data),
            None => break,
        }
    }
    Ok(got.freeze())
}

/// A body of unknown length: chunked to an HTTP/1.1 client, to the connection's close for an
/// HTTP/1.0 one (which cannot read chunks).
fn frame_unknown_length(session: &mut Session, client_version: Version, headers: &mut HeaderMap) {
    if client_version == Version::HTTP_10 {
        session.set_keepalive(None);
    } else if client_version == Version::HTTP_11 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

async fn write_head(
    session: &mut Session,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<(), Problem> {
    let mut h = ResponseHeader::build(status, Some(headers.len()))
        .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
    for (k, v) in headers {
        h.append_header(k.clone(), v.clone())
            .map_err(|e| Problem::new(ProblemKind::UpstreamError, e.to_string()))?;
    }
    session
        .write_response_header(Box::new(h), false)
        .await
        .map_err(client_gone)
}

/// Forward `prefix` then the rest of an upstream body as it arrives.
async fn stream_body(
    session: &mut Session,
    prefix: Bytes,
    mut up: HttpSession,
) -> Result<Option<HttpSession>, Problem> {
    if !prefix.is_empty() {
        session
            .write_response_body(Some(prefix), false)
            .await
            .map_err(client_gone)?;
    }
    while let Some(data) = up
        .read_response_body()
        .await
        .map_err(|e| upstream_problem(&e))?
    {
        session
            .write_response_body(Some(data), false)
            .await
            .map_err(client_gone)?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(client_gone)?;
    Ok(up.response_done().then_some(up))
}

type Forwarded = (Vec<(HeaderName, HeaderValue)>, Option<Bytes>);

fn forward_or_refuse(o: Outcome) -> Result<Forwarded, Problem> {
    match o {
        Outcome::Forward { headers, body } => Ok((headers, body)),
        Outcome::Refuse(p) => Err(p),
    }
}

pub(super) fn capture_problem(e: CaptureError) -> Problem {
    let kind = match e {
        CaptureError::TooLarge { .. } => ProblemKind::BodyTooLarge,
        CaptureError::Timeout => ProblemKind::ClientTimeout,
        CaptureError::Connection(_) => ProblemKind::ClientError,
    };
    Problem::new(kind, e.to_string())
}

fn upstream_timeout() -> Problem {
    Problem::new(
        ProblemKind::UpstreamTimeout,
        "the upstream did not answer in time",
    )
}

fn client_gone(e: Box<pingora::Error>) -> Problem {
    Problem::new(ProblemKind::ClientError, e.to_string())
}
