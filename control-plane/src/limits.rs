//! Rate-limit policies: validated with the one definition in
//! `meshauth_wire::limits`, stored in the `limits` table, audited, and pushed to the
//! filters in the next snapshot.

use std::sync::Arc;

use meshauth_wire::limits::{valid_policy_name, LimitPolicy};

use crate::audit::{AuditAction, AuditDetail};
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::store::{Doc, StoreResult, Table};
use crate::sync::Change;

/// At most this many policies: each is checked on every request in every filter.
pub const MAX_POLICIES: usize = 64;

const LIMITS: Doc<LimitPolicy> = Doc::new(Table::Limits, "rate-limit policy");

#[derive(Clone)]
pub struct Limits {
    ctx: Arc<Ctx>,
}

impl Limits {
    pub fn new(ctx: Arc<Ctx>) -> Limits {
        Limits { ctx }
    }

    pub async fn all(&self) -> StoreResult<Vec<LimitPolicy>> {
        LIMITS.list(self.ctx.store()).await
    }

    /// Creates or replaces a policy. True when it is new.
    pub async fn set(&self, actor: &str, policy: LimitPolicy) -> Result<bool, ServiceError> {
        policy
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let store = self.ctx.store();
        let bytes = LIMITS.encode(&policy)?;
        let existing = store.get(Table::Limits, &policy.name).await?;
        if existing.is_none() && LIMITS.count(store).await? >= MAX_POLICIES {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_POLICIES} rate-limit policies"
            )));
        }
        if existing.as_deref() == Some(bytes.as_slice()) {
            return Ok(false); // unchanged: no new snapshot, no audit noise
        }
        LIMITS.put(store, &policy.name, &policy).await?;
        let now = self.ctx.now();
        self.ctx.sync.changed(store, Change::Limits, now).await?;
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::LimitSet,
                &policy.name,
                AuditDetail::LimitSet { policy: &policy },
                now,
            )
            .await?;
        Ok(existing.is_none())
    }

    pub async fn delete(&self, actor: &str, name: &str) -> Result<(), ServiceError> {
        if !valid_policy_name(name) || !LIMITS.delete(self.ctx.store(), name).await? {
            return Err(ServiceError::NotFound(format!(
                "rate-limit policy {name:?}"
            )));
        }
        let now = self.ctx.now();
        self.ctx
            .sync
            .changed(self.ctx.store(), Change::Limits, now)
            .await?;
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::LimitDeleted,
                name,
                AuditDetail::Nothing {},
                now,
            )
            .await?;
        Ok(())
    }
}
