//! The scheduled step every replica runs: the replica holding the rotation lease
//! drives the key lifecycle and prunes what can no longer matter; the others reload
//! the keyring.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::issuers::Issuers;
use crate::keys::KeyService;
use crate::revocations::Revocations;
use crate::sessions::Sessions;
use crate::sync::{SyncHub, MAX_DELTA_CHANGES};

/// Change-log entries kept behind the head: a filter further behind than
/// `MAX_DELTA_CHANGES` gets a full snapshot anyway, so older ones are never read.
pub const CHANGES_KEPT: u64 = 4 * MAX_DELTA_CHANGES;

pub struct Schedule {
    ctx: Arc<Ctx>,
    keys: Arc<KeyService>,
    revocations: Revocations,
    sessions: Sessions,
    /// Whose registered lifetimes decide how long their rules are kept.
    issuers: Issuers,
    /// Identifies this replica in the lease.
    replica_id: String,
    /// When expired sessions were last pruned and the change log compacted.
    last_prune: AtomicI64,
}

impl Schedule {
    pub fn new(
        ctx: Arc<Ctx>,
        keys: Arc<KeyService>,
        revocations: Revocations,
        sessions: Sessions,
        issuers: Issuers,
        replica_id: String,
    ) -> Schedule {
        Schedule {
            ctx,
            keys,
            revocations,
            sessions,
            issuers,
            replica_id,
            last_prune: AtomicI64::new(0),
        }
    }

    pub async fn step(&self) -> Result<(), ServiceError> {
        let ttl = self.ctx.settings.keys.check_interval.as_millis() as u64 * 3;
        if !self
            .ctx
            .store()
            .lease("rotation", &self.replica_id, ttl)
            .await?
        {
            self.keys.reload().await?;
            return Ok(());
        }
        self.keys.tick().await?;
        let horizons = self.issuers.horizons().await?;
        self.revocations.prune(self.ctx.now(), &horizons).await?;
        // Sessions and the change log are read whole: once a minute is enough.
        let now = self.ctx.now();
        let last = self.last_prune.load(Ordering::Relaxed);
        if now - last >= 60 {
            self.last_prune.store(now, Ordering::Relaxed);
            self.sessions.prune(now).await?;
            SyncHub::compact(self.ctx.store(), CHANGES_KEPT).await?;
        }
        Ok(())
    }
}
