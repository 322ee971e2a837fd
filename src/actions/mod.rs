//! Enforcing decisions: block responses (problem+json), tag headers, and the watermark seam.

mod problem;
pub mod provenance;
mod tag;
pub mod watermark;

pub use problem::{CONTENT_TYPE as PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
pub use tag::TagHeaders;

use bytes::Bytes;

use crate::extract::MediaItem;
use crate::policy::Decision;

#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    #[error("no watermarker is configured")]
    Unavailable,
    #[error("cannot watermark {0}")]
    Unsupported(String),
    #[error("watermarking failed: {0}")]
    Failed(String),
}

/// The seam the watermark issue fills: mark one media item, returning its new bytes.
/// Until one is configured, a `watermark` decision is an action failure and follows the
/// route's `on_failure` setting (never silently passed unmarked).
pub trait Watermarker: Send + Sync {
    fn mark(&self, item: &MediaItem, decision: &Decision) -> Result<Bytes, WatermarkError>;
}
