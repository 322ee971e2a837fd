//! Bounded upstream connections (`connections:`). Each upstream (`host:port`, shared by the
//! routes naming it) admits `upstream_max` requests at once, each on one connection; the next
//! waits up to `upstream_queue` for a slot, then is answered 503 with `Retry-After`. Without
//! this, a burst of clients against a slow upstream made pingora open one connection per
//! waiting client (thousands: issue 18).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Route;
use crate::actions::{Problem, ProblemKind};
use crate::config::ConnectionsConfig;

pub struct UpstreamSlots {
    /// By `Route::index`; routes naming the same upstream share one semaphore.
    by_route: Vec<Arc<Semaphore>>,
    max: usize,
    wait: Duration,
    retry_after: u16,
}

impl UpstreamSlots {
    pub fn new(routes: &[Arc<Route>], c: &ConnectionsConfig) -> Self {
        let mut by_upstream: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let by_route = routes
            .iter()
            .map(|r| {
                by_upstream
                    .entry(r.upstream.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(c.upstream_max)))
                    .clone()
            })
            .collect();
        Self {
            by_route,
            max: c.upstream_max,
            wait: c.upstream_queue,
            retry_after: c.retry_after_secs(),
        }
    }

    /// A slot on `route`'s upstream, held until the exchange ends (the permit drops).
    pub async fn acquire(&self, route: usize) -> Result<OwnedSemaphorePermit, Problem> {
        let sem = self.by_route[route].clone();
        match tokio::time::timeout(self.wait, sem.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // (The semaphores are never closed.)
            _ => Err(Problem::new(
                ProblemKind::Overloaded,
                format!(
                    "the upstream already has {} requests in flight and none finished within {:?}",
                    self.max, self.wait
                ),
            )
            .with_retry_after(self.retry_after)),
        }
    }
}
