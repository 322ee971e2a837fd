//! `/admin/v1/identities`: enrol (multipart photos), list, show, erase, export.

use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{AdminState, problem};
use crate::actions::{Problem, ProblemKind};
use crate::inspect::faces::{FaceService, reference_embeddings};
use crate::license::{LicenseError, NewLicense};
use crate::registry::{Consent, NewIdentity, Protection, RegistryError};

fn service(s: &AdminState) -> Result<Arc<FaceService>, Box<Response>> {
    s.faces.clone().ok_or_else(|| {
        Box::new(problem(Problem::new(
            ProblemKind::Unavailable,
            "face recognition is not loaded (inference disabled or models missing)",
        )))
    })
}

/// A write the store refused (e.g. Redis unreachable): 503, with the cause in the log only.
fn store_failed(store: &str, what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{store} store failed");
    // The cause (a full disk, Redis down) tells the operator what to fix; admin-only.
    problem(Problem::new(
        ProblemKind::Unavailable,
        format!("the {store} store is unavailable ({e}); nothing was {what}"),
    ))
}

#[derive(Default)]
struct Form {
    name: Option<String>,
    protection: Option<String>,
    owner: Option<String>,
    consent_by: Option<String>,
    consent_at: Option<String>,
    consent_method: Option<String>,
    photos: Vec<(String, Bytes)>,
}

async fn read_form(mut mp: Multipart) -> Result<Form, Box<Response>> {
    let bad = |m: String| Box::new(problem(Problem::new(ProblemKind::MalformedBody, m)));
    let mut form = Form::default();
    while let Some(field) = mp.next_field().await.map_err(|e| bad(e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "photo" {
            let label = field
                .file_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("photo {}", form.photos.len() + 1));
            let data = field.bytes().await.map_err(|e| bad(e.body_text()))?;
            form.photos.push((label, data));
            continue;
        }
        let text = field.text().await.map_err(|e| bad(e.body_text()))?;
        let slot = match name.as_str() {
            "name" => &mut form.name,
            "protection" => &mut form.protection,
            "owner" => &mut form.owner,
            "consent_by" => &mut form.consent_by,
            "consent_at" => &mut form.consent_at,
            "consent_method" => &mut form.consent_method,
            other => return Err(bad(format!("unknown field {other:?}"))),
        };
        *slot = Some(text);
    }
    Ok(form)
}

/// `POST /admin/v1/identities`: multipart `name`, `protection` (strict | standard | monitor,
/// default strict), optional `owner`, `consent_by`/`consent_at`/`consent_method`, and one or
/// more `photo` files, each holding exactly one usable face.
pub async fn enrol(State(s): State<AdminState>, mp: Multipart) -> Response {
    let service = match service(&s) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let form = match read_form(mp).await {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let unprocessable = |m: String| problem(Problem::new(ProblemKind::Unprocessable, m));
    let Some(name) = form.name.filter(|n| !n.trim().is_empty()) else {
        return unprocessable("the `name` field is required".into());
    };
    let protection = match form.protection.as_deref() {
        None => Protection::default(),
        Some(p) => match Protection::parse(p) {
            Some(p) => p,
            None => {
                return unprocessable(format!(
                    "protection {p:?} is not one of strict, standard, monitor"
                ));
            }
        },
    };
    if form.photos.is_empty() {
        return unprocessable("at least one `photo` file part is required".into());
    }
    let consent = form.consent_by.map(|by| Consent {
        by,
        at: form.consent_at.unwrap_or_default(),
        method: form.consent_method.unwrap_or_default(),
    });
    let photos = form.photos;
    let svc = service.clone();
    // Decode + detect + embed every photo: CPU work, off the runtime.
    let embedded = tokio::task::spawn_blocking(move || {
        reference_embeddings(&svc.decoder, &svc.engine, photos)
    })
    .await;
    let (embeddings, faces) = match embedded {
        Ok(Ok(e)) => e,
        Ok(Err(why)) => return unprocessable(why),
        Err(e) => return problem(Problem::new(ProblemKind::Internal, e.to_string())),
    };
    let registry = service.registry.clone();
    let added = tokio::task::spawn_blocking(move || {
        registry.add(NewIdentity {
            name,
            protection,
            owner: form.owner,
            consent,
            embeddings,
        })
    })
    .await;
    match added {
        Ok(Ok(identity)) => {
            tracing::info!(target: "likeguard::audit", identity = %identity.id, protection = protection.as_str(), "identity enrolled");
            // The identity, and the face each photo gave (never the embeddings).
            let mut body = serde_json::to_value(identity.view()).unwrap_or_default();
            if let Some(map) = body.as_object_mut() {
                map.insert(
                    "faces".into(),
                    serde_json::to_value(&faces).unwrap_or_default(),
                );
            }
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Ok(Err(RegistryError::Invalid(why))) => {
            problem(Problem::new(ProblemKind::Unprocessable, why))
        }
        Ok(Err(e)) => store_failed("identity", "enrolled", &e),
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}

pub async fn list(State(s): State<AdminState>) -> Response {
    match service(&s) {
        Ok(f) => axum::Json(serde_json::json!({ "identities": f.registry.list() })).into_response(),
        Err(r) => *r,
    }
}

pub async fn show(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    match service(&s).map(|f| f.registry.get(&id)) {
        Ok(Some(i)) => axum::Json(i.view()).into_response(),
        Ok(None) => problem(Problem::new(ProblemKind::NotFound, "no such identity")),
        Err(r) => *r,
    }
}

/// Most decision records an identity export carries inline (they are held in memory to build
/// the answer); past it, `decisions_truncated` is true and `/admin/v1/decisions/export?identity=` streams them all.
const EXPORT_DECISIONS: usize = 10_000;

/// Art. 20: everything held about the identity, reference embeddings and the decision records
/// naming it included.
pub async fn export(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let identity = match service(&s).map(|f| f.registry.get(&id)) {
        Ok(Some(i)) => i,
        Ok(None) => return problem(Problem::new(ProblemKind::NotFound, "no such identity")),
        Err(r) => return *r,
    };
    let mut out = match serde_json::to_value(&*identity) {
        Ok(v) => v,
        Err(e) => return problem(Problem::new(ProblemKind::Internal, e.to_string())),
    };
    if let Some(log) = s.log.clone() {
        let decisions = tokio::task::spawn_blocking(move || {
            let mut q = crate::audit::Query {
                identity: Some(id),
                limit: crate::audit::MAX_LIMIT,
                ..Default::default()
            };
            let mut all = Vec::new();
            loop {
                let page = log.db().list(&q)?;
                all.extend(page.decisions);
                match page.next_cursor {
                    Some(c) if all.len() < EXPORT_DECISIONS => q.cursor = Some(c),
                    Some(_) => return Ok((all, true)),
                    None => return Ok((all, false)),
                }
            }
        })
        .await;
        match decisions {
            Ok(Ok((records, truncated))) => {
                out["decisions"] = serde_json::json!(records);
                out["decisions_truncated"] = serde_json::json!(truncated);
            }
            Ok(Err::<_, crate::audit::AuditError>(e)) => {
                tracing::error!(error = %e, "decision log read failed");
                return problem(Problem::new(
                    ProblemKind::Internal,
                    "the decision log could not be read",
                ));
            }
            Err(e) => return problem(Problem::new(ProblemKind::Internal, e.to_string())),
        }
    }
    axum::Json(out).into_response()
}

/// Art. 17: erase the identity, every embedding, its licenses and the decision records that
/// name it. Records go last so none made while the identity still existed survives; if that
/// step fails the answer says so and repeating the `DELETE` finishes it (an identity already
/// gone still has its records erased).
pub async fn erase(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let service = match service(&s) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let (registry, licenses) = (service.registry.clone(), service.licenses.clone());
    let log = s.log.clone();
    let id2 = id.clone();
    let erased = tokio::task::spawn_blocking(move || {
        // Licenses first, so a failure part-way never leaves licenses of an erased identity.
        let licenses = licenses
            .remove_identity(&id2)
            .map_err(|e| Unfinished::Store(e.to_string()))?;
        let found = registry
            .remove(&id2)
            .map_err(|e| Unfinished::Store(e.to_string()))?;
        let (records, again) = match &log {
            Some(log) => log
                .erase(&id2)
                .map(|e| (e.records, e.again))
                .map_err(|e| Unfinished::Records(e.to_string()))?,
            None => (0, false),
        };
        // `again`: a repeated DELETE finishing an erasure that failed part-way.
        Ok((found || records > 0 || again).then_some((licenses, records)))
    })
    .await;
    match erased {
        Ok(Ok(Some((licenses, records)))) => {
            tracing::info!(target: "likeguard::audit", identity = %id, licenses, records, "identity erased");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(None)) => problem(Problem::new(ProblemKind::NotFound, "no such identity")),
        Ok(Err(Unfinished::Store(e))) => store_failed("identity", "erased", &e),
        Ok(Err(Unfinished::Records(e))) => {
            tracing::error!(error = %e, "decision log erasure failed");
            problem(Problem::new(
                ProblemKind::Unavailable,
                format!(
                    "the identity is erased but its decision records are not yet ({e}); repeat the DELETE to finish"
                ),
            ))
        }
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}

/// Where an erasure stopped.
enum Unfinished {
    /// Nothing was erased (the identity or license store refused).
    Store(String),
    /// The identity is gone; its decision records are not yet.
    Records(String),
}

/// `POST /admin/v1/licenses`: JSON `identity_id`, `licensee`, `usages`, `media_kinds`,
/// `valid_from`, `valid_until` (RFC 3339), `obligations` (`watermark`, `tag`).
pub async fn grant(State(s): State<AdminState>, body: Bytes) -> Response {
    let service = match service(&s) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let new: NewLicense = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return problem(Problem::new(ProblemKind::MalformedBody, e.to_string())),
    };
    if service.registry.get(&new.identity_id).is_none() {
        return problem(Problem::new(
            ProblemKind::Unprocessable,
            format!("no identity {:?}", new.identity_id),
        ));
    }
    let licenses = service.licenses.clone();
    match tokio::task::spawn_blocking(move || licenses.grant(new)).await {
        Ok(Ok(l)) => {
            tracing::info!(target: "likeguard::audit", license = %l.id, identity = %l.identity_id, licensee = %l.licensee, "license granted");
            (StatusCode::CREATED, axum::Json(l)).into_response()
        }
        Ok(Err(LicenseError::Invalid(why))) => {
            problem(Problem::new(ProblemKind::Unprocessable, why))
        }
        Ok(Err(e)) => store_failed("license", "granted", &e),
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}

pub async fn licenses(State(s): State<AdminState>) -> Response {
    match service(&s) {
        Ok(f) => axum::Json(serde_json::json!({ "licenses": f.licenses.list() })).into_response(),
        Err(r) => *r,
    }
}

pub async fn revoke(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let service = match service(&s) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let licenses = service.licenses.clone();
    let id2 = id.clone();
    match tokio::task::spawn_blocking(move || licenses.revoke(&id2)).await {
        Ok(Ok(true)) => {
            tracing::info!(target: "likeguard::audit", license = %id, "license revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(false)) => problem(Problem::new(ProblemKind::NotFound, "no such license")),
        Ok(Err(e)) => store_failed("license", "revoked", &e),
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}
