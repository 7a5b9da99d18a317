//! When to log a store outage the change-log follower keeps retrying (every 20 ms): once
//! when it starts, every 30 s while it lasts, once when it ends. Not on every retry.

use std::time::{Duration, Instant};

const REPEAT: Duration = Duration::from_secs(30);

/// What to say: how long the store has been down, and how many reads failed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub down: Duration,
    pub failures: u64,
}

#[derive(Debug, Default)]
pub struct Outage {
    /// Since when, when last reported, failed reads.
    current: Option<(Instant, Instant, u64)>,
}

impl Outage {
    /// A failed read at `now`: a report when a warning is due.
    pub fn failed(&mut self, now: Instant) -> Option<Report> {
        let (since, said, failures) = self.current.get_or_insert((now, now, 0));
        *failures += 1;
        let due = *failures == 1 || now.saturating_duration_since(*said) >= REPEAT;
        due.then(|| {
            *said = now;
            Report {
                down: now.saturating_duration_since(*since),
                failures: *failures,
            }
        })
    }

    /// A successful read at `now`: the report of the outage it ends, if there was one.
    pub fn ended(&mut self, now: Instant) -> Option<Report> {
        self.current.take().map(|(since, _, failures)| Report {
            down: now.saturating_duration_since(since),
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_it_when_it_starts_every_30_s_and_when_it_ends() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.ended(t0), None, "nothing to end");
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let first = o.failed(at(0));
        assert_eq!(
            first,
            Some(Report {
                down: Duration::ZERO,
                failures: 1
            })
        );
        // 20 ms retries for 29.98 s: silent.
        for i in 1..1500 {
            assert_eq!(o.failed(at(i * 20)), None, "retry {i}");
        }
        let again = o.failed(at(30_000)).expect("a reminder after 30 s");
        assert_eq!(again.failures, 1501);
        assert_eq!(o.failed(at(30_020)), None);
        let end = o.ended(at(31_000)).expect("the end is said");
        assert_eq!(
            end,
            Report {
                down: Duration::from_secs(31),
                failures: 1502
            }
        );
        // A new outage starts counting afresh.
        assert_eq!(o.failed(at(40_000)).map(|r| r.failures), Some(1));
    }
}
