//! One signed sync answer per change, shared by every poller that asks for it.
//!
//! A change wakes every parked long poll at once; without sharing, each would read the
//! store and sign its own copy of the same answer (3,000 pollers: 3,000 reads and
//! Ed25519 signatures for one revocation). Here the first poller for a key builds the
//! answer and the others wait for it; a failed build is retried by the next poller.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::OnceCell;

/// `(epoch, base version, head version)`; base 0 for a full snapshot.
type Key = (String, u64, u64);
/// The version the answer brings a filter to and its body; `None`: no delta possible.
pub type Answer = Option<(u64, Bytes)>;

/// A small FIFO of single-flight cells.
pub struct AnswerCache {
    capacity: usize,
    cells: Mutex<VecDeque<(Key, Arc<OnceCell<Answer>>)>>,
}

impl AnswerCache {
    pub fn new(capacity: usize) -> AnswerCache {
        AnswerCache {
            capacity: capacity.max(1),
            cells: Mutex::new(VecDeque::new()),
        }
    }

    fn cell(&self, key: Key) -> Arc<OnceCell<Answer>> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = cells.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = Arc::new(OnceCell::new());
        cells.push_back((key, c.clone()));
        while cells.len() > self.capacity {
            cells.pop_front();
        }
        c
    }

    /// The answer for `key`, built by `build` only if no one built it yet.
    pub async fn get_or_build<E, F, Fut>(
        &self,
        epoch: &str,
        base: u64,
        head: u64,
        build: F,
    ) -> Result<Answer, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer, E>>,
    {
        let cell = self.cell((epoch.to_string(), base, head));
        cell.get_or_try_init(build).await.cloned()
    }
}

/// The caches the sync endpoint shares: deltas (small, many bases) and full snapshots
/// (large: only the latest heads).
pub struct SyncAnswers {
    pub deltas: AnswerCache,
    pub snapshots: AnswerCache,
}

impl Default for SyncAnswers {
    fn default() -> Self {
        SyncAnswers {
            deltas: AnswerCache::new(64),
            snapshots: AnswerCache::new(2),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_askers_share_one_build_and_failures_are_retried() {
        let cache = Arc::new(AnswerCache::new(4));
        let builds = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, builds) = (cache.clone(), builds.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_build("e", 1, 2, || async {
                            builds.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<_, ()>(Some((2, Bytes::from_static(b"answer"))))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().unwrap().0, 2);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let failed: Result<Answer, &str> = cache
            .get_or_build("e", 2, 3, || async { Err("down") })
            .await;
        assert!(failed.is_err());
        let again: Result<Answer, &str> =
            cache.get_or_build("e", 2, 3, || async { Ok(None) }).await;
        assert_eq!(again, Ok(None), "a failed build is not cached");
        for head in 10..20 {
            let _: Result<Answer, ()> = cache
                .get_or_build("e", 0, head, || async { Ok(None) })
                .await;
        }
        assert!(cache.cells.lock().unwrap().len() <= 4, "bounded");
    }
}
