//! A token-exchange request taken apart and checked against the issuer's exchange
//! policy, before and around the token verification (`super`): pure functions.

use serde_json::Value;

use meshauth_wire::Actor;

use crate::clients::split_scope;
use crate::error::{GrantError, OAuthCode, OAuthError};
use crate::issuers::model::ExchangePolicy;
use crate::issuers::verify::TokenError;

use super::{MAX_ACT_DEPTH, TYPE_ACCESS_TOKEN, TYPE_JWT};

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
    #[error("actor_token was not issued to this client: an actor token must name the client asking (its client_id, or its issuer's client claim)")]
    ActorNotClient,
    #[error("the subject has been revoked at its issuer")]
    SubjectRevoked,
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
            | Refusal::ActorNotClient
            | Refusal::SubjectRevoked
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
pub(super) fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

pub(super) fn token_type(name: &str, t: Option<&str>) -> Result<(), Refusal> {
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
pub(super) fn check_request<'a>(r: &ExchangeRequest<'a>) -> Result<&'a str, Refusal> {
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
pub(super) fn targets(r: &ExchangeRequest<'_>, p: &ExchangePolicy) -> Result<Vec<String>, Refusal> {
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

/// The scopes granted: those asked for, each allowed by the policy, carried by the
/// subject token and granted to the client asking (as its client-credentials tokens
/// are bounded: exchange must not give it more); none asked for: every scope all three
/// allow.
pub(super) fn granted_scopes(
    asked: Option<&str>,
    p: &ExchangePolicy,
    subject_scopes: &[String],
    client_scopes: &[String],
) -> Result<Vec<String>, Refusal> {
    let allowed = |s: &String| {
        p.scopes.contains(s) && subject_scopes.contains(s) && client_scopes.contains(s)
    };
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
pub(super) fn chain(v: &Value, depth: usize) -> Result<Actor, Refusal> {
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
