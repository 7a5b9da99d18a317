//! The audit log: every change, chained by a keyed hash. Entry n carries the MAC of
//! entry n-1, and the store keeps the last MAC beside the log, so an edited, removed or
//! truncated entry breaks the chain and `verify` names it. The MAC is HMAC-SHA256 under
//! a key derived from the master key, so whoever can write the store but does not hold
//! the master key cannot edit an entry and recompute the rest of the chain.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{typed, Log, Retries, Store, StoreError};

/// Every kind of change the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    KeyPublished,
    KeyActivated,
    KeyActivatedPastLaggingFilters,
    KeyDeactivated,
    KeyRetired,
    KeyRevoked,
    ClientCreated,
    ClientDeleted,
    ClientSecretRotated,
    TokenIssued,
    RevocationAdded,
    LimitSet,
    LimitDeleted,
}

impl AuditAction {
    /// The name stored in the entry (and covered by its MAC): never change one.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::KeyPublished => "key.published",
            AuditAction::KeyActivated => "key.activated",
            AuditAction::KeyActivatedPastLaggingFilters => "key.activated_past_lagging_filters",
            AuditAction::KeyDeactivated => "key.deactivated",
            AuditAction::KeyRetired => "key.retired",
            AuditAction::KeyRevoked => "key.revoked",
            AuditAction::ClientCreated => "client.created",
            AuditAction::ClientDeleted => "client.deleted",
            AuditAction::ClientSecretRotated => "client.secret_rotated",
            AuditAction::TokenIssued => "token.issued",
            AuditAction::RevocationAdded => "revocation.added",
            AuditAction::LimitSet => "limit.set",
            AuditAction::LimitDeleted => "limit.deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub prev: String,
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The label of the audit chain's key, derived from the master key.
pub const AUDIT_KEY_LABEL: &str = "meshauth audit chain v1";

#[allow(clippy::too_many_arguments)]
fn entry_mac(
    key: &[u8; 32],
    seq: u64,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &Value,
    prev: &str,
) -> String {
    let canonical = serde_json::json!([seq, at, actor, action, target, detail, prev]).to_string();
    hex::encode(crate::crypto::hmac_sha256(key, canonical.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum AuditProblem {
    #[error("entry {0} is unreadable")]
    Unreadable(u64),
    #[error("entry {0} has been edited (its hash does not match its content)")]
    Edited(u64),
    #[error("entry {0} is missing or out of order")]
    Missing(u64),
    #[error("the last {0} entries are missing (the log was truncated)")]
    Truncated(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub ok: bool,
    pub problem: Option<String>,
}

pub struct Audit {
    store: Arc<dyn Store>,
    key: [u8; 32],
}

impl Audit {
    /// `key`: the chain's MAC key (`MasterKey::derive(AUDIT_KEY_LABEL)`).
    pub fn new(store: Arc<dyn Store>, key: [u8; 32]) -> Audit {
        Audit { store, key }
    }

    pub async fn record(
        &self,
        actor: &str,
        action: AuditAction,
        target: &str,
        detail: Value,
        at: i64,
    ) -> Result<AuditEntry, StoreError> {
        let action = action.as_str();
        let mut retries = Retries::new("the audit log");
        loop {
            retries.attempt()?;
            let (len, head) = self.store.log_head(Log::Audit).await?;
            let prev = head
                .map(|h| String::from_utf8_lossy(&h).to_string())
                .unwrap_or_else(|| GENESIS.to_string());
            let hash = entry_mac(&self.key, len, at, actor, action, target, &detail, &prev);
            let entry = AuditEntry {
                seq: len,
                at,
                actor: actor.into(),
                action: action.into(),
                target: target.into(),
                detail: detail.clone(),
                prev,
                hash,
            };
            let bytes = typed::encode("audit entry", &entry)?;
            // Another replica may have appended first; then build on its entry.
            if self
                .store
                .append(Log::Audit, len, &bytes, entry.hash.as_bytes())
                .await?
            {
                return Ok(entry);
            }
        }
    }

    pub async fn read(&self, from: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let raw = self.store.read_log(Log::Audit, from, limit).await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_slice(r).ok())
            .collect())
    }

    pub async fn verify(&self) -> Result<AuditReport, StoreError> {
        let (len, head) = self.store.log_head(Log::Audit).await?;
        let head = head.map(|h| String::from_utf8_lossy(&h).to_string());
        let mut prev = GENESIS.to_string();
        let mut seen = 0u64;
        let mut problem = None;
        'outer: while seen < len {
            let batch = self.store.read_log(Log::Audit, seen, 1000).await?;
            if batch.is_empty() {
                break;
            }
            for raw in batch {
                let Ok(e) = serde_json::from_slice::<AuditEntry>(&raw) else {
                    problem = Some(AuditProblem::Unreadable(seen));
                    break 'outer;
                };
                if e.seq != seen || e.prev != prev {
                    problem = Some(AuditProblem::Missing(seen));
                    break 'outer;
                }
                let mac = entry_mac(
                    &self.key, e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
                );
                if !crate::crypto::ct_eq(mac.as_bytes(), e.hash.as_bytes()) {
                    problem = Some(AuditProblem::Edited(seen));
                    break 'outer;
                }
                prev = e.hash;
                seen += 1;
            }
        }
        if problem.is_none() && len > 0 && head.as_deref() != Some(prev.as_str()) {
            problem = Some(AuditProblem::Truncated(1));
        }
        Ok(AuditReport {
            entries: seen,
            ok: problem.is_none(),
            problem: problem.map(|p| p.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use sha2::{Digest, Sha256};

    const KEY: [u8; 32] = [7u8; 32];

    #[tokio::test]
    async fn chain_verifies_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("a.redb")).unwrap());
        let audit = Audit::new(store.clone(), KEY);
        for i in 0..5 {
            audit
                .record(
                    "admin",
                    AuditAction::KeyActivated,
                    &format!("k{i}"),
                    serde_json::json!({"i": i}),
                    100 + i,
                )
                .await
                .unwrap();
        }
        let report = audit.verify().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 5);
        // Edit entry 2's target without fixing the hash.
        let mut entries = audit.read(0, 10).await.unwrap();
        entries[2].target = "forged".into();
        let forged_store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("b.redb")).unwrap());
        for (i, e) in entries.iter().enumerate() {
            forged_store
                .append(
                    Log::Audit,
                    i as u64,
                    &serde_json::to_vec(e).unwrap(),
                    e.hash.as_bytes(),
                )
                .await
                .unwrap();
        }
        let r = Audit::new(forged_store, KEY).verify().await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("entry 2 has been edited (its hash does not match its content)")
        );
        // Drop entry 1 (renumbering the rest is not enough to hide it).
        let removed_store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("c.redb")).unwrap());
        let mut kept = audit.read(0, 10).await.unwrap();
        kept.remove(1);
        for (i, e) in kept.iter_mut().enumerate() {
            e.seq = i as u64;
            removed_store
                .append(
                    Log::Audit,
                    i as u64,
                    &serde_json::to_vec(e).unwrap(),
                    e.hash.as_bytes(),
                )
                .await
                .unwrap();
        }
        let r = Audit::new(removed_store, KEY).verify().await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("entry 1 is missing or out of order")
        );
    }

    /// Whoever can write the store edits an entry and recomputes the rest of the chain
    /// with plain SHA-256 (or with a key of their own): without the key it cannot pass.
    #[tokio::test]
    async fn an_edit_rehashed_without_the_key_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("a.redb")).unwrap());
        let audit = Audit::new(store.clone(), KEY);
        for i in 0..4 {
            audit
                .record(
                    "admin",
                    AuditAction::ClientDeleted,
                    &format!("c{i}"),
                    serde_json::json!({}),
                    100 + i,
                )
                .await
                .unwrap();
        }
        let plain = |e: &AuditEntry| {
            let canonical =
                serde_json::json!([e.seq, e.at, e.actor, e.action, e.target, e.detail, e.prev])
                    .to_string();
            hex::encode(Sha256::digest(canonical.as_bytes()))
        };
        let other_key = |e: &AuditEntry| {
            entry_mac(
                &[9u8; 32], e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
            )
        };
        type Rehash<'a> = &'a dyn Fn(&AuditEntry) -> String;
        let rehashers: [(&str, Rehash); 2] = [("plain", &plain), ("other key", &other_key)];
        for (n, (what, rehash)) in rehashers.into_iter().enumerate() {
            let mut entries = audit.read(0, 10).await.unwrap();
            entries[1].target = "c-covered-up".into();
            let mut prev = GENESIS.to_string();
            let forged: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(&dir.path().join(format!("f{n}.redb"))).unwrap());
            for (i, e) in entries.iter_mut().enumerate() {
                e.prev = prev.clone();
                e.hash = rehash(e);
                prev = e.hash.clone();
                forged
                    .append(
                        Log::Audit,
                        i as u64,
                        &serde_json::to_vec(e).unwrap(),
                        e.hash.as_bytes(),
                    )
                    .await
                    .unwrap();
            }
            let r = Audit::new(forged, KEY).verify().await.unwrap();
            assert!(!r.ok, "{what}: {r:?}");
            assert_eq!(
                r.problem.as_deref(),
                Some("entry 0 has been edited (its hash does not match its content)"),
                "{what}"
            );
        }
    }
}
