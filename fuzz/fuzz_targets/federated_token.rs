//! Federated issuers' tokens (`Federation::verify`): header, claims and a signature of
//! each algorithm's exact length, so mutations reach the RSA arithmetic (rsa_verify.rs)
//! and the P-256, P-384 and Ed25519 verifiers. The keys are public values only (curve
//! base points, an odd 2048-bit number): no input may ever verify, nor panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::federated::Federation;
use meshauth_fuzz::{split, NOW};
use meshauth_wire::b64;
use meshauth_wire::federation::FederatedIssuer;
use std::sync::OnceLock;

const ISS: &str = "https://idp.fuzz";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn federation() -> &'static Federation {
    static F: OnceLock<Federation> = OnceLock::new();
    F.get_or_init(|| {
        let issuer: FederatedIssuer = serde_json::from_value(serde_json::json!({
            "issuer": ISS,
            "audiences": ["api"],
            "algorithms": ["RS256", "RS512", "PS256", "PS384", "ES256", "ES384", "EdDSA"],
            "typ": "at+jwt",
            "required_claims": {"tenant": ["a", "b"]},
            "clock_skew_seconds": 30,
            "scope_claim": "realm_access.roles",
            "keys": [
                {"kid": "r", "algorithms": ["RS256", "RS512", "PS256", "PS384"],
                 "material": {"kty": "RSA", "n": b64::encode([0xd3u8; 256]), "e": "AQAB"}},
                {"kid": "e", "algorithms": ["ES256"], "material": {"kty": "EC", "crv": "P-256",
                 "x": b64::encode(hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")),
                 "y": b64::encode(hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"))}},
                {"kid": "p", "algorithms": ["ES384"], "material": {"kty": "EC", "crv": "P-384",
                 "x": b64::encode(hex("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7")),
                 "y": b64::encode(hex("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f"))}},
                {"kid": "d", "algorithms": ["EdDSA"], "material": {"kty": "OKP", "crv": "Ed25519",
                 "x": b64::encode(hex("5866666666666666666666666666666666666666666666666666666666666666"))}}
            ]
        }))
        .expect("fixture issuer");
        let (f, skipped) = Federation::new(&[issuer], Some("https://cp.fuzz"));
        assert!(skipped.is_empty(), "fixture keys refused: {skipped:?}");
        f
    })
}

/// (alg, kid, signature length) — matching and mismatched pairs.
const SHAPES: [(&str, &str, usize); 10] = [
    ("RS256", "r", 256),
    ("RS512", "r", 256),
    ("PS256", "r", 256),
    ("PS384", "r", 256),
    ("ES256", "e", 64),
    ("ES384", "p", 96),
    ("EdDSA", "d", 64),
    ("ES256", "r", 64),
    ("RS256", "e", 256),
    ("HS256", "r", 32),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (payload, sig) = split(rest);
    let (alg, kid, len) = SHAPES[usize::from(mode) % SHAPES.len()];
    let header = if mode & 0x80 == 0 {
        serde_json::json!({"alg": alg, "kid": kid, "typ": "at+jwt"}).to_string().into_bytes()
    } else {
        // The raw header from the input, the payload after a second NUL.
        payload.to_vec()
    };
    let (payload, sig) = if mode & 0x80 == 0 { (payload, sig) } else { split(sig) };
    let mut sig = sig.to_vec();
    if mode & 0x40 == 0 {
        sig.resize(len, 0);
    }
    let token = format!("{}.{}.{}", b64::encode(&header), b64::encode(payload), b64::encode(&sig));
    let f = federation();
    let first = f.verify(&token, NOW);
    assert!(first.is_err(), "a token verified under a key nobody holds: {token}");
    assert_eq!(first, f.verify(&token, NOW), "verification is deterministic");
});
