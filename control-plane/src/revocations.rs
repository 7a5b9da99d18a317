//! Revocations in the store: adding one (idempotent, logged for filters, audited),
//! admin rules that also end the sessions they cover, and the checks introspection and
//! refresh make. What a revocation means is `revocation.rs`.

use std::sync::Arc;

use meshauth_wire::sync::RuleClaim;
use meshauth_wire::AccessClaims;
use serde_json::{Map, Value};

use crate::audit::{AuditAction, AuditDetail};
use crate::clients::Clients;
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::issuers::TrustedIssuer;
use crate::revocation::{self, Horizons, Kind, Revocation};
use crate::sessions::{FamilyRecord, RefreshRecord, Sessions};
use crate::store::{Change as Write, Doc, StoreError, StoreResult, Table};
use crate::sync::Change;

// A fresh revocation replaces an unreadable one rather than failing on it.
const REVOCATIONS: Doc<Revocation> =
    Doc::new(Table::Revocations, "revocation").replacing_unreadable();

#[derive(Clone)]
pub struct Revocations {
    ctx: Arc<Ctx>,
    sessions: Sessions,
    clients: Clients,
}

impl Revocations {
    pub fn new(ctx: Arc<Ctx>, sessions: Sessions, clients: Clients) -> Revocations {
        Revocations {
            ctx,
            sessions,
            clients,
        }
    }

    /// Stores a revocation. Idempotent: one that an existing entry already covers changes
    /// nothing (no change-log entry, no audit entry, no new version), so repeating a call
    /// cannot grow the store. True when something changed.
    pub async fn revoke(
        &self,
        actor: &str,
        r: Revocation,
        why: &str,
    ) -> Result<bool, ServiceError> {
        let key = r.key();
        let stored = REVOCATIONS
            .update(self.ctx.store(), &key, "the revocation", |cur| {
                Ok(match cur {
                    // An unreadable entry is replaced, as a missing one would be.
                    Some(existing) if existing.covers(&r) => Write::Keep(()),
                    _ => Write::Set(r.clone(), ()),
                })
            })
            .await;
        let unreplicated = match stored {
            Ok(up) if !up.written => return Ok(false),
            Ok(_) => None,
            // The write applied; only a replica's copy is unconfirmed. The change must
            // still reach the change log now: a retry would find the rule stored, take
            // itself for a repeat and log nothing, and filters following deltas would
            // never hear of it.
            Err(e @ StoreError::NotReplicated(_)) => Some(e),
            Err(e) => return Err(e.into()),
        };
        let now = self.ctx.now();
        self.ctx
            .sync
            .changed(self.ctx.store(), Change::Revocation(r.clone()), now)
            .await?;
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::RevocationAdded,
                &key,
                AuditDetail::RevocationAdded {
                    revocation: &r,
                    reason: why,
                },
                now,
            )
            .await?;
        match unreplicated {
            Some(e) => Err(e.into()),
            None => Ok(true),
        }
    }

    /// An admin revocation of a subject, session or client: revokes the sessions it
    /// covers (their refresh tokens stop at once) and adds the rule that stops access
    /// tokens already issued. Something never seen is a `NotFound`, not a silent no-op.
    /// A rule scoped to a trusted external issuer names tokens we never issued: no
    /// session of ours is its, and nothing here can tell whether the subject exists, so
    /// it is stored as asked.
    pub async fn revoke_rule(&self, actor: &str, r: Revocation) -> Result<bool, ServiceError> {
        if r.issuer().is_some() {
            return self.revoke(actor, r, "admin").await;
        }
        let (what, field): (&str, fn(&FamilyRecord) -> &str) = match r.kind() {
            Kind::Sub => ("subject", |f| &f.sub),
            Kind::Sid => ("session", |f| &f.sid),
            Kind::ClientId => ("client", |f| &f.client_id),
            Kind::Jti => return self.revoke(actor, r, "admin").await,
        };
        let value = r.value().to_string();
        let matches = |f: &FamilyRecord| field(f) == value;
        let sessions = self
            .sessions
            .revoke_sessions(&matches, self.ctx.now())
            .await?;
        let known = sessions > 0
            || REVOCATIONS.contains(self.ctx.store(), &r.key()).await?
            // Client-credentials tokens have the client as their subject.
            || (r.kind() != Kind::Sid && self.clients.get(&value).await?.is_some())
            || self.sessions.any_family(&matches).await?;
        if !known {
            // "… not found": no token was ever issued to it, so there is nothing to revoke.
            return Err(ServiceError::NotFound(format!("{what} {value:?}")));
        }
        self.revoke(actor, r, "admin").await
    }

    /// Ends a session: its refresh tokens stop, and the access tokens minted from it
    /// (they carry its sid) are refused by the filters. Idempotent.
    pub async fn revoke_family(&self, sid: &str, why: &str, now: i64) -> Result<(), ServiceError> {
        self.sessions.revoke_session(sid, now).await?;
        let rule = Revocation::rule_from_now(RuleClaim::Sid, sid.to_string(), now);
        self.revoke("system", rule, why).await?;
        Ok(())
    }

    /// Deletes a client and revokes what it holds: its sessions and, by a `client_id`
    /// rule, the access tokens already issued to it.
    pub async fn delete_client(&self, actor: &str, client_id: &str) -> Result<(), ServiceError> {
        if self.clients.get(client_id).await?.is_none() {
            return Err(ServiceError::NotFound(format!("client {client_id}")));
        }
        // Revoke first, delete last: if a step fails, the client is still there and a retry
        // finishes the job (revocations are idempotent); deleted first, its tokens could
        // outlive a failure with nothing left to name them by.
        let now = self.ctx.now();
        let v = client_id.to_string();
        self.sessions
            .revoke_sessions(&move |f: &FamilyRecord| f.client_id == v, now)
            .await?;
        let rule = Revocation::rule_from_now(RuleClaim::ClientId, client_id.to_string(), now);
        self.revoke(actor, rule, "client deleted").await?;
        self.clients.remove(actor, client_id).await
    }

    /// Whether a session is dead: revoked itself, or covered by a subject, session or
    /// client rule newer than the session (a session created while a subject was being
    /// revoked is caught here).
    pub async fn session_revoked(&self, rec: &RefreshRecord) -> Result<bool, ServiceError> {
        let created_at = match self.sessions.family(&rec.sid).await? {
            Some(fam) if fam.revoked_at.is_some() => return Ok(true),
            Some(fam) => fam.created_at,
            None => 0,
        };
        for k in [
            revocation::key(Kind::Sid, &rec.sid),
            revocation::key(Kind::Sub, &rec.sub),
            revocation::key(Kind::ClientId, &rec.client_id),
        ] {
            if let Some(raw) = self.ctx.store().get(Table::Revocations, &k).await? {
                // An unreadable rule does not end a session (as before: it is skipped).
                if let Ok(r) = REVOCATIONS.decode(&raw) {
                    if r.not_before().is_some() && r.revokes_issued_at(created_at) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    pub async fn all(&self) -> StoreResult<Vec<Revocation>> {
        REVOCATIONS.list(self.ctx.store()).await
    }

    /// Revocations that can still match a valid token (what `revoke list` shows).
    pub async fn live(&self, horizons: &Horizons) -> StoreResult<Vec<Revocation>> {
        let now = self.ctx.now();
        let mut all = self.all().await?;
        all.retain(|r| horizons.is_live(r, now));
        Ok(all)
    }

    pub async fn is_revoked(&self, c: &AccessClaims) -> StoreResult<bool> {
        for k in revocation::keys_for(c) {
            if let Some(r) = REVOCATIONS.get(self.ctx.store(), &k).await? {
                if r.revokes_issued_at(c.iat) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether a trusted issuer's token (its verified claims) is revoked, as a filter
    /// would find it: a rule scoped to its issuer on its `sub`, `sid` or client (the
    /// issuer's `client_claim`) newer than its `iat`, or its id (the issuer's
    /// `id_claim`) revoked. Token exchange refuses such a subject or actor token: a
    /// mesh token minted now would be issued after the rule, and so not covered by it.
    pub async fn external_token_revoked(
        &self,
        issuer: &TrustedIssuer,
        claims: &Map<String, Value>,
    ) -> StoreResult<bool> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        // As the filter reads it: whole seconds; none is older than any rule.
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .map_or(i64::MIN, |i| i.floor() as i64);
        let names = revocation::ExternalNames {
            sub: text("sub"),
            sid: text("sid"),
            client: text(issuer.client_claim()),
        };
        for k in revocation::scoped_keys_for(issuer.issuer(), names) {
            if let Some(r) = REVOCATIONS.get(self.ctx.store(), &k).await? {
                if r.revokes_issued_at(iat) {
                    return Ok(true);
                }
            }
        }
        match text(issuer.id_claim()).filter(|id| !id.is_empty()) {
            Some(id) => self.jti_revoked(id).await,
            None => Ok(false),
        }
    }

    /// Whether a `jti` is revoked, for filters confirming a Bloom hit.
    pub async fn jti_revoked(&self, jti: &str) -> StoreResult<bool> {
        REVOCATIONS
            .contains(self.ctx.store(), &revocation::key(Kind::Jti, jti))
            .await
    }

    /// Revocations that can no longer match a valid token leave the store: a `jti` once its
    /// token has expired (plus the largest skew any filter may allow), a rule once every
    /// token it could cover has (`Horizons`: a trusted issuer's rule by its lifetime).
    pub async fn prune(&self, now: i64, horizons: &Horizons) -> StoreResult<usize> {
        let mut pruned = 0;
        for read in REVOCATIONS.scan(self.ctx.store()).await? {
            // Only if unchanged since read: a concurrent re-revocation wins.
            if !horizons.is_live(&read.value, now)
                && REVOCATIONS.swap(self.ctx.store(), &read, None).await?
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}
