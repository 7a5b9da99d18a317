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
use crate::clients::{split_scope, ClientRecord};
use crate::error::{GrantError, OAuthCode, OAuthError};
use crate::issuers::jwks::FederatedKey;
use crate::issuers::model::ExchangePolicy;
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

/// The request's parameters, as sent (RFC 8693 §2.1).
#[derive(Debug, Default, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub actor_token: Option<&'a str>,
    pub actor_token_type: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// Why an exchange is refused; `OAuthError::from` is its one mapping to an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Request(String),
    #[error("this client may not exchange tokens")]
    ClientNotAllowed,
    #[error("subject_token {0}")]
    Subject(TokenError),
    #[error("subject_token is a token of this control plane; only trusted issuers' tokens are exchanged")]
    OwnToken,
    #[error("token exchange is not enabled for this issuer")]
    ExchangeDisabled,
    #[error("actor_token {0}")]
    Actor(TokenError),
    #[error("actor_token has been revoked")]
    ActorRevoked,
    #[error("the actor may not act for this subject (may_act)")]
    MayNotAct,
    #[error("the delegation chain names more than {MAX_ACT_DEPTH} actors")]
    ChainTooDeep,
    #[error("{0} is not an audience this exchange may issue for")]
    Target(String),
    #[error("scope {0} is not allowed for this exchange")]
    Scope(String),
}

impl From<Refusal> for OAuthError {
    fn from(r: Refusal) -> Self {
        let code = match &r {
            Refusal::Request(_) => OAuthCode::InvalidRequest,
            Refusal::ClientNotAllowed => OAuthCode::UnauthorizedClient,
            Refusal::Subject(_)
            | Refusal::OwnToken
            | Refusal::ExchangeDisabled
            | Refusal::Actor(_)
            | Refusal::ActorRevoked
            | Refusal::MayNotAct
            | Refusal::ChainTooDeep => OAuthCode::InvalidGrant,
            Refusal::Target(_) => OAuthCode::InvalidTarget,
            Refusal::Scope(_) => OAuthCode::InvalidScope,
        };
        OAuthError::new(code, r.to_string())
    }
}

impl From<Refusal> for GrantError {
    fn from(r: Refusal) -> Self {
        GrantError::OAuth(r.into())
    }
}

/// A value the caller sent, quoted and cut short for a message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn token_type(name: &str, t: Option<&str>) -> Result<(), Refusal> {
    match t {
        Some(TYPE_JWT | TYPE_ACCESS_TOKEN) => Ok(()),
        Some(other) => Err(Refusal::Request(format!(
            "{name} {} is not supported (use {TYPE_JWT} or {TYPE_ACCESS_TOKEN})",
            shown(other)
        ))),
        None => Err(Refusal::Request(format!("{name} is required"))),
    }
}

/// The request's shape, before any token is looked at.
fn check_request<'a>(r: &ExchangeRequest<'a>) -> Result<&'a str, Refusal> {
    let subject = r
        .subject_token
        .ok_or_else(|| Refusal::Request("subject_token is required".into()))?;
    token_type("subject_token_type", r.subject_token_type)?;
    match (r.actor_token, r.actor_token_type) {
        (Some(_), t) => token_type("actor_token_type", t)?,
        (None, Some(_)) => {
            return Err(Refusal::Request(
                "actor_token_type is given without actor_token".into(),
            ))
        }
        (None, None) => {}
    }
    if let Some(t) = r.requested_token_type.filter(|t| *t != TYPE_ACCESS_TOKEN) {
        return Err(Refusal::Request(format!(
            "requested_token_type {} is not issued (only {TYPE_ACCESS_TOKEN})",
            shown(t)
        )));
    }
    Ok(subject)
}

/// The audiences asked for by `audience` and `resource`, each one the policy allows;
/// none asked for: all the policy's.
fn targets(r: &ExchangeRequest<'_>, p: &ExchangePolicy) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    for (name, v) in [("audience", r.audience), ("resource", r.resource)] {
        let Some(v) = v else { continue };
        if !p.audiences.iter().any(|a| a == v) {
            return Err(Refusal::Target(format!("{name} {}", shown(v))));
        }
        if !out.iter().any(|a| a == v) {
            out.push(v.to_string());
        }
    }
    Ok(if out.is_empty() {
        p.audiences.clone()
    } else {
        out
    })
}

/// The scopes granted: those asked for, each allowed by the policy and carried by the
/// subject token; none asked for: every scope both allow.
fn granted_scopes(
    asked: Option<&str>,
    p: &ExchangePolicy,
    subject_scopes: &[String],
) -> Result<Vec<String>, Refusal> {
    let allowed = |s: &String| p.scopes.contains(s) && subject_scopes.contains(s);
    let Some(asked) = asked else {
        return Ok(p.scopes.iter().filter(|s| allowed(s)).cloned().collect());
    };
    let mut out: Vec<String> = Vec::new();
    for s in split_scope(asked) {
        if !allowed(&s) {
            return Err(Refusal::Scope(shown(&s)));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// A delegation chain carried in a token's `act` claim, kept to `sub`, `iss` and the
/// nested `act` (other members dropped). `depth`: actors already above it.
fn chain(v: &Value, depth: usize) -> Result<Actor, Refusal> {
    if depth >= MAX_ACT_DEPTH {
        return Err(Refusal::ChainTooDeep);
    }
    let o = v
        .as_object()
        .ok_or(Refusal::Subject(TokenError::Malformed))?;
    let text = |name: &str, max: usize| match o.get(name) {
        None => Ok(None),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Refusal::Subject(TokenError::Malformed)),
    };
    Ok(Actor {
        sub: text("sub", 256)?.ok_or(Refusal::Subject(TokenError::Malformed))?,
        iss: text("iss", 512)?,
        act: match o.get("act") {
            Some(inner) => Some(Box::new(chain(inner, depth + 1)?)),
            None => None,
        },
    })
}

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
        let mesh_sub = format!("{SUBJECT_PREFIX}{}:{ext_sub}", subject.issuer.name());
        facts.mesh_sub = Some(mesh_sub.clone());
        let policy = subject.issuer.exchange().ok_or(Refusal::ExchangeDisabled)?;

        let prior = match subject.claims.get("act") {
            Some(v) => Some(chain(v, 0)?),
            None => None,
        };
        let act = match req.actor_token {
            Some(t) => {
                let actor = self.actor(t, now).await?;
                facts.actor = Some(actor.sub.clone());
                if let Some(may) = subject.claims.get("may_act") {
                    may_act_allows(may, &actor)?;
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
            ext: Some(ExternalSubject {
                iss: subject.issuer.issuer().to_string(),
                sub: ext_sub,
            }),
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

    /// The actor an actor token names: a live mesh token, or a trusted issuer's token.
    async fn actor(&self, token: &str, now: i64) -> Result<Actor, GrantError> {
        if self.is_own(token) {
            let c = self
                .tokens
                .verify_access(token)
                .ok_or(Refusal::Actor(TokenError::Signature))?;
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

/// RFC 8693 §4.4: a subject token's `may_act` names who may act for it; an actor it
/// does not name is refused.
fn may_act_allows(may: &Value, actor: &Actor) -> Result<(), Refusal> {
    let field = |k: &str| may.get(k).and_then(Value::as_str);
    let sub_ok = field("sub") == Some(actor.sub.as_str());
    let iss_ok = field("iss").is_none_or(|i| Some(i) == actor.iss.as_deref());
    if sub_ok && iss_ok {
        Ok(())
    } else {
        Err(Refusal::MayNotAct)
    }
}

#[cfg(test)]
mod tests;
