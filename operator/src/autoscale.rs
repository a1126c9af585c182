//! Worker autoscaling on queue depth, as a pure function of what was observed and when.
//!
//! Out fast, in slowly: a backlog above the target per worker scales out at once (up to the
//! maximum); scaling in follows the highest recommendation seen over a stabilisation window, as
//! the Kubernetes HPA does, so a noisy depth series does not flap the pool, and the pool shrinks
//! only once the queue has stayed drained below target for the whole window.
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePolicy {
    pub min_workers: u32,
    pub max_workers: u32,
    /// Messages waiting per worker the pool aims for.
    pub target_depth_per_worker: u32,
    /// How long recommendations must stay lower before the pool shrinks.
    pub scale_in_window: Duration,
}

/// A change the autoscaler asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub to: u32,
    pub reason: String,
}

/// Remembers recent recommendations; feed it every observation with a monotonic `now`.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalePolicy,
    /// Recommendations of the last window, oldest first.
    recent: VecDeque<(Duration, u32)>,
    /// When the first observation came: a pool shrinks only once a whole window was seen.
    observing_since: Option<Duration>,
}

impl Autoscaler {
    pub fn new(policy: ScalePolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            observing_since: None,
        }
    }

    pub fn policy(&self) -> &ScalePolicy {
        &self.policy
    }

    /// Workers the depth alone calls for, within the bounds.
    fn recommend(&self, depth: u64) -> u32 {
        let target = u64::from(self.policy.target_depth_per_worker.max(1));
        let wanted = depth.div_ceil(target);
        let max = self.policy.max_workers.max(self.policy.min_workers);
        u32::try_from(wanted)
            .unwrap_or(u32::MAX)
            .clamp(self.policy.min_workers, max)
    }

    /// What to do with `current` workers given `depth` waiting messages at `now`.
    pub fn observe(&mut self, now: Duration, depth: u64, current: u32) -> Option<Scale> {
        let recommended = self.recommend(depth);
        self.observing_since.get_or_insert(now);
        self.recent.push_back((now, recommended));
        let window = self.policy.scale_in_window;
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > window)
        {
            self.recent.pop_front();
        }
        let target = self.policy.target_depth_per_worker;
        if recommended > current {
            return Some(Scale {
                to: recommended,
                reason: format!(
                    "{depth} messages waiting for {current} workers (target {target} each)"
                ),
            });
        }
        // The window must be covered by observations, or a restart would shrink at once.
        let since = self.observing_since.unwrap_or(now);
        let covered = now.saturating_sub(since) >= window;
        let highest = self.recent.iter().map(|(_, r)| *r).max().unwrap_or(current);
        if covered && highest < current {
            return Some(Scale {
                to: highest,
                reason: format!(
                    "the queue stayed below {target} messages per worker for {}s",
                    window.as_secs()
                ),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Duration = Duration::from_secs(15);

    fn policy() -> ScalePolicy {
        ScalePolicy {
            min_workers: 1,
            max_workers: 8,
            target_depth_per_worker: 10,
            scale_in_window: Duration::from_secs(300),
        }
    }

    /// Feeds a depth series one sample every 15 s, applying each decision; returns the
    /// replica count after each sample.
    fn run(scaler: &mut Autoscaler, start: u32, depths: &[u64]) -> Vec<u32> {
        let mut current = start;
        depths
            .iter()
            .enumerate()
            .map(|(i, &depth)| {
                let now = SAMPLE * u32::try_from(i).unwrap();
                if let Some(s) = scaler.observe(now, depth, current) {
                    current = s.to;
                }
                current
            })
            .collect()
    }

    #[test]
    fn a_drained_queue_scales_in_after_the_window_whatever_the_sampling_times() {
        let mut scaler = Autoscaler::new(policy());
        let mut current = 1;
        let mut now = Duration::ZERO;
        let mut shrunk_at = None;
        // Reconciles come at irregular times, never on a multiple of the window.
        for (i, step) in [7u64, 11, 13, 9, 17].iter().cycle().take(120).enumerate() {
            let depth = if i == 0 { 500 } else { 0 };
            if let Some(s) = scaler.observe(now, depth, current) {
                if s.to < current {
                    shrunk_at.get_or_insert(now);
                }
                current = s.to;
            }
            now += Duration::from_secs(*step);
        }
        assert_eq!(current, 1, "the pool came back to its minimum");
        let at = shrunk_at.expect("the pool shrank");
        assert!(
            at > Duration::from_secs(300),
            "not before the window: {at:?}"
        );
        assert!(
            at < Duration::from_secs(330),
            "soon after the window: {at:?}"
        );
    }

    #[test]
    fn a_spike_scales_out_to_the_maximum_at_once() {
        let mut scaler = Autoscaler::new(policy());
        let replicas = run(&mut scaler, 1, &[0, 0, 10_000]);
        assert_eq!(replicas, [1, 1, 8]);
        let mut scaler = Autoscaler::new(policy());
        assert_eq!(
            scaler.observe(Duration::ZERO, 35, 2).map(|s| s.to),
            Some(4),
            "35 waiting at 10 per worker wants 4"
        );
    }

    #[test]
    fn a_drained_queue_scales_in_only_after_the_window() {
        let mut scaler = Autoscaler::new(policy());
        let mut depths = vec![10_000];
        depths.extend(std::iter::repeat_n(0, 30));
        let replicas = run(&mut scaler, 1, &depths);
        // 300 s of drained queue at one sample per 15 s: 20 samples at 8, then down to 1.
        let first_in = replicas.iter().position(|&r| r == 1).unwrap();
        assert_eq!(first_in, 21, "{replicas:?}");
        assert!(replicas[..first_in].iter().skip(1).all(|&r| r == 8));
        assert!(replicas[first_in..].iter().all(|&r| r == 1));
    }

    #[test]
    fn a_backlog_that_is_still_above_target_never_scales_in() {
        let mut scaler = Autoscaler::new(policy());
        let replicas = run(&mut scaler, 8, &[200; 60]);
        assert!(replicas.iter().all(|&r| r == 8), "{replicas:?}");
    }

    #[test]
    fn a_noisy_depth_does_not_flap_the_pool() {
        let mut scaler = Autoscaler::new(policy());
        // Depth jumps between 5 and 45 in a fixed pseudo-random pattern for an hour.
        let mut x = 0x2545_F491_u64;
        let depths: Vec<u64> = (0..240)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                5 + x % 41
            })
            .collect();
        let replicas = run(&mut scaler, 1, &depths);
        let changes = replicas.windows(2).filter(|w| w[0] != w[1]).count();
        let reversals = replicas
            .windows(3)
            .filter(|w| (w[0] < w[1] && w[1] > w[2]) || (w[0] > w[1] && w[1] < w[2]))
            .count();
        // It climbs to the noise's peak in a few steps and may settle one step lower after a
        // quiet window, but it never goes back and forth.
        assert!(changes <= 4, "{changes} changes: {replicas:?}");
        assert_eq!(reversals, 0, "{replicas:?}");
        assert!(replicas.iter().all(|&r| (1..=8).contains(&r)));
    }

    #[test]
    fn the_bounds_hold_whatever_the_depth() {
        let mut scaler = Autoscaler::new(ScalePolicy {
            min_workers: 2,
            ..policy()
        });
        assert_eq!(scaler.recommend(0), 2);
        assert_eq!(scaler.recommend(u64::MAX), 8);
        assert_eq!(scaler.observe(Duration::ZERO, 0, 5), None, "no history yet");
    }
}
