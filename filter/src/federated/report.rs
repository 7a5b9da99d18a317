//! Reports of unknown `kid`s, throttled per worker: a token of a trusted issuer signed
//! with a key id that issuer's pushed keys lack (the provider rotated) is reported to the
//! control plane, which fetches that issuer's keys at once and pushes them. Tokens are
//! attacker-controlled, so what a flood of random kids can cost is bounded here: at most
//! one report per issuer per second, only for issuers the snapshot trusts (never an
//! arbitrary `iss`), with a kid of the bounds a pushed key has, and a bounded queue.

use std::collections::HashMap;

use meshauth_wire::federation::MAX_ISSUERS;
use meshauth_wire::sync::UnknownKidReport;

/// Reports waiting for the root context's next tick at most; more are dropped (the
/// issuer's next unknown-kid token, a second later, reports again).
pub const MAX_QUEUED: usize = 16;

#[derive(Debug, Default)]
pub struct KidReports {
    /// Trusted `iss` → the second its last report was queued. At most `MAX_ISSUERS`
    /// entries: only issuers of the snapshot in force get one.
    last: HashMap<String, i64>,
    queue: Vec<UnknownKidReport>,
}

impl KidReports {
    /// Whether a report for `issuer` may go at `now` (seconds): none went this second.
    /// Cheap, so the caller asks before it reads the token's kid.
    pub fn due(&self, issuer: &str, now: i64) -> bool {
        self.queue.len() < MAX_QUEUED && self.last.get(issuer).is_none_or(|t| now > *t)
    }

    /// Queues a report that `issuer` (one the snapshot in force trusts: the caller
    /// checked) signed with `kid`, unknown here, unless one went this second or the kid
    /// is out of bounds. True when queued.
    pub fn note(&mut self, issuer: &str, kid: &str, now: i64) -> bool {
        if !self.due(issuer, now) {
            return false;
        }
        let Some(report) = UnknownKidReport::new(issuer, kid) else {
            return false;
        };
        if self.last.len() >= MAX_ISSUERS && !self.last.contains_key(issuer) {
            // Only after snapshots that changed issuers many times over: starting afresh
            // costs at most one more report per issuer.
            self.last.clear();
        }
        self.last.insert(issuer.to_owned(), now);
        self.queue.push(report);
        true
    }

    /// The queued reports, for the root context to send.
    pub fn take(&mut self) -> Vec<UnknownKidReport> {
        std::mem::take(&mut self.queue)
    }

    /// Forgets issuers no longer trusted (a new snapshot).
    pub fn retain(&mut self, trusted: impl Fn(&str) -> bool) {
        self.last.retain(|iss, _| trusted(iss));
        self.queue.retain(|r| trusted(&r.issuer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_issuer_per_second() {
        let mut r = KidReports::default();
        assert!(r.note("https://a", "k1", 100));
        // A flood of random kids in the same second: nothing more.
        for i in 0..1_000 {
            assert!(!r.note("https://a", &format!("random-{i}"), 100));
        }
        // Another issuer has its own allowance.
        assert!(r.note("https://b", "k1", 100));
        assert_eq!(
            r.take(),
            vec![
                UnknownKidReport::new("https://a", "k1").unwrap(),
                UnknownKidReport::new("https://b", "k1").unwrap()
            ]
        );
        assert!(r.take().is_empty());
        // The next second, one more.
        assert!(r.note("https://a", "k2", 101));
        assert!(!r.note("https://a", "k3", 101));
        // A clock that steps back does not reopen it.
        assert!(!r.note("https://a", "k4", 99));
        assert_eq!(r.take().len(), 1);
    }

    #[test]
    fn kids_out_of_bounds_are_not_reported_and_spend_nothing() {
        let mut r = KidReports::default();
        for kid in ["", "a b", "k\u{0}", "ké", &"k".repeat(129)] {
            assert!(!r.note("https://a", kid, 100), "{kid:?}");
        }
        assert!(r.take().is_empty());
        assert!(r.note("https://a", "good", 100), "the allowance is intact");
    }

    #[test]
    fn state_stays_bounded() {
        let mut r = KidReports::default();
        // The queue: never more than MAX_QUEUED between two ticks.
        for i in 0..100 {
            r.note(&format!("https://i{i}"), "k", 100);
        }
        assert_eq!(r.take().len(), MAX_QUEUED);
        // The map: at most MAX_ISSUERS, whatever the snapshots trusted over time.
        for second in 0..20 {
            for i in 0..MAX_QUEUED {
                r.note(&format!("https://s{second}-{i}"), "k", 200 + second);
            }
            r.take();
        }
        for i in 0..(2 * MAX_ISSUERS) {
            r.note(
                &format!("https://j{i}"),
                "k",
                1_000 + i64::try_from(i).unwrap(),
            );
            r.take();
        }
        assert!(r.last.len() <= MAX_ISSUERS, "{}", r.last.len());
        // Issuers no longer trusted are forgotten with their queued reports.
        r.note("https://keep", "k", 5_000);
        r.note("https://drop", "k", 5_000);
        r.retain(|iss| iss == "https://keep");
        assert_eq!(r.last.len(), 1);
        assert_eq!(
            r.take(),
            vec![UnknownKidReport::new("https://keep", "k").unwrap()]
        );
    }
}
