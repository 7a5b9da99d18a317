//! RFC 7009 revocation of a token by the client it was issued to (or by the admin),
//! and the per-client budget of such calls.

use crate::crypto::ct_eq;
use crate::error::ServiceError;
use crate::revocation::Revocation;

use super::OAuth;

/// RFC 7009 calls a client may burst, and how many per second it regains.
const REVOKE_BURST: f64 = 20.0;
const REVOKE_PER_SECOND: f64 = 2.0;

impl OAuth {
    /// Revokes an access token (by jti) or a refresh token (its whole session).
    /// Unknown tokens are not an error. `owner`: the authenticated client; a token issued
    /// to anyone else is left alone (RFC 7009 §2.1), with the same answer. `None`: admin.
    /// True when it is a live token of ours (revoked now, or already).
    pub async fn revoke_token(
        &self,
        actor: &str,
        token: &str,
        owner: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let mine =
            |client_id: &str| owner.is_none_or(|o| ct_eq(o.as_bytes(), client_id.as_bytes()));
        if let Some(c) = self.tokens.verify_access(token) {
            if !mine(&c.client_id) {
                return Ok(false);
            }
            self.revocations
                .revoke(
                    actor,
                    Revocation::Jti {
                        jti: c.jti,
                        exp: c.exp,
                    },
                    "rfc7009",
                )
                .await?;
            return Ok(true);
        }
        if let Some(rec) = self.sessions.refresh_record(token).await? {
            if mine(&rec.client_id) {
                self.revocations
                    .revoke_family(&rec.sid, "rfc7009", self.ctx.now())
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes one RFC 7009 call from `client_id`'s budget; `Err(seconds)` to wait when
    /// it is spent. In memory, per replica: a bound on churn, not an exact quota.
    pub fn take_revocation_budget(&self, client_id: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut b = self.revoke_budget.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 10_000 {
            // Forget the buckets that have refilled: they are equal to new ones.
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * REVOKE_PER_SECOND < REVOKE_BURST
            });
        }
        let (tokens, at) = b
            .entry(client_id.to_string())
            .or_insert((REVOKE_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * REVOKE_PER_SECOND).min(REVOKE_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / REVOKE_PER_SECOND).ceil().max(1.0) as u64)
        }
    }
}
