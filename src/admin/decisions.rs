//! `/admin/v1/decisions`: look a decision up by id, list with filters (keyset pages), export
//! as CSV or JSON lines, and the per-identity report (`/admin/v1/identities/{id}/report`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, problem};
use crate::actions::{Problem, ProblemKind};
use crate::audit::{self, DecisionLog};
use crate::policy::Action;

/// Most records a report lists as recent.
const MAX_RECENT: usize = 100;

fn log(s: &AdminState) -> Result<Arc<DecisionLog>, Box<Response>> {
    s.log.clone().ok_or_else(|| {
        Box::new(problem(Problem::new(
            ProblemKind::Unavailable,
            "the decision log is disabled (decision_log.enabled: false)",
        )))
    })
}

fn bad(detail: impl Into<String>) -> Response {
    problem(Problem::new(ProblemKind::BadRequest, detail))
}

/// A query the log refused or could not answer.
fn query_failed(e: audit::AuditError) -> Response {
    match e {
        audit::AuditError::TooBroad(_) => {
            problem(Problem::new(ProblemKind::Unprocessable, e.to_string()))
        }
        e => failed(e),
    }
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "decision log query failed");
    problem(Problem::new(
        ProblemKind::Internal,
        "the decision log could not be read",
    ))
}

/// A UUID in its hyphenated form (ids and cursors), lower-cased; anything else cannot name a
/// decision.
fn as_id(s: &str) -> Option<String> {
    (s.len() == 36)
        .then(|| uuid::Uuid::try_parse(s).ok())
        .flatten()
        .map(|u| u.to_string())
}

/// The filters shared by `list` and `export`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    identity: Option<String>,
    licensee: Option<String>,
    rule: Option<String>,
    action: Option<String>,
    route: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// `export` only: `jsonl` (default) or `csv`.
    format: Option<String>,
}

impl Filters {
    fn query(&self) -> Result<audit::Query, Box<Response>> {
        let time = |v: &Option<String>, name: &str| {
            v.as_deref()
                .map(audit::parse_instant)
                .transpose()
                .map_err(|e| Box::new(bad(format!("{name}: {e}"))))
        };
        let action = match self.action.as_deref() {
            None => None,
            Some("allow") => Some(Action::Allow),
            Some("tag") => Some(Action::Tag),
            Some("watermark") => Some(Action::Watermark),
            Some("block") => Some(Action::Block),
            Some(other) => {
                return Err(Box::new(bad(format!(
                    "action: {other:?} is not one of allow, tag, watermark, block"
                ))));
            }
        };
        let limit = self.limit.unwrap_or(50);
        if !(1..=audit::MAX_LIMIT).contains(&limit) {
            return Err(Box::new(bad(format!(
                "limit: must be 1 to {}",
                audit::MAX_LIMIT
            ))));
        }
        let cursor = match self.cursor.as_deref().map(as_id) {
            None => None,
            Some(Some(c)) => Some(c),
            Some(None) => {
                return Err(Box::new(bad(
                    "cursor: not a cursor this API returned (next_cursor of the previous page)",
                )));
            }
        };
        let (since, until) = (time(&self.since, "since")?, time(&self.until, "until")?);
        if let (Some(a), Some(b)) = (since, until)
            && a > b
        {
            // Each is well-formed; together they name no time: 422, not 400.
            return Err(Box::new(problem(Problem::new(
                ProblemKind::Unprocessable,
                "since is after until",
            ))));
        }
        Ok(audit::Query {
            identity: self.identity.clone(),
            licensee: self.licensee.clone(),
            rule: self.rule.clone(),
            action,
            route: self.route.clone(),
            since,
            until,
            limit,
            cursor,
        })
    }
}

/// `GET /admin/v1/decisions/{id}`.
pub async fn show(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let log = match log(&s) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let Some(id) = as_id(&id) else {
        return problem(Problem::new(ProblemKind::NotFound, "no such decision"));
    };
    match tokio::task::spawn_blocking(move || log.db().get(&id)).await {
        Ok(Ok(Some(r))) => axum::Json(r).into_response(),
        Ok(Ok(None)) => problem(Problem::new(
            ProblemKind::NotFound,
            "no such decision (never made, not kept — allows are sampled — or past retention)",
        )),
        Ok(Err(e)) => query_failed(e),
        Err(e) => failed(e),
    }
}

/// `GET /admin/v1/decisions?identity=&licensee=&rule=&action=&route=&since=&until=&limit=&cursor=`.
pub async fn list(State(s): State<AdminState>, Query(f): Query<Filters>) -> Response {
    let log = match log(&s) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if f.format.is_some() {
        return bad("format: only /admin/v1/decisions/export takes a format");
    }
    let q = match f.query() {
        Ok(q) => q,
        Err(r) => return *r,
    };
    match tokio::task::spawn_blocking(move || log.db().list(&q)).await {
        Ok(Ok(page)) => axum::Json(page).into_response(),
        Ok(Err(e)) => query_failed(e),
        Err(e) => failed(e),
    }
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Csv,
}

/// `GET /admin/v1/decisions/export?format=csv|jsonl&<filters>`: every matching record, newest
/// first, streamed page by page (memory stays one page whatever the size). `limit` is the page
/// size here.
pub async fn export(State(s): State<AdminState>, Query(f): Query<Filters>) -> Response {
    let log = match log(&s) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let format = match f.format.as_deref() {
        None | Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some(other) => return bad(format!("format: {other:?} is not jsonl or csv")),
    };
    let mut q = match f.query() {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if f.limit.is_none() {
        q.limit = audit::MAX_LIMIT;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        let mut first = true;
        loop {
            let page = match log.db().list(&q) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "decision export failed part-way");
                    // Ends the body with an error: the client sees a broken transfer, never a
                    // short file that looks whole.
                    let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
                    return;
                }
            };
            let chunk = match format {
                Format::Jsonl => audit::jsonl(&page.decisions),
                Format::Csv => audit::csv_rows(&page.decisions, first),
            };
            first = false;
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let content_type = match format {
        Format::Jsonl => "application/jsonl",
        Format::Csv => "text/csv; charset=utf-8",
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    since: Option<String>,
    until: Option<String>,
    /// How many recent decisions to list (default 10, at most 100).
    recent: Option<usize>,
}

/// `GET /admin/v1/identities/{id}/report`: where this person's likeness was seen — counts by
/// action, licensee, route and day, and the latest decisions.
pub async fn report(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Query(p): Query<ReportParams>,
) -> Response {
    let log = match log(&s) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Some(faces) = &s.faces
        && faces.registry.get(&id).is_none()
    {
        return problem(Problem::new(ProblemKind::NotFound, "no such identity"));
    }
    let recent = p.recent.unwrap_or(10);
    if recent > MAX_RECENT {
        return bad(format!("recent: at most {MAX_RECENT}"));
    }
    let mut times = [None, None];
    for (slot, (name, v)) in times
        .iter_mut()
        .zip([("since", &p.since), ("until", &p.until)])
    {
        if let Some(v) = v {
            match audit::parse_instant(v) {
                Ok(t) => *slot = Some(t),
                Err(e) => return bad(format!("{name}: {e}")),
            }
        }
    }
    let [since, until] = times;
    if let (Some(a), Some(b)) = (since, until)
        && a > b
    {
        return problem(Problem::new(
            ProblemKind::Unprocessable,
            "since is after until",
        ));
    }
    match tokio::task::spawn_blocking(move || log.db().report(&id, since, until, recent)).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => query_failed(e),
        Err(e) => failed(e),
    }
}
