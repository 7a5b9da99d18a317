//! Access-token claims as the filter reads them, and their time/issuer/audience checks.
//!
//! Claims are parsed once per distinct token (the verified cache keeps the result);
//! the checks run on every request.

use serde_json::{Map, Value};

use crate::deny::Denial;

#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub iss: Option<String>,
    pub aud: Vec<String>,
    /// The token's id for revocation: `jti` (always present in the control plane's
    /// tokens); a federated issuer may name another claim or let it be absent.
    pub jti: Option<String>,
    pub scopes: Vec<String>,
    /// Every claim as sent, for claim requirements and forwarding.
    pub raw: Map<String, Value>,
}

/// What a token's claims are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    /// When non-empty, `aud` must name at least one of these.
    pub audiences: Vec<String>,
    pub skew_seconds: i64,
    /// The longest a token may live (`exp - iat`), for a federated issuer: then `iat`
    /// is required, so a revocation made at R covers every admitted token issued
    /// before R once R + this has passed. `None` (own tokens): not checked.
    pub max_lifetime: Option<i64>,
}

fn numeric_date(raw: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Denial> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            // RFC 7519 NumericDate may carry a fraction; whole seconds are enough here.
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15) {
                Ok(Some(f.floor() as i64))
            } else {
                Err(Denial::BadClaim(name))
            }
        }
        Some(_) => Err(Denial::BadClaim(name)),
    }
}

fn opt_string(raw: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Denial> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Denial::BadClaim(name)),
    }
}

impl Claims {
    /// Parses a decoded JWT payload, which must carry a `jti`. Types are strict;
    /// unknown claims are kept.
    pub fn parse(payload: &[u8]) -> Result<Claims, Denial> {
        let c = Claims::parse_without_id(payload)?;
        match c.jti {
            Some(_) => Ok(c),
            None => Err(Denial::BadClaim("jti")),
        }
    }

    /// As `parse`, but a token without `jti` is let through (its issuer's rules decide:
    /// `federated`).
    pub fn parse_without_id(payload: &[u8]) -> Result<Claims, Denial> {
        let raw = crate::strict_json::object(payload).map_err(|e| match e {
            crate::strict_json::StrictError::NotAnObject => {
                Denial::Malformed("payload is not a JSON object")
            }
            crate::strict_json::StrictError::DuplicateMember => {
                Denial::Malformed("payload repeats a member name")
            }
        })?;
        let exp = numeric_date(&raw, "exp")?.ok_or(Denial::BadClaim("exp"))?;
        let nbf = numeric_date(&raw, "nbf")?;
        let iat = numeric_date(&raw, "iat")?;
        let iss = opt_string(&raw, "iss")?;
        let jti = match opt_string(&raw, "jti")? {
            Some(j) if j.is_empty() => return Err(Denial::BadClaim("jti")),
            j => j,
        };
        let aud = match raw.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Denial::BadClaim("aud"))?,
            Some(_) => return Err(Denial::BadClaim("aud")),
        };
        let scopes = opt_string(&raw, "scope")?
            .map(|s| {
                s.split(' ')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for name in ["sub", "client_id", "sid"] {
            if raw.get(name).is_some_and(|v| !v.is_string()) {
                return Err(Denial::BadClaim(match name {
                    "sub" => "sub",
                    "client_id" => "client_id",
                    _ => "sid",
                }));
            }
        }
        Ok(Claims {
            exp,
            nbf,
            iat,
            iss,
            aud,
            jti,
            scopes,
            raw,
        })
    }

    pub fn check(&self, rules: &ClaimRules, now: i64) -> Result<(), Denial> {
        let skew = rules.skew_seconds;
        // RFC 7519 §4.1.4: not accepted on or after exp.
        if now >= self.exp.saturating_add(skew) {
            return Err(Denial::Expired);
        }
        if let Some(nbf) = self.nbf {
            if now.saturating_add(skew) < nbf {
                return Err(Denial::NotYetValid);
            }
        }
        if let Some(iat) = self.iat {
            if now.saturating_add(skew) < iat {
                return Err(Denial::NotYetValid);
            }
        }
        if let Some(max) = rules.max_lifetime {
            let iat = self.iat.ok_or(Denial::BadClaim("iat"))?;
            if self.exp.checked_sub(iat).is_none_or(|life| life > max) {
                return Err(Denial::TokenLifetime);
            }
        }
        if let Some(want) = &rules.issuer {
            if self.iss.as_deref() != Some(want.as_str()) {
                return Err(Denial::BadIssuer {
                    got: self.iss.clone(),
                });
            }
        }
        if !rules.audiences.is_empty() && !self.aud.iter().any(|a| rules.audiences.contains(a)) {
            return Err(Denial::BadAudience);
        }
        Ok(())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// A claim's value(s) as strings: a string, the strings of an array, or a number
    /// or boolean written out. Objects give nothing.
    pub fn values(&self, name: &str) -> Vec<String> {
        meshauth_wire::federation::claim_values(self.raw.get(name))
    }

    /// The claim at a dotted path (`realm_access.roles`), as a forwarded header's
    /// value (see `forwarded_value`). A top-level claim whose name is the whole path
    /// (`https://example.com/roles`, as Auth0 names them) is taken first.
    pub fn forwarded_value_at(&self, path: &str) -> Result<Option<String>, Denial> {
        if self.raw.contains_key(path) {
            return self.forwarded_value(path);
        }
        let mut segments = path.split('.');
        let first = segments.next().and_then(|s| self.raw.get(s));
        let value = segments.try_fold(first, |v, s| Some(v.and_then(|v| v.get(s))));
        header_text(meshauth_wire::federation::claim_values(value.flatten()))
    }

    /// The claim as one header value: strings as they are, arrays joined by a space.
    /// `None` when absent or when the value could not travel safely in a header.
    pub fn header_value(&self, name: &str) -> Option<String> {
        self.forwarded_value(name).ok().flatten()
    }

    /// The claim as a forwarded header's value, `None` when absent. A value no header
    /// could carry (a control character) is refused: forwarding the request without it
    /// would show the upstream an authenticated request without the identity it expects.
    pub fn forwarded_value(&self, name: &str) -> Result<Option<String>, Denial> {
        header_text(self.values(name))
    }
}

/// Values as one header value, joined by a space; a control character refuses.
fn header_text(values: Vec<String>) -> Result<Option<String>, Denial> {
    if values.is_empty() {
        return Ok(None);
    }
    let joined = values.join(" ");
    let safe = joined
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if safe {
        Ok(Some(joined))
    } else {
        Err(Denial::BadClaim("forwarded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(json: &str) -> Result<Claims, Denial> {
        Claims::parse(json.as_bytes())
    }

    #[test]
    fn types_are_strict() {
        assert_eq!(
            claims(r#"{"jti":"a"}"#).unwrap_err(),
            Denial::BadClaim("exp")
        );
        assert_eq!(
            claims(r#"{"exp":"1","jti":"a"}"#).unwrap_err(),
            Denial::BadClaim("exp")
        );
        assert_eq!(claims(r#"{"exp":1}"#).unwrap_err(), Denial::BadClaim("jti"));
        assert_eq!(
            claims(r#"{"exp":1,"jti":""}"#).unwrap_err(),
            Denial::BadClaim("jti")
        );
        assert_eq!(
            claims(r#"{"exp":1,"jti":"a","aud":[1]}"#).unwrap_err(),
            Denial::BadClaim("aud")
        );
        assert_eq!(
            claims(r#"{"exp":1,"jti":"a","sub":5}"#).unwrap_err(),
            Denial::BadClaim("sub")
        );
        assert_eq!(
            claims(r#"{"exp":1,"jti":"a","iss":true}"#).unwrap_err(),
            Denial::BadClaim("iss")
        );
        assert_eq!(
            claims(r#"{"exp":1e300,"jti":"a"}"#).unwrap_err(),
            Denial::BadClaim("exp")
        );
        assert!(matches!(
            claims(r#"[1]"#).unwrap_err(),
            Denial::Malformed(_)
        ));
        assert!(claims(r#"{"exp":1.5,"jti":"a","aud":"x"}"#).is_ok());
    }

    #[test]
    fn duplicate_claims_are_refused() {
        for json in [
            r#"{"exp":9,"jti":"a","sub":"alice","sub":"root"}"#,
            r#"{"exp":9,"jti":"a","exp":99999999999}"#,
            r#"{"exp":9,"jti":"a","jti":"b"}"#,
            r#"{"exp":9,"jti":"a","cnf":{"jkt":"x","jkt":"y"}}"#,
        ] {
            assert_eq!(
                claims(json).unwrap_err(),
                Denial::Malformed("payload repeats a member name"),
                "{json}"
            );
        }
    }

    #[test]
    fn time_checks_honour_skew() {
        let c = claims(r#"{"exp":1000,"nbf":900,"iat":900,"jti":"a"}"#).unwrap();
        let rules = ClaimRules {
            skew_seconds: 10,
            ..Default::default()
        };
        assert_eq!(c.check(&rules, 950), Ok(()));
        assert_eq!(c.check(&rules, 1009), Ok(()));
        assert_eq!(c.check(&rules, 1010), Err(Denial::Expired));
        assert_eq!(c.check(&rules, 890), Ok(()));
        assert_eq!(c.check(&rules, 889), Err(Denial::NotYetValid));
    }

    /// With a longest lifetime (federated issuers): `iat` is required and `exp - iat`
    /// may not exceed it; at it, admitted. Without one (own tokens), neither applies.
    #[test]
    fn a_longest_lifetime_requires_iat_and_bounds_exp() {
        let rules = ClaimRules {
            max_lifetime: Some(100),
            ..Default::default()
        };
        let at_bound = claims(r#"{"exp":1100,"iat":1000,"jti":"a"}"#).unwrap();
        assert_eq!(at_bound.check(&rules, 1000), Ok(()));
        let over = claims(r#"{"exp":1101,"iat":1000,"jti":"a"}"#).unwrap();
        assert_eq!(over.check(&rules, 1000), Err(Denial::TokenLifetime));
        let no_iat = claims(r#"{"exp":1100,"nbf":1000,"jti":"a"}"#).unwrap();
        assert_eq!(no_iat.check(&rules, 1000), Err(Denial::BadClaim("iat")));
        // A difference that overflows is refused, not wrapped.
        let wide =
            claims(r#"{"exp":9223372036854775807,"iat":-9223372036854775808,"jti":"a"}"#).unwrap();
        assert_eq!(wide.check(&rules, 0), Err(Denial::TokenLifetime));
        let own = ClaimRules::default();
        assert_eq!(over.check(&own, 1000), Ok(()));
        assert_eq!(no_iat.check(&own, 1000), Ok(()));
    }

    #[test]
    fn issuer_and_audience() {
        let c = claims(r#"{"exp":1000,"jti":"a","iss":"me","aud":["x","y"]}"#).unwrap();
        let mut rules = ClaimRules {
            issuer: Some("me".into()),
            audiences: vec!["y".into()],
            skew_seconds: 0,
            max_lifetime: None,
        };
        assert_eq!(c.check(&rules, 1), Ok(()));
        rules.audiences = vec!["z".into()];
        assert_eq!(c.check(&rules, 1), Err(Denial::BadAudience));
        rules.audiences.clear();
        rules.issuer = Some("other".into());
        assert_eq!(
            c.check(&rules, 1),
            Err(Denial::BadIssuer {
                got: Some("me".into())
            })
        );
    }

    #[test]
    fn header_values_refuse_control_characters() {
        let c =
            claims(r#"{"exp":1,"jti":"a","sub":"x\r\nevil: 1","groups":["a","b"],"n":5}"#).unwrap();
        assert_eq!(c.header_value("sub"), None);
        assert_eq!(c.header_value("groups").as_deref(), Some("a b"));
        assert_eq!(c.header_value("n").as_deref(), Some("5"));
        assert_eq!(c.header_value("missing"), None);
        assert_eq!(c.forwarded_value("sub"), Err(Denial::BadClaim("forwarded")));
        assert!(c.forwarded_value("groups").is_ok() && c.forwarded_value("missing").is_ok());
    }

    #[test]
    fn forwarded_values_at_a_path() {
        let c = claims(
            r#"{"exp":1,"jti":"a","realm_access":{"roles":["r1","r2"]},"https://x.example/t":"t1","u":{"n":"x\ny"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.forwarded_value_at("realm_access.roles"),
            Ok(Some("r1 r2".into()))
        );
        assert_eq!(
            c.forwarded_value_at("https://x.example/t"),
            Ok(Some("t1".into()))
        );
        assert_eq!(c.forwarded_value_at("realm_access"), Ok(None));
        assert_eq!(c.forwarded_value_at("realm_access.roles.x"), Ok(None));
        assert_eq!(c.forwarded_value_at("missing.x"), Ok(None));
        assert_eq!(
            c.forwarded_value_at("u.n"),
            Err(Denial::BadClaim("forwarded"))
        );
    }

    proptest! {
        #[test]
        fn claims_round_trip(sub in "[a-zA-Z0-9@.]{1,20}", jti in "[a-z0-9-]{1,36}", exp in 0i64..4_000_000_000, scopes in proptest::collection::vec("[a-z:]{1,8}", 0..4)) {
            let wire = meshauth_wire::AccessClaims {
                iss: "i".into(), sub: sub.clone(), aud: vec!["a".into()], exp, iat: exp - 60, nbf: exp - 60,
                jti: jti.clone(), scope: scopes.join(" "), client_id: "c".into(), sid: None, ext: None, act: None,
            };
            let c = Claims::parse(&serde_json::to_vec(&wire).unwrap()).unwrap();
            prop_assert_eq!(c.exp, exp);
            prop_assert_eq!(c.jti.as_deref(), Some(jti.as_str()));
            prop_assert_eq!(c.values("sub"), vec![sub]);
            prop_assert_eq!(c.scopes, scopes);
        }
    }
}
