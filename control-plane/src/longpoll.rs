//! The sync long poll, as rules over what a filter asks and what this replica holds:
//! whether to park the poll, and what to answer once it wakes. No I/O here; the HTTP
//! handler reads the store and signs.

use std::time::Duration;

use tokio::sync::watch;

pub use meshauth_wire::sync::PollQuery;

/// The longest a poll is parked, whatever it asks.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a poll is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 304 with a signed head statement of this version.
    NotModified(u64),
    /// The changes from this base to the head, or a snapshot when there is no delta.
    DeltaOrSnapshot {
        base: u64,
    },
    Snapshot,
}

/// The rules over what a poll asks ([`PollQuery`], defined in `wire/`).
pub trait PollRules {
    /// The version to record for this filter.
    fn applied_version(&self) -> u64;
    /// Whether the filter follows the history this replica holds (a filter that names
    /// no epoch is taken to).
    fn same_epoch(&self, held: &str) -> bool;
    /// The epoch a filter claims to be further along in than our head: that history
    /// may have to restart past it (the store lost changes that filters had applied).
    fn claims_ahead(&self, head: u64) -> Option<&str>;
    /// How long to park the poll: only when nothing newer is held for it and it asked.
    fn park(&self, held_epoch: &str, head: u64) -> Option<Duration>;
    /// The answer once any wait is over, `head` being the version held then.
    fn reply(&self, held_epoch: &str, head: u64) -> Reply;
}

impl PollRules for PollQuery {
    fn applied_version(&self) -> u64 {
        self.applied.unwrap_or(self.version)
    }

    fn same_epoch(&self, held: &str) -> bool {
        self.epoch.as_deref().is_none_or(|e| e == held)
    }

    fn claims_ahead(&self, head: u64) -> Option<&str> {
        self.epoch.as_deref().filter(|_| self.version > head)
    }

    fn park(&self, held_epoch: &str, head: u64) -> Option<Duration> {
        (self.same_epoch(held_epoch) && head <= self.version && self.wait_ms > 0)
            .then(|| Duration::from_millis(self.wait_ms).min(MAX_WAIT))
    }

    fn reply(&self, held_epoch: &str, head: u64) -> Reply {
        let same = self.same_epoch(held_epoch);
        if same && head <= self.version && self.version != 0 {
            Reply::NotModified(head)
        } else if same && self.deltas {
            Reply::DeltaOrSnapshot { base: self.version }
        } else {
            Reply::Snapshot
        }
    }
}

/// The key one signed answer is shared under: the epoch and the half-hour, so that an
/// answer is signed again at least that often and its `issued_at` stays inside the
/// filters' maximum snapshot age.
pub fn answer_key(epoch: &str, now: i64) -> String {
    format!(
        "{epoch}@{}",
        now.div_euclid(crate::sync::SNAPSHOT_REFRESH_SECONDS)
    )
}

/// Waits until the version `rx` watches passes `version`, at most `wait`.
pub async fn wait_past(rx: &mut watch::Receiver<u64>, version: u64, wait: Duration) {
    let _ = tokio::time::timeout(wait, async {
        while *rx.borrow_and_update() <= version {
            if rx.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(version: u64, epoch: Option<&str>, wait_ms: u64, delta: u8) -> PollQuery {
        PollQuery {
            version,
            epoch: epoch.map(str::to_owned),
            wait_ms,
            deltas: delta == 1,
            ..PollQuery::default()
        }
    }

    #[test]
    fn a_poll_parks_only_when_nothing_newer_is_held_on_its_epoch() {
        assert_eq!(
            q(5, Some("e"), 2_000, 0).park("e", 5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            q(5, None, 2_000, 0).park("e", 5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(q(5, Some("e"), 2_000, 0).park("e", 6), None, "newer held");
        assert_eq!(
            q(5, Some("old"), 2_000, 0).park("e", 5),
            None,
            "other epoch"
        );
        assert_eq!(q(5, Some("e"), 0, 0).park("e", 5), None, "did not ask");
        assert_eq!(q(5, Some("e"), u64::MAX, 0).park("e", 5), Some(MAX_WAIT));
    }

    #[test]
    fn the_reply_is_304_a_delta_or_a_snapshot() {
        assert_eq!(q(5, Some("e"), 0, 1).reply("e", 5), Reply::NotModified(5));
        // A filter ahead of this replica (it lags the store) is told what we hold.
        assert_eq!(q(7, Some("e"), 0, 1).reply("e", 5), Reply::NotModified(5));
        assert_eq!(
            q(5, Some("e"), 0, 1).reply("e", 6),
            Reply::DeltaOrSnapshot { base: 5 }
        );
        assert_eq!(q(5, Some("e"), 0, 0).reply("e", 6), Reply::Snapshot);
        assert_eq!(q(5, Some("old"), 0, 1).reply("e", 5), Reply::Snapshot);
        // Holding nothing, a filter always gets a snapshot, even of version 0.
        assert_eq!(
            q(0, Some("e"), 0, 1).reply("e", 0),
            Reply::DeltaOrSnapshot { base: 0 }
        );
        assert_eq!(q(0, None, 0, 0).reply("e", 0), Reply::Snapshot);
    }

    #[test]
    fn only_a_named_epoch_ahead_of_the_head_is_a_restart_claim() {
        assert_eq!(q(9, Some("x"), 0, 0).claims_ahead(5), Some("x"));
        assert_eq!(q(5, Some("x"), 0, 0).claims_ahead(5), None);
        assert_eq!(q(9, None, 0, 0).claims_ahead(5), None);
        assert_eq!(q(9, None, 0, 0).applied_version(), 9);
    }

    #[test]
    fn answers_are_keyed_by_epoch_and_half_hour() {
        let half = crate::sync::SNAPSHOT_REFRESH_SECONDS;
        assert_eq!(answer_key("e", 0), answer_key("e", half - 1));
        assert_ne!(answer_key("e", 0), answer_key("e", half));
        assert_ne!(answer_key("e", 0), answer_key("f", 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_poll_wakes_on_a_newer_version_or_at_its_deadline() {
        let (tx, mut rx) = watch::channel(5u64);
        let woken = tokio::spawn(async move {
            wait_past(&mut rx, 5, Duration::from_secs(30)).await;
            *rx.borrow()
        });
        tx.send(5).unwrap(); // the same version again: still parked
        tokio::task::yield_now().await;
        assert!(!woken.is_finished());
        tx.send(6).unwrap();
        assert_eq!(woken.await.unwrap(), 6);
        // Nothing newer: the deadline ends it (the clock is paused and auto-advances).
        let (_tx, mut rx) = watch::channel(5u64);
        let started = tokio::time::Instant::now();
        wait_past(&mut rx, 5, Duration::from_secs(30)).await;
        assert!(started.elapsed() >= Duration::from_secs(30));
    }
}
