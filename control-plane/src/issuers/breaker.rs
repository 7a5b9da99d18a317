//! The circuit breaker around one issuer's fetches, a pure state machine on a clock
//! the caller passes in (seconds) and a jitter it draws.
//!
//! Closed: every due fetch runs; `FAILURE_THRESHOLD` failures in a row open it. Open:
//! nothing is fetched until the backoff has passed (1 s, doubling with each reopening,
//! capped at 60 s, jittered down by up to half so replicas spread out); then half-open.
//! Half-open: probes run one backoff step apart; one failure reopens it with a longer
//! backoff, `CLOSE_AFTER` successes in a row close it (hysteresis: one lucky answer
//! from a flapping provider does not close it).

use serde::{Deserialize, Serialize};

pub const FAILURE_THRESHOLD: u32 = 3;
pub const CLOSE_AFTER: u32 = 2;
pub const BASE_BACKOFF_SECONDS: i64 = 1;
pub const MAX_BACKOFF_SECONDS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    state: CircuitState,
    /// Failures in a row while closed.
    failures: u32,
    /// Successes in a row while half-open.
    successes: u32,
    /// Openings since it was last closed: the backoff's exponent.
    openings: u32,
    /// When open: the time a probe may go (half-open from then).
    retry_at: i64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: CircuitState::Closed,
            failures: 0,
            successes: 0,
            openings: 0,
            retry_at: 0,
        }
    }
}

/// The backoff after the `openings`-th opening, before jitter: 1, 2, 4, ... 60 s.
pub fn backoff(openings: u32) -> i64 {
    let exp = openings.saturating_sub(1).min(16);
    (BASE_BACKOFF_SECONDS << exp).min(MAX_BACKOFF_SECONDS)
}

/// `seconds` shortened by `jitter` (0 to 1) times half of it; never below 1 s.
pub fn jittered(seconds: i64, jitter: f64) -> i64 {
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let cut = ((seconds as f64) * 0.5 * j) as i64;
    (seconds - cut).max(1)
}

impl Breaker {
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// When open, the time it turns half-open.
    pub fn retry_at(&self) -> Option<i64> {
        (self.state == CircuitState::Open).then_some(self.retry_at)
    }

    /// Whether a fetch may run at `now`; an open breaker past its backoff turns
    /// half-open and lets one through.
    pub fn allow(&mut self, now: i64) -> bool {
        match self.state {
            CircuitState::Closed | CircuitState::HalfOpen => true,
            CircuitState::Open if now >= self.retry_at => {
                self.state = CircuitState::HalfOpen;
                self.successes = 0;
                true
            }
            CircuitState::Open => false,
        }
    }

    /// A fetch succeeded. Half-open: the next probe is due after this (`None` once
    /// closed: the cache lifetime decides).
    pub fn on_success(&mut self, now: i64) -> Option<i64> {
        match self.state {
            CircuitState::HalfOpen => {
                self.successes += 1;
                if self.successes >= CLOSE_AFTER {
                    *self = Breaker::default();
                    None
                } else {
                    Some(now + backoff(1))
                }
            }
            _ => {
                self.failures = 0;
                None
            }
        }
    }

    /// A fetch failed; when the next attempt is due.
    pub fn on_failure(&mut self, now: i64, jitter: f64) -> i64 {
        match self.state {
            CircuitState::Closed => {
                self.failures += 1;
                if self.failures >= FAILURE_THRESHOLD {
                    self.open(now, jitter)
                } else {
                    now + jittered(backoff(self.failures), jitter)
                }
            }
            CircuitState::HalfOpen | CircuitState::Open => self.open(now, jitter),
        }
    }

    fn open(&mut self, now: i64, jitter: f64) -> i64 {
        self.state = CircuitState::Open;
        self.failures = 0;
        self.successes = 0;
        self.openings = self.openings.saturating_add(1);
        self.retry_at = now + jittered(backoff(self.openings), jitter);
        self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_open_it_then_it_half_opens_after_the_backoff() {
        let mut b = Breaker::default();
        let t = 1_000;
        for i in 1..FAILURE_THRESHOLD {
            assert!(b.allow(t));
            b.on_failure(t, 0.0);
            assert_eq!(b.state(), CircuitState::Closed, "after {i} failures");
        }
        assert_eq!(b.on_failure(t, 0.0), t + 1);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.allow(t), "open: nothing goes");
        assert!(b.allow(t + 1), "after the backoff a probe goes");
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }

    #[test]
    fn a_success_while_closed_resets_the_count() {
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.on_failure(0, 0.0);
            b.on_failure(0, 0.0);
            assert_eq!(b.on_success(0), None);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_needs_two_successes_and_one_failure_reopens_it_longer() {
        let mut b = Breaker::default();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(0, 0.0);
        }
        assert!(b.allow(1));
        assert_eq!(b.on_success(1), Some(2), "one success: still probing");
        assert_eq!(b.state(), CircuitState::HalfOpen);
        // A failure now reopens with the next backoff step (2 s).
        assert_eq!(b.on_failure(2, 0.0), 4);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.allow(3));
        assert!(b.allow(4));
        assert_eq!(b.on_success(4), Some(5));
        assert_eq!(b.on_success(5), None);
        assert_eq!(b.state(), CircuitState::Closed);
        // Closed again: the backoff starts over.
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(10, 0.0);
        }
        assert_eq!(b.retry_at(), Some(11));
    }

    #[test]
    fn the_backoff_doubles_to_a_cap_of_sixty_seconds() {
        let mut b = Breaker::default();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(now, 0.0);
        }
        for _ in 0..10 {
            let at = b.retry_at().unwrap_or_default();
            waits.push(at - now);
            now = at;
            assert!(b.allow(now));
            b.on_failure(now, 0.0);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF_SECONDS);
    }

    #[test]
    fn jitter_only_shortens_and_is_bounded() {
        assert_eq!(jittered(60, 0.0), 60);
        assert_eq!(jittered(60, 1.0), 30);
        assert_eq!(jittered(60, 7.0), 30, "clamped");
        assert_eq!(jittered(60, f64::NAN), 60);
        assert_eq!(jittered(1, 1.0), 1, "never below a second");
        let mut b = Breaker::default();
        for _ in 0..FAILURE_THRESHOLD {
            b.on_failure(100, 0.99);
        }
        assert_eq!(b.retry_at(), Some(101));
    }
}
