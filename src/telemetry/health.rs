//! Upstream health per route, as the proxy sees it: failures (connect, timeout, broken
//! exchange, 5xx answers) counted and the consecutive run tracked, so `/readyz` can say
//! `degraded` while a route's upstream is failing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounterVec;

/// Consecutive failures after which a route's upstream counts as failing.
pub const FAILING_AFTER: u32 = 3;
/// A failing upstream that has not failed for this long is no longer reported.
pub const FAILING_FOR: Duration = Duration::from_secs(30);

/// How an upstream exchange failed.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    Connect,
    Timeout,
    Exchange,
    /// The upstream answered 5xx.
    ServerError,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Exchange => "exchange",
            Self::ServerError => "5xx",
        }
    }
}

struct RouteHealth {
    route: String,
    upstream: String,
    consecutive: AtomicU32,
    last_failure_ms: AtomicU64,
}

/// Set once by the proxy (its routes); read by `/readyz`.
#[derive(Default)]
pub struct UpstreamHealth {
    routes: OnceLock<Vec<RouteHealth>>,
    failures: OnceLock<IntCounterVec>,
}

/// One route's upstream as `/readyz` reports it.
#[derive(Debug, serde::Serialize)]
pub struct UpstreamState {
    pub route: String,
    pub upstream: String,
    pub failing: bool,
    pub consecutive_failures: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl UpstreamHealth {
    pub(super) fn with_counter(failures: IntCounterVec) -> Self {
        let h = Self::default();
        let _ = h.failures.set(failures);
        h
    }

    /// The routes, by index (once, at proxy start).
    pub fn register(&self, routes: impl IntoIterator<Item = (String, String)>) {
        let _ = self.routes.set(
            routes
                .into_iter()
                .map(|(route, upstream)| RouteHealth {
                    route,
                    upstream,
                    consecutive: AtomicU32::new(0),
                    last_failure_ms: AtomicU64::new(0),
                })
                .collect(),
        );
    }

    pub fn failed(&self, route: usize, how: Failure) {
        let Some(r) = self.routes.get().and_then(|v| v.get(route)) else {
            return;
        };
        let n = r.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        r.last_failure_ms.store(now_ms(), Ordering::Relaxed);
        // Once per failing run, not once per request: an outage must not flood the log.
        if n == FAILING_AFTER {
            tracing::warn!(route = %r.route, upstream = %r.upstream, kind = how.as_str(),
                failures = n, "upstream failing");
        }
        if let Some(c) = self.failures.get() {
            c.with_label_values(&[&r.route, how.as_str()]).inc();
        }
    }

    pub fn succeeded(&self, route: usize) {
        if let Some(r) = self.routes.get().and_then(|v| v.get(route))
            && r.consecutive.load(Ordering::Relaxed) != 0
        {
            let was = r.consecutive.swap(0, Ordering::Relaxed);
            if was >= FAILING_AFTER {
                tracing::info!(route = %r.route, upstream = %r.upstream, "upstream recovered");
            }
        }
    }

    /// Every route's upstream, failing or not.
    pub fn states(&self) -> Vec<UpstreamState> {
        let now = now_ms();
        self.routes
            .get()
            .map(|v| {
                v.iter()
                    .map(|r| {
                        let n = r.consecutive.load(Ordering::Relaxed);
                        let recent = now.saturating_sub(r.last_failure_ms.load(Ordering::Relaxed))
                            < FAILING_FOR.as_millis() as u64;
                        UpstreamState {
                            route: r.route.clone(),
                            upstream: r.upstream.clone(),
                            failing: n >= FAILING_AFTER && recent,
                            consecutive_failures: n,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
