//! Revocation checks against the current snapshot: exact `not_before` rules
//! per `sub`, `sid` and `client_id`, and a Bloom filter of revoked `jti`s whose hits are
//! confirmed with the control plane (answers cached) before a token is refused.

use std::collections::{HashMap, HashSet};

use meshauth_wire::bloom::Bloom;
use meshauth_wire::sync::{RevocationRule, RuleClaim};

use crate::claims::Claims;

/// Bound on remembered confirmations; the oldest go first.
const MAX_CONFIRMED: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Clear,
    Revoked,
    /// A Bloom hit not yet confirmed: ask the control plane about this `jti`.
    Unconfirmed(String),
}

#[derive(Debug, Default)]
pub struct Revocations {
    bloom: Option<Bloom>,
    rules: HashMap<(RuleClaim, String), i64>,
    /// `jti`s revoked since the snapshot's Bloom filter was built, from deltas: exact.
    added: HashSet<String>,
    /// jti → (revoked, forget after): answers from the control plane.
    confirmed: HashMap<String, (bool, i64)>,
}

impl Revocations {
    pub fn new(bloom: Bloom, rules: Vec<RevocationRule>) -> Revocations {
        let rules = rules
            .into_iter()
            .map(|r| ((r.claim, r.value), r.not_before))
            .collect();
        Revocations {
            bloom: Some(bloom),
            rules,
            added: HashSet::new(),
            confirmed: HashMap::new(),
        }
    }

    /// Adds a delta's revocations to the lists in force.
    pub fn add(&mut self, jtis: Vec<String>, rules: Vec<RevocationRule>) {
        self.added.extend(jtis);
        for r in rules {
            let nb = self.rules.entry((r.claim, r.value)).or_insert(r.not_before);
            *nb = (*nb).max(r.not_before);
        }
    }

    /// Replaces the lists, keeping confirmations that still agree with the new filter:
    /// a "not revoked" answer stays valid only while the jti is still a Bloom hit for
    /// the same reason, so all answers are dropped when the filter changes.
    pub fn replace(&mut self, next: Revocations) {
        let same_bloom = self.bloom == next.bloom;
        let confirmed = if same_bloom {
            std::mem::take(&mut self.confirmed)
        } else {
            HashMap::new()
        };
        *self = Revocations { confirmed, ..next };
    }

    pub fn check(&self, claims: &Claims, now: i64) -> Check {
        let iat = claims.iat.unwrap_or(i64::MIN);
        if let Some(c) = self.check_subject(claims, iat) {
            return c;
        }
        self.check_jti(claims, now)
    }

    /// For a federated issuer's token: revocation rules name a `sub`/`sid`/`client_id`
    /// without an issuer, so one provider's `sub` must not revoke another's; only its
    /// `jti` is checked.
    pub fn check_jti_only(&self, claims: &Claims, now: i64) -> Check {
        self.check_jti(claims, now)
    }

    fn check_subject(&self, claims: &Claims, iat: i64) -> Option<Check> {
        for claim in [RuleClaim::Sub, RuleClaim::Sid, RuleClaim::ClientId] {
            if let Some(serde_json::Value::String(v)) = claims.raw.get(claim.claim_name()) {
                if let Some(nb) = self.rules.get(&(claim, v.clone())) {
                    if iat < *nb {
                        return Some(Check::Revoked);
                    }
                }
            }
        }
        None
    }

    fn check_jti(&self, claims: &Claims, now: i64) -> Check {
        // A federated token without an id (its issuer allows that) has none to revoke.
        let Some(jti) = &claims.jti else {
            return Check::Clear;
        };
        if self.added.contains(jti) {
            return Check::Revoked;
        }
        match &self.bloom {
            Some(b) if b.contains(jti) => match self.confirmed.get(jti) {
                Some((true, _)) => Check::Revoked,
                Some((false, until)) if *until > now => Check::Clear,
                _ => Check::Unconfirmed(jti.clone()),
            },
            _ => Check::Clear,
        }
    }

    /// Remembers the control plane's answer for `jti` until `until` (the token's exp).
    pub fn confirm(&mut self, jti: &str, revoked: bool, until: i64) {
        if self.confirmed.len() >= MAX_CONFIRMED {
            self.confirmed.clear();
        }
        self.confirmed.insert(jti.to_string(), (revoked, until));
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        Claims::parse(json.as_bytes()).unwrap()
    }

    fn state(jtis: &[&str], rules: Vec<RevocationRule>) -> Revocations {
        let mut b = Bloom::with_capacity(16, 0.001, 5);
        for j in jtis {
            b.insert(j);
        }
        Revocations::new(b, rules)
    }

    #[test]
    fn rules_revoke_tokens_issued_before_not_before() {
        let r = state(
            &[],
            vec![RevocationRule {
                claim: RuleClaim::Sub,
                value: "alice".into(),
                not_before: 100,
            }],
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":99}"#),
                0
            ),
            Check::Revoked
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":100}"#),
                0
            ),
            Check::Clear
        );
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"a","sub":"bob","iat":1}"#), 0),
            Check::Clear
        );
        // No iat: treated as issued before any rule.
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"a","sub":"alice"}"#), 0),
            Check::Revoked
        );
        let r = state(
            &[],
            vec![RevocationRule {
                claim: RuleClaim::Sid,
                value: "s1".into(),
                not_before: 100,
            }],
        );
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"a","sid":"s1","iat":5}"#), 0),
            Check::Revoked
        );
        let r = state(
            &[],
            vec![RevocationRule {
                claim: RuleClaim::ClientId,
                value: "c".into(),
                not_before: 100,
            }],
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","client_id":"c","iat":5}"#),
                0
            ),
            Check::Revoked
        );
    }

    #[test]
    fn bloom_hits_need_confirmation_and_answers_are_cached() {
        let mut r = state(&["j1"], vec![]);
        let c = claims(r#"{"exp":999,"jti":"j1"}"#);
        assert_eq!(r.check(&c, 0), Check::Unconfirmed("j1".into()));
        r.confirm("j1", true, 999);
        assert_eq!(r.check(&c, 0), Check::Revoked);
        let mut r = state(&["j1"], vec![]);
        r.confirm("j1", false, 50);
        assert_eq!(r.check(&c, 10), Check::Clear, "a false positive is cleared");
        assert_eq!(
            r.check(&c, 60),
            Check::Unconfirmed("j1".into()),
            "until the answer expires"
        );
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"other"}"#), 0),
            Check::Clear
        );
    }

    #[test]
    fn a_new_filter_drops_old_answers() {
        let mut r = state(&["j1"], vec![]);
        r.confirm("j1", false, 999);
        r.replace(state(&["j1", "j2"], vec![]));
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"j1"}"#), 0),
            Check::Unconfirmed("j1".into())
        );
    }
}
