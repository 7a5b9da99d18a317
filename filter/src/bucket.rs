//! One rate bucket as GCRA (generic cell rate algorithm): the whole state is one
//! timestamp, the theoretical arrival time (TAT), so an update is a single
//! compare-and-swap of 8 bytes in shared data.
//!
//! With emission interval `T = window / rate` and capacity `burst`, a request at `now` is
//! admitted when `max(TAT, now) + T - now <= burst·T`, and then TAT becomes
//! `max(TAT, now) + T`. In any interval of length `d` at most `burst + d/T` requests are
//! admitted. Times are nanoseconds; `T` is rounded up, so rounding can only admit less.

use meshauth_wire::limits::Quota;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A quota in the units the algorithm works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds between requests at the sustained rate.
    period: u64,
    /// `burst · period`: how far ahead of `now` TAT may run.
    tolerance: u64,
    burst: u32,
}

/// What a bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still admissible right now (after this one, if admitted).
    pub remaining: u32,
    /// Nanoseconds until the bucket is full again.
    pub reset_ns: u64,
    /// Denied only: nanoseconds until a request would be admitted.
    pub retry_after_ns: u64,
}

impl Gcra {
    pub fn new(q: Quota) -> Gcra {
        let window = u64::from(q.window_seconds.max(1)) * NANOS_PER_SECOND;
        let rate = u64::from(q.rate.max(1));
        let period = window.div_ceil(rate).max(1);
        let burst = q.burst.max(1);
        Gcra {
            period,
            tolerance: period.saturating_mul(u64::from(burst)),
            burst,
        }
    }

    pub fn period_ns(&self) -> u64 {
        self.period
    }

    /// Decides for a request at `now` against the stored `tat` (0: a fresh bucket).
    /// Returns the decision and, when admitted, the TAT to store.
    pub fn decide(&self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        let base = tat.max(now);
        let next = base.saturating_add(self.period);
        let ahead = next - now;
        if ahead <= self.tolerance {
            let free = (self.tolerance - ahead) / self.period;
            (
                Decision {
                    allowed: true,
                    remaining: u32::try_from(free).unwrap_or(self.burst).min(self.burst),
                    reset_ns: ahead,
                    retry_after_ns: 0,
                },
                Some(next),
            )
        } else {
            (
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset_ns: base - now,
                    retry_after_ns: ahead - self.tolerance,
                },
                None,
            )
        }
    }
}

/// Whole seconds, rounded up: header fields and `Retry-After` are in seconds, and
/// rounding down would invite a retry that is refused again.
pub fn ceil_seconds(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quota(rate: u32, window_seconds: u32, burst: u32) -> Quota {
        Quota {
            rate,
            window_seconds,
            burst,
        }
    }

    /// Runs requests at the given times through one bucket; returns admitted times.
    fn run(g: &Gcra, times: &[u64]) -> Vec<u64> {
        let mut tat = 0;
        let mut admitted = Vec::new();
        for &t in times {
            let (d, next) = g.decide(tat, t);
            assert_eq!(d.allowed, next.is_some());
            if let Some(n) = next {
                tat = n;
                admitted.push(t);
            }
        }
        admitted
    }

    #[test]
    fn a_full_bucket_admits_burst_then_refills_exactly() {
        let g = Gcra::new(quota(10, 1, 5)); // one every 100 ms, 5 at once
        let t0 = 1_000 * NANOS_PER_SECOND;
        let mut tat = 0;
        for i in 0..5 {
            let (d, next) = g.decide(tat, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = next.unwrap();
        }
        let (d, next) = g.decide(tat, t0);
        assert!(!d.allowed);
        assert_eq!(next, None);
        assert_eq!(d.retry_after_ns, 100_000_000);
        // One nanosecond early: still refused. On the dot: admitted.
        assert!(!g.decide(tat, t0 + 100_000_000 - 1).0.allowed);
        let (d, _) = g.decide(tat, t0 + 100_000_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // After the full refill time the bucket is as new.
        let (d, _) = g.decide(tat, t0 + 500_000_000);
        assert_eq!(d.remaining, 4);
    }

    #[test]
    fn long_windows_and_headers() {
        let g = Gcra::new(quota(100, 60, 10)); // 600 ms apart
        assert_eq!(g.period_ns(), 600_000_000);
        let (d, tat) = g.decide(0, 5 * NANOS_PER_SECOND);
        assert_eq!(d.reset_ns, 600_000_000);
        assert_eq!(ceil_seconds(d.reset_ns), 1);
        assert_eq!(d.remaining, 9);
        assert!(tat.is_some());
        assert_eq!(ceil_seconds(0), 0);
        assert_eq!(ceil_seconds(1), 1);
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let g = Gcra::new(quota(1, 86_400, 1_000_000));
        let (d, next) = g.decide(u64::MAX - 5, u64::MAX - 10);
        assert!(!d.allowed || next.is_some());
        let g = Gcra::new(quota(1_000_000, 1, 1));
        assert_eq!(g.period_ns(), 1_000);
        assert!(g.decide(0, 0).0.allowed);
    }

    proptest! {
        /// No interval of length d ever sees more than burst + d/T admissions, and a
        /// client that keeps asking gets at least burst + ⌊d/T⌋ − 1 over its run.
        #[test]
        fn never_more_than_burst_plus_rate_times_duration(
            rate in 1u32..2_000,
            window in 1u32..120,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..50_000_000, 1..400),
        ) {
            let g = Gcra::new(quota(rate, window, burst));
            let mut t = 1_700_000_000 * NANOS_PER_SECOND;
            let times: Vec<u64> = gaps.iter().map(|gap| { t += gap; t }).collect();
            let admitted = run(&g, &times);
            // Check every interval [admitted[i], admitted[j]].
            for i in 0..admitted.len() {
                for j in i..admitted.len() {
                    let d = admitted[j] - admitted[i];
                    let count = (j - i + 1) as u64;
                    prop_assert!(count <= u64::from(burst) + d / g.period_ns(),
                        "{count} admitted within {d} ns");
                }
            }
        }

        /// Asking once per period exactly forever is always admitted (exact refill),
        /// and asking at twice the rate is admitted half the time after the burst.
        #[test]
        fn refill_is_exact(rate in 1u32..1_000, burst in 1u32..20, n in 1usize..300) {
            let g = Gcra::new(quota(rate, 1, burst));
            let p = g.period_ns();
            let start = 42 * NANOS_PER_SECOND;
            let steady: Vec<u64> = (0..n as u64).map(|i| start + i * p).collect();
            prop_assert_eq!(run(&g, &steady).len(), n);
            let doubled: Vec<u64> = (0..2 * n as u64).map(|i| start + i * p / 2).collect();
            let admitted = run(&g, &doubled).len() as u64;
            let span = doubled.last().copied().unwrap_or(start) - start;
            prop_assert_eq!(admitted, (u64::from(burst) + span / p).min(2 * n as u64));
        }
    }
}
