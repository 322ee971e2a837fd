//! The inspector seam: something that looks at media items and reports findings.
//!
//! Inspectors are shared by every request (built once at start). CPU-heavy work inside an
//! inspector must leave the async runtime (`spawn_blocking` or a dedicated pool).

pub mod faces;

use std::sync::Arc;

use async_trait::async_trait;

use crate::extract::MediaItem;
use crate::policy::{Decision, Finding};

#[derive(Debug, thiserror::Error)]
#[error("inspector {inspector}: {detail}")]
pub struct InspectError {
    pub inspector: &'static str,
    pub detail: String,
    pub cause: Cause,
}

/// Why an inspector could not look at an item: it decides what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The inspector failed (a bound, an internal error): the route's `on_failure`.
    Failed,
    /// Refused for load (a full inference queue), not for this item: `on_failure`, with
    /// `Retry-After`.
    Overloaded,
    /// The media is corrupt or truncated: the sender's fault (422), whatever `on_failure`
    /// says — a viewer may still show what a decoder could not read.
    Corrupt,
    /// Not a format that can be read: `on_unsupported`.
    Unsupported,
    /// A bound (the frame budget) stopped the inspection before the end of the medium and
    /// nothing in the part seen was blocked: `on_failure`, and the decision says so.
    Incomplete,
}

/// What an inspector may know about the request besides the media item.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Who is asking, from the configured licensee header.
    pub licensee: Option<String>,
    pub method: String,
    pub path: String,
    pub route: String,
    /// The client's address (audit only; never given to the policy as personal data).
    pub client: Option<std::net::IpAddr>,
    /// The request headers `policy.expose_headers` names (lower-case name → value).
    pub headers: std::collections::BTreeMap<String, String>,
}

#[async_trait]
pub trait Inspector: Send + Sync {
    /// Stable name, used in findings, logs and metrics.
    fn name(&self) -> &'static str;
    /// Findings for one item (empty when nothing matched).
    async fn inspect(&self, item: &MediaItem, ctx: &Context) -> Result<Vec<Finding>, InspectError>;
}

/// All configured inspectors, run over every item of a body.
#[derive(Clone, Default)]
pub struct Inspection {
    inspectors: Vec<Arc<dyn Inspector>>,
}

impl Inspection {
    pub fn new(inspectors: Vec<Arc<dyn Inspector>>) -> Self {
        Self { inspectors }
    }

    /// Decide on a body's items. Stops early once an item is blocked: nothing can outrank it.
    pub async fn decide(
        &self,
        items: &[MediaItem],
        ctx: &Context,
    ) -> Result<Decision, InspectError> {
        let mut findings = Vec::new();
        'items: for item in items {
            for inspector in &self.inspectors {
                let found = inspector.inspect(item, ctx).await?;
                let blocked = found
                    .iter()
                    .any(|f| f.action == crate::policy::Action::Block);
                findings.extend(found);
                if blocked {
                    break 'items;
                }
            }
        }
        Ok(Decision::combine(findings))
    }
}
