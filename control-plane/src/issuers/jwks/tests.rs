#![allow(clippy::unwrap_used)]
use super::*;
use serde_json::json;

fn b(len: usize, first: u8) -> String {
    let mut v = vec![0xa5u8; len];
    v[0] = first;
    b64::encode(&v)
}

fn rsa(kid: &str, bytes: usize) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b(bytes, 0xc1), "e": "AQAB"})
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// P-256's base point: a point on the curve (other lengths and curves get filler).
fn ec(kid: &str, crv: &str, len: usize) -> Value {
    let (x, y) = if crv == "P-256" && len == 32 {
        (
            b64::encode(hex(
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            )),
            b64::encode(hex(
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
            )),
        )
    } else {
        (b(len, 1), b(len, 2))
    };
    json!({"kty": "EC", "kid": kid, "crv": crv, "x": x, "y": y})
}

/// Ed25519's base point, encoded: a key of the prime-order subgroup.
fn ed25519_x() -> String {
    let mut x = [0x66u8; 32];
    x[0] = 0x58;
    b64::encode(x)
}

fn set(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

const ALL: &[Alg] = &Alg::ALL;

#[test]
fn good_keys_of_each_family_are_kept_with_the_algorithms_they_serve() {
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": ed25519_x()});
    let keys = parse_jwks(
        &set(&[
            rsa("r", 256),
            ec("e", "P-256", 32),
            ec("f", "P-384", 48),
            okp,
        ]),
        ALL,
    )
    .unwrap();
    let algs: Vec<(&str, Vec<Alg>)> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.algorithms.clone()))
        .collect();
    assert_eq!(
        algs,
        [
            ("e", vec![Alg::ES256]),
            ("ed", vec![Alg::EdDSA]),
            ("f", vec![Alg::ES384]),
            (
                "r",
                vec![
                    Alg::RS256,
                    Alg::RS384,
                    Alg::RS512,
                    Alg::PS256,
                    Alg::PS384,
                    Alg::PS512
                ]
            ),
        ]
    );
    // A key's own alg narrows it; the issuer's list narrows it too.
    let mut one = rsa("r", 256);
    one["alg"] = json!("PS384");
    let keys = parse_jwks(&set(&[one]), ALL).unwrap();
    assert_eq!(keys[0].algorithms, [Alg::PS384]);
    let keys = parse_jwks(&set(&[rsa("r", 256)]), &[Alg::RS256, Alg::ES256]).unwrap();
    assert_eq!(keys[0].algorithms, [Alg::RS256]);
}

#[test]
fn unusable_entries_are_skipped_and_a_set_of_only_those_is_refused() {
    let mut weak_alg = ec("p256-as-384", "P-256", 32);
    weak_alg["alg"] = json!("ES384");
    let mut enc = rsa("enc", 256);
    enc["use"] = json!("enc");
    let mut private = rsa("priv", 256);
    private["d"] = json!(b(256, 1));
    let mut no_kid = rsa("x", 256);
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut even_e = rsa("even", 256);
    even_e["e"] = json!(b64::encode([1, 0, 0]));
    let hostile = [
        (rsa("short", 255), "RSA modulus of 2040 bits"),
        (even_e, "exponent must be odd"),
        (ec("p521", "P-521", 66), "EC curve \"P-521\""),
        (ec("short-ec", "P-256", 31), "must be 32 bytes"),
        (weak_alg, "serves none"),
        (enc, "not a signature key"),
        (private, "private or symmetric"),
        (
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            "private or symmetric",
        ),
        (
            json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": b(32, 1)}),
            "must be Ed25519",
        ),
        (
            json!({"kty": "RSA", "kid": "bad-b64", "n": "***", "e": "AQAB"}),
            "must be base64url",
        ),
        (no_kid, "without kid"),
        (
            json!({"kty": "RSA", "kid": "sp ace", "n": b(256, 0xc1), "e": "AQAB"}),
            "visible ASCII",
        ),
    ];
    for (entry, says) in hostile {
        let e = parse_jwks(&set(std::slice::from_ref(&entry)), ALL).unwrap_err();
        assert!(
            matches!(&e, JwksError::Empty(w) if w.contains(says)),
            "{entry}: {e}"
        );
        // Beside a good key it is only skipped.
        let keys = parse_jwks(&set(&[entry, rsa("good", 256)]), ALL).unwrap();
        assert_eq!(keys.len(), 1);
    }
    // ES keys are not kept for an issuer allowing only RSA.
    assert!(parse_jwks(&set(&[ec("e", "P-256", 32)]), &[Alg::RS256]).is_err());
    // Leading zero bytes do not make a short modulus long.
    let mut padded = vec![0u8; 8];
    padded.extend(vec![0xc1; 200]);
    let short = json!({"kty": "RSA", "kid": "pad", "n": b64::encode(&padded), "e": "AQAB"});
    assert!(parse_jwks(&set(&[short]), ALL).is_err());
}

#[test]
fn garbage_empty_oversized_and_ambiguous_sets_are_refused() {
    assert!(matches!(
        parse_jwks(b"<html>", ALL),
        Err(JwksError::Malformed(_))
    ));
    assert!(matches!(
        parse_jwks(b"{\"keys\": 1}", ALL),
        Err(JwksError::Malformed(_))
    ));
    assert!(matches!(
        parse_jwks(b"{\"keys\": [1]}", ALL),
        Err(JwksError::Malformed(_))
    ));
    assert!(matches!(
        parse_jwks(b"{\"keys\": []}", ALL),
        Err(JwksError::Empty(_))
    ));
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(parse_jwks(&big, ALL), Err(JwksError::TooLarge));
    let twice = set(&[rsa("k", 256), ec("k", "P-256", 32)]);
    assert_eq!(
        parse_jwks(&twice, ALL),
        Err(JwksError::DuplicateKid("k".into()))
    );
    let many: Vec<Value> = (0..=MAX_KEYS)
        .map(|i| ec(&format!("k{i}"), "P-256", 32))
        .collect();
    assert_eq!(parse_jwks(&set(&many), ALL), Err(JwksError::TooManyKeys));
    let entries: Vec<Value> = (0..=MAX_ENTRIES).map(|i| json!({"kid": i})).collect();
    assert!(matches!(
        parse_jwks(&set(&entries), ALL),
        Err(JwksError::Malformed(_))
    ));
}

#[test]
fn discovery_must_name_our_issuer_and_a_fetchable_jwks_uri() {
    let strict = UrlPolicy { allow_http: false };
    let doc = |iss: &str, jwks: &str| {
        serde_json::to_vec(&json!({"issuer": iss, "jwks_uri": jwks})).unwrap()
    };
    let ok = parse_discovery(
        &doc("https://idp", "https://idp/certs"),
        "https://idp",
        &strict,
    )
    .unwrap();
    assert_eq!(ok.as_str(), "https://idp/certs");
    for (body, says) in [
        (
            doc("https://idp/", "https://idp/certs"),
            "not \"https://idp\"",
        ),
        (
            doc("https://evil", "https://idp/certs"),
            "not \"https://idp\"",
        ),
        (doc("https://idp", "http://idp/certs"), "https required"),
        (doc("https://idp", "https://u:p@idp/certs"), "no user name"),
        (b"{\"issuer\": \"https://idp\"}".to_vec(), "no jwks_uri"),
        (b"[]".to_vec(), "no issuer"),
        (b"nope".to_vec(), "not JSON"),
    ] {
        let e = parse_discovery(&body, "https://idp", &strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn cache_lifetime_follows_max_age_within_the_bounds() {
    let (floor, ceiling) = (Duration::from_secs(60), Duration::from_secs(3600));
    let life = |cc: Option<&str>| cache_lifetime(cc, floor, ceiling).as_secs();
    assert_eq!(life(Some("public, max-age=600")), 600);
    assert_eq!(life(Some("max-age=5")), 60, "floor");
    assert_eq!(life(Some("max-age=999999999999")), 3600, "ceiling");
    assert_eq!(life(Some("Max-Age=\"120\"")), 120);
    assert_eq!(life(Some("max-age=600, no-cache")), 60);
    assert_eq!(life(Some("no-store")), 60);
    assert_eq!(life(Some("max-age=-1")), 60);
    assert_eq!(life(None), 60);
}

/// Keys every filter would leave out (a P-256 point off the curve, an Ed25519 key of
/// small order or off the curve) are skipped here, so a set of nothing else is empty and the last good keys stay.
#[test]
fn keys_the_filters_cannot_use_never_replace_the_last_good_set() {
    let mut off_curve = ec("p", "P-256", 32);
    off_curve["y"] = b(32, 2).into();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let small = json!({"kty": "OKP", "crv": "Ed25519", "kid": "small", "x": b64::encode(identity)});
    let mut two = [0u8; 32];
    two[0] = 2;
    let not_a_point = json!({"kty": "OKP", "crv": "Ed25519", "kid": "nap", "x": b64::encode(two)});
    for bad in [off_curve, small, not_a_point] {
        let kid = bad["kid"].as_str().unwrap().to_string();
        assert!(
            matches!(parse_jwks(&set(&[bad]), ALL), Err(JwksError::Empty(_))),
            "{kid} was taken"
        );
    }
    // The good ones still pass.
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": ed25519_x()});
    assert_eq!(
        parse_jwks(&set(&[ec("e", "P-256", 32), okp]), ALL)
            .unwrap()
            .len(),
        2
    );
}

/// The same keys in another order are the same set (no new snapshot version).
#[test]
fn the_order_of_a_set_does_not_change_it() {
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": ed25519_x()});
    let one = parse_jwks(
        &set(&[rsa("r", 256), ec("e", "P-256", 32), okp.clone()]),
        ALL,
    );
    let other = parse_jwks(&set(&[okp, ec("e", "P-256", 32), rsa("r", 256)]), ALL);
    assert_eq!(one.unwrap(), other.unwrap());
}
