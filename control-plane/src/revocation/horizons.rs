//! How long a revocation rule is kept past its `not_before` (in the store, in `revoke
//! list`, in snapshots): until every token it could cover has expired. Our own tokens
//! live at most our longest TTL. A trusted issuer's live at most its
//! `max_token_lifetime_seconds` (`exp - iat`, enforced by filters and token exchange),
//! but that can be raised later (the issuer deleted and added again), which would admit
//! again a longer token issued before the rule: so a rule scoped to any issuer is kept
//! for the longest lifetime any issuer may be given (a week), whatever its own.

use meshauth_wire::federation::MAX_TOKEN_LIFETIME_SECONDS;

use super::Revocation;

/// The horizon of each rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizons {
    /// Our own rules: the longest own token TTL plus the skew.
    own: i64,
    /// How long past `exp` a jti is kept, and past the longest lifetime a rule.
    skew: i64,
    /// A rule scoped to an issuer: the longest lifetime any issuer may have plus the
    /// skew, never less than our own horizon (a scoped `sub` rule also covers our
    /// tokens exchanged for that subject).
    scoped: i64,
}

impl Horizons {
    /// `own`: `Settings::revocation_horizon`; `skew`: `Settings::revocation_skew`.
    pub fn new(own: i64, skew: i64) -> Horizons {
        let longest = i64::try_from(MAX_TOKEN_LIFETIME_SECONDS).unwrap_or(i64::MAX / 4);
        Horizons {
            own,
            skew,
            scoped: longest.saturating_add(skew).max(own),
        }
    }

    /// How long past its `not_before` the rule `r` is kept (a jti is kept by its `exp`).
    pub fn of(&self, r: &Revocation) -> i64 {
        match r.issuer() {
            None => self.own,
            Some(_) => self.scoped,
        }
    }

    /// Whether `r` can still match a valid token at `now`.
    pub fn is_live(&self, r: &Revocation, now: i64) -> bool {
        r.is_live(now, self.skew, self.of(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::RuleIssuer;

    fn rule(iss: Option<&str>) -> Revocation {
        Revocation::Sid {
            value: "s".into(),
            not_before: 1_000,
            issuer: iss.map(|iss| RuleIssuer {
                name: "idp".into(),
                iss: iss.into(),
            }),
        }
    }

    /// Own rules keep the own horizon; a rule scoped to any issuer, a week plus the
    /// skew (an issuer's lifetime may be raised after the rule); a jti, its `exp` plus
    /// the skew.
    #[test]
    fn each_rule_is_kept_as_long_as_any_issuers_tokens_may_live() {
        let h = Horizons::new(4_200, 600);
        assert_eq!(h.of(&rule(None)), 4_200);
        assert_eq!(h.of(&rule(Some("https://idp"))), 604_800 + 600);
        let scoped = rule(Some("https://idp"));
        assert!(h.is_live(&scoped, 1_000 + 605_400));
        assert!(!h.is_live(&scoped, 1_000 + 605_401));
        assert!(h.is_live(&rule(None), 1_000 + 4_200));
        assert!(!h.is_live(&rule(None), 1_000 + 4_201));
        let jti = Revocation::Jti {
            jti: "j".into(),
            exp: 50_000,
        };
        assert!(h.is_live(&jti, 50_600) && !h.is_live(&jti, 50_601));
        // An own horizon longer than a week wins for scoped rules too.
        assert_eq!(Horizons::new(700_000, 600).of(&scoped), 700_000);
    }
}
