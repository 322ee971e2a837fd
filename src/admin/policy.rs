//! `/admin/v1/policy`: the rule file in force, and reloading it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AdminState, problem};
use crate::actions::{Problem, ProblemKind};

fn describe(p: &crate::policy::rules::Policy, file: Option<&std::path::Path>) -> serde_json::Value {
    json!({
        "name": p.name,
        "version": p.version,
        "file": file.map(|f| f.display().to_string()),
        "default": p.default,
        "rules": p.rules.iter().map(|r| json!({
            "id": r.id,
            "description": r.description,
            "when": r.when,
            "action": r.action,
            "shadow": r.shadow,
        })).collect::<Vec<_>>(),
    })
}

pub async fn show(State(s): State<AdminState>) -> Response {
    match &s.faces {
        Some(f) => axum::Json(describe(&f.policy.current(), f.policy.path())).into_response(),
        None => problem(Problem::new(
            ProblemKind::Unavailable,
            "face recognition (and so the policy) is not loaded",
        )),
    }
}

/// Re-reads the rule file. A file that fails to load is refused with file:line and reason,
/// and the policy in force stays.
pub async fn reload(State(s): State<AdminState>) -> Response {
    let Some(f) = s.faces.clone() else {
        return problem(Problem::new(
            ProblemKind::Unavailable,
            "face recognition (and so the policy) is not loaded",
        ));
    };
    let (store, metrics) = (f.policy.clone(), s.metrics.clone());
    match tokio::task::spawn_blocking(move || store.reload(&metrics)).await {
        Ok(Ok(p)) => axum::Json(describe(&p, f.policy.path())).into_response(),
        Ok(Err(e)) => problem(Problem::new(
            ProblemKind::Unprocessable,
            format!("{e} (the previous policy stays in force)"),
        )),
        Err(e) => problem(Problem::new(ProblemKind::Internal, e.to_string())),
    }
}
