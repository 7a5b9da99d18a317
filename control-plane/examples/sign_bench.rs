//! Signing one access token: the control plane's path (`tokens::sign_jws`, `ed25519-dalek`
//! with a cached key) against `jsonwebtoken::encode` with EdDSA, same claims, in
//! interleaved rounds so both see the same machine load.
//!
//!     cargo run --release -p meshauth-control-plane --example sign_bench [ROUNDS] [PER_ROUND]
//!
//! Prints µs per token for each round and the range. The figures in docs/benchmarks.md
//! come from this program.
// A measuring program: any failure should stop it, loudly.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use meshauth_cp::tokens::sign_jws;
use meshauth_wire::AccessClaims;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>());
    let rounds = args.next().and_then(Result::ok).unwrap_or(6);
    let per_round = args.next().and_then(Result::ok).unwrap_or(5_000);

    let seed = [7u8; 32];
    let sk = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 of an Ed25519 seed (RFC 8410): the fixed prefix, then the 32 bytes.
    let mut der = pkcs8_prefix();
    der.extend_from_slice(&seed);
    let jwt_key = EncodingKey::from_ed_der(&der);
    let kid = "bench-kid";
    let claims = AccessClaims {
        iss: "https://meshauth.example".into(),
        sub: "svc-orders".into(),
        aud: vec!["api".into()],
        exp: 1_900_000_000,
        iat: 1_800_000_000,
        nbf: 1_800_000_000,
        jti: "3q2-7wAAAAAAAAAAAAAAAA".into(),
        scope: "orders:read".into(),
        client_id: "svc-orders".into(),
        sid: None,
        ext: None,
        act: None,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    header.typ = Some(meshauth_wire::TYP_ACCESS_TOKEN.into());

    // Both tokens verify with the same public key and carry the same claims.
    let ours = sign_jws(kid, &sk, &serde_json::to_vec(&claims).unwrap());
    let theirs = jsonwebtoken::encode(&header, &claims, &jwt_key).unwrap();
    let public = DecodingKey::from_ed_der(sk.verifying_key().as_bytes());
    let mut check = Validation::new(Algorithm::EdDSA);
    check.set_audience(&["api"]);
    for token in [&ours, &theirs] {
        let got = jsonwebtoken::decode::<AccessClaims>(token, &public, &check).unwrap();
        assert_eq!(got.claims, claims);
    }

    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            let payload = serde_json::to_vec(&claims).unwrap();
            std::hint::black_box(sign_jws(kid, &sk, &payload));
        }
        a.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
        let t = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(jsonwebtoken::encode(&header, &claims, &jwt_key).unwrap());
        }
        b.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        println!("round {i}: sign_jws {x:.1} µs/token, jsonwebtoken {y:.1} µs/token");
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.1}–{hi:.1}")
    };
    println!(
        "sign_jws (ed25519-dalek, cached key): {} µs/token; jsonwebtoken EdDSA: {} µs/token",
        range(&a),
        range(&b)
    );
}

fn pkcs8_prefix() -> Vec<u8> {
    vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
}
