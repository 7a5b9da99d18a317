//! RFC 7009 revocation of a token by the client it was issued to (or by the admin),
//! and the per-client budget of such calls.

use crate::crypto::ct_eq;
use crate::error::ServiceError;
use crate::revocation::Revocation;

use super::OAuth;

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
    /// it is spent.
    pub fn take_revocation_budget(&self, client_id: &str) -> Result<(), u64> {
        self.revoke_budget.take(client_id)
    }

    /// Takes one try from `client_id`'s budget of refused token exchanges before the
    /// exchange runs; `Err(seconds)` once it is spent.
    pub fn take_exchange_budget(&self, client_id: &str) -> Result<(), u64> {
        self.exchange_refusals.take(client_id)
    }

    /// Gives back the try of an exchange that was not refused.
    pub fn exchange_not_refused(&self, client_id: &str) {
        self.exchange_refusals.give_back(client_id);
    }
}
