//! Per-request metrics with the label lookups done once at start: a request touches counters,
//! not label maps.

use prometheus::IntCounter;

use super::Router;
use crate::telemetry::Metrics;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const PATHS: [&str; 2] = ["passthrough", "inspected"];

/// `likeguard_requests_total` per route × path × status class, and the byte counters.
pub(super) struct Stats {
    /// Indexed by `Route::index`; the last entry is "none" (no route matched).
    requests: Vec<[[IntCounter; 5]; 2]>,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
}

impl Stats {
    pub(super) fn new(metrics: &Metrics, router: &Router) -> Self {
        let names = router
            .routes()
            .iter()
            .map(|r| r.name.as_str())
            .chain(["none"]);
        let requests = names
            .map(|route| {
                PATHS.map(|path| {
                    CLASSES.map(|class| metrics.requests.with_label_values(&[route, path, class]))
                })
            })
            .collect();
        Self {
            requests,
            request_bytes: metrics.bytes.with_label_values(&["request"]),
            response_bytes: metrics.bytes.with_label_values(&["response"]),
        }
    }

    /// One finished request; `status` 0 (nothing sent) counts as 5xx.
    pub(super) fn record(
        &self,
        route: Option<usize>,
        inspected: bool,
        status: u16,
        body_in: usize,
        body_out: usize,
    ) {
        let by_route = route
            .and_then(|i| self.requests.get(i))
            .or(self.requests.last());
        if let Some(by_path) = by_route {
            let class = match status {
                100..=499 => usize::from(status / 100 - 1),
                _ => 4,
            };
            by_path[usize::from(inspected)][class].inc();
        }
        self.request_bytes.inc_by(body_in as u64);
        self.response_bytes.inc_by(body_out as u64);
    }
}
