//! The admin listener: probes, metrics and the management API, on its own address.
//!
//! `/healthz` and `/readyz` are open (orchestrators probe them); `/metrics` and `/admin/v1/*`
//! need `Authorization: Bearer <token>`, compared in constant time. With no token configured the
//! admin API answers 503 rather than run open.

mod decisions;
mod identities;
mod policy;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::actions::{Problem, ProblemKind};
use crate::audit::DecisionLog;
use crate::inspect::faces::FaceService;
use crate::knownmedia::{Bank, BankError, KnownAction};
use crate::license::requester::Requester;
use crate::media::sniff;
use crate::telemetry::Metrics;

/// Largest media file accepted by the known-media endpoint.
const MAX_UPLOAD: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub bank: Arc<Bank>,
    /// Face recognition (enrolment); `None` when inference is disabled.
    pub faces: Option<Arc<FaceService>>,
    /// Who a `/v1/verify` call acts for (API key, JWT or licensee header, as on the proxy).
    pub requester: Arc<Requester>,
    /// SHA-256 of the token: comparing digests keeps the comparison constant-time whatever the
    /// length of the presented token.
    token_digest: Option<[u8; 32]>,
    metrics_public: bool,
    pub ready: Arc<AtomicBool>,
    /// The decision log; `None` when `decision_log.enabled: false`.
    pub log: Option<Arc<DecisionLog>>,
}

impl AdminState {
    pub fn new(
        metrics: Arc<Metrics>,
        bank: Arc<Bank>,
        faces: Option<Arc<FaceService>>,
        requester: Arc<Requester>,
        token: Option<String>,
        metrics_public: bool,
    ) -> Self {
        Self {
            metrics,
            bank,
            faces,
            requester,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            metrics_public,
            ready: Arc::new(AtomicBool::new(false)),
            log: None,
        }
    }

    pub fn with_log(mut self, log: Option<Arc<DecisionLog>>) -> Self {
        self.log = log;
        self
    }
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/admin/v1/known-media", get(list_known).post(add_known))
        .route("/admin/v1/known-media/{id}", delete(remove_known))
        .route(
            "/admin/v1/identities",
            get(identities::list).post(identities::enrol),
        )
        .route(
            "/admin/v1/identities/{id}",
            get(identities::show).delete(identities::erase),
        )
        .route("/admin/v1/identities/{id}/export", get(identities::export))
        .route("/admin/v1/identities/{id}/report", get(decisions::report))
        .route("/admin/v1/decisions", get(decisions::list))
        .route("/admin/v1/decisions/export", get(decisions::export))
        .route("/admin/v1/decisions/{id}", get(decisions::show))
        .route(
            "/admin/v1/licenses",
            get(identities::licenses).post(identities::grant),
        )
        .route("/admin/v1/licenses/{id}", delete(identities::revoke))
        .route("/v1/verify", axum::routing::post(verify::verify))
        .route("/admin/v1/policy", get(policy::show))
        .route(
            "/admin/v1/policy/reload",
            axum::routing::post(policy::reload),
        )
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let metrics = if state.metrics_public {
        Router::new().route("/metrics", get(metrics))
    } else {
        Router::new()
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(metrics)
        .merge(api)
        .fallback(|| async {
            problem(Problem::new(
                ProblemKind::NotFound,
                "no such admin endpoint",
            ))
        })
        .layer(middleware::map_response(as_problem))
        .with_state(state)
}

/// Every error from the admin listener is problem+json — the framework's own too (body limit,
/// wrong content type, bad multipart, bad JSON, wrong method), with its message as the detail
/// and what to send instead.
async fn as_problem(r: Response) -> Response {
    let status = r.status();
    let is_problem = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return r;
    }
    let text = axum::body::to_bytes(r.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (kind, hint) = match status.as_u16() {
        413 => (
            ProblemKind::BodyTooLarge,
            format!("; the admin API takes bodies up to {MAX_UPLOAD} bytes"),
        ),
        415 => (
            ProblemKind::BadRequest,
            "; send the Content-Type the endpoint documents (docs/openapi.yaml)".to_string(),
        ),
        422 => (ProblemKind::Unprocessable, String::new()),
        404 => (ProblemKind::NotFound, String::new()),
        s if s >= 500 => (ProblemKind::Internal, String::new()),
        _ => (
            ProblemKind::BadRequest,
            "; see docs/openapi.yaml for what this endpoint takes".to_string(),
        ),
    };
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    problem(Problem::new(kind, format!("{detail}{hint}")).with_status(status.as_u16()))
}

fn problem(p: Problem) -> Response {
    let (status, headers, body) = p.response();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            map.insert(name, value);
        }
    }
    (status, map, body).into_response()
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(want) = s.token_digest else {
        return problem(Problem::new(
            ProblemKind::Unavailable,
            "no admin token is configured (set LIKEGUARD_ADMIN_TOKEN)",
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
    match given {
        Some(g) if bool::from(g.ct_eq(&want)) => next.run(req).await,
        _ => {
            let mut r = problem(Problem::new(
                ProblemKind::Unauthorized,
                "a valid bearer token is required",
            ));
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            r
        }
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// What `/readyz` reports, also exported as gauges when `/metrics` is scraped.
struct Readiness {
    serving: bool,
    /// `None`: embedded store; `Some(false)`: Redis unreachable.
    shared: Option<bool>,
    upstreams: Vec<crate::telemetry::UpstreamState>,
    status: &'static str,
}

fn readiness(s: &AdminState) -> Readiness {
    let serving = s.ready.load(Ordering::Acquire);
    let shared = s.faces.as_ref().and_then(|f| f.registry.shared_healthy());
    let upstreams = s.metrics.upstreams.states();
    let failing = upstreams.iter().any(|u| u.failing);
    // Redis down, or a route's upstream failing: still serving, but say so.
    let status = match (serving, shared, failing) {
        (false, _, _) => "starting",
        (true, Some(false), _) | (true, _, true) => "degraded",
        (true, _, false) => "ready",
    };
    Readiness {
        serving,
        shared,
        upstreams,
        status,
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let Readiness {
        serving,
        shared,
        upstreams,
        status,
    } = readiness(&s);
    let body = serde_json::json!({
        "status": status,
        "store": match shared { None => "embedded", Some(true) => "redis", Some(false) => "redis unreachable" },
        "checks": {
            "proxy": serving,
            "known_media_entries": s.bank.len(),
            "face_recognition": s.faces.is_some(),
            "identities": s.faces.as_ref().map(|f| f.registry.len()),
            "upstreams": upstreams,
        }
    });
    let code = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let r = readiness(&s);
    s.metrics.degraded.set(i64::from(r.status == "degraded"));
    s.metrics.store_up.set(i64::from(r.shared != Some(false)));
    if let Some(faces) = &s.faces {
        for (model, depth) in faces.engine.queue_depths() {
            s.metrics
                .inference_queue
                .with_label_values(&[model])
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn list_known(State(s): State<AdminState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "entries": s.bank.list() }))
}

#[derive(Deserialize)]
struct AddQuery {
    action: Option<KnownAction>,
    #[serde(default)]
    label: String,
}

/// Hashes shared by another party (no media needed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddHashes {
    sha256: Option<String>,
    pdq: Option<String>,
    action: KnownAction,
    #[serde(default)]
    label: String,
}

/// `POST /admin/v1/known-media`: either a media file as the body (`?action=block&label=...`),
/// or JSON `{sha256?, pdq?, action, label?}`.
async fn add_known(
    State(s): State<AdminState>,
    Query(q): Query<AddQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bank = s.bank.clone();
    let result = if is_json {
        let h: AddHashes = match serde_json::from_slice(&body) {
            Ok(h) => h,
            Err(e) => return problem(Problem::new(ProblemKind::MalformedBody, e.to_string())),
        };
        tokio::task::spawn_blocking(move || {
            bank.add(h.sha256, h.pdq.map(|p| (p, None)), h.action, h.label)
        })
        .await
    } else {
        let Some(media) = sniff(&body) else {
            return problem(Problem::new(
                ProblemKind::UnsupportedMedia,
                "the body is not an image, video or audio file likeguard reads",
            ));
        };
        let action = q.action.unwrap_or(KnownAction::Block);
        // Decoding and hashing are CPU work: off the runtime.
        tokio::task::spawn_blocking(move || bank.add_media(&body, media, action, q.label)).await
    };
    match result {
        Ok(Ok(entry)) => (StatusCode::CREATED, axum::Json(entry)).into_response(),
        Ok(Err(BankError::Invalid(why))) => problem(Problem::new(ProblemKind::BadRequest, why)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "known-media store failed");
            problem(Problem::new(
                ProblemKind::Internal,
                "could not store the entry",
            ))
        }
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}

async fn remove_known(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let bank = s.bank.clone();
    match tokio::task::spawn_blocking(move || bank.remove(&id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => problem(Problem::new(ProblemKind::NotFound, "no such entry")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "known-media store failed");
            problem(Problem::new(
                ProblemKind::Internal,
                "could not remove the entry",
            ))
        }
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}
