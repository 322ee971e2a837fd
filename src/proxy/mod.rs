//! The proxy. On `listen`, the fast front (`fast`) streams pass-through routes itself and hands
//! everything else to pingora; pingora serves the TLS listener and, with `front: pingora`,
//! `listen` too. In pingora, two paths, chosen per request in `request_filter`:
//!
//! - **pass-through** (route inspects nothing, or an upgrade request): pingora's own streaming
//!   path, nothing buffered;
//! - **inspected** (route inspects a direction): `exchange` reads what it must hold, decides,
//!   and performs the upstream exchange itself, so a blocked upload never reaches the upstream
//!   and a blocked response can still be a 451. See docs/decisions/0001-inspected-exchange.md.

mod exchange;
pub mod fast;
mod route;
mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

pub use route::{Route, Router};

use crate::actions::{Problem, ProblemKind, TagHeaders, Watermarker};
use crate::config::{Config, Timeouts};
use crate::inspect::Inspection;
use crate::telemetry::{Metrics, status_class};

/// After answering a client whose request body is still arriving, keep reading (and discarding)
/// it for a bounded time and size before closing, so the client reads the answer instead of a
/// reset (closing a socket with unread data makes the kernel send RST) — nginx's "lingering
/// close". Used by the inspected exchange and by the fast front.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Everything the proxy shares across requests, built once at start.
pub struct Proxy {
    router: Router,
    inspection: Inspection,
    tags: TagHeaders,
    metrics: Arc<Metrics>,
    client: upstream::UpClient,
    /// Extra roots for TLS upstreams (`upstream_ca_file`), for pingora's pass-through peers.
    upstream_ca: Option<Arc<Box<[pingora::tls::x509::X509]>>>,
    timeouts: Timeouts,
    watermarker: Option<Arc<dyn Watermarker>>,
    /// Signs C2PA manifests onto response-side images decided tag/watermark.
    provenance: Option<Arc<crate::actions::provenance::Provenance>>,
    /// Who a request acts for (`licensing`).
    requester: crate::license::requester::Requester,
    /// Request headers the policy may read (`policy.expose_headers`).
    exposed_headers: Vec<http::HeaderName>,
}

/// A proxy that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("{0}")]
    Config(String),
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    route: Option<Arc<Route>>,
    inspected: bool,
}

impl Proxy {
    pub fn new(
        config: &Config,
        inspection: Inspection,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProxyError> {
        Ok(Self {
            router: Router::new(&config.routes),
            inspection,
            tags: TagHeaders::new(&config.tag)?,
            metrics,
            client: upstream::client(
                config.timeouts.upstream_connect,
                config.upstream_ca_file.as_deref(),
            )
            .map_err(ProxyError::Config)?,
            upstream_ca: upstream::load_roots(config.upstream_ca_file.as_deref())
                .map_err(ProxyError::Config)?,
            timeouts: config.timeouts.clone(),
            watermarker: None,
            provenance: None,
            requester: crate::license::requester::Requester::new(&config.licensing)
                .map_err(ProxyError::Config)?,
            exposed_headers: config
                .policy
                .expose_headers
                .iter()
                .map(|h| {
                    http::HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| {
                        ProxyError::Config(format!(
                            "policy.expose_headers: {h:?} is not a header name"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Fill the watermark seam (done by the watermark issue).
    pub fn with_provenance(mut self, p: Arc<crate::actions::provenance::Provenance>) -> Self {
        self.provenance = Some(p);
        self
    }

    pub fn with_watermarker(mut self, w: Arc<dyn Watermarker>) -> Self {
        self.watermarker = Some(w);
        self
    }

    fn count_error(&self, p: &Problem) {
        self.metrics.errors.with_label_values(&[p.slug()]).inc();
    }
}

/// Write a problem+json response.
pub(crate) async fn write_problem(session: &mut Session, p: &Problem) -> Result<()> {
    let body = Bytes::from(p.to_json());
    let mut h = ResponseHeader::build(p.status, Some(4))?;
    h.insert_header("content-type", crate::actions::PROBLEM_CONTENT_TYPE)?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Slow clients: bound the wait for each body chunk on both paths.
        session.set_read_timeout(Some(self.timeouts.client_read));
        session.set_keepalive(Some(self.timeouts.client_idle.as_secs()));
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.host());
        let Some(route) = self.router.find(host, req.uri.path()).cloned() else {
            let p = Problem::new(ProblemKind::NoRoute, "no route matches this host and path");
            self.count_error(&p);
            write_problem(session, &p).await?;
            return Ok(true);
        };
        ctx.route = Some(route.clone());
        if !route.inspect.direction.any() || session.is_upgrade_req() {
            return Ok(false);
        }
        ctx.inspected = true;
        exchange::run(self, session, &route).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let mut peer = HttpPeer::new(
            route.upstream.authority.as_str(),
            route.upstream.tls,
            route.upstream.host.clone(),
        );
        peer.options.ca = self.upstream_ca.clone();
        peer.options.connection_timeout = Some(self.timeouts.upstream_connect);
        peer.options.read_timeout = Some(self.timeouts.upstream_response);
        Ok(Box::new(peer))
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let kind = match (e.esource(), e.etype()) {
            (_, HTTPStatus(400)) => Some(ProblemKind::BadRequest),
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
            if session.response_written().is_none() {
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
        let route = ctx.route.as_ref().map_or("none", |r| r.name.as_str());
        let path = if ctx.inspected {
            "inspected"
        } else {
            "passthrough"
        };
        let m = &self.metrics;
        m.requests
            .with_label_values(&[route, path, status_class(status)])
            .inc();
        m.bytes
            .with_label_values(&["request"])
            .inc_by(session.body_bytes_read() as u64);
        m.bytes
            .with_label_values(&["response"])
            .inc_by(session.body_bytes_sent() as u64);
    }
}
