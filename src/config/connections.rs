//! `connections:` — how many connections likeguard holds to its upstreams, so a burst of
//! clients or a slow upstream cannot make it open thousands (issue 18).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Requests in flight to one upstream (one `host:port`, shared by the routes naming it) at
    /// once; each holds one connection. Further requests wait for `upstream_queue`.
    #[serde(default = "default_upstream_max")]
    pub upstream_max: usize,
    /// How long a request waits for a free slot before it is answered 503 with `Retry-After`.
    #[serde(default = "default_queue", with = "humantime_serde")]
    pub upstream_queue: Duration,
    /// Idle keep-alive upstream connections kept for reuse, across all upstreams.
    #[serde(default = "default_idle")]
    pub upstream_idle: usize,
    /// The `Retry-After` sent with 503s for overload (a saturated upstream or inspection).
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            upstream_max: default_upstream_max(),
            upstream_queue: default_queue(),
            upstream_idle: default_idle(),
            retry_after: default_retry_after(),
        }
    }
}

impl ConnectionsConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.upstream_max == 0 {
            return Err((
                "connections.upstream_max".into(),
                "must be at least 1".into(),
            ));
        }
        if self.retry_after < Duration::from_secs(1) {
            return Err((
                "connections.retry_after".into(),
                "must be at least 1s (Retry-After counts whole seconds)".into(),
            ));
        }
        Ok(())
    }

    /// `Retry-After` in whole seconds.
    pub fn retry_after_secs(&self) -> u16 {
        u16::try_from(self.retry_after.as_secs().max(1)).unwrap_or(u16::MAX)
    }
}

fn default_upstream_max() -> usize {
    256
}

fn default_queue() -> Duration {
    Duration::from_secs(2)
}

fn default_idle() -> usize {
    64
}

fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}
