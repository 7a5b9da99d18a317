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

use crate::store::{Log, Store, StoreError};

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

    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
        at: i64,
    ) -> Result<AuditEntry, StoreError> {
        loop {
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
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let new_head = head_value(&self.key, len + 1, &entry.hash);
            // Another replica may have appended first; then build on its entry.
            if self
                .store
                .append(Log::Audit, len, &bytes, new_head.as_bytes())
                .await?
            {
                // Outside the store: log shipping keeps the anchors `verify` checks.
                tracing::info!(
                    audit_head = %format!("{}:{}", entry.seq, entry.hash),
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
        let mac = entry_mac(
            &self.key, e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
        );
        if !crate::crypto::ct_eq(mac.as_bytes(), e.hash.as_bytes()) {
            return Ok(Err(AuditProblem::Edited(last)));
        }
        let vouched = stored.as_deref().is_some_and(|h| {
            crate::crypto::ct_eq(h.as_bytes(), head_value(&self.key, len, &e.hash).as_bytes())
        });
        if e.seq != last || !vouched {
            return Ok(Err(AuditProblem::Truncated(len)));
        }
        Ok(Ok(Some(format!("{}:{}", e.seq, e.hash))))
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
                let mac = entry_mac(
                    &self.key, e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
                );
                if !crate::crypto::ct_eq(mac.as_bytes(), e.hash.as_bytes()) {
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
        let vouched = head.as_deref().is_some_and(|h| {
            crate::crypto::ct_eq(h.as_bytes(), head_value(&self.key, seen, &prev).as_bytes())
        });
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
            head: seen.checked_sub(1).map(|last| format!("{last}:{prev}")),
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
                    "keys.rotate",
                    &format!("k{i}"),
                    serde_json::json!({"i": i}),
                    100 + i,
                )
                .await
                .unwrap();
        }
        let report = audit.verify(None).await.unwrap();
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
        let r = Audit::new(forged_store, KEY).verify(None).await.unwrap();
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
        let r = Audit::new(removed_store, KEY).verify(None).await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("entry 1 is missing or out of order")
        );
    }

    /// Whoever can write the store cuts entries off the end: pointing the head at the
    /// new last entry fails on its own; putting back a head saved earlier (a rollback)
    /// fails against an anchor recorded later; the untouched log passes with it.
    #[tokio::test]
    async fn a_truncated_log_fails_and_a_rollback_fails_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("a.redb")).unwrap());
        let audit = Audit::new(store.clone(), KEY);
        let mut saved = None;
        for i in 0..5 {
            audit
                .record(
                    "admin",
                    "client.created",
                    &format!("c{i}"),
                    serde_json::json!({}),
                    100 + i,
                )
                .await
                .unwrap();
            if i == 2 {
                saved = store.log_head(Log::Audit).await.unwrap().1;
            }
        }
        let entries = audit.read(0, 10).await.unwrap();
        let anchor: Anchor = audit
            .head()
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            (anchor.seq, anchor.hash.as_str()),
            (4, entries[4].hash.as_str())
        );
        let r = audit.verify(Some(&anchor)).await.unwrap();
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.head.as_deref(),
            Some(format!("4:{}", entries[4].hash).as_str())
        );
        let truncated = |n: usize, head: Vec<u8>| {
            let entries = entries.clone();
            let path = dir.path().join(format!("t{n}.redb"));
            async move {
                let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
                for (i, e) in entries.iter().take(3).enumerate() {
                    let h = if i == 2 {
                        head.clone()
                    } else {
                        e.hash.clone().into_bytes()
                    };
                    s.append(Log::Audit, i as u64, &serde_json::to_vec(e).unwrap(), &h)
                        .await
                        .unwrap();
                }
                Audit::new(s, KEY)
            }
        };
        let cut = truncated(0, entries[2].hash.clone().into_bytes()).await;
        let r = cut.verify(None).await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("the stored head does not vouch for the log's 3 entries: the log was truncated or its head replaced")
        );
        let rolled_back = truncated(1, saved.unwrap()).await;
        assert!(
            rolled_back.verify(None).await.unwrap().ok,
            "only an anchor sees a rollback"
        );
        let r = rolled_back.verify(Some(&anchor)).await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("the log has 3 entries but the anchor names entry 4: it was truncated or rolled back")
        );
        // An anchor whose hash differs (the log rewritten, or the wrong anchor).
        let other = Anchor {
            seq: 1,
            hash: "ab".repeat(32),
        };
        let r = audit.verify(Some(&other)).await.unwrap();
        assert_eq!(
            r.problem.as_deref(),
            Some("entry 1 is not the anchored one: the log was rewritten up to there")
        );
        for bad in ["", "4", "x:ab", "4:abc", &format!("-1:{}", "ab".repeat(32))] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad:?}");
        }
    }

    /// Whoever can write the store puts a copy of an early entry at the end for a while:
    /// `audit head`, which operators record on a schedule as the newest anchor, must not
    /// print that entry's SEQ:HASH (an anchor every later rollback would pass), nor any
    /// last entry the stored head does not vouch for.
    #[tokio::test]
    async fn head_refuses_a_last_entry_the_stored_head_does_not_vouch_for() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("a.redb")).unwrap());
        let audit = Audit::new(store.clone(), KEY);
        for i in 0..3 {
            audit
                .record(
                    "admin",
                    "client.created",
                    &format!("c{i}"),
                    serde_json::json!({}),
                    100 + i,
                )
                .await
                .unwrap();
        }
        let real = audit.head().await.unwrap().unwrap().unwrap();
        assert!(real.starts_with("2:"), "{real}");
        let entries = audit.read(0, 10).await.unwrap();
        let (_, saved_head) = store.log_head(Log::Audit).await.unwrap();
        // A copy of entry 0 appended, the stored head left as it was.
        let junk = serde_json::to_vec(&entries[0]).unwrap();
        store
            .append(Log::Audit, 3, &junk, &saved_head.unwrap())
            .await
            .unwrap();
        let printed = audit.head().await.unwrap();
        assert_eq!(
            printed,
            Err(AuditProblem::Truncated(4)),
            "not an anchor to record"
        );
        assert!(!audit.verify(None).await.unwrap().ok);
        // A rollback to one entry (its head as saved then) would pass verify with the anchor
        // it printed before.
        let weak: Anchor = format!("0:{}", entries[0].hash).parse().unwrap();
        let rolled = dir.path().join("r.redb");
        let r: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&rolled).unwrap());
        let one = Audit::new(r.clone(), KEY);
        r.append(
            Log::Audit,
            0,
            &serde_json::to_vec(&entries[0]).unwrap(),
            head_value(&KEY, 1, &entries[0].hash).as_bytes(),
        )
        .await
        .unwrap();
        assert!(one.verify(Some(&weak)).await.unwrap().ok);
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
                    "client.deleted",
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
            let r = Audit::new(forged, KEY).verify(None).await.unwrap();
            assert!(!r.ok, "{what}: {r:?}");
            assert_eq!(
                r.problem.as_deref(),
                Some("entry 0 has been edited (its hash does not match its content)"),
                "{what}"
            );
        }
    }
}
