//! `decision_log:` — what the decision log keeps and for how long (docs/decision-log.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// Keep a decision log at all (on by default: a 451 should always be explainable).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The SQLite file; relative paths are under `state_dir`.
    #[serde(default = "default_file")]
    pub file: PathBuf,
    /// Share (0.0–1.0) of the remaining allow decisions kept. Every block, tag and watermark,
    /// and every decision naming an identity, is always kept; the rest are counted in
    /// `likeguard_decisions_total` either way.
    #[serde(default)]
    pub sample_allows: f64,
    /// How long records are kept (file and fleet stream).
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Records waiting to be written; when full, new records are dropped (counted), traffic
    /// never waits.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// With `store: redis`: the fleet stream's length cap (entries, approximate).
    #[serde(default = "default_stream_max_len")]
    pub stream_max_len: u64,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: default_file(),
            sample_allows: 0.0,
            retention: default_retention(),
            queue: default_queue(),
            stream_max_len: default_stream_max_len(),
        }
    }
}

impl DecisionLogConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.sample_allows) {
            return Err((
                "decision_log.sample_allows".into(),
                format!("must be between 0 and 1, not {}", self.sample_allows),
            ));
        }
        if self.retention < Duration::from_secs(60) {
            return Err((
                "decision_log.retention".into(),
                "must be at least 1m".into(),
            ));
        }
        if self.queue == 0 || self.stream_max_len == 0 {
            return Err((
                "decision_log.queue".into(),
                "queue and stream_max_len must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

fn default_file() -> PathBuf {
    PathBuf::from("decisions.sqlite")
}

fn default_retention() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn default_queue() -> usize {
    10_000
}

fn default_stream_max_len() -> u64 {
    1_000_000
}
