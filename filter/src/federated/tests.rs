use super::*;
use rsa::pkcs1v15::SigningKey as RsaSigner;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use std::sync::OnceLock;

const NOW: i64 = 1_000_000;
const ISS: &str = "https://idp.test";

/// One RSA 2048 key for the whole run (generating one takes a while).
pub(crate) fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
}

fn ec_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand::thread_rng())
}

pub(crate) fn rsa_public(kid: &str, algs: Vec<Alg>) -> FederatedKey {
    let k = rsa_key().to_public_key();
    FederatedKey {
        kid: kid.into(),
        algorithms: algs,
        material: KeyMaterial::Rsa {
            n: b64::encode(k.n().to_bytes_be()),
            e: b64::encode(k.e().to_bytes_be()),
        },
    }
}

fn ec_public(kid: &str, key: &p256::ecdsa::SigningKey) -> FederatedKey {
    let point = key.verifying_key().to_encoded_point(false);
    FederatedKey {
        kid: kid.into(),
        algorithms: vec![Alg::ES256],
        material: KeyMaterial::Ec {
            crv: "P-256".into(),
            x: b64::encode(point.x().unwrap()),
            y: b64::encode(point.y().unwrap()),
        },
    }
}

pub(crate) fn issuer(keys: Vec<FederatedKey>) -> FederatedIssuer {
    FederatedIssuer {
        name: Some("idp".into()),
        issuer: ISS.into(),
        audiences: vec!["api".into()],
        algorithms: vec![Alg::RS256, Alg::PS256, Alg::ES256],
        typ: None,
        required_claims: Default::default(),
        clock_skew_seconds: 30,
        scope_claim: "realm_access.roles".into(),
        forward_claims: Default::default(),
        id_claim: None,
        id_optional: false,
        client_claim: None,
        max_token_lifetime_seconds: 3_600,
        keys,
    }
}

fn claims() -> Value {
    serde_json::json!({
        "iss": ISS, "aud": "api", "sub": "u1", "jti": "j1",
        "exp": NOW + 60, "iat": NOW,
        "realm_access": {"roles": ["read", "write"]},
    })
}

pub(crate) fn signing_input(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(payload.to_string())
    )
}

pub(crate) fn rs256(kid: &str, payload: &Value) -> String {
    let header = serde_json::json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let input = signing_input(&header, payload);
    let sig = RsaSigner::<sha2::Sha256>::new(rsa_key().clone()).sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig.to_bytes()))
}

fn es256(key: &p256::ecdsa::SigningKey, kid: &str, alg: &str, payload: &Value) -> String {
    let header = serde_json::json!({"alg": alg, "kid": kid});
    let input = signing_input(&header, payload);
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig.to_bytes()))
}

fn federation(keys: Vec<FederatedKey>) -> Federation {
    let (f, skipped) = Federation::new(&[issuer(keys)], Some("https://cp.test"));
    assert!(skipped.is_empty(), "{skipped:?}");
    f
}

#[test]
fn rs256_and_es256_tokens_are_admitted_with_the_issuers_scopes() {
    let ec = ec_key();
    let f = federation(vec![
        rsa_public("r1", vec![Alg::RS256]),
        ec_public("e1", &ec),
    ]);
    let c = f.verify(&rs256("r1", &claims()), NOW).unwrap();
    assert_eq!(c.iss.as_deref(), Some(ISS));
    assert_eq!(c.scopes, ["read", "write"]);
    let c = f
        .verify(&es256(&ec, "e1", "ES256", &claims()), NOW)
        .unwrap();
    assert_eq!(c.scopes, ["read", "write"]);
}

#[test]
fn ps256_is_verified_when_listed() {
    let f = federation(vec![rsa_public("r1", vec![Alg::PS256])]);
    let header = serde_json::json!({"alg": "PS256", "kid": "r1"});
    let input = signing_input(&header, &claims());
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(rsa_key().clone());
    let sig = rsa::signature::RandomizedSigner::sign_with_rng(
        &signer,
        &mut rand::thread_rng(),
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64::encode(sig.to_bytes()));
    assert!(f.verify(&token, NOW).is_ok());
    // The same key does not serve RS256 (not in its list).
    assert_eq!(
        f.verify(&rs256("r1", &claims()), NOW).unwrap_err(),
        Denial::BadAlgorithm
    );
}

#[test]
fn wrong_issuer_audience_kid_typ_or_signature_is_refused_with_its_denial() {
    let f = federation(vec![rsa_public("r1", vec![Alg::RS256])]);
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    assert_eq!(
        f.verify(&rs256("r1", &with("aud", "other".into())), NOW)
            .unwrap_err(),
        Denial::BadAudience
    );
    let mut no_aud = claims();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        f.verify(&rs256("r1", &no_aud), NOW).unwrap_err(),
        Denial::BadAudience
    );
    assert!(matches!(
        f.verify(&rs256("r1", &with("iss", "https://evil.test".into())), NOW),
        Err(Denial::BadIssuer { .. })
    ));
    assert_eq!(
        f.verify(&rs256("r2", &claims()), NOW).unwrap_err(),
        Denial::UnknownKey
    );
    assert_eq!(
        f.verify(&rs256("r1", &claims()), NOW + 60 + 30)
            .unwrap_err(),
        Denial::Expired
    );
    // Within the issuer's skew it is still accepted.
    assert!(f.verify(&rs256("r1", &claims()), NOW + 60 + 29).is_ok());
    // A signature over other claims.
    let good = rs256("r1", &claims());
    let other = rs256("r1", &with("sub", "u2".into()));
    let (input, _) = other.rsplit_once('.').unwrap();
    let (_, sig) = good.rsplit_once('.').unwrap();
    assert_eq!(
        f.verify(&format!("{input}.{sig}"), NOW).unwrap_err(),
        Denial::BadSignature
    );
    // typ: required by the issuer, the token says JWT.
    let mut strict = issuer(vec![rsa_public("r1", vec![Alg::RS256])]);
    strict.typ = Some("at+jwt".into());
    let (f2, _) = Federation::new(&[strict], None);
    assert!(matches!(
        f2.verify(&rs256("r1", &claims()), NOW),
        Err(Denial::Malformed(_))
    ));
}

#[test]
fn required_claims_must_hold_one_of_their_values() {
    let mut i = issuer(vec![rsa_public("r1", vec![Alg::RS256])]);
    i.required_claims
        .insert("tenant".into(), vec!["a".into(), "b".into()]);
    let (f, _) = Federation::new(&[i], None);
    let mut c = claims();
    assert_eq!(
        f.verify(&rs256("r1", &c), NOW).unwrap_err(),
        Denial::ClaimMismatch {
            claim: "tenant".into()
        }
    );
    c["tenant"] = "b".into();
    assert!(f.verify(&rs256("r1", &c), NOW).is_ok());
}

/// Algorithm confusion: a token naming an algorithm its key cannot serve, one the
/// issuer does not list, HS256 or none never verifies.
#[test]
fn algorithm_confusion_is_refused() {
    let ec = ec_key();
    let f = federation(vec![
        rsa_public("r1", vec![Alg::RS256]),
        ec_public("e1", &ec),
    ]);
    // An RS256 header with the EC key's kid.
    let header = serde_json::json!({"alg": "RS256", "kid": "e1"});
    let input = signing_input(&header, &claims());
    let sig = RsaSigner::<sha2::Sha256>::new(rsa_key().clone()).sign(input.as_bytes());
    let token = format!("{input}.{}", b64::encode(sig.to_bytes()));
    assert_eq!(f.verify(&token, NOW).unwrap_err(), Denial::BadAlgorithm);
    // ES256 naming the RSA key.
    assert_eq!(
        f.verify(&es256(&ec, "r1", "ES256", &claims()), NOW)
            .unwrap_err(),
        Denial::BadAlgorithm
    );
    for alg in ["HS256", "none", "ES384", "RS384", "es256", ""] {
        let t = es256(&ec, "e1", alg, &claims());
        assert_eq!(
            f.verify(&t, NOW).unwrap_err(),
            Denial::BadAlgorithm,
            "{alg}"
        );
    }
    // An HS256 "signature" keyed with the RSA public key's bytes (the classic attack).
    let header = serde_json::json!({"alg": "HS256", "kid": "r1"});
    let input = signing_input(&header, &claims());
    let t = format!("{input}.{}", b64::encode([0u8; 32]));
    assert_eq!(f.verify(&t, NOW).unwrap_err(), Denial::BadAlgorithm);
}

/// The control plane's own issuer is never a federated one, even if a snapshot said
/// so: its tokens stay EdDSA-only, checked elsewhere.
#[test]
fn the_own_issuer_is_never_federated() {
    let mut own = issuer(vec![rsa_public("r1", vec![Alg::RS256])]);
    own.issuer = "https://cp.test".into();
    let (f, skipped) = Federation::new(&[own], Some("https://cp.test"));
    assert!(f.is_empty());
    assert_eq!(skipped.len(), 1);
    let mut c = claims();
    c["iss"] = "https://cp.test".into();
    assert!(matches!(
        f.verify(&rs256("r1", &c), NOW),
        Err(Denial::BadIssuer { .. })
    ));
}

#[test]
fn scope_claims_in_each_providers_shape() {
    let raw = |v: Value| v.as_object().unwrap().clone();
    let c = raw(
        serde_json::json!({"scp": "a b  c", "permissions": ["p:1", 7, "p:2"],
        "realm_access": {"roles": ["r"]}, "deep": {"x": "y"}}),
    );
    assert_eq!(scopes_at(&c, "scp"), ["a", "b", "c"]);
    assert_eq!(scopes_at(&c, "permissions"), ["p:1", "p:2"]);
    assert_eq!(scopes_at(&c, "realm_access.roles"), ["r"]);
    assert!(scopes_at(&c, "deep").is_empty());
    assert!(scopes_at(&c, "missing.path").is_empty());
    assert!(scopes_at(&c, "scp.more").is_empty());
}

#[test]
fn a_key_off_the_curve_is_left_out_and_the_others_kept() {
    let mut bad = ec_public("e1", &ec_key());
    bad.material = KeyMaterial::Ec {
        crv: "P-256".into(),
        x: b64::encode([1u8; 32]),
        y: b64::encode([2u8; 32]),
    };
    let (f, skipped) = Federation::new(
        &[issuer(vec![bad, rsa_public("r1", vec![Alg::RS256])])],
        None,
    );
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(f.verify(&rs256("r1", &claims()), NOW).is_ok());
}

/// A snapshot may carry 256 issuers with 16 keys each, rebuilt on every change: an
/// Ed25519 key must not cost the ~220 KiB table the control plane's own keys get
/// (that was ~900 MiB per VM at the bounds).
#[test]
fn federated_ed25519_keys_are_compact_and_verify() {
    use ed25519_dalek::Signer as _;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut i = issuer(
        (0..16)
            .map(|n| FederatedKey {
                kid: format!("ed{n}"),
                algorithms: vec![Alg::EdDSA],
                material: KeyMaterial::Okp {
                    crv: "Ed25519".into(),
                    x: b64::encode(sk.verifying_key().to_bytes()),
                },
            })
            .collect(),
    );
    i.algorithms = vec![Alg::EdDSA];
    let (f, skipped) = Federation::new(&[i], None);
    assert!(skipped.is_empty(), "{skipped:?}");
    let held: usize = f.issuers[ISS]
        .keys
        .values()
        .map(|k| match &k.prepared {
            Prepared::Ed25519(p) => p.heap_bytes(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert!(held < 16 * 1024, "{held} bytes of tables for 16 keys");
    let header = serde_json::json!({"alg": "EdDSA", "kid": "ed3"});
    let input = signing_input(&header, &claims());
    let token = format!(
        "{input}.{}",
        b64::encode(sk.sign(input.as_bytes()).to_bytes())
    );
    assert!(f.verify(&token, NOW).is_ok());
    let forged = format!("{input}.{}", b64::encode([1u8; 64]));
    assert_eq!(f.verify(&forged, NOW).unwrap_err(), Denial::BadSignature);
}

fn p384_public(kid: &str, key: &p384::ecdsa::SigningKey) -> FederatedKey {
    let point = key.verifying_key().to_encoded_point(false);
    FederatedKey {
        kid: kid.into(),
        algorithms: vec![Alg::ES384],
        material: KeyMaterial::Ec {
            crv: "P-384".into(),
            x: b64::encode(point.x().unwrap()),
            y: b64::encode(point.y().unwrap()),
        },
    }
}

/// ES384 (P-384, 96-byte r || s) verifies when the issuer lists it; a signature of
/// another length, DER, or the P-256 key named under ES384 does not.
#[test]
fn es384_is_verified_with_p384_keys_only() {
    use p384::ecdsa::signature::Signer as _;
    let k = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let ec = ec_key();
    let mut iss = issuer(vec![p384_public("p1", &k), ec_public("e1", &ec)]);
    iss.algorithms.push(Alg::ES384);
    let (f, skipped) = Federation::new(&[iss], None);
    assert!(skipped.is_empty(), "{skipped:?}");
    let sign = |kid: &str, alg: &str, der: bool, cut: usize| {
        let header = serde_json::json!({"alg": alg, "kid": kid});
        let input = signing_input(&header, &claims());
        let sig: p384::ecdsa::Signature = k.sign(input.as_bytes());
        let bytes = if der {
            sig.to_der().as_bytes().to_vec()
        } else {
            sig.to_bytes().to_vec()
        };
        format!("{input}.{}", b64::encode(&bytes[..bytes.len() - cut]))
    };
    let c = f.verify(&sign("p1", "ES384", false, 0), NOW).unwrap();
    assert_eq!(c.scopes, ["read", "write"]);
    assert_eq!(
        f.verify(&sign("p1", "ES384", false, 1), NOW).unwrap_err(),
        Denial::BadSignature
    );
    assert_eq!(
        f.verify(&sign("p1", "ES384", true, 0), NOW).unwrap_err(),
        Denial::BadSignature
    );
    assert_eq!(
        f.verify(&sign("p1", "ES256", false, 0), NOW).unwrap_err(),
        Denial::BadAlgorithm
    );
    assert_eq!(
        f.verify(&es256(&ec, "e1", "ES384", &claims()), NOW)
            .unwrap_err(),
        Denial::BadAlgorithm
    );
}

/// The token id: `jti` by default and required; another claim when the issuer names
/// one (Entra's `uti`); absent only with `id_optional`, and then nothing to revoke by id.
#[test]
fn the_token_id_follows_the_issuers_rule() {
    let without = |drop: &str, add: Option<(&str, Value)>| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(drop);
        if let Some((k, v)) = add {
            c[k] = v;
        }
        c
    };
    let f = federation(vec![rsa_public("r1", vec![Alg::RS256])]);
    assert_eq!(
        f.verify(&rs256("r1", &without("jti", None)), NOW)
            .unwrap_err(),
        Denial::BadClaim("jti")
    );
    assert_eq!(
        f.verify(&rs256("r1", &without("jti", Some(("jti", "".into())))), NOW)
            .unwrap_err(),
        Denial::BadClaim("jti")
    );
    let c = f.verify(&rs256("r1", &claims()), NOW).unwrap();
    assert_eq!(c.jti.as_deref(), Some("j1"));

    let mut entra = issuer(vec![rsa_public("r1", vec![Alg::RS256])]);
    entra.id_claim = Some("uti".into());
    let (f, _) = Federation::new(&[entra.clone()], None);
    let uti = without("jti", Some(("uti", "u-1".into())));
    assert_eq!(
        f.verify(&rs256("r1", &uti), NOW).unwrap().jti.as_deref(),
        Some("u-1")
    );
    // Its `jti`, if any, is not the id (it is not what the provider revokes by).
    let both = without("uti", None);
    assert_eq!(
        f.verify(&rs256("r1", &both), NOW).unwrap_err(),
        Denial::BadClaim("jti")
    );
    assert_eq!(
        f.verify(&rs256("r1", &without("jti", Some(("uti", 5.into())))), NOW)
            .unwrap_err(),
        Denial::BadClaim("jti")
    );

    entra.id_optional = true;
    let (f, _) = Federation::new(&[entra], None);
    let c = f.verify(&rs256("r1", &without("jti", None)), NOW).unwrap();
    assert_eq!(c.jti, None);
    // Optional is not "any type": a non-string id is still refused.
    assert_eq!(
        f.verify(
            &rs256("r1", &without("jti", Some(("uti", true.into())))),
            NOW
        )
        .unwrap_err(),
        Denial::BadClaim("jti")
    );
}

/// The issuer's longest token life (3,600 s here): a token without `iat` or living
/// longer is refused, by `verify` and by `recheck` (a cached verification); at the
/// bound it is admitted. Without it, a rule made at R could lapse before such a token
/// of the issuer expired.
#[test]
fn a_token_without_iat_or_living_longer_than_the_issuer_allows_is_refused() {
    let f = federation(vec![rsa_public("r1", vec![Alg::RS256])]);
    let with = |iat: Option<i64>, exp: i64| {
        let mut c = claims();
        c["exp"] = exp.into();
        match iat {
            Some(iat) => c["iat"] = iat.into(),
            None => drop(c.as_object_mut().unwrap().remove("iat")),
        }
        rs256("r1", &c)
    };
    assert_eq!(
        f.verify(&with(None, NOW + 60), NOW).unwrap_err(),
        Denial::BadClaim("iat")
    );
    assert_eq!(
        f.verify(&with(Some(NOW), NOW + 3_601), NOW).unwrap_err(),
        Denial::TokenLifetime
    );
    // Backdating `iat` does not help: `exp` is what is bounded.
    assert_eq!(
        f.verify(&with(Some(NOW - 10_000), NOW + 60), NOW)
            .unwrap_err(),
        Denial::TokenLifetime
    );
    let c = f.verify(&with(Some(NOW), NOW + 3_600), NOW).unwrap();
    assert_eq!(f.recheck(&c, NOW + 10), Ok(()));
    // A verification cached under a longer lifetime is refused once the issuer's
    // bound shrinks.
    let mut short = issuer(vec![rsa_public("r1", vec![Alg::RS256])]);
    short.max_token_lifetime_seconds = 60;
    let (f, _) = Federation::new(&[short], None);
    assert_eq!(f.recheck(&c, NOW + 10), Err(Denial::TokenLifetime));
    let mut no_iat = c.clone();
    no_iat.iat = None;
    assert_eq!(f.recheck(&no_iat, NOW), Err(Denial::BadClaim("iat")));
}

/// Past `p256_comb::MAX_TABLES` keys, P-256 keys verify without a table, the same way.
#[test]
fn p256_keys_beyond_the_table_budget_still_verify() {
    let keys: Vec<_> = (0..crate::p256_comb::MAX_TABLES + 2)
        .map(|_| ec_key())
        .collect();
    let public = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ec_public(&format!("e{i}"), k))
        .collect();
    let f = federation(public);
    for (i, k) in keys.iter().enumerate() {
        let kid = format!("e{i}");
        assert!(
            f.verify(&es256(k, &kid, "ES256", &claims()), NOW).is_ok(),
            "{kid}"
        );
        let other = &keys[(i + 1) % keys.len()];
        assert_eq!(
            f.verify(&es256(other, &kid, "ES256", &claims()), NOW)
                .unwrap_err(),
            Denial::BadSignature,
            "{kid}"
        );
    }
}

/// `unverified_iss` reads only `iss`: other claims of any shape do not matter, a
/// missing or non-string `iss` gives none.
#[test]
fn the_unverified_iss_is_read_alone() {
    let token = |payload: &str| format!("e30.{}.sig", b64::encode(payload));
    assert_eq!(
        unverified_iss(&token(
            r#"{"aud":[1,{"x":null}],"iss":"https://idp.test","exp":1.5}"#
        )),
        Some("https://idp.test".into())
    );
    assert_eq!(unverified_iss(&token(r#"{"iss":5}"#)), None);
    assert_eq!(unverified_iss(&token(r#"{"sub":"a"}"#)), None);
    assert_eq!(unverified_iss(&token("not json")), None);
    assert_eq!(unverified_iss("no-dots"), None);
}
