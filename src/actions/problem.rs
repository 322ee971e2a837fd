//! RFC 9457 problem details, the one error shape every likeguard response uses.

use serde::Serialize;

/// Every kind of problem likeguard reports; the `type` URI and the metric label come from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Blocked,
    NoRoute,
    BodyTooLarge,
    TooManyItems,
    MalformedBody,
    UnsupportedMedia,
    ClientTimeout,
    ClientError,
    InspectionFailed,
    /// Only part of the media could be inspected (the frame budget) on a fail-closed route.
    InspectionIncomplete,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamError,
    Unauthorized,
    NotFound,
    BadRequest,
    /// A request origins could read in more than one way (two Hosts, an encoded slash, ...).
    AmbiguousRequest,
    /// An upgrade (WebSocket, h2c, ...) on a route that inspects: its bytes would escape.
    UpgradeRefused,
    /// Well-formed but unusable (e.g. an enrolment photo without exactly one face).
    Unprocessable,
    Unavailable,
    /// An upstream has no free connection slot within the queue wait (`connections:`).
    Overloaded,
    Internal,
}

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::NoRoute => "no-route",
            Self::BodyTooLarge => "body-too-large",
            Self::TooManyItems => "too-many-items",
            Self::MalformedBody => "malformed-body",
            Self::UnsupportedMedia => "unsupported-media",
            Self::ClientTimeout => "client-timeout",
            Self::ClientError => "client-error",
            Self::InspectionFailed => "inspection-failed",
            Self::InspectionIncomplete => "inspection-incomplete",
            Self::UpstreamUnreachable => "upstream-unreachable",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::UpstreamError => "upstream-error",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not-found",
            Self::BadRequest => "bad-request",
            Self::AmbiguousRequest => "ambiguous-request",
            Self::UpgradeRefused => "upgrade-refused",
            Self::Unprocessable => "unprocessable",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Blocked => "Unavailable For Legal Reasons",
            Self::NoRoute => "No route for this request",
            Self::BodyTooLarge => "Body too large to inspect",
            Self::TooManyItems => "Too many media items",
            Self::MalformedBody => "Malformed body",
            Self::UnsupportedMedia => "Unsupported media",
            Self::ClientTimeout => "Client too slow",
            Self::ClientError => "Client connection error",
            Self::InspectionFailed => "Inspection failed",
            Self::InspectionIncomplete => "Inspection incomplete",
            Self::UpstreamUnreachable => "Upstream unreachable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::UpstreamError => "Upstream error",
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "Not found",
            Self::BadRequest => "Bad request",
            Self::AmbiguousRequest => "Ambiguous request",
            Self::UpgradeRefused => "Upgrade refused on an inspected route",
            Self::Unprocessable => "Unprocessable content",
            Self::Unavailable => "Service unavailable",
            Self::Overloaded => "Overloaded",
            Self::Internal => "Internal error",
        }
    }

    fn status(self) -> u16 {
        match self {
            Self::Blocked => 451,
            Self::NoRoute | Self::NotFound => 404,
            Self::BodyTooLarge | Self::TooManyItems => 413,
            Self::MalformedBody
            | Self::BadRequest
            | Self::ClientError
            | Self::AmbiguousRequest
            | Self::UpgradeRefused => 400,
            Self::Unprocessable => 422,
            Self::UnsupportedMedia => 415,
            Self::ClientTimeout => 408,
            Self::InspectionFailed
            | Self::InspectionIncomplete
            | Self::Unavailable
            | Self::Overloaded => 503,
            Self::UpstreamUnreachable | Self::UpstreamError => 502,
            Self::UpstreamTimeout => 504,
            Self::Unauthorized => 401,
            Self::Internal => 500,
        }
    }
}

/// A problem+json body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip)]
    pub kind: Option<ProblemKind>,
    /// Seconds for `Retry-After` (refusals for load).
    #[serde(skip)]
    pub retry_after: Option<u16>,
}

pub const CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:likeguard:problem:{}", kind.slug()),
            title: kind.title(),
            status: kind.status(),
            detail: detail.into(),
            rule: None,
            decision_id: None,
            kind: Some(kind),
            retry_after: None,
        }
    }

    /// Ask the client to come back in `secs` seconds (`Retry-After`, RFC 9110 §10.2.3).
    pub fn with_retry_after(mut self, secs: u16) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Override the status (e.g. inspection failure on the response side is a 502).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn blocked(rule: &str, decision_id: &str) -> Self {
        Self {
            rule: Some(rule.to_string()),
            decision_id: Some(decision_id.to_string()),
            ..Self::new(
                ProblemKind::Blocked,
                "This content was blocked by the likeness-protection policy.",
            )
        }
    }

    pub fn slug(&self) -> &'static str {
        self.kind.map_or("unknown", ProblemKind::slug)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The whole response, for any transport: status, headers, body. Every problem likeguard
    /// answers (proxy and admin) is written from this.
    pub fn response(&self) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
        let mut headers = vec![
            ("content-type", CONTENT_TYPE.to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(secs) = self.retry_after {
            headers.push(("retry-after", secs.to_string()));
        }
        (self.status, headers, self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_a_header_only_when_set() {
        let p = Problem::new(ProblemKind::Overloaded, "busy").with_retry_after(3);
        let (status, headers, body) = p.response();
        assert_eq!(status, 503);
        assert!(headers.contains(&("retry-after", "3".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:likeguard:problem:overloaded");
        assert!(v.get("retry_after").is_none());
        let (_, headers, _) = Problem::new(ProblemKind::NotFound, "x").response();
        assert!(headers.iter().all(|(k, _)| *k != "retry-after"));
    }

    #[test]
    fn blocked_problem_shape() {
        let p = Problem::blocked("known-media", "d-1");
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["status"], 451);
        assert_eq!(v["type"], "urn:likeguard:problem:blocked");
        assert_eq!(v["rule"], "known-media");
        assert_eq!(v["decision_id"], "d-1");
        assert!(v["title"].as_str().unwrap().contains("Legal"));
    }
}
