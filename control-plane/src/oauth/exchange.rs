//! Token exchange (RFC 8693): a trusted issuer's token (the subject token) for a mesh
//! access token, bounded by that issuer's exchange policy, for clients allowed to
//! exchange. The subject token is verified against the keys the control plane holds
//! for its issuer (never fetched on the request path). An optional actor token (a mesh
//! token or a trusted issuer's) makes the answer a delegation: its `act` claim.
//!
//! The mesh token's `sub` is `ext:<issuer name>:<external sub>`: issuer names have no
//! `:`, and admin-issued subjects may not start with `ext:`, so it collides with no
//! other subject. Its `ext` claim records the external `iss` and `sub`. A subject token
//! may be exchanged again until it expires (exchange is stateless, as verification at
//! the edge is); an exchanged token never outlives it. Every exchange by an
//! authenticated client is audited, granted or refused.

use serde_json::{Map, Value};

use meshauth_wire::{Actor, ExternalSubject};

use crate::audit::{AuditAction, AuditDetail};
use crate::clients::ClientRecord;
use crate::error::GrantError;
use crate::issuers::jwks::FederatedKey;
use crate::issuers::verify::{self, TokenError};
use crate::issuers::TrustedIssuer;
use crate::tokens::{AccessGrant, TokenResponse};

use super::OAuth;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The namespace of exchanged tokens' subjects.
pub const SUBJECT_PREFIX: &str = "ext:";
/// Actors a delegation chain may name (the newest included).
pub const MAX_ACT_DEPTH: usize = 4;

mod request;
use request::*;
pub use request::{ExchangeRequest, Refusal};

/// What an audit entry of an exchange records: what was established by the time it
/// ended.
#[derive(Default)]
struct Facts {
    issuer: Option<String>,
    subject: Option<String>,
    mesh_sub: Option<String>,
    actor: Option<String>,
    aud: Vec<String>,
    scope: Option<String>,
    ttl: Option<i64>,
    jti: Option<String>,
}

/// A verified trusted-issuer token: the issuer and the claims.
struct Verified {
    issuer: TrustedIssuer,
    claims: Map<String, Value>,
}

impl OAuth {
    /// The token-exchange grant for `client` (already authenticated).
    pub async fn token_exchange(
        &self,
        client: &ClientRecord,
        req: ExchangeRequest<'_>,
    ) -> Result<TokenResponse, GrantError> {
        let mut facts = Facts::default();
        let result = self.exchange(client, &req, &mut facts).await;
        let (action, error, reason) = match &result {
            Ok(_) => (AuditAction::TokenExchanged, None, None),
            Err(GrantError::OAuth(e)) => (
                AuditAction::TokenExchangeRefused,
                Some(e.code.as_str()),
                Some(e.description.as_str()),
            ),
            // A store failure decided nothing about the exchange.
            Err(GrantError::Service(_)) => return result,
        };
        let detail = AuditDetail::TokenExchange {
            issuer: facts.issuer.as_deref(),
            subject: facts.subject.as_deref(),
            actor: facts.actor.as_deref(),
            aud: &facts.aud,
            scope: facts.scope.as_deref(),
            ttl: facts.ttl,
            jti: facts.jti.as_deref(),
            error,
            reason,
        };
        let target = facts.mesh_sub.as_deref().unwrap_or("-");
        let audited = self
            .ctx
            .audit
            .record(&client.client_id, action, target, detail, self.ctx.now())
            .await;
        match (audited, &result) {
            // A token is only handed out once its exchange is on record.
            (Err(e), Ok(_)) => return Err(e.into()),
            (Err(e), Err(_)) => {
                tracing::error!(error = %e, "a refused token exchange could not be audited");
            }
            (Ok(_), _) => {}
        }
        if result.is_ok() {
            self.ctx.metrics.issued("token_exchange");
        }
        result
    }

    async fn exchange(
        &self,
        client: &ClientRecord,
        req: &ExchangeRequest<'_>,
        facts: &mut Facts,
    ) -> Result<TokenResponse, GrantError> {
        if !client.token_exchange {
            return Err(Refusal::ClientNotAllowed.into());
        }
        let subject_token = check_request(req)?;
        let now = self.ctx.now();
        let subject = self
            .verify_trusted(subject_token, now)
            .await?
            .map_err(|e| match e {
                TokenError::Untrusted if self.is_own(subject_token) => Refusal::OwnToken,
                e => Refusal::Subject(e),
            })?;
        let ext_sub = verify::subject(&subject.claims)
            .map_err(Refusal::Subject)?
            .to_string();
        facts.issuer = Some(subject.issuer.name().to_string());
        facts.subject = Some(ext_sub.clone());
        // A subject token the filters would refuse (a rule scoped to its issuer on its
        // subject, session or client, or its id revoked) must not buy a fresh mesh
        // token, which the rule would no longer cover (issued after it).
        if self
            .revocations
            .external_token_revoked(&subject.issuer, &subject.claims)
            .await?
        {
            return Err(Refusal::SubjectRevoked.into());
        }
        let mesh_sub = format!("{SUBJECT_PREFIX}{}:{ext_sub}", subject.issuer.name());
        facts.mesh_sub = Some(mesh_sub.clone());
        let policy = subject.issuer.exchange().ok_or(Refusal::ExchangeDisabled)?;

        let prior = match subject.claims.get("act") {
            Some(v) => Some(chain(v, 0)?),
            None => None,
        };
        let act = match req.actor_token {
            Some(t) => {
                let actor = self.actor(t, &client.client_id, now).await?;
                facts.actor = Some(actor.sub.clone());
                if let Some(may) = subject.claims.get("may_act") {
                    may_act_allows(may, &actor, subject.issuer.issuer())?;
                }
                let act = Actor {
                    act: prior.map(Box::new),
                    ..actor
                };
                if act.depth() > MAX_ACT_DEPTH {
                    return Err(Refusal::ChainTooDeep.into());
                }
                Some(act)
            }
            None => prior,
        };

        let aud = targets(req, policy)?;
        facts.aud = aud.clone();
        let scopes = granted_scopes(
            req.scope,
            policy,
            &verify::scopes(&subject.claims, &subject.issuer),
            &client.scopes,
        )?;
        let scope = scopes.join(" ");
        facts.scope = Some(scope.clone());
        // Never past the subject token's own expiry (checked present by `verify`).
        let exp = subject
            .claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(now, |e| e.floor() as i64);
        let ttl = i64::try_from(policy.ttl_seconds)
            .unwrap_or(0)
            .min(exp.saturating_sub(now));
        if ttl < 1 {
            return Err(Refusal::Subject(TokenError::Expired).into());
        }
        facts.ttl = Some(ttl);
        let (token, claims) = self.tokens.mint_access(AccessGrant {
            sub: &mesh_sub,
            client_id: &client.client_id,
            scope: &scope,
            aud,
            ttl,
            sid: None,
            ext: Some(external_subject(&subject, ext_sub)),
            act,
        })?;
        facts.jti = Some(claims.jti);
        Ok(TokenResponse {
            issued_token_type: Some(TYPE_ACCESS_TOKEN),
            ..self.bearer(token, ttl, scope)
        })
    }

    /// Whether `token` claims this control plane as its issuer.
    fn is_own(&self, token: &str) -> bool {
        verify::peek(token).is_ok_and(|(_, iss)| {
            crate::issuers::model::same_issuer(&iss, &self.ctx.settings.issuer)
        })
    }

    /// A trusted issuer's token verified with the keys held for it. The outer error is
    /// the store's; the inner one the token's.
    async fn verify_trusted(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Result<Verified, TokenError>, GrantError> {
        let iss = match verify::peek(token) {
            Ok((_, iss)) => iss,
            Err(e) => return Ok(Err(e)),
        };
        let Some((issuer, keys)) = self.issuers.trusted(&iss).await? else {
            return Ok(Err(TokenError::Untrusted));
        };
        Ok(check(token, issuer, &keys, now))
    }

    /// The actor an actor token names: a live mesh token, or a trusted issuer's token
    /// not revoked; either issued to the client asking (`client_id`), so a client names
    /// only itself, never a party whose token it holds.
    async fn actor(&self, token: &str, client_id: &str, now: i64) -> Result<Actor, GrantError> {
        if self.is_own(token) {
            let c = self
                .tokens
                .verify_access(token)
                .ok_or(Refusal::Actor(TokenError::Signature))?;
            actor_is_client(Some(&c.client_id), client_id)?;
            if self.revocations.is_revoked(&c).await? {
                return Err(Refusal::ActorRevoked.into());
            }
            return Ok(Actor {
                sub: c.sub,
                iss: Some(c.iss),
                act: None,
            });
        }
        let v = self
            .verify_trusted(token, now)
            .await?
            .map_err(Refusal::Actor)?;
        let sub = verify::subject(&v.claims).map_err(Refusal::Actor)?;
        let its_client = v
            .claims
            .get(v.issuer.client_claim())
            .and_then(Value::as_str);
        actor_is_client(its_client, client_id)?;
        if self
            .revocations
            .external_token_revoked(&v.issuer, &v.claims)
            .await?
        {
            return Err(Refusal::ActorRevoked.into());
        }
        Ok(Actor {
            sub: sub.to_string(),
            iss: Some(v.issuer.issuer().to_string()),
            act: None,
        })
    }
}

fn check(
    token: &str,
    issuer: TrustedIssuer,
    keys: &[FederatedKey],
    now: i64,
) -> Result<Verified, TokenError> {
    let claims = verify::verify(token, &issuer, keys, now)?;
    Ok(Verified { issuer, claims })
}

/// The `ext` claim of the mesh token minted for `subject`: its issuer, `sub`, and the
/// session, client and id that rules scoped to the issuer may name later. A value no
/// rule could name (not 1-256 printable characters) is left out, which bounds the claim.
fn external_subject(subject: &Verified, sub: String) -> ExternalSubject {
    let text = |name: &str| {
        subject
            .claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| crate::clients::validate_name(name, v).is_ok())
            .map(str::to_owned)
    };
    ExternalSubject {
        iss: subject.issuer.issuer().to_string(),
        sub,
        sid: text("sid"),
        client: text(subject.issuer.client_claim()),
        jti: text(subject.issuer.id_claim()),
    }
}

/// An actor token must have been issued to the client asking (`client`): its client
/// (`client_id` of a mesh token, the issuer's `client_claim` of another) is that
/// client's id. Otherwise any client could name whoever's token it holds in `act`.
fn actor_is_client(its_client: Option<&str>, client: &str) -> Result<(), Refusal> {
    match its_client {
        Some(c) if c == client => Ok(()),
        _ => Err(Refusal::ActorNotClient),
    }
}

/// RFC 8693 §4.4: a subject token's `may_act` names who may act for it; an actor it
/// does not name is refused. A `may_act` without `iss` names a subject of the subject
/// token's own issuer (`subject_iss`): the same `sub` at another issuer is another
/// party.
fn may_act_allows(may: &Value, actor: &Actor, subject_iss: &str) -> Result<(), Refusal> {
    let field = |k: &str| may.get(k).and_then(Value::as_str);
    let sub_ok = field("sub") == Some(actor.sub.as_str());
    let iss_ok = actor.iss.as_deref() == Some(field("iss").unwrap_or(subject_iss));
    if sub_ok && iss_ok {
        Ok(())
    } else {
        Err(Refusal::MayNotAct)
    }
}

#[cfg(test)]
mod tests;
