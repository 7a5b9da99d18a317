#![allow(clippy::unwrap_used)]
//! Hostile subject tokens against one issuer's rules and held keys: each refused with
//! its reason, before or at the signature.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use super::*;
use crate::issuers::model::IssuerSpec;
use crate::issuers::url::UrlPolicy;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example";

fn sk() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn rsa_n() -> Vec<u8> {
    let mut n = vec![0x9bu8; 256];
    n[0] = 0xc3;
    n
}

fn keys() -> Vec<FederatedKey> {
    vec![
        FederatedKey {
            kid: "ed".into(),
            algorithms: vec![Alg::EdDSA],
            material: KeyMaterial::Okp {
                crv: "Ed25519".into(),
                x: b64::encode(sk().verifying_key().to_bytes()),
            },
        },
        FederatedKey {
            kid: "rsa".into(),
            algorithms: vec![Alg::RS256],
            material: KeyMaterial::Rsa {
                n: b64::encode(rsa_n()),
                e: "AQAB".into(),
            },
        },
    ]
}

fn issuer(change: impl FnOnce(&mut Value)) -> TrustedIssuer {
    let mut v = json!({
        "name": "idp", "issuer": ISS, "jwks_uri": "https://idp.example/certs",
        "audiences": ["api"], "algorithms": ["EdDSA", "RS256"],
        "required_claims": {"tenant": ["a"]}, "clock_skew_seconds": 60,
    });
    change(&mut v);
    let spec: IssuerSpec = serde_json::from_value(v).unwrap();
    TrustedIssuer::new(spec, &UrlPolicy { allow_http: false }, None).unwrap()
}

fn claims(change: impl FnOnce(&mut Value)) -> Value {
    let mut c = json!({
        "iss": ISS, "sub": "alice", "aud": ["api", "other"], "exp": NOW + 300,
        "iat": NOW, "nbf": NOW, "tenant": "a", "scope": "read write", "jti": "t1",
    });
    change(&mut c);
    c
}

fn signed(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(claims.to_string())
    );
    format!(
        "{input}.{}",
        b64::encode(sk().sign(input.as_bytes()).to_bytes())
    )
}

fn ed(claims: &Value) -> String {
    signed(
        &json!({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}),
        claims,
    )
}

fn check(token: &str) -> Result<Map<String, Value>, TokenError> {
    verify(token, &issuer(|_| {}), &keys(), NOW)
}

#[test]
fn a_good_token_verifies_and_its_scopes_are_read_from_the_scope_claim() {
    let c = check(&ed(&claims(|_| {}))).unwrap();
    assert_eq!(subject(&c), Ok("alice"));
    assert_eq!(scopes(&c, &issuer(|_| {})), ["read", "write"]);
    let roles = issuer(|v| v["scope_claim"] = json!("realm_access.roles"));
    let c = claims(|c| c["realm_access"] = json!({"roles": ["admin", 5]}));
    assert_eq!(scopes(c.as_object().unwrap(), &roles), ["admin"]);
    // Within the clock skew on either side.
    assert!(check(&ed(&claims(|c| c["exp"] = json!(NOW - 59)))).is_ok());
    assert!(check(&ed(&claims(|c| c["nbf"] = json!(NOW + 59)))).is_ok());
}

#[test]
fn algorithm_attacks_are_refused_before_any_key_is_used() {
    let body = claims(|_| {});
    let payload = b64::encode(body.to_string());
    // alg none, unsigned.
    let none = format!("{}.{payload}.", b64::encode(r#"{"alg":"none","kid":"ed"}"#));
    assert_eq!(check(&none).unwrap_err(), TokenError::Algorithm);
    // HS256 keyed with the RSA public key's bytes (the classic key confusion; this
    // helper takes 32 key bytes, and the algorithm is refused before the MAC matters).
    let head = b64::encode(r#"{"alg":"HS256","kid":"rsa"}"#);
    let input = format!("{head}.{payload}");
    let key: [u8; 32] = rsa_n()[..32].try_into().unwrap();
    let mac = crate::crypto::hmac_sha256(&key, input.as_bytes());
    let hs = format!("{input}.{}", b64::encode(mac));
    assert_eq!(check(&hs).unwrap_err(), TokenError::Algorithm);
    // A listed algorithm with a key of another type, either way round.
    let ed_on_rsa = signed(&json!({"alg": "EdDSA", "kid": "rsa"}), &body);
    assert_eq!(check(&ed_on_rsa).unwrap_err(), TokenError::Algorithm);
    let rs_on_ed = signed(&json!({"alg": "RS256", "kid": "ed"}), &body);
    assert_eq!(check(&rs_on_ed).unwrap_err(), TokenError::Algorithm);
    // An algorithm the issuer does not list.
    let es = signed(&json!({"alg": "ES256", "kid": "ed"}), &body);
    assert_eq!(check(&es).unwrap_err(), TokenError::Algorithm);
    let unknown = signed(&json!({"alg": "EdDSA", "kid": "gone"}), &body);
    assert_eq!(check(&unknown).unwrap_err(), TokenError::UnknownKey);
    let no_kid = signed(&json!({"alg": "EdDSA"}), &body);
    assert_eq!(check(&no_kid).unwrap_err(), TokenError::UnknownKey);
}

#[test]
fn forged_malformed_and_off_rule_tokens_are_refused_with_their_reason() {
    let good = ed(&claims(|_| {}));
    // Another payload under the same signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64::encode(claims(|c| c["sub"] = json!("admin")).to_string());
    assert_eq!(check(&parts.join(".")).unwrap_err(), TokenError::Signature);
    let cases: Vec<(String, TokenError)> = vec![
        (format!("{good}.x"), TokenError::Malformed),
        ("not a token".into(), TokenError::Malformed),
        (
            signed(
                &json!({"alg": "EdDSA", "kid": "ed", "crit": ["x"]}),
                &claims(|_| {}),
            ),
            TokenError::Malformed,
        ),
        (
            ed(&claims(|c| c["iss"] = json!("https://evil.example"))),
            TokenError::Untrusted,
        ),
        (
            ed(&claims(|c| c["exp"] = json!(NOW - 60))),
            TokenError::Expired,
        ),
        (
            ed(&claims(|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            TokenError::Malformed,
        ),
        (
            ed(&claims(|c| c["exp"] = json!("soon"))),
            TokenError::Malformed,
        ),
        (
            ed(&claims(|c| c["nbf"] = json!(NOW + 61))),
            TokenError::NotYetValid,
        ),
        (
            ed(&claims(|c| c["iat"] = json!(NOW + 61))),
            TokenError::NotYetValid,
        ),
        (
            ed(&claims(|c| c["aud"] = json!("web"))),
            TokenError::Audience,
        ),
        (
            ed(&claims(|c| {
                c.as_object_mut().unwrap().remove("aud");
            })),
            TokenError::Audience,
        ),
        (
            ed(&claims(|c| c["tenant"] = json!("b"))),
            TokenError::Claim("tenant".into()),
        ),
        (
            ed(&claims(|c| {
                c.as_object_mut().unwrap().remove("iat");
            })),
            TokenError::NoIssuedAt,
        ),
        (
            ed(&claims(|c| c["iat"] = json!("now"))),
            TokenError::Malformed,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(check(&token).unwrap_err(), want, "{token}");
    }
}

/// The issuer's longest token life, as the filter applies it: `exp - iat` over it is
/// refused (an exchange must not accept what the edge refuses); at it, accepted.
#[test]
fn a_token_living_longer_than_its_issuer_allows_is_refused() {
    let hour = issuer(|v| v["max_token_lifetime_seconds"] = json!(3_600));
    let at = |exp: i64, iat: i64| {
        ed(&claims(|c| {
            c["exp"] = json!(exp);
            c["iat"] = json!(iat);
        }))
    };
    assert!(verify(&at(NOW + 3_600, NOW), &hour, &keys(), NOW).is_ok());
    assert_eq!(
        verify(&at(NOW + 3_601, NOW), &hour, &keys(), NOW).unwrap_err(),
        TokenError::Lifetime
    );
    assert_eq!(
        verify(&at(NOW + 60, NOW - 4_000), &hour, &keys(), NOW).unwrap_err(),
        TokenError::Lifetime
    );
    // The default is a day.
    assert!(check(&at(NOW + 86_400, NOW)).is_ok());
    assert_eq!(
        check(&at(NOW + 86_401, NOW)).unwrap_err(),
        TokenError::Lifetime
    );
}

/// As the filter: the token's id (the issuer's `id_claim`, `jti` by default) is a
/// non-empty string, absent only when the issuer has `id_optional`; a token the edge
/// refuses must not buy a mesh token.
#[test]
fn a_token_without_a_usable_id_is_refused_unless_its_issuer_allows_none() {
    let without = |id: Option<Value>| {
        ed(&claims(|c| {
            let m = c.as_object_mut().unwrap();
            m.remove("jti");
            if let Some(v) = id {
                m.insert("jti".into(), v);
            }
        }))
    };
    for bad in [None, Some(json!("")), Some(json!(7)), Some(json!(["a"]))] {
        assert_eq!(
            check(&without(bad.clone())).unwrap_err(),
            TokenError::Id,
            "{bad:?}"
        );
    }
    let optional = issuer(|v| v["id_optional"] = json!(true));
    assert!(verify(&without(None), &optional, &keys(), NOW).is_ok());
    assert_eq!(
        verify(&without(Some(json!(""))), &optional, &keys(), NOW).unwrap_err(),
        TokenError::Id
    );
    // Entra: the id is `uti`.
    let entra = issuer(|v| v["id_claim"] = json!("uti"));
    assert_eq!(
        verify(&without(None), &entra, &keys(), NOW).unwrap_err(),
        TokenError::Id
    );
    let uti = ed(&claims(|c| c["uti"] = json!("u1")));
    assert!(verify(&uti, &entra, &keys(), NOW).is_ok());
}

#[test]
fn typ_is_the_issuers_when_it_sets_one() {
    let strict = issuer(|v| v["typ"] = json!("at+jwt"));
    let body = claims(|_| {});
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("application/AT+JWT"), true),
        (Some("JWT"), false),
        (None, false),
    ] {
        let mut h = json!({"alg": "EdDSA", "kid": "ed"});
        if let Some(t) = typ {
            h["typ"] = json!(t);
        }
        let r = verify(&signed(&h, &body), &strict, &keys(), NOW);
        assert_eq!(r.is_ok(), ok, "{typ:?}: {r:?}");
        if !ok {
            assert_eq!(r.unwrap_err(), TokenError::Typ);
        }
    }
}

#[test]
fn a_subject_must_be_a_short_printable_string() {
    for sub in [json!(""), json!(5), json!("a\nb"), json!("x".repeat(257))] {
        let c = claims(|c| c["sub"] = sub.clone());
        assert_eq!(
            subject(c.as_object().unwrap()),
            Err(TokenError::Subject),
            "{sub}"
        );
    }
    let c = claims(|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    assert_eq!(subject(c.as_object().unwrap()), Err(TokenError::Subject));
}
