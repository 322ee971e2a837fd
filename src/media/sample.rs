//! Frame sampling: which decoded frames inference sees. Shared by the GStreamer decoder and
//! the in-process still-image decoders.

use std::time::Duration;

/// Frame sampling, applied right after the decoder so skipped frames cost no scaling or
/// conversion: the first frame always, then the first frame at or after each period boundary
/// (media time from the first frame), optionally key frames only.
///
/// The budget (`max_frames`) covers the whole medium: when the duration is known before the
/// first frame (`spread`), the period widens so the budget reaches the end; a frame that is
/// due once the budget is spent makes the decode incomplete, never a silent stop.
#[derive(Default)]
pub(crate) struct Sampler {
    period: Option<Duration>,
    /// The period from `fps` alone (before `spread`).
    fps_period: Option<Duration>,
    keyframes_only: bool,
    budget: u64,
    first_pts: Option<u64>,
    next_t: Duration,
    taken: u64,
    /// Frames skipped in a row (timestamps that do not advance show up here), and in all.
    skipped_run: u64,
    skipped_total: u64,
    /// Media time of the last frame seen.
    last_t: Option<Duration>,
    /// Where sampling stopped covering the medium, and the bound that made it stop.
    refusal: Option<(Duration, &'static str)>,
}

/// What the sampler makes of one decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    Keep,
    Skip,
    /// Due, but the frame budget is spent (or timestamps stopped advancing): the medium is
    /// not covered to its end.
    OverBudget,
}

/// The fastest real frame rate: more frames than this per sampling period, all skipped,
/// means timestamps that do not advance.
const MAX_FPS: f64 = 240.0;

impl Sampler {
    pub(crate) fn new(sampling: &crate::config::Sampling) -> Self {
        let period = (sampling.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / sampling.fps));
        Self {
            period,
            fps_period: period,
            keyframes_only: sampling.keyframes_only,
            budget: u64::from(sampling.max_frames.max(1)),
            ..Self::default()
        }
    }

    /// The medium lasts `duration`: widen the period when the budget would not reach its end
    /// at the configured rate. With `fps: 0` (every frame) nothing is widened: the budget
    /// bounds the frames, and a longer medium is incomplete.
    pub(crate) fn spread(&mut self, duration: Duration) {
        let Some(period) = self.period else { return };
        self.period = Some(period.max(self.needed(duration)));
    }

    /// The period that spreads the budget over `span`: frames at 0, p, 2p, … strictly before
    /// the end, so budget − 1 intervals cover it.
    fn needed(&self, span: Duration) -> Duration {
        let intervals = u32::try_from(self.budget.saturating_sub(1).max(1)).unwrap_or(u32::MAX);
        span / intervals
    }

    /// The sampling period in force (after `spread`).
    pub(crate) fn period(&self) -> Option<Duration> {
        self.period
    }

    /// Media time of a raw timestamp without fixing the origin (before the first decoded
    /// frame the origin is unknown: 0 is assumed).
    pub(crate) fn media_time_of(&self, raw_ns: u64) -> Duration {
        Duration::from_nanos(raw_ns.saturating_sub(self.first_pts.unwrap_or(0)))
    }

    /// Media time of a raw timestamp (the first one seen is 0).
    pub(crate) fn media_time(&mut self, raw_ns: u64) -> Duration {
        Duration::from_nanos(raw_ns.saturating_sub(*self.first_pts.get_or_insert(raw_ns)))
    }

    /// Whether the frame at `raw_ns` is sampled (updates the schedule when it is).
    pub(crate) fn take(&mut self, raw_ns: Option<u64>, keyframe: bool) -> Take {
        let t = raw_ns.map(|r| self.media_time(r));
        if let (Some(t), Some(p), Some(last)) = (t, self.period, self.last_t)
            && t + p < last
        {
            // Frames leave the decoder in display order: a jump back by more than a period
            // would leave the stretch it repeats unsampled.
            self.refuse_at(t, "frame timestamps that jump back");
            return Take::OverBudget;
        }
        if let Some(t) = t {
            self.last_t = Some(self.last_t.map_or(t, |l| l.max(t)));
        }
        let due = self.period.is_none() || t.is_none_or(|t| t >= self.next_t);
        let wanted = self.taken == 0 || (due && (keyframe || !self.keyframes_only));
        if !wanted {
            self.skipped_run += 1;
            self.skipped_total += 1;
            if let Some(p) = self.period
                && !self.keyframes_only
                && self.skipped_run as f64 > p.as_secs_f64() * MAX_FPS + 10.0
            {
                self.refuse_at(
                    self.last_t.unwrap_or_default(),
                    "frame timestamps that do not advance",
                );
                return Take::OverBudget;
            }
            return Take::Skip;
        }
        self.skipped_run = 0;
        if self.taken >= self.budget {
            self.refuse_at(t.unwrap_or_default(), "media.sampling.max_frames");
            return Take::OverBudget;
        }
        self.taken += 1;
        if let (Some(p), Some(t)) = (self.period, t) {
            self.next_t = next_boundary(t, p);
        }
        Take::Keep
    }

    /// Sampling stopped covering the medium at media time `at` because of `limit` (the
    /// earliest such point is kept).
    pub(crate) fn refuse_at(&mut self, at: Duration, limit: &'static str) {
        if self.refusal.is_none_or(|(t, _)| at < t) {
            self.refusal = Some((at, limit));
        }
    }

    /// Where sampling stopped covering the medium, and why.
    pub(crate) fn refusal(&self) -> Option<(Duration, &'static str)> {
        self.refusal
    }

    /// After the last frame: a stated duration far longer than the frames (a container that
    /// claims more than it holds) spread the budget thinner than the real span needed. Records
    /// the refusal and returns true when it did (more than 1.5× the period the span needed;
    /// a sound track longer than the picture stays well inside that).
    pub(crate) fn check_span(&mut self) -> bool {
        let (Some(period), Some(fps_period), Some(last)) =
            (self.period, self.fps_period, self.last_t)
        else {
            return false;
        };
        // Every decoded frame sampled: nothing was thinned (one picture over a long sound
        // track, a short clip).
        if self.skipped_total == 0 {
            return false;
        }
        let wanted = fps_period.max(self.needed(last));
        if period.as_secs_f64() > wanted.as_secs_f64() * 1.5 {
            self.refuse_at(last, "a stated duration longer than the media");
            return true;
        }
        false
    }
}

/// The first period boundary after `t` (integer nanoseconds: no float rounding at boundaries).
fn next_boundary(t: Duration, period: Duration) -> Duration {
    let p = period.as_nanos().max(1);
    Duration::from_nanos(((t.as_nanos() / p + 1) * p) as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stated_duration_far_past_the_frames_is_caught() {
        let mut s = sampler(1.0, 32);
        s.spread(Duration::from_secs(590));
        let (kept, over) = run(&mut s, 20);
        assert!(!over);
        assert!(kept.len() <= 2, "{}", kept.len());
        assert!(s.check_span());
        // A sound track 2 s longer than the picture is not that.
        let mut s = sampler(1.0, 32);
        s.spread(Duration::from_secs(52));
        let _ = run(&mut s, 50);
        assert!(!s.check_span());
    }

    #[test]
    fn timestamps_that_stop_advancing_are_caught() {
        let mut s = sampler(1.0, 32);
        let mut last = Take::Keep;
        for _ in 0..1000 {
            last = s.take(Some(5_000_000), false);
            if last == Take::OverBudget {
                break;
            }
        }
        assert_eq!(last, Take::OverBudget);
        assert_eq!(
            s.refusal().unwrap().1,
            "frame timestamps that do not advance"
        );
    }

    use super::*;
    use crate::config::Sampling;

    fn sampler(fps: f64, max_frames: u32) -> Sampler {
        Sampler::new(&Sampling {
            fps,
            max_frames,
            keyframes_only: false,
            skip_delta_frames: false,
        })
    }

    /// Frames at 25 fps for `secs`: which are kept, and whether any was refused.
    fn run(s: &mut Sampler, secs: u64) -> (Vec<Duration>, bool) {
        let mut kept = Vec::new();
        let mut over = false;
        for i in 0..secs * 25 {
            let ns = i * 40_000_000;
            match s.take(Some(ns), i % 25 == 0) {
                Take::Keep => kept.push(Duration::from_nanos(ns)),
                Take::OverBudget => over = true,
                Take::Skip => {}
            }
        }
        (kept, over)
    }

    #[test]
    fn a_known_duration_spreads_the_budget_to_the_end() {
        let mut s = sampler(1.0, 32);
        s.spread(Duration::from_secs(50));
        let (kept, over) = run(&mut s, 50);
        assert!(!over, "the budget covers 50 s");
        assert!(kept.len() <= 32 && kept.len() >= 31, "{}", kept.len());
        let last = *kept.last().unwrap();
        assert!(last >= Duration::from_secs(48), "last sample at {last:?}");
        // No gap wider than the spread period (plus one frame).
        for w in kept.windows(2) {
            assert!(
                w[1] - w[0] <= Duration::from_millis(1_660),
                "{:?}",
                w[1] - w[0]
            );
        }
    }

    #[test]
    fn a_short_medium_keeps_the_configured_rate() {
        let mut s = sampler(1.0, 32);
        s.spread(Duration::from_secs(10));
        assert_eq!(s.period(), Some(Duration::from_secs(1)));
        let (kept, over) = run(&mut s, 10);
        assert_eq!(kept.len(), 10);
        assert!(!over);
    }

    #[test]
    fn an_unknown_duration_past_the_budget_is_reported() {
        let mut s = sampler(1.0, 32);
        let (kept, over) = run(&mut s, 50);
        assert_eq!(kept.len(), 32);
        assert!(over);
        assert_eq!(
            s.refusal(),
            Some((Duration::from_secs(32), "media.sampling.max_frames"))
        );
    }

    #[test]
    fn every_frame_mode_is_bounded_not_spread() {
        let mut s = sampler(0.0, 10);
        s.spread(Duration::from_secs(50));
        let (kept, over) = run(&mut s, 1);
        assert_eq!(kept.len(), 10);
        assert!(over);
    }
}
