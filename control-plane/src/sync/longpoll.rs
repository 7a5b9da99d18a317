//! The long-poll protocol's domain half: what a poll tells the control plane (the
//! filter's applied version, a version past the change log), whether it waits, and the
//! wait itself. Caps on parked polls and the shared answer cache are the HTTP layer's.

use std::time::Duration;

use meshauth_wire::sync::PollQuery;

use crate::store::{Store, StoreResult};

use super::SyncHub;

/// The longest a poll is held open.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a poll said about the filter making it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollNoted {
    /// A new filter id while the registry is full: served, not recorded.
    pub registry_full: bool,
    /// The filter held a version past the change log: a new epoch started.
    pub epoch_reset: bool,
}

/// What a poll is answered with, once any wait is over.
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

/// The answer to `q` when this replica holds `head` (`same_epoch`: the filter is on
/// this replica's epoch). A filter holding nothing always gets a snapshot.
pub fn reply(q: &PollQuery, same_epoch: bool, head: u64) -> Reply {
    if same_epoch && head <= q.version && q.version != 0 {
        Reply::NotModified(head)
    } else if same_epoch && q.deltas {
        Reply::DeltaOrSnapshot { base: q.version }
    } else {
        Reply::Snapshot
    }
}

/// The key one signed answer is shared under: the epoch and the half-hour, so that an
/// answer is signed again at least that often and its `issued_at` stays inside the
/// filters' maximum snapshot age.
pub fn answer_key(epoch: &str, now: i64) -> String {
    format!(
        "{epoch}@{}",
        now.div_euclid(super::SNAPSHOT_REFRESH_SECONDS)
    )
}

impl SyncHub {
    /// Records the polling filter (`filter`: its id and applied version) and, when it
    /// holds `version` of this epoch past the change log, starts a new epoch. A failure
    /// to record the filter does not fail the poll (it is recorded on its next one).
    pub async fn note_poll(
        &self,
        store: &dyn Store,
        filter: Option<(&str, u64)>,
        epoch: Option<&str>,
        version: u64,
        now: i64,
    ) -> StoreResult<PollNoted> {
        let mut noted = PollNoted::default();
        if let Some((id, applied)) = filter {
            match self.saw_filter(store, id, applied, now).await {
                Ok(recorded) => noted.registry_full = !recorded,
                Err(e) => tracing::warn!(error = %e, "could not record a filter's version"),
            }
        }
        if let Some(epoch) = epoch {
            noted.epoch_reset = version > self.version()
                && self
                    .restart_epoch_if_behind(store, epoch, version, now)
                    .await?;
        }
        Ok(noted)
    }

    /// Whether a filter on `epoch` (none: it holds nothing yet) is on this one.
    pub fn same_epoch(&self, epoch: Option<&str>) -> bool {
        epoch.is_none_or(|e| e == self.epoch())
    }

    /// Whether a poll from `version` of `epoch` has nothing newer to get.
    pub fn nothing_newer(&self, epoch: Option<&str>, version: u64) -> bool {
        self.same_epoch(epoch) && self.version() <= version
    }

    /// Waits until the version passes `version`, for `wait` at most (`MAX_WAIT`), or
    /// until the hub closes (at once if it already has).
    pub async fn wait_past(&self, version: u64, wait: Duration) {
        let mut rx = self.subscribe();
        let mut closing = self.closing();
        let _ = tokio::time::timeout(wait.min(MAX_WAIT), async {
            tokio::select! {
                _ = closing.wait_for(|c| *c) => {}
                _ = rx.wait_for(|v| *v > version) => {}
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(version: u64, deltas: bool) -> PollQuery {
        PollQuery {
            version,
            deltas,
            ..PollQuery::default()
        }
    }

    #[test]
    fn the_reply_is_304_a_delta_or_a_snapshot() {
        assert_eq!(reply(&q(5, true), true, 5), Reply::NotModified(5));
        // A filter ahead of this replica (it lags the store) is told what we hold.
        assert_eq!(reply(&q(7, true), true, 5), Reply::NotModified(5));
        assert_eq!(
            reply(&q(5, true), true, 6),
            Reply::DeltaOrSnapshot { base: 5 }
        );
        assert_eq!(reply(&q(5, false), true, 6), Reply::Snapshot);
        assert_eq!(reply(&q(5, true), false, 5), Reply::Snapshot, "other epoch");
        // Holding nothing, a filter always gets an answer, even of version 0.
        assert_eq!(
            reply(&q(0, true), true, 0),
            Reply::DeltaOrSnapshot { base: 0 }
        );
        assert_eq!(reply(&q(0, false), true, 0), Reply::Snapshot);
    }

    #[test]
    fn answers_are_keyed_by_epoch_and_half_hour() {
        let half = crate::sync::SNAPSHOT_REFRESH_SECONDS;
        assert_eq!(answer_key("e", 0), answer_key("e", half - 1));
        assert_ne!(answer_key("e", 0), answer_key("e", half));
        assert_ne!(answer_key("e", 0), answer_key("f", 0));
    }
    use crate::crypto::MasterKey;
    use crate::store::embedded::EmbeddedStore;
    use crate::sync::Change;

    #[tokio::test]
    async fn polls_are_noted_and_wait_only_while_nothing_is_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("p.redb")).unwrap();
        let hub = SyncHub::open(&store, &MasterKey::parse(&"ab".repeat(32)).unwrap(), None)
            .await
            .unwrap();
        hub.changed(&store, Change::Keys, 100).await.unwrap();
        let epoch = hub.epoch();
        // A filter on this epoch at the head: noted, nothing newer.
        let noted = hub
            .note_poll(&store, Some(("f-1", 1)), Some(&epoch), 1, 100)
            .await
            .unwrap();
        assert_eq!(noted, PollNoted::default());
        assert_eq!(
            hub.filters(&store, 100).await.unwrap()[0].applied_version,
            1
        );
        assert!(hub.nothing_newer(Some(&epoch), 1));
        assert!(!hub.nothing_newer(Some(&epoch), 0), "behind");
        assert!(!hub.nothing_newer(Some("another"), 1), "another epoch");
        assert!(hub.nothing_newer(None, 1));
        // A change while a poll waits ends the wait (the timeout is a day: it must not
        // be what ends it).
        let waiting = hub.wait_past(1, Duration::from_secs(86_400));
        let change = hub.changed(&store, Change::Limits, 101);
        let ((), changed) = tokio::join!(waiting, change);
        changed.unwrap();
        assert_eq!(hub.version(), 2);
        // A filter holding a version past the change log of this epoch: a new epoch.
        let noted = hub
            .note_poll(&store, None, Some(&epoch), 9, 1_000)
            .await
            .unwrap();
        assert!(noted.epoch_reset);
        assert_ne!(hub.epoch(), epoch);
        assert!(!hub.same_epoch(Some(&epoch)));
        // Closing ends a parked wait (a day long: the close must end it) and keeps new
        // waits from parking.
        let head = hub.version();
        let waiting = hub.wait_past(head, Duration::from_secs(86_400));
        let close = async {
            tokio::task::yield_now().await;
            hub.close();
        };
        tokio::join!(waiting, close);
        hub.wait_past(head, Duration::from_secs(86_400)).await;
        assert_eq!(hub.version(), head);
    }
}
