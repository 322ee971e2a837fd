//! The inspected path: hold what must be inspected, decide, enforce, and perform the upstream
//! exchange ourselves. Bodies that need no inspection still stream (request side through a
//! bounded channel, response side chunk by chunk), so only media-bearing bodies are held.

use crate::inspect::Context;
use std::pin::pin;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, ETAG, EXPECT, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, timeout_at};

use super::upstream::{UpBody, copy_end_to_end};
use super::{LINGER_BYTES, LINGER_TIME, Proxy, Route, write_problem};
use crate::actions::{Problem, ProblemKind};
use crate::capture::{self, BodyBuf, CaptureError};
use crate::config::{FailureMode, UnsupportedMedia};
use crate::extract::{self, BodyClass, ExtractError, MediaItem};
use crate::policy::{Action, Decision};

/// Which body a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// The outcome of looking at one held body.
enum Verdict {
    Decided(Decision, Vec<MediaItem>),
    /// The body is not what it claims (malformed, too many items): the sender's fault.
    Rejected(Problem),
    /// It claims to be media but likeguard cannot read it.
    Unsupported(String),
    /// Inspection itself failed or ran out of time: the route's `on_failure` decides.
    Failed(String),
}

/// What enforcement leaves to do on traffic that goes on.
#[derive(Default)]
struct Enforced {
    headers: Vec<(http::HeaderName, HeaderValue)>,
    /// New body bytes (watermarked media).
    body: Option<Bytes>,
}

/// Run the exchange; any problem becomes a problem+json response.
pub(super) async fn run(p: &Proxy, session: &mut Session, route: &Route) -> pingora::Result<()> {
    if let Err(problem) = exchange(p, session, route).await {
        p.count_error(&problem);
        let unread = !session.is_body_done();
        if unread {
            // Never reuse a connection whose request body we did not consume.
            session.set_keepalive(None);
        }
        if session.response_written().is_none() {
            write_problem(session, &problem).await?;
        } else {
            session.set_keepalive(None);
        }
        if unread {
            linger(session).await;
        }
    }
    Ok(())
}

async fn linger(session: &mut Session) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        match timeout_at(deadline, session.read_request_body()).await {
            Ok(Ok(Some(chunk))) => drained += chunk.len(),
            _ => break,
        }
    }
}

async fn exchange(p: &Proxy, session: &mut Session, route: &Route) -> Result<(), Problem> {
    let req = session.req_header();
    let method = req.method.clone();
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: http::Uri = format!(
        "{}://{}{}",
        route.upstream.scheme(),
        route.upstream.authority,
        path
    )
    .parse()
    .map_err(|_| Problem::new(ProblemKind::BadRequest, "request target is not a valid URI"))?;
    let chunked = req.headers.contains_key(TRANSFER_ENCODING);
    let ctx = Context {
        licensee: p.requester.licensee(&req.headers),
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
        route: route.name.clone(),
        headers: p
            .exposed_headers
            .iter()
            .filter_map(|name| {
                let v = req.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_string(), v.to_string()))
            })
            .collect(),
    };
    let mut headers = copy_end_to_end(&req.headers);
    let content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    let expects_continue = headers
        .remove(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if route.inspect.direction.response() {
        // Responses must arrive uncompressed to be inspected.
        headers.remove(ACCEPT_ENCODING);
    }
    let class = if route.inspect.direction.request() && has_body {
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

    let mut stream_tx = None;
    let body: UpBody = if class.is_held() {
        let held = capture::read_request_body(
            session,
            route.inspect.max_body,
            p.timeouts.client_read,
            p.timeouts.client_body,
        )
        .await
        .map_err(capture_problem)?;
        let verdict = p
            .judge(route, Side::Request, &class, held.clone(), &ctx)
            .await;
        let enforced = p
            .enforce(route, Side::Request, &class, &held, verdict)
            .await?;
        for (k, v) in enforced.headers {
            headers.insert(k, v);
        }
        // The client already sent all of it; hyper frames the (maybe new) body itself.
        headers.remove(CONTENT_LENGTH);
        let held = enforced.body.unwrap_or(held);
        Full::new(held).map_err(|e| match e {}).boxed()
    } else if has_body {
        let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
        stream_tx = Some(tx);
        StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed()
    } else {
        Empty::new().map_err(|e| match e {}).boxed()
    };

    let mut upstream_req = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(body)
        .map_err(|e| Problem::new(ProblemKind::BadRequest, e.to_string()))?;
    *upstream_req.headers_mut() = headers;

    let response = match stream_tx {
        Some(tx) => send_streaming(p, session, upstream_req, tx).await?,
        None => timeout(p.timeouts.upstream_response, p.client.request(upstream_req))
            .await
            .map_err(|_| upstream_timeout())?
            .map_err(upstream_problem)?,
    };
    respond(p, session, route, &method, &ctx, response).await
}

/// Send a request whose body streams from the client. The response timeout starts once the
/// client has sent its whole body, so slow large uploads are bounded by the client timeouts.
async fn send_streaming(
    p: &Proxy,
    session: &mut Session,
    req: http::Request<UpBody>,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) -> Result<http::Response<Incoming>, Problem> {
    let mut send = pin!(p.client.request(req));
    let mut pump = pin!(pump_request_body(session, tx, p.timeouts.client_read));
    let mut pumped = false;
    let mut deadline = pin!(sleep(p.timeouts.upstream_response));
    loop {
        tokio::select! {
            r = &mut send => return r.map_err(upstream_problem),
            r = &mut pump, if !pumped => {
                r.map_err(capture_problem)?;
                pumped = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + p.timeouts.upstream_response);
            }
            _ = &mut deadline, if pumped => return Err(upstream_timeout()),
        }
    }
}

async fn pump_request_body(
    session: &mut Session,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    read_timeout: std::time::Duration,
) -> Result<(), CaptureError> {
    loop {
        let chunk = match timeout(read_timeout, session.read_request_body()).await {
            Err(_) => Err(CaptureError::Timeout),
            Ok(Err(e)) => Err(capture::read_error(&e)),
            Ok(Ok(c)) => Ok(c),
        };
        match chunk {
            Ok(Some(data)) => {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    return Ok(()); // upstream stopped reading (it answered early)
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Err(e);
            }
        }
    }
}

async fn respond(
    p: &Proxy,
    session: &mut Session,
    route: &Route,
    method: &Method,
    ctx: &Context,
    response: http::Response<Incoming>,
) -> Result<(), Problem> {
    let (parts, mut body) = response.into_parts();
    let mut headers = copy_end_to_end(&parts.headers);
    let bodyless = *method == Method::HEAD
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let class = if route.inspect.direction.response() && !bodyless {
        extract::classify(&headers, &route.inspect.extract)
    } else {
        BodyClass::Opaque
    };
    if !class.is_held() {
        if !bodyless && !headers.contains_key(CONTENT_LENGTH) {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        write_head(session, parts.status, &headers).await?;
        return stream_body(session, Bytes::new(), &mut body).await;
    }

    let content_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut buf = BodyBuf::new(route.inspect.max_body, content_length);
    let deadline = tokio::time::Instant::now() + p.timeouts.upstream_response;
    let overflow = loop {
        let frame = timeout_at(deadline, body.frame())
            .await
            .map_err(|_| upstream_timeout())?;
        match frame {
            None => break false,
            Some(Err(e)) => return Err(upstream_problem_body(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && buf.push(data).is_err()
                {
                    break true;
                }
            }
        }
    };
    if overflow {
        let reason = format!(
            "response body is larger than the inspection limit of {} bytes",
            route.inspect.max_body
        );
        let Enforced { headers: extra, .. } = p.fail(route, Side::Response, reason)?;
        for (k, v) in extra {
            headers.insert(k, v);
        }
        if !headers.contains_key(CONTENT_LENGTH) {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        write_head(session, parts.status, &headers).await?;
        return stream_body(session, buf.finish(), &mut body).await;
    }

    let held = buf.finish();
    let verdict = p
        .judge(route, Side::Response, &class, held.clone(), ctx)
        .await;
    let enforced = p
        .enforce(route, Side::Response, &class, &held, verdict)
        .await?;
    for (k, v) in enforced.headers {
        headers.insert(k, v);
    }
    let out = match enforced.body {
        Some(new) => {
            // The representation changed: validators of the old one no longer hold.
            headers.remove(ETAG);
            new
        }
        None => held,
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    write_head(session, parts.status, &headers).await?;
    session
        .write_response_body(Some(out), true)
        .await
        .map_err(client_gone)
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
    body: &mut Incoming,
) -> Result<(), Problem> {
    if !prefix.is_empty() {
        session
            .write_response_body(Some(prefix), false)
            .await
            .map_err(client_gone)?;
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(upstream_problem_body)?;
        if let Ok(data) = frame.into_data() {
            session
                .write_response_body(Some(data), false)
                .await
                .map_err(client_gone)?;
        }
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(client_gone)
}

impl Proxy {
    /// Extract and inspect a held body within the route's time budget.
    async fn judge(
        &self,
        route: &Route,
        side: Side,
        class: &BodyClass,
        body: Bytes,
        ctx: &Context,
    ) -> Verdict {
        let started = Instant::now();
        let work = async {
            let items =
                extract::extract(class, body, &route.inspect.extract, route.inspect.max_items)
                    .await
                    .map_err(Judged::Extract)?;
            let decision = self
                .inspection
                .decide(&items, ctx)
                .await
                .map_err(Judged::Inspect)?;
            Ok::<_, Judged>((decision, items))
        };
        let out = timeout(route.inspect.time_budget, work).await;
        self.metrics
            .inspection_seconds
            .with_label_values(&[side.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match out {
            Err(_) => Verdict::Failed(format!(
                "inspection exceeded the time budget of {:?}",
                route.inspect.time_budget
            )),
            Ok(Err(Judged::Inspect(e))) => Verdict::Failed(e.to_string()),
            Ok(Err(Judged::Extract(e))) => match e {
                ExtractError::Malformed { .. } => {
                    Verdict::Rejected(Problem::new(ProblemKind::MalformedBody, e.to_string()))
                }
                ExtractError::TooManyItems(_) => {
                    Verdict::Rejected(Problem::new(ProblemKind::TooManyItems, e.to_string()))
                }
                ExtractError::Unsupported(detail) => Verdict::Unsupported(detail),
            },
            Ok(Ok((decision, items))) => {
                self.record(route, side, &decision, &items);
                Verdict::Decided(decision, items)
            }
        }
    }

    /// Audit event and metrics for one decision. Never body bytes or personal data.
    fn record(&self, route: &Route, side: Side, d: &Decision, items: &[MediaItem]) {
        for item in items {
            self.metrics
                .items
                .with_label_values(&[item.media.kind.as_str(), item.media.format])
                .inc();
        }
        self.metrics
            .decisions
            .with_label_values(&[d.action.as_str(), &d.rule])
            .inc();
        if items.is_empty() {
            tracing::debug!(target: "likeguard::audit", decision_id = %d.id, route = %route.name,
                side = side.as_str(), action = %d.action, rule = %d.rule, items = 0, "decision");
        } else {
            // A watermark's payload leads back here from a marked file.
            let payload = (d.action == Action::Watermark)
                .then(|| format!("{:08x}", crate::actions::watermark::payload_for(&d.id)));
            tracing::info!(target: "likeguard::audit", decision_id = %d.id, route = %route.name,
                side = side.as_str(), action = %d.action, rule = %d.rule, items = items.len(),
                watermark = payload.as_deref().unwrap_or("-"),
                explanation = %d.explanation, "decision");
        }
    }

    /// Turn a verdict into what happens next: a problem response, or headers/body to apply.
    async fn enforce(
        &self,
        route: &Route,
        side: Side,
        class: &BodyClass,
        body: &Bytes,
        verdict: Verdict,
    ) -> Result<Enforced, Problem> {
        match verdict {
            Verdict::Decided(d, items) => match d.action {
                Action::Allow => Ok(Enforced::default()),
                Action::Block => Err(Problem::blocked(&d.rule, &d.id)),
                Action::Tag | Action::Watermark => {
                    match self.rewrite(side, class, body, &items, &d).await {
                        Ok(body) => Ok(Enforced {
                            headers: self.tags.for_decision(&d),
                            body,
                        }),
                        Err(reason) => {
                            self.fail(route, side, format!("{}: {reason}", d.action.as_str()))
                        }
                    }
                }
            },
            Verdict::Rejected(problem) => match side {
                Side::Request => Err(problem),
                Side::Response => self.fail(route, side, problem.detail),
            },
            Verdict::Unsupported(detail) => match route.inspect.on_unsupported {
                UnsupportedMedia::Pass => Ok(Enforced::default()),
                UnsupportedMedia::Reject => {
                    let p = Problem::new(ProblemKind::UnsupportedMedia, detail);
                    Err(match side {
                        Side::Request => p,
                        Side::Response => p.with_status(502),
                    })
                }
            },
            Verdict::Failed(reason) => self.fail(route, side, reason),
        }
    }

    /// Inspection could not decide: honour the route's failure mode.
    fn fail(&self, route: &Route, side: Side, reason: String) -> Result<Enforced, Problem> {
        self.metrics
            .errors
            .with_label_values(&["inspection-failed"])
            .inc();
        tracing::warn!(route = %route.name, side = side.as_str(), reason = %reason,
            mode = ?route.inspect.on_failure, "inspection failed");
        match route.inspect.on_failure {
            FailureMode::FailOpen => Ok(Enforced {
                headers: vec![self.tags.for_failure()],
                body: None,
            }),
            FailureMode::FailClosed => {
                let p = Problem::new(ProblemKind::InspectionFailed, reason);
                Err(match side {
                    Side::Request => p,
                    Side::Response => p.with_status(502),
                })
            }
        }
    }

    /// The new body for a tag or watermark decision, `None` when it stays as it is: a
    /// `watermark` marks every media item (images in place, videos re-encoded); on the response
    /// side with provenance on, each JPEG, PNG or MP4 item also gets a signed C2PA manifest
    /// stating the decision. Items inside multipart or JSON bodies are put back where they came
    /// from. Tags of bodies that cannot carry a manifest keep their headers only; a watermark
    /// that cannot be applied is an error.
    async fn rewrite(
        &self,
        side: Side,
        class: &BodyClass,
        body: &Bytes,
        items: &[MediaItem],
        d: &Decision,
    ) -> Result<Option<Bytes>, String> {
        let mark = d.action == Action::Watermark;
        let provenance = self.provenance.clone().filter(|_| side == Side::Response);
        let signable =
            |i: &MediaItem| matches!(i.media.mime, "image/jpeg" | "image/png" | "video/mp4");
        let todo: Vec<bool> = items
            .iter()
            .map(|i| mark || (provenance.is_some() && signable(i)))
            .collect();
        if !todo.contains(&true) {
            return Ok(None);
        }
        let watermarker = match mark {
            true => Some(
                self.watermarker
                    .clone()
                    .ok_or_else(|| "no watermarker is configured".to_string())?,
            ),
            false => None,
        };
        let (d, items, body, class) = (d.clone(), items.to_vec(), body.clone(), class.clone());
        // Decode, mark, encode, sign: tens of milliseconds per image (seconds per video) of
        // CPU, off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut new = Vec::with_capacity(items.len());
            for (item, todo) in items.iter().zip(todo) {
                if !todo {
                    new.push(None);
                    continue;
                }
                let mut data = item.data.clone();
                if let Some(w) = &watermarker {
                    data = w
                        .mark(item, &d)
                        .map_err(|e| format!("item {}: {e}", item.index))?;
                }
                if let Some(p) = provenance.as_ref().filter(|_| signable(item)) {
                    let record = crate::actions::provenance::DecisionRecord {
                        action: d.action.as_str().into(),
                        rule: d.rule.clone(),
                        decision_id: d.id.clone(),
                        license_id: d.license.clone(),
                        policy_version: d.policy_version.clone(),
                        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                            .to_string(),
                        watermark: mark.then(|| {
                            format!("{:08x}", crate::actions::watermark::payload_for(&d.id))
                        }),
                    };
                    data = p
                        .sign(&data, item.media.mime, &record)
                        .map_err(|e| format!("item {}: {e}", item.index))?
                        .into();
                }
                new.push(Some(data));
            }
            crate::extract::splice(&body, &class, &items, &new)
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("rewrite task: {e}"))?
    }
}

enum Judged {
    Extract(ExtractError),
    Inspect(crate::inspect::InspectError),
}

fn capture_problem(e: CaptureError) -> Problem {
    let kind = match e {
        CaptureError::TooLarge { .. } => ProblemKind::BodyTooLarge,
        CaptureError::Timeout => ProblemKind::ClientTimeout,
        CaptureError::Connection(_) => ProblemKind::ClientError,
    };
    Problem::new(kind, e.to_string())
}

fn upstream_problem(e: hyper_util::client::legacy::Error) -> Problem {
    if e.is_connect() {
        Problem::new(
            ProblemKind::UpstreamUnreachable,
            "cannot connect to the upstream",
        )
    } else {
        Problem::new(
            ProblemKind::UpstreamError,
            format!("upstream exchange failed: {e}"),
        )
    }
}

fn upstream_problem_body(e: hyper::Error) -> Problem {
    Problem::new(ProblemKind::UpstreamError, format!("upstream body: {e}"))
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
