//! Sessions (refresh families) and their refresh tokens in the store. A session holds
//! one live refresh token, whatever the number of refreshes; a spent one is kept
//! (sealed answer inside) only for a retry within the grace.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::ctx::{secs, Ctx};
use crate::error::ServiceError;
use crate::store::{Change, Doc, StoreResult, Table};

/// A refresh token, stored under the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub sid: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub expires_at: i64,
    pub used: bool,
    /// When it was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
    /// The answer to its use, sealed under the master key (bound to this record's key),
    /// for a retry within the grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub sid: String,
    pub sub: String,
    pub client_id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub const FAMILIES: Doc<FamilyRecord> = Doc::new(Table::Families, "family");
pub const REFRESH_TOKENS: Doc<RefreshRecord> = Doc::new(Table::RefreshTokens, "refresh token");

/// The store key of a refresh token.
pub fn refresh_key(token: &str) -> String {
    crypto::sha256_hex(token)
}

#[derive(Clone)]
pub struct Sessions {
    ctx: Arc<Ctx>,
}

impl Sessions {
    pub fn new(ctx: Arc<Ctx>) -> Sessions {
        Sessions { ctx }
    }

    pub async fn family(&self, sid: &str) -> StoreResult<Option<FamilyRecord>> {
        FAMILIES.get(self.ctx.store(), sid).await
    }

    pub async fn create_family(&self, f: &FamilyRecord) -> StoreResult<()> {
        FAMILIES.put(self.ctx.store(), &f.sid, f).await
    }

    pub async fn refresh_record(&self, token: &str) -> StoreResult<Option<RefreshRecord>> {
        REFRESH_TOKENS
            .get(self.ctx.store(), &refresh_key(token))
            .await
    }

    /// Stores a live refresh token.
    pub async fn store_refresh(&self, token: &str, rec: &RefreshRecord) -> StoreResult<()> {
        REFRESH_TOKENS
            .put(self.ctx.store(), &refresh_key(token), rec)
            .await
    }

    /// Marks one session revoked, by its key: a replayed refresh token must not cost a
    /// scan of every session.
    pub async fn revoke_session(&self, sid: &str, now: i64) -> Result<(), ServiceError> {
        FAMILIES
            .update(self.ctx.store(), sid, "the session", |cur| {
                Ok(match cur {
                    Some(mut fam) if fam.revoked_at.is_none() => {
                        fam.revoked_at = Some(now);
                        Change::Set(fam, ())
                    }
                    _ => Change::Keep(()),
                })
            })
            .await?;
        Ok(())
    }

    /// Marks every live session that `matches` as revoked; how many were.
    pub async fn revoke_sessions(
        &self,
        matches: &(dyn Fn(&FamilyRecord) -> bool + Sync),
        now: i64,
    ) -> StoreResult<usize> {
        let mut n = 0;
        for read in FAMILIES.scan(self.ctx.store()).await? {
            if !matches(&read.value) || read.value.revoked_at.is_some() {
                continue;
            }
            let revoked = FamilyRecord {
                revoked_at: Some(now),
                ..read.value.clone()
            };
            // A concurrent change (a refresh-reuse revocation) revokes it as well.
            if FAMILIES
                .swap(self.ctx.store(), &read, Some(&revoked))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    pub async fn any_family(
        &self,
        matches: &(dyn Fn(&FamilyRecord) -> bool + Sync),
    ) -> StoreResult<bool> {
        Ok(FAMILIES
            .scan(self.ctx.store())
            .await?
            .iter()
            .any(|r| matches(&r.value)))
    }

    /// Expired refresh tokens, spent ones once the retry grace is over, and expired
    /// sessions leave the store.
    pub async fn prune(&self, now: i64) -> StoreResult<usize> {
        let t = &self.ctx.settings.tokens;
        let skew = secs(self.ctx.settings.keys.clock_skew);
        let (refresh_ttl, grace) = (secs(t.refresh_ttl), secs(t.refresh_retry_grace));
        let mut pruned = 0;
        for read in REFRESH_TOKENS.scan(self.ctx.store()).await? {
            let r = &read.value;
            // A spent token's record is only needed for a retry within the grace: after
            // that, its MAC proves its session, and presenting it is reuse all the same.
            let spent_long_ago = r.used_at.is_some_and(|at| at + grace + 60 < now);
            if (r.expires_at + skew < now || spent_long_ago)
                && REFRESH_TOKENS.swap(self.ctx.store(), &read, None).await?
            {
                pruned += 1;
            }
        }
        // Every refresh token of a session expires with the session's first one.
        for read in FAMILIES.scan(self.ctx.store()).await? {
            if read.value.created_at + refresh_ttl + skew < now
                && FAMILIES.swap(self.ctx.store(), &read, None).await?
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}
