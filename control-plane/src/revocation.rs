//! What a revocation is, in plain Rust: the stored record, its storage key, when one
//! covers another, how long it matters, and the rule filters enforce for it. The one
//! definition of each; `revocations.rs` stores them, `sync` ships them.

use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

use meshauth_wire::sync::{RevocationRule, RuleClaim, MAX_CLOCK_SKEW_SECONDS};
use meshauth_wire::AccessClaims;

/// A revocation: of one token by `jti` until it expires, or every token of a
/// subject, session or client issued before `not_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    Jti { jti: String, exp: i64 },
    Sub { value: String, not_before: i64 },
    Sid { value: String, not_before: i64 },
    ClientId { value: String, not_before: i64 },
}

/// What a revocation names; the prefix of its storage key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jti,
    Sub,
    Sid,
    ClientId,
}

/// The storage key of the revocation of `value` as a `kind`: `<kind>:<value>`.
pub fn key(kind: Kind, value: &str) -> String {
    let prefix = match kind {
        Kind::Jti => "jti",
        Kind::Sub => "sub",
        Kind::Sid => "sid",
        Kind::ClientId => "client_id",
    };
    format!("{prefix}:{value}")
}

/// The keys of every revocation that could cover a token with these claims.
pub fn keys_for(c: &AccessClaims) -> Vec<String> {
    let mut keys = vec![
        key(Kind::Jti, &c.jti),
        key(Kind::Sub, &c.sub),
        key(Kind::ClientId, &c.client_id),
    ];
    if let Some(sid) = &c.sid {
        keys.push(key(Kind::Sid, sid));
    }
    keys
}

impl Revocation {
    /// The rule revoking every token of a subject, session or client issued until now
    /// (`not_before` is the next second: a token's `iat` has whole seconds, so one
    /// minted in this second is covered).
    pub fn rule_from_now(claim: RuleClaim, value: String, now: i64) -> Revocation {
        let not_before = now.saturating_add(1);
        match claim {
            RuleClaim::Sub => Revocation::Sub { value, not_before },
            RuleClaim::Sid => Revocation::Sid { value, not_before },
            RuleClaim::ClientId => Revocation::ClientId { value, not_before },
        }
    }

    /// A revocation of one token id, kept until `exp` (by default the latest a token
    /// minted now can expire). No token of ours lives past now + its longest TTL; a
    /// later `exp` would only keep the entry (and overflow `exp + skew`).
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
                "exp must be a time between 0 and now + the longest access-token TTL ({max_ttl} s)"
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
        key(self.kind(), self.value())
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(nb: i64) -> Revocation {
        Revocation::Sub {
            value: "alice".into(),
            not_before: nb,
        }
    }

    #[test]
    fn a_jti_is_kept_no_later_than_a_token_can_live() {
        let r = Revocation::jti_until("j".into(), None, 100, 60).ok();
        assert_eq!(
            r,
            Some(Revocation::Jti {
                jti: "j".into(),
                exp: 160
            })
        );
        assert!(Revocation::jti_until("j".into(), Some(160), 100, 60).is_ok());
        for bad in [-1, 161, i64::MAX] {
            assert!(Revocation::jti_until("j".into(), Some(bad), 100, 60).is_err());
        }
    }

    #[test]
    fn keys_rules_and_cover() {
        let j = Revocation::Jti {
            jti: "j1".into(),
            exp: 100,
        };
        assert_eq!(j.key(), "jti:j1");
        assert_eq!(sub(5).key(), "sub:alice");
        assert_eq!(
            Revocation::ClientId {
                value: "c".into(),
                not_before: 1
            }
            .key(),
            "client_id:c"
        );
        assert!(j.filter_rule().is_none());
        assert_eq!(
            Revocation::rule_from_now(RuleClaim::Sub, "alice".into(), 4),
            sub(5)
        );
        for claim in [RuleClaim::Sub, RuleClaim::Sid, RuleClaim::ClientId] {
            let r = Revocation::rule_from_now(claim, "v".into(), 9);
            assert_eq!(
                r.filter_rule().map(|f| (f.claim, f.not_before)),
                Some((claim, 10))
            );
        }
        let r = sub(5).filter_rule().unwrap();
        assert_eq!(
            (r.claim, r.value.as_str(), r.not_before),
            (RuleClaim::Sub, "alice", 5)
        );
        assert!(sub(6).covers(&sub(5)) && !sub(5).covers(&sub(6)));
        assert!(!sub(6).covers(&j));
        assert!(sub(5).revokes_issued_at(4) && !sub(5).revokes_issued_at(5));
        assert!(j.revokes_issued_at(i64::MAX));
        assert!(j.is_live(100, 0, 0) && !j.is_live(101, 0, 0) && j.is_live(101, 1, 0));
        assert!(sub(5).is_live(15, 0, 10) && !sub(5).is_live(16, 0, 10));
        assert_eq!(j.live_jti(100 + MAX_CLOCK_SKEW_SECONDS - 1), Some("j1"));
        assert_eq!(j.live_jti(100 + MAX_CLOCK_SKEW_SECONDS), None);
    }
}
