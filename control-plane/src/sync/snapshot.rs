//! The signed messages filters apply: a full snapshot of one version, or a delta of
//! revocations from a version close behind.

use std::sync::Arc;

use ed25519_dalek::Signer;

use meshauth_wire::bloom::Bloom;
use meshauth_wire::federation::FederatedIssuer;
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::{Delta, Message, SignedSnapshot, Snapshot};
use meshauth_wire::JwkSet;

use crate::revocation::{Horizons, Revocation};
use crate::store::{typed, Store, StoreResult};

use super::changelog::{Change, ChangeEntry};
use super::{lock, SyncHub, MAX_DELTA_CHANGES, SNAPSHOT_REFRESH_SECONDS};

/// What a snapshot carries besides its version.
pub struct Contents<'a> {
    pub jwks: JwkSet,
    pub revocations: &'a [Revocation],
    pub limits: Vec<LimitPolicy>,
    pub issuers: Vec<FederatedIssuer>,
}

impl SyncHub {
    /// A signed delta from `base` for a filter close behind, when every change since was
    /// a revocation; `None` means "send the full snapshot".
    pub async fn delta(
        &self,
        store: &dyn Store,
        base: u64,
        now: i64,
    ) -> StoreResult<Option<(u64, String)>> {
        let head = self.version();
        if base == 0 || head <= base || head - base > MAX_DELTA_CHANGES {
            return Ok(None);
        }
        let Some(entries) = SyncHub::entries_since(store, base, head).await? else {
            return Ok(None); // compacted away: the full snapshot
        };
        let mut revoked_jti = Vec::new();
        let mut rules = Vec::new();
        for raw in &entries {
            let Some(ChangeEntry {
                change: Change::Revocation(r),
                ..
            }) = ChangeEntry::decode(raw)
            else {
                return Ok(None);
            };
            if let Some(jti) = r.live_jti(now) {
                revoked_jti.push(jti.to_string());
            }
            rules.extend(r.filter_rule());
        }
        let version = base + entries.len() as u64;
        let delta = Delta {
            epoch: self.epoch(),
            base_version: base,
            version,
            issued_at: now,
            revoked_jti,
            rules,
        };
        let sealed = SignedSnapshot::seal_message(&Message::Delta(delta), |payload| {
            self.signer.sign(payload).to_bytes()
        });
        Ok(Some((version, typed::encode_text("sync delta", &sealed)?)))
    }

    /// The signed snapshot for `version`, built once per version.
    pub fn snapshot(
        &self,
        version: u64,
        contents: Contents<'_>,
        now: i64,
        horizons: &Horizons,
    ) -> StoreResult<Arc<String>> {
        let Contents {
            jwks,
            revocations,
            limits,
            issuers,
        } = contents;
        if let Some((v, issued, s)) = lock(&self.cached).as_ref() {
            if *v == version && now - *issued < SNAPSHOT_REFRESH_SECONDS {
                return Ok(s.clone());
            }
        }
        let live: Vec<&str> = revocations.iter().filter_map(|r| r.live_jti(now)).collect();
        let mut bloom = Bloom::with_capacity(live.len().max(16), 0.001, rand::random());
        for j in &live {
            bloom.insert(j);
        }
        // A rule older than every token that could still be valid has nothing left to
        // do; a trusted issuer's tokens may live longer than ours (`Horizons`).
        let rules = revocations
            .iter()
            .filter(|r| {
                r.not_before()
                    .is_some_and(|nb| nb > now.saturating_sub(horizons.of(r)))
            })
            .filter_map(Revocation::filter_rule)
            .collect();
        let snap = Snapshot {
            epoch: self.epoch(),
            version,
            issued_at: now,
            jwks,
            revoked_jti: bloom,
            rules,
            limits,
            issuers,
        };
        let sealed = SignedSnapshot::seal(&snap, |payload| self.signer.sign(payload).to_bytes());
        let text = Arc::new(typed::encode_text("snapshot", &sealed)?);
        *lock(&self.cached) = Some((version, now, text.clone()));
        Ok(text)
    }
}
