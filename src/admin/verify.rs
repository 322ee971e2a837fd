//! `POST /v1/verify`: is a protected identity in this image, and may the caller use it?
//! Like the seeds' verify API, on the admin listener (bearer token).

use std::time::SystemTime;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::{AdminState, problem};
use crate::actions::{Problem, ProblemKind};
use crate::extract::sniff;
use crate::policy::Action;

#[derive(Serialize)]
struct Verdict {
    matched: bool,
    identity_id: Option<String>,
    similarity: Option<f32>,
    /// Faces found in the image.
    faces: usize,
    /// Whether the caller may use the likeness as sent (nothing blocks it).
    authorized: bool,
    license: Option<String>,
    decision: Action,
    rule: String,
}

pub async fn verify(State(s): State<AdminState>, req: Request) -> Response {
    let Some(service) = s.faces.clone() else {
        return problem(Problem::new(
            ProblemKind::Unavailable,
            "face recognition is not loaded",
        ));
    };
    let licensee = req
        .headers()
        .get(s.licensee_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let data = if is_multipart {
        match image_part(req).await {
            Ok(d) => d,
            Err(r) => return *r,
        }
    } else {
        match Bytes::from_request(req, &()).await {
            Ok(d) => d,
            Err(e) => return problem(Problem::new(ProblemKind::MalformedBody, e.body_text())),
        }
    };
    let Some(media) = sniff(&data) else {
        return problem(Problem::new(
            ProblemKind::UnsupportedMedia,
            "send an image (raw body, or multipart field `image`)",
        ));
    };
    let svc = service.clone();
    let found = match tokio::task::spawn_blocking(move || {
        let (summary, faces) = crate::inspect::faces::faces_in_media(
            &svc.decoder,
            &svc.engine,
            data,
            Some(media.kind),
            true,
        )?;
        let threshold = svc.engine.threshold();
        let best = faces
            .iter()
            .filter_map(|f| svc.registry.search(f.embedding.as_ref()?, threshold))
            .max_by(|a, b| a.similarity.total_cmp(&b.similarity));
        Ok::<_, crate::inspect::faces::FaceScanError>((summary, faces.len(), best))
    })
    .await
    {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return problem(Problem::new(ProblemKind::Unprocessable, e.to_string())),
        Err(e) => return problem(Problem::new(ProblemKind::Internal, e.to_string())),
    };
    let (_, faces, best) = found;
    let verdict = match best {
        None => Verdict {
            matched: false,
            identity_id: None,
            similarity: None,
            faces,
            authorized: true,
            license: None,
            decision: Action::Allow,
            rule: crate::policy::DEFAULT_RULE.into(),
        },
        Some(m) => {
            let r = service.rule_on(&m, licensee.as_deref(), media.kind, SystemTime::now());
            Verdict {
                matched: true,
                identity_id: Some(m.identity.id.clone()),
                similarity: Some(m.similarity),
                faces,
                authorized: r.action != Action::Block,
                license: r.license.map(|l| l.id),
                decision: r.action,
                rule: r.rule,
            }
        }
    };
    axum::Json(verdict).into_response()
}

async fn image_part(req: Request) -> Result<Bytes, Box<Response>> {
    let bad = |m: String| Box::new(problem(Problem::new(ProblemKind::MalformedBody, m)));
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    while let Some(field) = mp.next_field().await.map_err(|e| bad(e.body_text()))? {
        if field.name() == Some("image") {
            return field.bytes().await.map_err(|e| bad(e.body_text()));
        }
    }
    Err(bad("no `image` field in the form".into()))
}
