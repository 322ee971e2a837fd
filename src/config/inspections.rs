//! `inspections:` — how many bodies are inspected at once in this process. Extraction and
//! decoding run on blocking threads before inference's own bounded queue: without this bound,
//! a burst of uploads started hundreds of decodes at once (hundreds of threads, gigabytes of
//! frames) and starved everything else on the machine (issue 18).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionsConfig {
    /// Bodies inspected at once; 0 = two per CPU.
    #[serde(default)]
    pub max_concurrent: usize,
    /// How long a body waits for its turn before the route's `on_failure` applies (503 with
    /// `Retry-After` when it fails closed).
    #[serde(default = "default_queue", with = "humantime_serde")]
    pub queue: Duration,
}

impl Default for InspectionsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 0,
            queue: default_queue(),
        }
    }
}

impl InspectionsConfig {
    /// `max_concurrent`, with 0 resolved to two per CPU.
    pub fn concurrency(&self) -> usize {
        match self.max_concurrent {
            0 => 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

fn default_queue() -> Duration {
    Duration::from_secs(1)
}
