//! Per-client budgets of calls that cost the control plane more than they cost the
//! caller: RFC 7009 revocations (a store write each) and refused token exchanges (an
//! audit record each). A token bucket per client id, in memory, per replica: a bound
//! on churn, not an exact quota.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before the full ones are forgotten (a full bucket equals a new one).
const MAX_TRACKED: usize = 10_000;

pub struct Budget {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Budget {
    pub fn new(burst: f64, per_second: f64) -> Budget {
        Budget {
            burst,
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from `client_id`'s budget; `Err(seconds)` to wait when spent.
    pub fn take(&self, client_id: &str) -> Result<(), u64> {
        self.at(client_id, Instant::now())
    }

    /// Returns one call taken by `take` that turned out not to count (it succeeded):
    /// taking first and giving back after means calls in flight at once cannot all
    /// pass a budget that has one left.
    pub fn give_back(&self, client_id: &str) {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, _)) = b.get_mut(client_id) {
            *tokens = (*tokens + 1.0).min(self.burst);
        }
    }

    fn at(&self, client_id: &str, now: Instant) -> Result<(), u64> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > MAX_TRACKED {
            b.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second
                    < self.burst
            });
        }
        let (tokens, at) = b.entry(client_id.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_spends_its_own_burst_and_regains_it_over_time() {
        let b = Budget::new(3.0, 0.5);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.at("a", t0), Ok(()));
        }
        assert_eq!(b.at("a", t0), Err(2));
        // Another client's budget is its own.
        assert_eq!(b.at("b", t0), Ok(()));
        // One call back after 2 s at 0.5/s, never more than the burst.
        assert_eq!(b.at("a", t0 + Duration::from_secs(2)), Ok(()));
        assert!(b.at("a", t0 + Duration::from_secs(2)).is_err());
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.at("a", later), Ok(()));
        }
        assert!(b.at("a", later).is_err());
    }

    /// Calls in flight together each take before they run: a budget with one left lets
    /// one through, and only what is given back (calls that did not count) is regained.
    #[test]
    fn concurrent_calls_cannot_overdraw_and_only_given_back_calls_return() {
        let b = Budget::new(2.0, 1e-9);
        let now = Instant::now();
        assert_eq!(b.at("a", now), Ok(()));
        assert_eq!(b.at("a", now), Ok(()));
        assert!(b.at("a", now).is_err(), "both taken before either ended");
        b.give_back("a");
        assert_eq!(b.at("a", now), Ok(()));
        assert!(b.at("a", now).is_err());
        // Never past the burst, and nothing for a client never seen.
        for _ in 0..5 {
            b.give_back("a");
            b.give_back("z");
        }
        assert_eq!(b.at("a", now), Ok(()));
        assert_eq!(b.at("a", now), Ok(()));
        assert!(b.at("a", now).is_err());
    }
}
