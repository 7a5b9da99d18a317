//! The change log: one entry per change filters see, whose length is the snapshot
//! version. Entries are typed here and encoded only here.

use serde::{Deserialize, Serialize};

use crate::revocation::Revocation;
use crate::store::{typed, Log, Retries, Store, StoreResult};

use super::SyncHub;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keys,
    Limits,
    /// The trusted-issuer registry or an issuer's held keys.
    Issuers,
    /// A new sync epoch started (the store was restored from a backup).
    Epoch,
    /// One revocation: a filter close behind can take it as a delta.
    Revocation(Revocation),
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEntry {
    pub at: i64,
    pub change: Change,
}

/// The stored form: `{"at", "what", "detail"}`, `detail` the revocation or null.
#[derive(Serialize, Deserialize)]
struct Stored {
    at: i64,
    what: String,
    #[serde(default)]
    detail: Option<Revocation>,
}

impl ChangeEntry {
    pub fn encode(&self) -> StoreResult<Vec<u8>> {
        let (what, detail) = match &self.change {
            Change::Keys => ("keys", None),
            Change::Limits => ("limits", None),
            Change::Issuers => ("issuers", None),
            Change::Epoch => ("epoch", None),
            Change::Revocation(r) => ("revocations", Some(r.clone())),
        };
        typed::encode(
            "change-log entry",
            &Stored {
                at: self.at,
                what: what.into(),
                detail,
            },
        )
    }

    /// `None` for an entry this version cannot read: the reader then falls back to
    /// a full snapshot.
    pub fn decode(raw: &[u8]) -> Option<ChangeEntry> {
        let s: Stored = serde_json::from_slice(raw).ok()?;
        let change = match (s.what.as_str(), s.detail) {
            ("revocations", Some(r)) => Change::Revocation(r),
            ("keys", _) => Change::Keys,
            ("limits", _) => Change::Limits,
            ("issuers", _) => Change::Issuers,
            ("epoch", _) => Change::Epoch,
            _ => return None,
        };
        Some(ChangeEntry { at: s.at, change })
    }
}

impl SyncHub {
    /// Records that state the filters see has changed, durably, and wakes long polls.
    pub async fn changed(&self, store: &dyn Store, change: Change, at: i64) -> StoreResult<()> {
        let entry = ChangeEntry { at, change }.encode()?;
        let mut retries = Retries::new("the change log");
        loop {
            retries.attempt()?;
            let (len, _) = store.log_head(Log::Changes).await?;
            if store
                .append(Log::Changes, len, &entry, (len + 1).to_string().as_bytes())
                .await?
            {
                self.observe(len + 1);
                return Ok(());
            }
        }
    }

    /// The entries from `base` to `head`, or `None` if some were compacted away.
    pub(super) async fn entries_since(
        store: &dyn Store,
        base: u64,
        head: u64,
    ) -> StoreResult<Option<Vec<Vec<u8>>>> {
        let entries = store.read_log(Log::Changes, base, head - base).await?;
        Ok((entries.len() as u64 == head - base).then_some(entries))
    }

    /// Drops change-log entries more than `keep` behind the head (the version stays);
    /// how many were dropped.
    pub async fn compact(store: &dyn Store, keep: u64) -> StoreResult<u64> {
        let (head, _) = store.log_head(Log::Changes).await?;
        if head <= keep {
            return Ok(0);
        }
        store.trim_log(Log::Changes, head - keep).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_read_what_older_versions_wrote() {
        let r = Revocation::Sid {
            value: "s-1".into(),
            not_before: 7,
            issuer: None,
        };
        for change in [
            Change::Keys,
            Change::Limits,
            Change::Issuers,
            Change::Epoch,
            Change::Revocation(r.clone()),
        ] {
            let e = ChangeEntry { at: 5, change };
            assert_eq!(ChangeEntry::decode(&e.encode().unwrap()), Some(e));
        }
        // As written before entries were typed.
        let old = br#"{"at":3,"detail":{"kind":"sid","not_before":7,"value":"s-1"},"what":"revocations"}"#;
        assert_eq!(
            ChangeEntry::decode(old).map(|e| e.change),
            Some(Change::Revocation(r))
        );
        let old = br#"{"at":3,"detail":null,"what":"keys"}"#;
        assert_eq!(
            ChangeEntry::decode(old).map(|e| e.change),
            Some(Change::Keys)
        );
        // A revocation entry without its revocation, or an unknown kind: unreadable.
        assert_eq!(
            ChangeEntry::decode(br#"{"at":3,"what":"revocations"}"#),
            None
        );
        assert_eq!(ChangeEntry::decode(br#"{"at":3,"what":"weather"}"#), None);
    }
}
