//! When a filter's report of an unknown `kid` may make the control plane fetch an
//! issuer's keys out of schedule: a pure gate on the fetch loop's clock (seconds).
//! Reports are as cheap to send as a token with a made-up `kid`, so however many come,
//! report-triggered fetches of one issuer are at least `interval` apart. A report that
//! comes too soon is not lost: it schedules one fetch for when the interval has passed
//! (a rotation just after a flood of forged kids still reaches the filters then).

/// What the gate says to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Fetch now.
    Now,
    /// Too soon: fetch at this time.
    At(i64),
    /// A fetch is already scheduled for later: it answers this report too.
    Scheduled,
}

/// `last`: when the last report-triggered fetch was (or is) scheduled for.
pub fn gate(last: Option<i64>, interval: i64, now: i64) -> Gate {
    match last {
        None => Gate::Now,
        Some(t) if t > now => Gate::Scheduled,
        Some(t) if now >= t.saturating_add(interval) => Gate::Now,
        Some(t) => Gate::At(t.saturating_add(interval)),
    }
}

/// One issuer's gate state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refetch {
    /// When the last report-triggered fetch was scheduled for.
    last: Option<i64>,
    /// A report-triggered fetch not yet run: due from this time.
    due: Option<i64>,
}

impl Refetch {
    /// A report at `now`; true when it schedules a fetch now (false: later, or one is
    /// already scheduled).
    pub fn report(&mut self, interval: i64, now: i64) -> bool {
        if self.due.is_some() {
            // A fetch not started yet (due now, or deferred) answers this report too.
            return false;
        }
        let at = match gate(self.last, interval, now) {
            Gate::Now => now,
            Gate::At(t) => t,
            Gate::Scheduled => return false,
        };
        self.last = Some(at);
        self.due = Some(at);
        at <= now
    }

    /// Whether a report-triggered fetch is due at `now`.
    pub fn due(&self, now: i64) -> bool {
        self.due.is_some_and(|d| d <= now)
    }

    /// A fetch of the issuer started: it answers every report made before.
    pub fn started(&mut self, now: i64) {
        if self.due.is_some_and(|d| d <= now) {
            self.due = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate() {
        assert_eq!(gate(None, 5, 100), Gate::Now);
        assert_eq!(gate(Some(100), 5, 100), Gate::At(105));
        assert_eq!(gate(Some(100), 5, 104), Gate::At(105));
        assert_eq!(gate(Some(100), 5, 105), Gate::Now);
        assert_eq!(gate(Some(105), 5, 101), Gate::Scheduled);
        assert_eq!(
            gate(Some(i64::MAX - 1), 5, i64::MAX - 1),
            Gate::At(i64::MAX)
        );
    }

    /// A flood of reports (random kids, every filter, every worker) fetches at most once
    /// per interval, and the last report before a quiet spell is still answered.
    #[test]
    fn a_flood_fetches_once_per_interval() {
        let mut r = Refetch::default();
        let mut fetches = Vec::new();
        for now in 1_000..1_060 {
            for _ in 0..1_000 {
                r.report(5, now);
            }
            if r.due(now) {
                fetches.push(now);
                r.started(now);
            }
        }
        assert_eq!(fetches.len(), 12, "{fetches:?}");
        assert!(fetches.windows(2).all(|w| w[1] - w[0] >= 5), "{fetches:?}");
        // After the flood, one fetch answers what came last, then nothing.
        let mut after = 0;
        for now in 1_060..1_100 {
            if r.due(now) {
                after += 1;
                r.started(now);
            }
        }
        assert_eq!(after, 1);
    }

    #[test]
    fn a_report_after_a_quiet_spell_fetches_at_once() {
        let mut r = Refetch::default();
        assert!(r.report(5, 100));
        assert!(r.due(100));
        r.started(100);
        assert!(!r.due(100));
        assert!(r.report(5, 200), "long after the last one");
        assert!(!r.report(5, 200), "the fetch not started yet answers it");
        r.started(200);
        // Too soon: scheduled, not now; a second report changes nothing.
        assert!(!r.report(5, 202));
        assert!(!r.due(204));
        assert!(!r.report(5, 204));
        assert!(r.due(205));
    }

    /// A scheduled fetch (the cache lifetime, a breaker probe) that starts after a
    /// report answers it; one that started before it does not.
    #[test]
    fn any_fetch_that_starts_later_answers_a_report() {
        let mut r = Refetch::default();
        r.report(5, 100);
        r.started(99);
        assert!(r.due(100));
        r.started(100);
        assert!(!r.due(1_000));
    }
}
