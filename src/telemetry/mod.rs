//! Logs, audit events and Prometheus metrics.
//!
//! Logs are JSON when `LIKEGUARD_LOG_FORMAT=json` (production) and human-readable otherwise.
//! Audit events go to the `likeguard::audit` target so they can be routed separately.
//! Nothing here ever records body bytes, embeddings or personal data.

mod health;
mod metrics;

pub use health::{Failure as UpstreamFailure, UpstreamHealth, UpstreamState};
pub use metrics::{IcapMetrics, LogMetrics, Metrics};

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Safe to call once per process.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("LIKEGUARD_LOG")
        // Libraries speak at warn unless asked: ONNX Runtime alone logs hundreds of lines at
        // start-up, which would bury "serving".
        .unwrap_or_else(|_| EnvFilter::new("info,ort=warn,pingora_core=warn,pingora_proxy=warn"));
    let json = std::env::var("LIKEGUARD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
