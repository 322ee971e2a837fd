//! Frame sampling: which decoded frames inference sees. Shared by the GStreamer decoder and
//! the in-process still-image decoders.

use std::time::Duration;

/// Frame sampling, applied right after the decoder so skipped frames cost no scaling or
/// conversion: the first frame always, then the first frame at or after each period boundary
/// (media time from the first frame), optionally key frames only.
#[derive(Default)]
pub(crate) struct Sampler {
    period: Option<Duration>,
    keyframes_only: bool,
    first_pts: Option<u64>,
    next_t: Duration,
    taken: u64,
}

impl Sampler {
    pub(crate) fn new(sampling: &crate::config::Sampling) -> Self {
        Self {
            period: (sampling.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / sampling.fps)),
            keyframes_only: sampling.keyframes_only,
            ..Self::default()
        }
    }

    /// Media time of a raw timestamp (the first one seen is 0).
    pub(crate) fn media_time(&mut self, raw_ns: u64) -> Duration {
        Duration::from_nanos(raw_ns.saturating_sub(*self.first_pts.get_or_insert(raw_ns)))
    }

    /// Whether the frame at `raw_ns` is sampled (updates the schedule when it is).
    pub(crate) fn take(&mut self, raw_ns: Option<u64>, keyframe: bool) -> bool {
        let t = raw_ns.map(|r| self.media_time(r));
        let due = self.period.is_none() || t.is_none_or(|t| t >= self.next_t);
        let keep = self.taken == 0 || (due && (keyframe || !self.keyframes_only));
        if keep {
            self.taken += 1;
            if let (Some(p), Some(t)) = (self.period, t) {
                self.next_t = next_boundary(t, p);
            }
        }
        keep
    }
}

/// The first period boundary after `t` (integer nanoseconds: no float rounding at boundaries).
fn next_boundary(t: Duration, period: Duration) -> Duration {
    let p = period.as_nanos().max(1);
    Duration::from_nanos(((t.as_nanos() / p + 1) * p) as u64)
}
