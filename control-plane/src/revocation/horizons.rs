//! How long a revocation rule is kept past its `not_before` (in the store, in `revoke
//! list`, in snapshots): until every token it could cover has expired. Our own tokens
//! live at most our longest TTL; a trusted issuer's at most its
//! `max_token_lifetime_seconds`, which filters and token exchange enforce (`exp - iat`).

use std::collections::HashMap;

use meshauth_wire::federation::MAX_TOKEN_LIFETIME_SECONDS;

use super::Revocation;

/// The horizon of each rule, from the issuers registered when it is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizons {
    /// Our own rules: the longest own token TTL plus the skew.
    own: i64,
    /// How long past `exp` a jti is kept, and past an issuer's lifetime a rule.
    skew: i64,
    /// A registered issuer's rules, by `iss`: its lifetime plus the skew.
    by_iss: HashMap<String, i64>,
    /// Rules of an `iss` no longer registered: the longest lifetime any issuer may
    /// have, so an issuer deleted and added again finds its rules still in force.
    unknown: i64,
}

impl Horizons {
    /// `own`: `Settings::revocation_horizon`; `skew`: `Settings::revocation_skew`;
    /// `lifetimes`: each registered issuer's `iss` and longest token life.
    pub fn new<'a>(
        own: i64,
        skew: i64,
        lifetimes: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Horizons {
        // A scoped `sub` rule also covers our tokens exchanged for that subject: never
        // shorter than our own horizon.
        let scoped = |life: u64| {
            i64::try_from(life)
                .unwrap_or(i64::MAX / 4)
                .saturating_add(skew)
                .max(own)
        };
        Horizons {
            own,
            skew,
            by_iss: lifetimes
                .into_iter()
                .map(|(iss, life)| (iss.to_string(), scoped(life)))
                .collect(),
            unknown: scoped(MAX_TOKEN_LIFETIME_SECONDS),
        }
    }

    /// How long past its `not_before` the rule `r` is kept (a jti is kept by its `exp`).
    pub fn of(&self, r: &Revocation) -> i64 {
        match r.issuer() {
            None => self.own,
            Some(i) => self.by_iss.get(&i.iss).copied().unwrap_or(self.unknown),
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

    /// Own rules keep the own horizon; a registered issuer's, its lifetime plus the
    /// skew (never less than the own horizon); an unregistered `iss`'s, a week plus
    /// the skew; a jti, its `exp` plus the skew.
    #[test]
    fn each_rule_is_kept_as_long_as_its_issuers_tokens_live() {
        let h = Horizons::new(
            4_200,
            600,
            [("https://long", 86_400), ("https://short", 60)],
        );
        assert_eq!(h.of(&rule(None)), 4_200);
        assert_eq!(h.of(&rule(Some("https://long"))), 87_000);
        assert_eq!(h.of(&rule(Some("https://short"))), 4_200);
        assert_eq!(h.of(&rule(Some("https://gone"))), 604_800 + 600);

        let long = rule(Some("https://long"));
        assert!(h.is_live(&long, 1_000 + 87_000));
        assert!(!h.is_live(&long, 1_000 + 87_001));
        assert!(h.is_live(&rule(None), 1_000 + 4_200));
        assert!(!h.is_live(&rule(None), 1_000 + 4_201));

        let jti = Revocation::Jti {
            jti: "j".into(),
            exp: 50_000,
        };
        assert!(h.is_live(&jti, 50_600) && !h.is_live(&jti, 50_601));
        // Nothing registered: scoped rules still kept a week.
        let none = Horizons::new(4_200, 600, []);
        assert_eq!(none.of(&long), 605_400);
    }
}
