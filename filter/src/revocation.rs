//! Revocation checks against the current snapshot: exact `not_before` rules
//! per `sub`, `sid` and `client_id`, each for the control plane's own tokens or scoped
//! to one trusted external issuer, and a Bloom filter of revoked `jti`s whose hits are
//! confirmed with the control plane (answers cached) before a token is refused.

use std::collections::{HashMap, HashSet};

use meshauth_wire::bloom::Bloom;
use meshauth_wire::claims::EXT_CLAIM;
use meshauth_wire::sync::{RevocationRule, RuleClaim};
use serde_json::Value;

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

/// A rule's key: the claim, the issuer it is scoped to (`None`: the control plane's
/// own tokens) and the value.
type RuleKey = (RuleClaim, Option<String>, String);

#[derive(Debug, Default)]
pub struct Revocations {
    bloom: Option<Bloom>,
    rules: HashMap<RuleKey, i64>,
    /// `jti`s revoked since the snapshot's Bloom filter was built, from deltas: exact.
    added: HashSet<String>,
    /// jti → (revoked, forget after): answers from the control plane.
    confirmed: HashMap<String, (bool, i64)>,
}

impl Revocations {
    pub fn new(bloom: Bloom, rules: Vec<RevocationRule>) -> Revocations {
        let rules = rules
            .into_iter()
            .map(|r| ((r.claim, r.issuer, r.value), r.not_before))
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
            let nb = self
                .rules
                .entry((r.claim, r.issuer, r.value))
                .or_insert(r.not_before);
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

    /// `federated`: the token was verified as issued by the trusted external issuer its
    /// `iss` names; then only rules scoped to that issuer apply. Otherwise it is the
    /// control plane's own: unscoped rules apply, and a `sub` rule scoped to an issuer
    /// applies to its `ext` claim (a token minted by exchanging that issuer's token).
    pub fn check(&self, claims: &Claims, federated: bool, now: i64) -> Check {
        let iat = claims.iat.unwrap_or(i64::MIN);
        let scope = if federated {
            // Verified against the issuer its `iss` names, so it has one.
            match &claims.iss {
                Some(iss) => Some(iss.as_str()),
                None => return Check::Revoked,
            }
        } else {
            None
        };
        let revoked = |claim: RuleClaim, issuer: Option<&str>, value: &str| {
            self.rules
                .get(&(claim, issuer.map(str::to_owned), value.to_owned()))
                .is_some_and(|nb| iat < *nb)
        };
        for claim in [RuleClaim::Sub, RuleClaim::Sid, RuleClaim::ClientId] {
            if let Some(Value::String(v)) = claims.raw.get(claim.claim_name()) {
                if revoked(claim, scope, v) {
                    return Check::Revoked;
                }
            }
        }
        if !federated && !self.rules.is_empty() {
            // Only our own tokens' `ext` counts: an external issuer could write any.
            if let Some((iss, sub)) = external_subject(claims) {
                if revoked(RuleClaim::Sub, Some(iss), sub) {
                    return Check::Revoked;
                }
            }
        }
        self.check_jti(claims, now)
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

/// The `ext` claim of a token minted by token exchange: `{"iss": ..., "sub": ...}`.
fn external_subject(claims: &Claims) -> Option<(&str, &str)> {
    let ext = claims.raw.get(EXT_CLAIM)?;
    Some((ext.get("iss")?.as_str()?, ext.get("sub")?.as_str()?))
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
                issuer: None,
            }],
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":99}"#),
                false,
                0
            ),
            Check::Revoked
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":100}"#),
                false,
                0
            ),
            Check::Clear
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sub":"bob","iat":1}"#),
                false,
                0
            ),
            Check::Clear
        );
        // No iat: treated as issued before any rule.
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"a","sub":"alice"}"#), false, 0),
            Check::Revoked
        );
        let r = state(
            &[],
            vec![RevocationRule {
                claim: RuleClaim::Sid,
                value: "s1".into(),
                not_before: 100,
                issuer: None,
            }],
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","sid":"s1","iat":5}"#),
                false,
                0
            ),
            Check::Revoked
        );
        let r = state(
            &[],
            vec![RevocationRule {
                claim: RuleClaim::ClientId,
                value: "c".into(),
                not_before: 100,
                issuer: None,
            }],
        );
        assert_eq!(
            r.check(
                &claims(r#"{"exp":999,"jti":"a","client_id":"c","iat":5}"#),
                false,
                0
            ),
            Check::Revoked
        );
    }

    const IDP: &str = "https://idp.example/";
    const OTHER: &str = "https://other.example/";

    fn rule(claim: RuleClaim, issuer: Option<&str>, value: &str) -> RevocationRule {
        RevocationRule {
            claim,
            value: value.into(),
            not_before: 100,
            issuer: issuer.map(str::to_owned),
        }
    }

    fn token(iss: &str, extra: &str) -> Claims {
        claims(&format!(
            r#"{{"exp":999,"jti":"j","iat":50,"iss":"{iss}","sub":"mesh"{extra}}}"#
        ))
    }

    /// One `sub` string, three issuers: a rule revokes it for its own issuer only.
    #[test]
    fn a_sub_from_one_issuer_never_revokes_anothers() {
        let own = token("https://cp.example", "");
        let idp = token(IDP, "");
        let other = token(OTHER, "");
        // An unscoped rule: the control plane's own tokens only, never a federated one.
        let r = state(&[], vec![rule(RuleClaim::Sub, None, "mesh")]);
        assert_eq!(r.check(&own, false, 0), Check::Revoked);
        assert_eq!(r.check(&idp, true, 0), Check::Clear);
        assert_eq!(r.check(&other, true, 0), Check::Clear);
        // Scoped to one issuer: that issuer's tokens only.
        let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "mesh")]);
        assert_eq!(r.check(&idp, true, 0), Check::Revoked);
        assert_eq!(r.check(&own, false, 0), Check::Clear);
        assert_eq!(r.check(&other, true, 0), Check::Clear);
        // An own token that merely claims the issuer's `iss` is not that issuer's: the
        // scope is what verified it, not what it says.
        assert_eq!(r.check(&token(IDP, ""), false, 0), Check::Clear);
        // Session and client rules are scoped the same way, and a delta adds them so.
        let mut r = state(&[], vec![]);
        r.add(
            vec![],
            vec![
                rule(RuleClaim::Sid, Some(IDP), "s1"),
                rule(RuleClaim::ClientId, Some(OTHER), "c1"),
            ],
        );
        assert_eq!(
            r.check(&token(IDP, r#","sid":"s1""#), true, 0),
            Check::Revoked
        );
        assert_eq!(
            r.check(&token(OTHER, r#","sid":"s1""#), true, 0),
            Check::Clear
        );
        assert_eq!(
            r.check(&token("https://cp.example", r#","sid":"s1""#), false, 0),
            Check::Clear
        );
        assert_eq!(
            r.check(&token(OTHER, r#","client_id":"c1""#), true, 0),
            Check::Revoked
        );
        assert_eq!(
            r.check(&token(IDP, r#","client_id":"c1""#), true, 0),
            Check::Clear
        );
    }

    /// A token minted by exchanging `IDP`'s token for subject `ext-sub` carries
    /// `ext`: revoking that external subject revokes it; nothing else does.
    #[test]
    fn revoking_an_external_subject_revokes_the_tokens_exchanged_for_it() {
        let exchanged = |iss: &str, sub: &str| {
            token(
                "https://cp.example",
                &format!(r#","ext":{{"iss":"{iss}","sub":"{sub}"}}"#),
            )
        };
        let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "ext-sub")]);
        assert_eq!(
            r.check(&exchanged(IDP, "ext-sub"), false, 0),
            Check::Revoked
        );
        assert_eq!(
            r.check(&exchanged(OTHER, "ext-sub"), false, 0),
            Check::Clear
        );
        assert_eq!(r.check(&exchanged(IDP, "someone"), false, 0), Check::Clear);
        // Issued after the rule: not covered.
        let later = claims(&format!(
            r#"{{"exp":999,"jti":"j","iat":100,"sub":"mesh","ext":{{"iss":"{IDP}","sub":"ext-sub"}}}}"#
        ));
        assert_eq!(r.check(&later, false, 0), Check::Clear);
        // An external issuer's own token with an `ext` claim: not ours, not honoured.
        let federated = token(
            OTHER,
            &format!(r#","ext":{{"iss":"{IDP}","sub":"ext-sub"}}"#),
        );
        assert_eq!(r.check(&federated, true, 0), Check::Clear);
        // Only a `sub` rule reaches `ext`; an unscoped rule does not either.
        let r = state(
            &[],
            vec![
                rule(RuleClaim::Sid, Some(IDP), "ext-sub"),
                rule(RuleClaim::Sub, None, "ext-sub"),
            ],
        );
        assert_eq!(r.check(&exchanged(IDP, "ext-sub"), false, 0), Check::Clear);
        // A malformed `ext` matches nothing and breaks nothing.
        let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "ext-sub")]);
        for ext in [r#""x""#, r#"{"iss":1,"sub":"ext-sub"}"#, r#"{"iss":"x"}"#] {
            let c = token("https://cp.example", &format!(r#","ext":{ext}"#));
            assert_eq!(r.check(&c, false, 0), Check::Clear, "{ext}");
        }
    }

    #[test]
    fn bloom_hits_need_confirmation_and_answers_are_cached() {
        let mut r = state(&["j1"], vec![]);
        let c = claims(r#"{"exp":999,"jti":"j1"}"#);
        assert_eq!(r.check(&c, false, 0), Check::Unconfirmed("j1".into()));
        r.confirm("j1", true, 999);
        assert_eq!(r.check(&c, false, 0), Check::Revoked);
        let mut r = state(&["j1"], vec![]);
        r.confirm("j1", false, 50);
        assert_eq!(
            r.check(&c, false, 10),
            Check::Clear,
            "a false positive is cleared"
        );
        assert_eq!(
            r.check(&c, false, 60),
            Check::Unconfirmed("j1".into()),
            "until the answer expires"
        );
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"other"}"#), false, 0),
            Check::Clear
        );
    }

    #[test]
    fn a_new_filter_drops_old_answers() {
        let mut r = state(&["j1"], vec![]);
        r.confirm("j1", false, 999);
        r.replace(state(&["j1", "j2"], vec![]));
        assert_eq!(
            r.check(&claims(r#"{"exp":999,"jti":"j1"}"#), false, 0),
            Check::Unconfirmed("j1".into())
        );
    }
}
