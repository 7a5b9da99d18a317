//! What a revocation is, in plain Rust: the stored record, its storage key, when one
//! covers another, how long it matters, and the rule filters enforce for it. The one
//! definition of each; `revocations.rs` stores them, `sync` ships them.

use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

use meshauth_wire::sync::{RevocationRule, RuleClaim, MAX_CLOCK_SKEW_SECONDS};
use meshauth_wire::AccessClaims;

mod horizons;
pub use horizons::Horizons;

/// A revocation: of one token by `jti` until it expires, or every token of a
/// subject, session or client issued before `not_before`: by default the control
/// plane's own tokens, with `issuer` those of one trusted external issuer (and, for a
/// subject, our tokens exchanged for that issuer's subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    Jti {
        jti: String,
        exp: i64,
    },
    Sub {
        value: String,
        not_before: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<RuleIssuer>,
    },
    Sid {
        value: String,
        not_before: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<RuleIssuer>,
    },
    ClientId {
        value: String,
        not_before: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<RuleIssuer>,
    },
}

/// The trusted external issuer a rule is scoped to: its name when the rule was made,
/// for people, and its `iss`, which is what tokens are matched by (an issuer deleted
/// and added again under another name keeps its rules; another issuer added under the
/// old name does not inherit them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleIssuer {
    pub name: String,
    pub iss: String,
}

/// What a revocation names; the prefix of its storage key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jti,
    Sub,
    Sid,
    ClientId,
}

fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Jti => "jti",
        Kind::Sub => "sub",
        Kind::Sid => "sid",
        Kind::ClientId => "client_id",
    }
}

/// The storage key of the revocation of `value` as a `kind`: `<kind>:<value>`.
pub fn key(kind: Kind, value: &str) -> String {
    format!("{}:{value}", prefix(kind))
}

/// The storage key of a rule scoped to the external issuer `iss`: `<kind>@<iss> <value>`.
/// An `iss` has no space (visible ASCII only), so the first space ends it, and `@`
/// after the kind never starts an unscoped key: no two rules share a key.
pub fn scoped_key(kind: Kind, iss: &str, value: &str) -> String {
    format!("{}@{iss} {value}", prefix(kind))
}

/// What names a trusted external issuer's token to the rules scoped to that issuer:
/// its `sub`, `sid` and client (the issuer's `client_claim`), each when present.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalNames<'a> {
    pub sub: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub client: Option<&'a str>,
}

/// The keys of the rules scoped to the external issuer `iss` that could cover its
/// token with these names.
pub fn scoped_keys_for(iss: &str, n: ExternalNames<'_>) -> Vec<String> {
    [
        (Kind::Sub, n.sub),
        (Kind::Sid, n.sid),
        (Kind::ClientId, n.client),
    ]
    .into_iter()
    .filter_map(|(kind, v)| Some(scoped_key(kind, iss, v?)))
    .collect()
}

/// The keys of every revocation that could cover one of our tokens with these claims:
/// unscoped rules, and for a token minted by token exchange the rules scoped to its
/// subject token's issuer on that token's subject, session and client, and that
/// token's id.
pub fn keys_for(c: &AccessClaims) -> Vec<String> {
    let mut keys = vec![
        key(Kind::Jti, &c.jti),
        key(Kind::Sub, &c.sub),
        key(Kind::ClientId, &c.client_id),
    ];
    if let Some(sid) = &c.sid {
        keys.push(key(Kind::Sid, sid));
    }
    if let Some(ext) = &c.ext {
        let names = ExternalNames {
            sub: Some(&ext.sub),
            sid: ext.sid.as_deref(),
            client: ext.client.as_deref(),
        };
        keys.extend(scoped_keys_for(&ext.iss, names));
        keys.extend(ext.jti.as_deref().map(|j| key(Kind::Jti, j)));
    }
    keys
}

impl Revocation {
    /// The rule revoking every token of a subject, session or client issued until now
    /// (`not_before` is the next second: a token's `iat` has whole seconds, so one
    /// minted in this second is covered).
    pub fn rule_from_now(claim: RuleClaim, value: String, now: i64) -> Revocation {
        let not_before = now.saturating_add(1);
        let issuer = None;
        match claim {
            RuleClaim::Sub => Revocation::Sub {
                value,
                not_before,
                issuer,
            },
            RuleClaim::Sid => Revocation::Sid {
                value,
                not_before,
                issuer,
            },
            RuleClaim::ClientId => Revocation::ClientId {
                value,
                not_before,
                issuer,
            },
        }
    }

    /// The same rule scoped to a trusted external issuer (`None`: our own tokens). A
    /// `jti` names one token whoever issued it: unchanged.
    pub fn scoped_to(mut self, to: Option<RuleIssuer>) -> Revocation {
        match &mut self {
            Revocation::Jti { .. } => {}
            Revocation::Sub { issuer, .. }
            | Revocation::Sid { issuer, .. }
            | Revocation::ClientId { issuer, .. } => *issuer = to,
        }
        self
    }

    /// The external issuer a rule is scoped to; `None` for our own tokens and a jti.
    pub fn issuer(&self) -> Option<&RuleIssuer> {
        match self {
            Revocation::Jti { .. } => None,
            Revocation::Sub { issuer, .. }
            | Revocation::Sid { issuer, .. }
            | Revocation::ClientId { issuer, .. } => issuer.as_ref(),
        }
    }

    /// A revocation of one token id, kept until `exp` (by default the latest a token
    /// minted now can expire). No token it can name lives past now + `max_ttl` (ours:
    /// our longest TTL; a trusted issuer's: its longest token life, which filters
    /// enforce); a later `exp` would only keep the entry (and overflow `exp + skew`).
    pub fn jti_until(
        jti: String,
        exp: Option<i64>,
        now: i64,
        max_ttl: i64,
    ) -> Result<Revocation, ServiceError> {
        let latest = now.saturating_add(max_ttl);
        let exp = exp.unwrap_or(latest);
        if !(0..=latest).contains(&exp) {
            return Err(ServiceError::Invalid(format!(
                "exp must be a time between 0 and now + the longest life of the tokens it names ({max_ttl} s: the longest access-token TTL, or the issuer's max_token_lifetime_seconds)"
            )));
        }
        Ok(Revocation::Jti { jti, exp })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Revocation::Jti { .. } => Kind::Jti,
            Revocation::Sub { .. } => Kind::Sub,
            Revocation::Sid { .. } => Kind::Sid,
            Revocation::ClientId { .. } => Kind::ClientId,
        }
    }

    /// What it names: the jti, or the subject, session or client.
    pub fn value(&self) -> &str {
        match self {
            Revocation::Jti { jti, .. } => jti,
            Revocation::Sub { value, .. }
            | Revocation::Sid { value, .. }
            | Revocation::ClientId { value, .. } => value,
        }
    }

    pub fn key(&self) -> String {
        match self.issuer() {
            Some(i) => scoped_key(self.kind(), &i.iss, self.value()),
            None => key(self.kind(), self.value()),
        }
    }

    /// A rule's `not_before`; `None` for a jti.
    pub fn not_before(&self) -> Option<i64> {
        match self {
            Revocation::Jti { .. } => None,
            Revocation::Sub { not_before, .. }
            | Revocation::Sid { not_before, .. }
            | Revocation::ClientId { not_before, .. } => Some(*not_before),
        }
    }

    /// Whether it already revokes everything `new` would: then `new` is a repeat.
    pub fn covers(&self, new: &Revocation) -> bool {
        match (self, new) {
            (Revocation::Jti { exp: a, .. }, Revocation::Jti { exp: b, .. }) => a >= b,
            // A revoked session mints nothing new, so its first rule covers every later one.
            (Revocation::Sid { .. }, Revocation::Sid { .. }) => true,
            (Revocation::Sub { not_before: a, .. }, Revocation::Sub { not_before: b, .. })
            | (
                Revocation::ClientId { not_before: a, .. },
                Revocation::ClientId { not_before: b, .. },
            ) => a >= b,
            _ => false,
        }
    }

    /// Whether it revokes a token issued at `iat` (a jti revocation is looked up by
    /// the token's own jti, so it always does).
    pub fn revokes_issued_at(&self, iat: i64) -> bool {
        self.not_before().is_none_or(|nb| iat < nb)
    }

    /// Whether it can still match a valid token: a jti until its token expires (plus
    /// `skew`), a rule until every token it could cover has (`horizon` after it).
    pub fn is_live(&self, now: i64, skew: i64, horizon: i64) -> bool {
        match self {
            Revocation::Jti { exp, .. } => exp.saturating_add(skew) >= now,
            _ => self
                .not_before()
                .is_some_and(|nb| nb.saturating_add(horizon) >= now),
        }
    }

    /// The jti filters must still refuse: kept past `exp` by the largest skew a filter
    /// may allow.
    pub fn live_jti(&self, now: i64) -> Option<&str> {
        match self {
            Revocation::Jti { jti, exp } if exp.saturating_add(MAX_CLOCK_SKEW_SECONDS) > now => {
                Some(jti)
            }
            _ => None,
        }
    }

    /// The rule filters enforce for a subject, session or client revocation.
    pub fn filter_rule(&self) -> Option<RevocationRule> {
        let claim = match self.kind() {
            Kind::Jti => return None,
            Kind::Sub => RuleClaim::Sub,
            Kind::Sid => RuleClaim::Sid,
            Kind::ClientId => RuleClaim::ClientId,
        };
        Some(RevocationRule {
            claim,
            value: self.value().to_string(),
            not_before: self.not_before()?,
            issuer: self.issuer().map(|i| i.iss.clone()),
        })
    }
}

#[cfg(test)]
mod tests;
