//! Rate-limit policies: validated with the one definition in
//! `meshauth_wire::limits`, stored in the `limits` table, audited, and pushed to the
//! filters in the next snapshot.

use meshauth_wire::limits::{valid_policy_name, LimitPolicy};
use serde_json::json;

use crate::app::App;
use crate::error::ServiceError;
use crate::store::Table;

/// At most this many policies: each is checked on every request in every filter.
pub const MAX_POLICIES: usize = 64;

impl App {
    pub async fn limits(&self) -> Result<Vec<LimitPolicy>, ServiceError> {
        let all = self.store.list(Table::Limits).await?;
        all.iter()
            .map(|(_, b)| {
                serde_json::from_slice(b)
                    .map_err(|e| ServiceError::Internal(format!("stored limit is corrupt: {e}")))
            })
            .collect()
    }

    /// Creates or replaces a policy. True when it is new.
    pub async fn set_limit(&self, actor: &str, policy: LimitPolicy) -> Result<bool, ServiceError> {
        policy
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let bytes =
            serde_json::to_vec(&policy).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let existing = self.store.get(Table::Limits, &policy.name).await?;
        if existing.is_none() && self.store.list(Table::Limits).await?.len() >= MAX_POLICIES {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_POLICIES} rate-limit policies"
            )));
        }
        if existing.as_deref() == Some(bytes.as_slice()) {
            return Ok(false); // unchanged: no new snapshot, no audit noise
        }
        self.store.put(Table::Limits, &policy.name, &bytes).await?;
        self.sync
            .changed(self.store.as_ref(), "limits", self.now(), None)
            .await?;
        self.audit
            .record(
                actor,
                "limit.set",
                &policy.name,
                json!({ "policy": policy }),
                self.now(),
            )
            .await?;
        Ok(existing.is_none())
    }

    pub async fn delete_limit(&self, actor: &str, name: &str) -> Result<(), ServiceError> {
        if !valid_policy_name(name) || !self.store.delete(Table::Limits, name).await? {
            return Err(ServiceError::NotFound(format!(
                "rate-limit policy {name:?}"
            )));
        }
        self.sync
            .changed(self.store.as_ref(), "limits", self.now(), None)
            .await?;
        self.audit
            .record(actor, "limit.deleted", name, json!({}), self.now())
            .await?;
        Ok(())
    }
}
