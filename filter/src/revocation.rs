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

/// What verified a token, which decides the rules that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier<'a> {
    /// The control plane's own keys: unscoped rules, and scoped ones through `ext`.
    Own,
    /// The trusted external issuer its `iss` names, whose tokens name their client in
    /// `client_claim` (`client_id`, `azp`, `cid`): rules scoped to that issuer.
    Federated { client_claim: &'a str },
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

    /// `by`: what verified the token. A federated token (verified as issued by the
    /// trusted external issuer its `iss` names) meets only the rules scoped to that
    /// issuer, its client read from the issuer's client claim. Otherwise it is the
    /// control plane's own: unscoped rules apply, and the rules scoped to an issuer
    /// apply to its `ext` claim (a token minted by exchanging that issuer's token): its
    /// subject, session and client, and its id as a revoked `jti`.
    pub fn check(&self, claims: &Claims, by: Verifier<'_>, now: i64) -> Check {
        let iat = claims.iat.unwrap_or(i64::MIN);
        let (scope, client_claim) = match by {
            // Verified against the issuer its `iss` names, so it has one.
            Verifier::Federated { client_claim } => match &claims.iss {
                Some(iss) => (Some(iss.as_str()), client_claim),
                None => return Check::Revoked,
            },
            Verifier::Own => (None, RuleClaim::ClientId.claim_name()),
        };
        let revoked = |claim: RuleClaim, issuer: Option<&str>, value: &str| {
            !self.rules.is_empty()
                && self
                    .rules
                    .get(&(claim, issuer.map(str::to_owned), value.to_owned()))
                    .is_some_and(|nb| iat < *nb)
        };
        for (claim, name) in [
            (RuleClaim::Sub, RuleClaim::Sub.claim_name()),
            (RuleClaim::Sid, RuleClaim::Sid.claim_name()),
            (RuleClaim::ClientId, client_claim),
        ] {
            if let Some(Value::String(v)) = claims.raw.get(name) {
                if revoked(claim, scope, v) {
                    return Check::Revoked;
                }
            }
        }
        // Only our own tokens' `ext` counts: an external issuer could write any.
        let ext = match by {
            Verifier::Own => external_subject(claims),
            Verifier::Federated { .. } => None,
        };
        if let Some(ext) = &ext {
            for (claim, value) in [
                (RuleClaim::Sub, Some(ext.sub)),
                (RuleClaim::Sid, ext.sid),
                (RuleClaim::ClientId, ext.client),
            ] {
                if value.is_some_and(|v| revoked(claim, Some(ext.iss), v)) {
                    return Check::Revoked;
                }
            }
        }
        self.check_ids([claims.jti.as_deref(), ext.and_then(|e| e.jti)], now)
    }

    /// The token's ids (its own `jti`, and for an exchanged token its subject token's):
    /// what is known for sure first, so a Bloom hit of one that needs asking never hides
    /// the other's known revocation. When both need asking, the first is asked; the
    /// other is asked on a later request (its answer is not cached yet).
    fn check_ids(&self, ids: [Option<&str>; 2], now: i64) -> Check {
        let mut ask = None;
        // A federated token without an id (its issuer allows that) has none to revoke.
        for jti in ids.into_iter().flatten() {
            match self.check_jti(jti, now) {
                Check::Revoked => return Check::Revoked,
                Check::Unconfirmed(j) => ask = ask.or(Some(j)),
                Check::Clear => {}
            }
        }
        ask.map_or(Check::Clear, Check::Unconfirmed)
    }

    fn check_jti(&self, jti: &str, now: i64) -> Check {
        if self.added.contains(jti) {
            return Check::Revoked;
        }
        match &self.bloom {
            Some(b) if b.contains(jti) => match self.confirmed.get(jti) {
                Some((true, _)) => Check::Revoked,
                Some((false, until)) if *until > now => Check::Clear,
                _ => Check::Unconfirmed(jti.to_string()),
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

/// The `ext` claim of a token minted by token exchange (`wire::claims::ExternalSubject`):
/// the external issuer and subject, and the subject token's session, client and id
/// when recorded.
#[derive(Debug, Clone, Copy)]
struct External<'a> {
    iss: &'a str,
    sub: &'a str,
    sid: Option<&'a str>,
    client: Option<&'a str>,
    jti: Option<&'a str>,
}

fn external_subject(claims: &Claims) -> Option<External<'_>> {
    let ext = claims.raw.get(EXT_CLAIM)?;
    let text = |name: &str| ext.get(name).and_then(Value::as_str);
    Some(External {
        iss: text("iss")?,
        sub: text("sub")?,
        sid: text("sid"),
        client: text("client"),
        jti: text("jti").filter(|j| !j.is_empty()),
    })
}

#[cfg(test)]
mod tests;
