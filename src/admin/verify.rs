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
use crate::media::sniff;
use crate::policy::Action;

#[derive(Serialize)]
struct Verdict {
    matched: bool,
    identity_id: Option<String>,
    similarity: Option<f32>,
    /// Faces recognised as enrolled identities.
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
    let licensee = s.requester.licensee(req.headers());
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
    let ctx = crate::inspect::Context {
        licensee,
        method: "POST".into(),
        path: "/v1/verify".into(),
        route: "verify".into(),
        ..Default::default()
    };
    let kind = media.kind;
    // Decode, inference and policy: CPU work, off the runtime.
    let outcome = tokio::task::spawn_blocking(move || {
        let (summary, recognised) = svc.recognise(data, Some(kind)).map_err(|e| e.to_string())?;
        let faces = recognised.len();
        let best = recognised
            .iter()
            .max_by(|a, b| a.identity.similarity.total_cmp(&b.identity.similarity));
        let ruled = best
            .map(|r| {
                svc.rule_on(r, &summary, kind, &ctx, SystemTime::now())
                    .map(|ruling| {
                        (
                            r.identity.identity.id.clone(),
                            r.identity.similarity,
                            ruling,
                        )
                    })
            })
            .transpose()?;
        // Never "authorized" on a medium not seen to its end.
        if let Some(incomplete) = &summary.incomplete
            && ruled
                .as_ref()
                .is_none_or(|(_, _, r)| r.action != Action::Block)
        {
            return Err(incomplete.to_string());
        }
        Ok::<_, String>((faces, ruled))
    })
    .await;
    let (faces, ruled) = match outcome {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return problem(Problem::new(ProblemKind::Unprocessable, e)),
        Err(e) => return problem(Problem::new(ProblemKind::Internal, e.to_string())),
    };
    let verdict = match ruled {
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
        Some((identity, similarity, r)) => Verdict {
            matched: true,
            identity_id: Some(identity),
            similarity: Some(similarity),
            faces,
            authorized: r.action != Action::Block,
            license: r.license.map(|l| l.id),
            decision: r.action,
            rule: r.rule,
        },
    };
    axum::Json(verdict).into_response()
}

async fn image_part(req: Request) -> Result<Bytes, Box<Response>> {
    let bad = |m: String| Box::new(problem(Problem::new(ProblemKind::MalformedBody, m)));
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    // One field, `image`: anything else is refused (as enrolment does), so a client's typo is
    // an error, not a silently ignored field.
    let mut image = None;
    while let Some(field) = mp.next_field().await.map_err(|e| bad(e.body_text()))? {
        match field.name() {
            Some("image") if image.is_none() => {
                image = Some(field.bytes().await.map_err(|e| bad(e.body_text()))?);
            }
            Some("image") => return Err(bad("more than one `image` field".into())),
            other => {
                return Err(bad(format!(
                    "unknown field {:?}: the form takes one field, `image`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    image.ok_or_else(|| bad("no `image` field in the form".into()))
}
