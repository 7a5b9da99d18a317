//! The registry of filters: which ones poll, and the version each has applied (the
//! key schedule waits for them). Filters may poll any replica, so it lives in the store.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::store::{Doc, Store, StoreResult, Table};

use super::{lock, SyncHub};

/// A filter polls again at once after each answer and long polls last 60 s at most, so
/// one not heard from for this long is gone (or cut off).
pub const CONNECTED_SECONDS: i64 = 90;
pub(super) const FORGET_SECONDS: i64 = 600;
/// About the most filters the registry holds (those seen in the last `FORGET_SECONDS`); a new
/// id beyond it is served but not recorded, so made-up ids cannot grow the store or
/// `/admin/status` without bound.
pub const MAX_FILTERS: usize = 4_096;

/// A filter as the control plane last saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterStatus {
    pub id: String,
    pub applied_version: u64,
    pub last_seen: i64,
}

const FILTERS: Doc<FilterStatus> = Doc::new(Table::Filters, "filter status");

impl SyncHub {
    /// Records a filter's poll. Filters may poll any replica, so the registry lives in
    /// the store; a filter is written when its version changes or every 10 s at most.
    /// `Ok(false)`: a new id while the registry is full; not recorded.
    pub async fn saw_filter(
        &self,
        store: &dyn Store,
        id: &str,
        applied: u64,
        now: i64,
    ) -> StoreResult<bool> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(true);
        }
        let known = lock(&self.filters).contains_key(id);
        if !known && store.get(Table::Filters, id).await?.is_none() {
            // A new id. The count is the last listing's (every key-schedule step lists
            // and prunes) plus the ids added here since, so a flood costs no listing.
            if self.registered.load(Ordering::Relaxed) >= MAX_FILTERS {
                return Ok(false);
            }
            self.registered.fetch_add(1, Ordering::Relaxed);
        }
        let status = FilterStatus {
            id: id.to_string(),
            applied_version: applied,
            last_seen: now,
        };
        {
            let mut f = lock(&self.filters);
            if f.len() >= MAX_FILTERS {
                f.retain(|_, s| now - s.last_seen < FORGET_SECONDS);
            }
            let fresh = f
                .get(id)
                .is_some_and(|p| p.applied_version == applied && now - p.last_seen < 10);
            if fresh {
                return Ok(true);
            }
            f.insert(id.to_string(), status.clone());
        }
        FILTERS.put(store, id, &status).await?;
        Ok(true)
    }

    /// Every filter seen in the last ten minutes, on any replica; older ones are dropped.
    pub async fn filters(&self, store: &dyn Store, now: i64) -> StoreResult<Vec<FilterStatus>> {
        let mut out = Vec::new();
        for (id, raw) in store.list(Table::Filters).await? {
            match FILTERS.decode(&raw) {
                Ok(f) if now - f.last_seen < FORGET_SECONDS => out.push(f),
                // Gone, or unreadable: dropped, unless it was written since.
                _ => {
                    store
                        .compare_and_swap(Table::Filters, &id, Some(&raw), None)
                        .await?;
                }
            }
        }
        self.registered.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// Filters that polled recently enough to count as connected.
    pub async fn connected_filters(
        &self,
        store: &dyn Store,
        now: i64,
    ) -> StoreResult<Vec<FilterStatus>> {
        let mut all = self.filters(store, now).await?;
        all.retain(|f| now - f.last_seen < CONNECTED_SECONDS);
        Ok(all)
    }
}
