//! REQMOD and RESPMOD: the encapsulated message is routed as the proxy routes a request
//! (`admit_parts`, the same `Router`), its body is held as the proxy holds one (the route's
//! `max_body`, media recognised by headers or opening bytes), the ruling comes from the same
//! `Decider`, and the outcome is written as ICAP: `204` (or the message echoed) when nothing
//! changes, the message with the decision's headers and body when it is tagged or marked, and
//! the problem+json response in place of the message when it is refused.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, ETAG, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;

use super::answer::{self, Section};
use super::body::BodyIn;
use super::conn::{Conn, ConnError};
use super::head::{Head, HeadError};
use super::message::{self, RequestHead, ResponseHead};
use crate::actions::{Problem, ProblemKind};
use crate::capture::{BodyBuf, content_length};
use crate::config::{IcapConfig, SlashMode, Timeouts};
use crate::decide::{Decider, Failure, Outcome, RequestFacts, Side, Subject};
use crate::extract::{self, BodyClass, SNIFF_BYTES};
use crate::inspect::Context;
use crate::proxy::{Route, Router, admit_parts};

/// The ISTag's source: a fingerprint of everything a ruling depends on (policy, registry,
/// licenses, known media), so a client's cached "unmodified" is dropped when any of it changes.
pub type StateTag = Arc<dyn Fn() -> String + Send + Sync>;

pub struct Service {
    pub decider: Arc<Decider>,
    pub router: Router,
    pub slashes: SlashMode,
    pub timeouts: Timeouts,
    pub config: IcapConfig,
    pub istag: StateTag,
}

/// How a request was answered (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Options,
    Unmodified,
    Modified,
    Refused,
}

impl Ended {
    pub fn label(self) -> &'static str {
        match self {
            Self::Options => "options",
            Self::Unmodified => "unmodified",
            Self::Modified => "modified",
            Self::Refused => "refused",
        }
    }
}

/// What the answer was, and whether the connection can take another request.
pub type Done = (Ended, bool);

/// What is to be done with a message, decided from its heads.
enum Plan {
    /// Not inspected here (another direction, no body, nothing of media).
    Pass,
    /// Answered with a problem before its body is looked at.
    Refuse(Problem),
    Inspect(Inspect),
}

struct Inspect {
    route: Arc<Route>,
    ctx: Context,
    class: BodyClass,
    declared: Option<u64>,
    /// A `206` response: a piece cannot be inspected as the whole it is part of.
    partial: bool,
}

/// The parsed encapsulated heads of one request.
struct Message {
    side: Side,
    req: Option<RequestHead>,
    res: Option<ResponseHead>,
}

impl Message {
    /// The section as received, for an answer that changes nothing: the request head in
    /// REQMOD, the response head in RESPMOD (a RESPMOD answer carries no `req-hdr`, RFC 3507
    /// §4.4.1).
    fn sections(&self) -> Vec<Section<'_>> {
        let head = match self.side {
            Side::Request => self.req.as_ref().map(|r| Section::req(&r.raw)),
            Side::Response => self.res.as_ref().map(|r| Section::res(&r.raw)),
        };
        head.into_iter().collect()
    }
}

impl Service {
    pub fn tag(&self) -> String {
        (self.istag)()
    }

    /// A REQMOD or RESPMOD request, after its ICAP head.
    pub async fn modify(
        &self,
        conn: &mut Conn,
        head: &Head,
        client: Option<IpAddr>,
    ) -> Result<Done, ConnError> {
        if head.preview.is_some_and(|n| n > self.config.preview) {
            return Err(HeadError::Malformed(format!(
                "a preview of more than the {} bytes OPTIONS announced",
                self.config.preview
            ))
            .into());
        }
        let deadline = Instant::now() + self.timeouts.client_body;
        let heads = conn.take(head.encapsulated.heads_len, deadline).await?;
        let section = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| heads.slice(r));
        let msg = Message {
            side: match head.method {
                super::head::Method::Reqmod => Side::Request,
                _ => Side::Response,
            },
            req: section(&head.encapsulated.req_hdr)
                .map(message::request)
                .transpose()?,
            res: section(&head.encapsulated.res_hdr)
                .map(message::response)
                .transpose()?,
        };
        let mut body = BodyIn::new(head);
        tracing::trace!(method = head.method.as_str(), preview = ?head.preview,
            allow_204 = head.allow_204, body = ?head.encapsulated.body, "ICAP request");
        match self.plan(&msg, client, !body.done())? {
            Plan::Pass => {
                self.unmodified(conn, head, &msg, &mut body, None, deadline)
                    .await
            }
            Plan::Refuse(p) => self.refuse(conn, head, &mut body, &p, deadline).await,
            Plan::Inspect(i) => self.inspect(conn, head, &msg, &mut body, i, deadline).await,
        }
    }

    fn plan(
        &self,
        msg: &Message,
        client: Option<IpAddr>,
        has_body: bool,
    ) -> Result<Plan, HeadError> {
        let Some(req) = &msg.req else {
            return Err(HeadError::Malformed(
                "RESPMOD without the request head (req-hdr) cannot be routed".into(),
            ));
        };
        if req.method == Method::CONNECT {
            // A tunnel: ICAP sees only the CONNECT, never what flows inside (with ssl_bump,
            // Squid sends the decrypted requests themselves, which are inspected).
            return Ok(Plan::Pass);
        }
        let admitted = match admit_parts(
            &req.method,
            req.target.as_bytes(),
            &req.uri,
            &req.headers,
            self.slashes,
        ) {
            Ok(a) => a,
            Err(p) => return Ok(Plan::Refuse(p)),
        };
        let Some(route) = self
            .router
            .find(admitted.host.as_deref(), &admitted.path.matched)
        else {
            return Ok(Plan::Refuse(Problem::new(
                ProblemKind::NoRoute,
                "no route matches this host and path",
            )));
        };
        let (inspects, headers, bodyless) = match (msg.side, &msg.res) {
            (Side::Request, _) => (route.inspect.direction.request(), &req.headers, false),
            (Side::Response, Some(res)) => (
                route.inspect.direction.response(),
                &res.headers,
                req.method == Method::HEAD
                    || res.status == StatusCode::NO_CONTENT
                    || res.status == StatusCode::NOT_MODIFIED,
            ),
            (Side::Response, None) => unreachable!("RESPMOD heads are checked to hold res-hdr"),
        };
        if !inspects || !has_body || bodyless {
            return Ok(Plan::Pass);
        }
        let declared = match content_length(headers) {
            Ok(n) => n,
            Err(p) => return Ok(Plan::Refuse(p)),
        };
        let forward = admitted.forward.as_str();
        let ctx = self.decider.context(&RequestFacts {
            method: req.method.as_str(),
            path: forward.split('?').next().unwrap_or(forward),
            route: &route.name,
            headers: &req.headers,
            client,
        });
        Ok(Plan::Inspect(Inspect {
            class: extract::classify(headers, &route.inspect.extract),
            route: route.clone(),
            ctx,
            declared,
            partial: msg
                .res
                .as_ref()
                .is_some_and(|r| r.status == StatusCode::PARTIAL_CONTENT),
        }))
    }

    /// Hold the body (preview first), recognise media, and decide.
    async fn inspect(
        &self,
        conn: &mut Conn,
        head: &Head,
        msg: &Message,
        body: &mut BodyIn,
        i: Inspect,
        deadline: Instant,
    ) -> Result<Done, ConnError> {
        let Inspect {
            route,
            ctx,
            mut class,
            declared,
            partial,
        } = i;
        let max = route.inspect.max_body;
        let subject = |class| Subject {
            route: &route.name,
            inspect: &route.inspect,
            side: msg.side,
            class,
            ctx: &ctx,
        };
        if class.is_held() && declared.is_some_and(|n| n > max) {
            // Refused (or passed per the failure mode) before the body is asked for.
            return self
                .too_large(conn, head, msg, body, &subject(&class), None, deadline)
                .await;
        }
        let mut held = BodyBuf::new(max, declared);
        let mut opening = BytesMut::new();
        let mut known = class.is_held();
        loop {
            let Some(data) = body.next(conn, deadline).await? else {
                if body.awaiting_continue() {
                    tracing::trace!(held = held.len(), "ICAP preview read: asking for the rest");
                    body.resume(conn).await?;
                    continue;
                }
                break;
            };
            if !known && opening.len() < SNIFF_BYTES {
                let room = SNIFF_BYTES - opening.len();
                opening.extend_from_slice(&data[..data.len().min(room)]);
            }
            let over = held.push(data).is_err();
            if over {
                let s = subject(&class);
                return self
                    .too_large(conn, head, msg, body, &s, Some(held.finish()), deadline)
                    .await;
            }
            if !known && opening.len() >= SNIFF_BYTES {
                if !extract::looks_inspectable(&opening) {
                    let had = held.finish();
                    return self
                        .unmodified(conn, head, msg, body, Some(had), deadline)
                        .await;
                }
                class = BodyClass::Sniff;
                known = true;
            }
        }
        let held = held.finish();
        if !known {
            if !extract::looks_inspectable(&opening) {
                return self
                    .unmodified(conn, head, msg, body, Some(held), deadline)
                    .await;
            }
            class = BodyClass::Sniff;
        }
        let s = subject(&class);
        let outcome = if partial {
            let reason =
                "the response is a 206 (a piece); a piece cannot be inspected as the whole";
            self.decider.failed(&s, Failure::new(reason))
        } else {
            self.decider.decide(&s, held.clone()).await
        };
        self.enforce(conn, head, msg, body, outcome, held, deadline)
            .await
    }

    /// The body is larger than the route inspects: a request is refused (413); a response
    /// follows the route's failure mode (passed on with the failure tag, or refused).
    #[allow(clippy::too_many_arguments)]
    async fn too_large(
        &self,
        conn: &mut Conn,
        head: &Head,
        msg: &Message,
        body: &mut BodyIn,
        subject: &Subject<'_>,
        held: Option<Bytes>,
        deadline: Instant,
    ) -> Result<Done, ConnError> {
        let detail = format!(
            "the body is larger than the inspection limit of {} bytes",
            subject.inspect.max_body
        );
        let outcome = match msg.side {
            Side::Request => Outcome::Refuse(Problem::new(ProblemKind::BodyTooLarge, detail)),
            Side::Response => self.decider.failed(subject, Failure::new(detail)),
        };
        match outcome {
            Outcome::Refuse(p) => self.refuse(conn, head, body, &p, deadline).await,
            Outcome::Forward { headers, .. } => {
                // Passed on unchanged but for the tag, streamed: it is never held whole.
                let res = msg.res.as_ref().map(|r| {
                    let mut h = r.headers.clone();
                    add(&mut h, &headers);
                    message::write_response(r.minor, r.status, &h)
                });
                let sections = vec![Section::res(res.as_deref().unwrap_or_default())];
                self.stream_back(conn, head, &sections, body, held, deadline)
                    .await
                    .map(|keep| (Ended::Modified, keep))
            }
        }
    }

    /// Carry out the decider's outcome on a fully held body.
    #[allow(clippy::too_many_arguments)]
    async fn enforce(
        &self,
        conn: &mut Conn,
        head: &Head,
        msg: &Message,
        body: &mut BodyIn,
        outcome: Outcome,
        held: Bytes,
        deadline: Instant,
    ) -> Result<Done, ConnError> {
        let (extra, new) = match outcome {
            Outcome::Refuse(p) => return self.refuse(conn, head, body, &p, deadline).await,
            Outcome::Forward {
                headers,
                body: None,
            } if headers.is_empty() => {
                return self
                    .unmodified(conn, head, msg, body, Some(held), deadline)
                    .await;
            }
            Outcome::Forward { headers, body } => (headers, body),
        };
        let changed = new.is_some();
        let out = new.unwrap_or(held);
        let fix = |h: &HeaderMap| {
            let mut h = h.clone();
            add(&mut h, &extra);
            if changed {
                // A new representation: no content coding, its own length, no old validator.
                h.remove(CONTENT_ENCODING);
                h.remove(TRANSFER_ENCODING);
                h.remove(ETAG);
                h.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
            }
            h
        };
        let written;
        let section = match (msg.side, &msg.req, &msg.res) {
            (Side::Request, Some(r), _) => {
                written = message::write_request(r, &fix(&r.headers));
                Section::req(&written)
            }
            (_, _, Some(r)) => {
                written = message::write_response(r.minor, r.status, &fix(&r.headers));
                Section::res(&written)
            }
            _ => unreachable!("a planned message has the head of its side"),
        };
        let keep = !head.close;
        let text = answer::head(200, &self.tag(), &[section], Some(msg.side), !keep);
        conn.write(&text).await?;
        conn.write_chunk(&out).await?;
        conn.end_body().await?;
        Ok((Ended::Modified, keep))
    }

    /// Nothing changes: `204` where allowed (always after a preview), else the message echoed
    /// back as it came. `held` is what was read of the body already.
    async fn unmodified(
        &self,
        conn: &mut Conn,
        head: &Head,
        msg: &Message,
        body: &mut BodyIn,
        held: Option<Bytes>,
        deadline: Instant,
    ) -> Result<Done, ConnError> {
        if body.in_preview() || head.allow_204 {
            body.finish_preview(conn, deadline).await?;
            let mut keep = !head.close;
            if !body.in_preview() {
                keep &= body.drain(conn, deadline, usize::MAX).await?;
            }
            conn.write(&answer::no_content(&self.tag(), !keep)).await?;
            return Ok((Ended::Unmodified, keep));
        }
        let sections = msg.sections();
        self.stream_back(conn, head, &sections, body, held, deadline)
            .await
            .map(|keep| (Ended::Unmodified, keep))
    }

    /// A `200` with `sections` and the body: `held`, then the rest as it arrives (asked for
    /// first when a preview is waiting).
    async fn stream_back(
        &self,
        conn: &mut Conn,
        head: &Head,
        sections: &[Section<'_>],
        body: &mut BodyIn,
        held: Option<Bytes>,
        deadline: Instant,
    ) -> Result<bool, ConnError> {
        // What is left of a preview is part of the body that goes back: kept, not dropped.
        let mut rest_of_preview = Vec::new();
        while body.in_preview() && !body.awaiting_continue() {
            match body.next(conn, deadline).await? {
                Some(data) => rest_of_preview.push(data),
                None => break,
            }
        }
        body.resume(conn).await?;
        let has_body = head.encapsulated.body == super::head::Body::Chunked;
        let side = match head.method {
            super::head::Method::Reqmod => Side::Request,
            _ => Side::Response,
        };
        let keep = !head.close;
        let text = answer::head(200, &self.tag(), sections, has_body.then_some(side), !keep);
        conn.write(&text).await?;
        if has_body {
            if let Some(held) = held {
                conn.write_chunk(&held).await?;
            }
            for data in rest_of_preview {
                conn.write_chunk(&data).await?;
            }
            while let Some(data) = body.next(conn, deadline).await? {
                conn.write_chunk(&data).await?;
            }
            conn.end_body().await?;
        }
        Ok(keep)
    }

    /// Answer with a problem+json message in place of the encapsulated one. The body is not
    /// needed: after a preview nothing more comes; otherwise what is still arriving is read
    /// and dropped after the answer, for a bounded time, and the connection closed.
    async fn refuse(
        &self,
        conn: &mut Conn,
        head: &Head,
        body: &mut BodyIn,
        p: &Problem,
        deadline: Instant,
    ) -> Result<Done, ConnError> {
        body.finish_preview(conn, deadline).await?;
        let keep = (body.in_preview() || body.done()) && !head.close;
        let (res, content) = answer::problem(p);
        let text = answer::head(
            200,
            &self.tag(),
            &[Section::res(&res)],
            Some(Side::Response),
            !keep,
        );
        conn.write(&text).await?;
        conn.write_chunk(&content).await?;
        conn.end_body().await?;
        // When not `keep`, the caller lingers: what is still arriving is read and dropped.
        Ok((Ended::Refused, keep))
    }
}

fn add(h: &mut HeaderMap, extra: &[(HeaderName, HeaderValue)]) {
    for (k, v) in extra {
        h.insert(k.clone(), v.clone());
    }
}
