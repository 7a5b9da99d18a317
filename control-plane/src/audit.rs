//! The audit log: every change, chained by a keyed hash. Entry n carries the MAC of
//! entry n-1, so an edited or removed entry breaks the chain and `verify` names it. The
//! MAC is HMAC-SHA256 under a key derived from the master key, so whoever can write the
//! store but does not hold the master key cannot edit an entry and recompute the rest.
//!
//! The store keeps a head beside the log: the last entry's MAC and a MAC over it and the
//! entry count, so cutting entries off the end cannot be hidden by pointing the head at
//! the new last entry. Putting back a whole earlier state (log and head, a rollback)
//! cannot be seen from inside the store: each append logs the new head (`SEQ:HASH`, no
//! secret) for log shipping to keep, and `verify` checks an anchor recorded that way.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use meshauth_wire::limits::LimitPolicy;

use crate::revocation::Revocation;
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
    IssuerAdded,
    IssuerDeleted,
    TokenExchanged,
    TokenExchangeRefused,
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
            AuditAction::IssuerAdded => "issuer.added",
            AuditAction::IssuerDeleted => "issuer.deleted",
            AuditAction::TokenExchanged => "token.exchanged",
            AuditAction::TokenExchangeRefused => "token.exchange_refused",
        }
    }
}

/// What an entry records beside its action and target (`{}` when nothing).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AuditDetail<'a> {
    Nothing {},
    TokenIssued {
        sid: &'a str,
        scope: &'a str,
        ttl: i64,
    },
    ClientCreated {
        name: &'a str,
        scopes: &'a [String],
        /// Written only when set, so other clients' entries read as before.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        token_exchange: bool,
    },
    RevocationAdded {
        revocation: &'a Revocation,
        reason: &'a str,
    },
    LimitSet {
        policy: &'a LimitPolicy,
    },
    IssuerAdded {
        issuer: &'a str,
        source: &'a str,
        audiences: &'a [String],
        algorithms: &'a [&'a str],
    },
    /// A token exchange, granted (`jti`) or refused (`error`, `reason`): what was
    /// established by then, never a token.
    TokenExchange {
        #[serde(skip_serializing_if = "Option::is_none")]
        issuer: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actor: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        aud: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        jti: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
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

/// The stored head for `count` entries ending in `last`: `last:MAC(count, last)`.
fn head_value(key: &[u8; 32], count: u64, last: &str) -> String {
    let canonical = serde_json::json!(["meshauth audit head", count, last]).to_string();
    let mac = hex::encode(crate::crypto::hmac_sha256(key, canonical.as_bytes()));
    format!("{last}:{mac}")
}

/// The last entry's MAC in a stored head (an earlier version stored it alone).
fn head_last(head: &str) -> &str {
    head.split_once(':').map_or(head, |(last, _)| last)
}

/// An entry recorded outside the store (`SEQ:HASH`, as the control plane logs it on
/// each append): a later chain must still reach it, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl Anchor {
    fn of(e: &AuditEntry) -> Anchor {
        Anchor {
            seq: e.seq,
            hash: e.hash.clone(),
        }
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let bad = || {
            format!(
                "an anchor is SEQ:HASH (an entry number and its 64-hex-digit hash), not {:?}",
                s.chars().take(80).collect::<String>()
            )
        };
        let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Anchor {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum AuditProblem {
    #[error("entry {0} is unreadable")]
    Unreadable(u64),
    #[error("entry {0} has been edited (its hash does not match its content)")]
    Edited(u64),
    #[error("entry {0} is missing or out of order")]
    Missing(u64),
    #[error("the stored head does not vouch for the log's {0} entries: the log was truncated or its head replaced")]
    Truncated(u64),
    #[error("the log has {entries} entries but the anchor names entry {seq}: it was truncated or rolled back")]
    AnchorMissing { seq: u64, entries: u64 },
    #[error("entry {0} is not the anchored one: the log was rewritten up to there")]
    AnchorDiffers(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub ok: bool,
    pub problem: Option<String>,
    /// `SEQ:HASH` of the last entry checked: what to record as the next anchor.
    pub head: Option<String>,
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

    /// Whether `e`'s hash is the MAC of its content.
    fn sealed(&self, e: &AuditEntry) -> bool {
        let mac = entry_mac(
            &self.key, e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
        );
        crate::crypto::ct_eq(mac.as_bytes(), e.hash.as_bytes())
    }

    /// Whether the stored head vouches for `count` entries ending in `last`.
    fn vouches(&self, stored: Option<&str>, count: u64, last: &str) -> bool {
        stored.is_some_and(|h| {
            crate::crypto::ct_eq(h.as_bytes(), head_value(&self.key, count, last).as_bytes())
        })
    }

    pub async fn record(
        &self,
        actor: &str,
        action: AuditAction,
        target: &str,
        detail: AuditDetail<'_>,
        at: i64,
    ) -> Result<AuditEntry, StoreError> {
        let action = action.as_str();
        // Serializing these types cannot fail (string keys, no maps of other keys).
        let detail = serde_json::to_value(detail).unwrap_or_default();
        let mut retries = Retries::new("the audit log");
        loop {
            retries.attempt()?;
            let (len, head) = self.store.log_head(Log::Audit).await?;
            let prev = head
                .map(|h| head_last(&String::from_utf8_lossy(&h)).to_string())
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
            let new_head = head_value(&self.key, len + 1, &entry.hash);
            // Another replica may have appended first; then build on its entry.
            if self
                .store
                .append(Log::Audit, len, &bytes, new_head.as_bytes())
                .await?
            {
                // Outside the store: log shipping keeps the anchors `verify` checks.
                tracing::info!(
                    audit_head = %Anchor::of(&entry),
                    "audit entry appended (its SEQ:HASH is an anchor for `audit verify`)"
                );
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

    /// The newest `count` entries, oldest first.
    pub async fn read_last(&self, count: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let (len, _) = self.store.log_head(Log::Audit).await?;
        self.read(len.saturating_sub(count), count).await
    }

    /// The last entry's `SEQ:HASH`, an anchor to record. No chain walk, but the stored
    /// head must vouch for that entry and the entry count, and the entry for itself: whoever
    /// can write the store could otherwise have an early entry printed as the newest
    /// anchor, which every later rollback would pass.
    pub async fn head(&self) -> Result<Result<Option<String>, AuditProblem>, StoreError> {
        let (len, stored) = self.store.log_head(Log::Audit).await?;
        let stored = stored.map(|h| String::from_utf8_lossy(&h).to_string());
        let Some(last) = len.checked_sub(1) else {
            return Ok(match stored {
                Some(_) => Err(AuditProblem::Truncated(0)),
                None => Ok(None),
            });
        };
        let raw = self.store.read_log(Log::Audit, last, 1).await?;
        let Some(e) = raw
            .first()
            .and_then(|r| serde_json::from_slice::<AuditEntry>(r).ok())
        else {
            return Ok(Err(AuditProblem::Unreadable(last)));
        };
        if !self.sealed(&e) {
            return Ok(Err(AuditProblem::Edited(last)));
        }
        if e.seq != last || !self.vouches(stored.as_deref(), len, &e.hash) {
            return Ok(Err(AuditProblem::Truncated(len)));
        }
        Ok(Ok(Some(Anchor::of(&e).to_string())))
    }

    /// Walks the chain; with `anchor`, it must also reach that entry, unchanged.
    pub async fn verify(&self, anchor: Option<&Anchor>) -> Result<AuditReport, StoreError> {
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
                if !self.sealed(&e) {
                    problem = Some(AuditProblem::Edited(seen));
                    break 'outer;
                }
                if anchor.is_some_and(|a| a.seq == seen && a.hash != e.hash) {
                    problem = Some(AuditProblem::AnchorDiffers(seen));
                    break 'outer;
                }
                prev = e.hash;
                seen += 1;
            }
        }
        let vouched = self.vouches(head.as_deref(), seen, &prev);
        if problem.is_none() && (len > 0 || head.is_some()) && (seen != len || !vouched) {
            problem = Some(AuditProblem::Truncated(seen));
        }
        if let Some(a) = anchor.filter(|a| problem.is_none() && a.seq >= seen) {
            problem = Some(AuditProblem::AnchorMissing {
                seq: a.seq,
                entries: seen,
            });
        }
        Ok(AuditReport {
            entries: seen,
            ok: problem.is_none(),
            problem: problem.map(|p| p.to_string()),
            head: seen
                .checked_sub(1)
                .map(|seq| Anchor { seq, hash: prev }.to_string()),
        })
    }
}

#[cfg(test)]
mod tests;
