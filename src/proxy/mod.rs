//! The proxy: pingora is the only HTTP engine — every listener (plain and TLS, HTTP/1.1 and
//! HTTP/2), all request and response framing, header validation, the upstream pool and client
//! are pingora's. This module adds what an inline inspector needs, in `request_filter`:
//!
//! - the request target read as an origin reads it (`target`) and the route chosen on that
//!   form (`route`); requests origins could read in two ways are refused (`admit`);
//! - then every request but a tunnel goes through `exchange`, over pingora's server session and
//!   its client and pool (`call`): on a route that inspects, it peeks at or holds what may be
//!   media, asks `decide` for the ruling, and only then calls the upstream (a blocked upload
//!   never reaches it; a blocked response can still be a 451); on a pass-through route it just
//!   streams both ways;
//! - upgrades on pass-through routes take pingora's proxy path (it tunnels WebSocket ones);
//!   CONNECT is refused (a reverse proxy has no use for it).
//!
//! docs/proxy.md, docs/decisions/0001-inspected-exchange.md, 0006-one-http-engine.md.

mod admit;
pub use admit::{Admitted, admit_parts};
mod call;
mod exchange;
mod fetch;
pub use fetch::UrlFetcher;
mod hold;
mod range;
mod route;
mod server;
mod slots;
mod stats;
pub mod target;
mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

pub use route::{Route, Router};
pub use server::run;

use crate::actions::{Problem, ProblemKind};
use crate::config::{Config, SlashMode, Timeouts};
use crate::decide::Decider;
use crate::telemetry::Metrics;

/// After answering a client whose request body is still arriving, keep reading (and discarding)
/// it for a bounded time and size before closing, so the client reads the answer instead of a
/// reset (closing a socket with unread data makes the kernel send RST) — nginx's "lingering
/// close".
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Everything the proxy shares across requests, built once at start.
pub struct Proxy {
    router: Router,
    decider: Arc<Decider>,
    metrics: Arc<Metrics>,
    stats: stats::Stats,
    /// pingora's upstream pool for the inspected exchange (the pass-through path has its own).
    connector: pingora::connectors::http::Connector,
    /// Each route's upstream peer (by `Route::index`), built once.
    peers: Vec<HttpPeer>,
    /// Requests in flight per upstream, bounded (`connections:`).
    slots: slots::UpstreamSlots,
    timeouts: Timeouts,
    slashes: SlashMode,
    /// Requests being served now (graceful shutdown waits for none).
    in_flight: Arc<AtomicUsize>,
}

/// Counts one request in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A proxy that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Config(String),
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    route: Option<Arc<Route>>,
    inspected: bool,
    /// The normalised path and the raw query: what the upstream receives.
    forward: Option<String>,
    client: Option<IpAddr>,
    _in_flight: Option<InFlight>,
}

impl Proxy {
    pub fn new(
        config: &Config,
        decider: Arc<Decider>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProxyError> {
        let router = Router::new(&config.routes);
        let roots =
            upstream::load_roots(config.upstream_ca_file.as_deref()).map_err(ProxyError::Config)?;
        let peers = router
            .routes()
            .iter()
            .map(|r| upstream::peer(&r.upstream, &roots, &config.timeouts))
            .collect();
        metrics.upstreams.register(
            router
                .routes()
                .iter()
                .map(|r| (r.name.clone(), r.upstream.to_string())),
        );
        Ok(Self {
            peers,
            slots: slots::UpstreamSlots::new(router.routes(), &config.connections),
            stats: stats::Stats::new(&metrics, &router),
            router,
            decider,
            metrics,
            // Idle connections kept for reuse, across all upstreams (pingora's LRU).
            connector: pingora::connectors::http::Connector::new(Some(
                pingora::connectors::ConnectorOptions::new(config.connections.upstream_idle),
            )),
            timeouts: config.timeouts.clone(),
            slashes: config.paths.encoded_slashes,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The count of requests in flight (for draining at shutdown).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// Count a refusal under `errors_total` — but not a block: a block is a decision (counted in
    /// `decisions_total`), and an error-rate alert must not fire on the policy working; nor a
    /// failed inspection, which the decider counted already (as `inspection-failed`,
    /// `inspection-incomplete` or `overloaded`, whatever the failure mode).
    fn count_error(&self, p: &Problem) {
        if matches!(
            p.kind,
            Some(
                ProblemKind::Blocked
                    | ProblemKind::InspectionFailed
                    | ProblemKind::InspectionIncomplete
            )
        ) {
            return;
        }
        self.metrics.errors.with_label_values(&[p.slug()]).inc();
    }

    /// Answer with a problem before anything reached the upstream, and close the connection
    /// (after a lingering read of any body the client is still sending).
    async fn refuse(&self, session: &mut Session, p: &Problem) -> Result<bool> {
        self.count_error(p);
        session.set_keepalive(None);
        write_problem(session, p).await?;
        if !session.is_body_done() {
            linger(session).await;
        }
        Ok(true)
    }
}

/// Write a problem+json response (the one writer on the proxy side; `Problem::response` makes
/// the parts).
pub(crate) async fn write_problem(session: &mut Session, p: &Problem) -> Result<()> {
    let (status, headers, body) = p.response();
    let mut h = ResponseHeader::build(status, Some(headers.len() + 1))?;
    for (name, value) in headers {
        h.insert_header(name, value)?;
    }
    h.insert_header("content-length", body.len().to_string())?;
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// Read and discard what the client still sends, bounded in time and bytes.
async fn linger(session: &mut Session) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, session.read_request_body()).await {
            Ok(Ok(Some(chunk))) => drained += chunk.len(),
            _ => break,
        }
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        // Counted from the moment its head is read (drained at shutdown).
        Ctx {
            _in_flight: Some(InFlight::new(&self.in_flight)),
            ..Ctx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Slow clients: bound the wait for each body chunk on both paths.
        session.set_read_timeout(Some(self.timeouts.client_read));
        session.set_keepalive(Some(self.timeouts.client_idle.as_secs()));
        ctx.client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let admitted = match admit::admit(session.req_header(), self.slashes) {
            Ok(a) => a,
            Err(p) => return self.refuse(session, &p).await,
        };
        let Some(route) = self
            .router
            .find(admitted.host.as_deref(), &admitted.path.matched)
            .cloned()
        else {
            let p = Problem::new(ProblemKind::NoRoute, "no route matches this host and path");
            return self.refuse(session, &p).await;
        };
        ctx.route = Some(route.clone());
        ctx.forward = Some(admitted.forward);
        if !route.inspect.direction.any() {
            // Upgrades (pingora passes WebSocket ones) take pingora's proxy path; every other
            // pass-through request takes the leaner exchange below (same pingora sessions and
            // pool, without the proxy loop's per-request machinery: benches/RESULTS.md).
            // (CONNECT never gets here: its target is not a path, `admit` refuses it.)
            if session.is_upgrade_req() {
                return Ok(false);
            }
            exchange::run(self, session, &route, ctx).await?;
            return Ok(true);
        }
        ctx.inspected = true;
        // Any Upgrade header, even one pingora would not act on: its bytes must not escape.
        if session.is_upgrade_req()
            || session
                .req_header()
                .headers
                .contains_key(http::header::UPGRADE)
        {
            let p = Problem::new(
                ProblemKind::UpgradeRefused,
                "this route inspects its traffic: protocol upgrades are not allowed on it",
            );
            return self.refuse(session, &p).await;
        }
        exchange::run(self, session, &route, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        Ok(Box::new(self.peers[route.index].clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // (pingora itself strips hop-by-hop headers and what Connection names, keeping only
        // WebSocket upgrades.) The upstream reads the path the route was chosen on.
        if let Some(forward) = &ctx.forward {
            let uri = http::Uri::try_from(forward.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "normalised target", e))?;
            up.set_uri(uri);
        }
        if let Some(client) = ctx.client {
            let xff = upstream::forwarded_for(up.headers.get(upstream::X_FORWARDED_FOR), client);
            up.insert_header(upstream::X_FORWARDED_FOR, xff)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let kind = match (e.esource(), e.etype()) {
            (
                ErrorSource::Downstream | ErrorSource::Internal | ErrorSource::Unset,
                HTTPStatus(400) | InvalidHTTPHeader,
            ) => Some(ProblemKind::BadRequest),
            (ErrorSource::Downstream, ReadTimedout) => Some(ProblemKind::ClientTimeout),
            // Otherwise the client is gone or broke the protocol: nobody to answer.
            (ErrorSource::Downstream, _) => None,
            (
                ErrorSource::Upstream,
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError,
            ) => Some(ProblemKind::UpstreamUnreachable),
            (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => {
                Some(ProblemKind::UpstreamTimeout)
            }
            (ErrorSource::Upstream, _) => Some(ProblemKind::UpstreamError),
            _ => Some(ProblemKind::Internal),
        };
        let mut code = 0;
        if let Some(kind) = kind {
            let p = Problem::new(kind, "the request could not be proxied");
            self.count_error(&p);
            code = p.status;
            if session
                .response_written()
                .is_none_or(|h| h.status.is_informational())
            {
                // The connection is not reused after a failure: say so in the response.
                session.set_keepalive(None);
                let _ = write_problem(session, &p).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        self.stats.record(
            ctx.route.as_ref().map(|r| r.index),
            ctx.inspected,
            status,
            session.body_bytes_read(),
            session.body_bytes_sent(),
        );
    }
}
