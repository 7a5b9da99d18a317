//! The refresh grant: one-time use, rotated on every use; a reused token revokes its
//! session. Using a token again within `refresh_retry_grace` of its use gives the same
//! answer (sealed in the spent record), so a client that lost the answer, or got a 503
//! because the write was not replicated, can retry without losing its session.

use serde::{Deserialize, Serialize};

use meshauth_wire::b64;

use crate::clients::ClientRecord;
use crate::ctx::secs;
use crate::error::{GrantError, OAuthError, ServiceError};
use crate::sessions::{refresh_key, RefreshRecord, REFRESH_TOKENS};
use crate::store::typed;
use crate::tokens::{AccessGrant, TokenResponse};

use super::{OAuth, ADMIN_ACTOR};

/// The tokens a refresh issued, kept sealed in the spent record.
#[derive(Serialize, Deserialize)]
struct SealedAnswer {
    access_token: String,
    refresh_token: String,
}

fn reused() -> GrantError {
    OAuthError::invalid_grant("refresh token was already used; its session has been revoked").into()
}

fn invalid() -> GrantError {
    OAuthError::invalid_grant("refresh token is invalid").into()
}

fn other_client() -> GrantError {
    OAuthError::invalid_grant("refresh token was issued to another client").into()
}

/// A session bound to a registered client only refreshes for that client.
fn bound_elsewhere(owner: &str, client: Option<&ClientRecord>) -> bool {
    owner != ADMIN_ACTOR && client.map(|c| c.client_id.as_str()) != Some(owner)
}

impl OAuth {
    pub async fn refresh(
        &self,
        token: &str,
        client: Option<&ClientRecord>,
    ) -> Result<TokenResponse, GrantError> {
        let key = refresh_key(token);
        let now = self.ctx.now();
        let Some(read) = REFRESH_TOKENS.read(self.ctx.store(), &key).await? else {
            return Err(self.unstored_refresh(token, client, now).await);
        };
        let rec = &read.value;
        if bound_elsewhere(&rec.client_id, client) {
            return Err(other_client());
        }
        if rec.used {
            return self.retry_or_reuse(&key, rec, now).await;
        }
        if rec.expires_at <= now {
            return Err(OAuthError::invalid_grant("refresh token has expired").into());
        }
        if self.revocations.session_revoked(rec).await? {
            return Err(OAuthError::invalid_grant("session has been revoked").into());
        }
        let ttl = self.access_ttl();
        let (access, _) = self.tokens.mint_access(AccessGrant {
            sub: &rec.sub,
            client_id: &rec.client_id,
            scope: &rec.scope,
            aud: rec.aud.clone(),
            ttl,
            sid: Some(rec.sid.clone()),
            ext: None,
            act: None,
        })?;
        let next_token = self.tokens.mint_refresh(&rec.sid);
        let sealed = typed::encode(
            "refresh answer",
            &SealedAnswer {
                access_token: access.clone(),
                refresh_token: next_token.clone(),
            },
        )?;
        let spent = RefreshRecord {
            used: true,
            used_at: Some(now),
            answer: Some(b64::encode(
                self.ctx.settings.master_key.seal(&sealed, key.as_bytes()),
            )),
            ..rec.clone()
        };
        // Exactly one concurrent use wins; the others are retries (within the grace) or
        // reuse. A `NotReplicated` failure here means the use applied: the retry path
        // answers it.
        if !REFRESH_TOKENS
            .swap(self.ctx.store(), &read, Some(&spent))
            .await?
        {
            let Some(cur) = REFRESH_TOKENS.get(self.ctx.store(), &key).await? else {
                return Err(invalid());
            };
            return self.retry_or_reuse(&key, &cur, now).await;
        }
        self.store_next_refresh(&next_token, rec).await?;
        self.ctx.metrics.issued("refresh_token");
        Ok(TokenResponse {
            refresh_token: Some(next_token),
            sid: Some(rec.sid.clone()),
            ..self.bearer(access, ttl, rec.scope.clone())
        })
    }

    /// A refresh token with no record: invalid, unless its MAC proves we issued it for a
    /// session that still exists. Live tokens are always stored, so that one was spent
    /// and pruned: reuse, which revokes the session.
    async fn unstored_refresh(
        &self,
        token: &str,
        client: Option<&ClientRecord>,
        now: i64,
    ) -> GrantError {
        let Some(sid) = self.tokens.refresh_sid(token) else {
            return invalid();
        };
        let fam = match self.sessions.family(&sid).await {
            Ok(Some(f)) => f,
            Ok(None) => return invalid(), // the session expired and was pruned
            Err(e) => return e.into(),
        };
        if bound_elsewhere(&fam.client_id, client) {
            return other_client();
        }
        if let Err(e) = self
            .revocations
            .revoke_family(&sid, "refresh_reuse", now)
            .await
        {
            return e.into();
        }
        reused()
    }

    /// Stores the refresh token that replaces `rec`'s, unless it is there already (a
    /// retry). False if it is there and already used.
    async fn store_next_refresh(
        &self,
        next_token: &str,
        rec: &RefreshRecord,
    ) -> Result<bool, ServiceError> {
        let next = RefreshRecord {
            used: false,
            used_at: None,
            answer: None,
            ..rec.clone()
        };
        let next_key = refresh_key(next_token);
        if REFRESH_TOKENS
            .insert_new(self.ctx.store(), &next_key, &next)
            .await?
        {
            return Ok(true);
        }
        Ok(REFRESH_TOKENS
            .get(self.ctx.store(), &next_key)
            .await?
            .is_some_and(|cur| !cur.used))
    }

    /// A used token presented again: within the grace, and while neither the session is
    /// revoked nor the token that replaced it used, the same answer as the first time;
    /// otherwise reuse, which revokes the session.
    async fn retry_or_reuse(
        &self,
        key: &str,
        rec: &RefreshRecord,
        now: i64,
    ) -> Result<TokenResponse, GrantError> {
        let grace = secs(self.ctx.settings.tokens.refresh_retry_grace);
        if let (Some(at), Some(sealed)) = (rec.used_at, rec.answer.as_deref()) {
            let opened = b64::decode(sealed)
                .ok()
                .and_then(|s| self.ctx.settings.master_key.open(&s, key.as_bytes()).ok())
                .and_then(|p| typed::decode::<SealedAnswer>("refresh answer", &p).ok());
            if let Some(a) = opened.filter(|_| grace > 0 && now - at <= grace) {
                if self.revocations.session_revoked(rec).await? {
                    return Err(OAuthError::invalid_grant("session has been revoked").into());
                }
                if self.store_next_refresh(&a.refresh_token, rec).await? {
                    return Ok(TokenResponse {
                        refresh_token: Some(a.refresh_token),
                        sid: Some(rec.sid.clone()),
                        ..self.bearer(a.access_token, self.access_ttl(), rec.scope.clone())
                    });
                }
            }
        }
        self.revocations
            .revoke_family(&rec.sid, "refresh_reuse", now)
            .await?;
        Err(reused())
    }
}
