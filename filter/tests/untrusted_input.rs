#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property-based fuzzing of everything the filter parses from the outside :
//! `Authorization` values, plugin configurations and sync payloads. Random and mutated
//! inputs must give an error, never a panic (a panic in Envoy kills the worker's VM).

use meshauth_filter::config::Config;
use meshauth_filter::engine::{Engine, Request, Verdict};
use meshauth_filter::jwt;
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::SignedSnapshot;
use proptest::prelude::*;

const VALID_CONFIG: &str = r#"{
  "issuer": "https://i", "audiences": ["api"], "clock_skew_seconds": 30,
  "forward_claims": [{"claim": "sub", "header": "x-sub"}],
  "routes": [{"name": "p", "path_prefix": "/p/", "auth": "anonymous"},
             {"name": "a", "path_prefix": "/a/", "scopes_all": ["admin"], "methods": ["GET"]}],
  "rate_limits": {"capacity": 64, "policies": [
    {"name": "u", "key": ["claim:sub", "header:x-t"], "rate": 5, "burst": 2,
     "match": {"path_prefix": "/a/"}, "overrides": {"x|y": {"rate": 9, "burst": 9}}}]}
}"#;

/// Flips, inserts or deletes bytes of a valid input.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(at, kind, byte) in edits {
        if out.is_empty() {
            out.push(byte);
            continue;
        }
        let i = at % out.len();
        match kind % 3 {
            0 => out[i] = byte,
            1 => out.insert(i, byte),
            _ => {
                out.remove(i);
            }
        }
    }
    out
}

/// A signed (with a dummy signature) snapshot carrying a key, a Bloom filter, a rule and
/// a policy: every part of the payload parser has something to read.
fn sealed_snapshot() -> Vec<u8> {
    let mut bloom = meshauth_wire::bloom::Bloom::with_capacity(16, 0.01, 7);
    bloom.insert("j1");
    let snap = meshauth_wire::sync::Snapshot {
        epoch: "e".into(),
        version: 3,
        issued_at: 1,
        jwks: meshauth_wire::JwkSet {
            keys: vec![meshauth_wire::Jwk::from_ed25519(&[9u8; 32])],
        },
        revoked_jti: bloom,
        rules: vec![meshauth_wire::sync::RevocationRule {
            claim: meshauth_wire::sync::RuleClaim::Sub,
            value: "m".into(),
            not_before: 5,
            issuer: None,
        }],
        limits: serde_json::from_str(r#"[{"name":"u","key":["claim:sub"],"rate":5,"burst":2}]"#)
            .unwrap(),
        issuers: vec![],
    };
    serde_json::to_vec(&SignedSnapshot::seal(&snap, |_| [7u8; 64])).unwrap()
}

fn engine() -> Engine {
    Engine::new(Config::from_json(VALID_CONFIG.as_bytes()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_authorization_value_is_refused_without_panic(value in ".{0,600}") {
        let _ = jwt::parse(&value);
        let _ = jwt::bearer(&value);
        let mut e = engine();
        let auth = format!("Bearer {value}");
        let out = e.check(&Request { method: "GET", path: "/x", authorization: Some(&auth), repeated_authorization: false }, 1_800_000_000);
        prop_assert!(matches!(out.verdict, Verdict::Deny(_)));
    }

    #[test]
    fn token_shaped_garbage_is_refused(parts in proptest::collection::vec("[A-Za-z0-9_=+/.-]{0,120}", 1..5)) {
        let token = parts.join(".");
        let mut e = engine();
        let auth = format!("Bearer {token}");
        let out = e.check(&Request { method: "GET", path: "/a/x?y=1", authorization: Some(&auth), repeated_authorization: false }, 1_800_000_000);
        prop_assert!(matches!(out.verdict, Verdict::Deny(_)));
    }

    #[test]
    fn random_bytes_are_not_a_config(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Config::from_json(&bytes);
    }

    #[test]
    fn mutated_configs_load_or_name_a_field(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        let bytes = mutate(VALID_CONFIG.as_bytes(), &edits);
        if let Err(e) = Config::from_json(&bytes) {
            prop_assert!(!e.field.is_empty() && !e.problem.is_empty());
        }
    }

    #[test]
    fn random_and_mutated_snapshots_do_not_open(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        prop_assert!(SignedSnapshot::open(&bytes, |_, _| true).is_err());
        // A well-formed envelope and an accepting verifier, so mutations reach the
        // payload parser (base64, JSON, Bloom and policy validation) and not only the
        // envelope's.
        let base = sealed_snapshot();
        prop_assert!(SignedSnapshot::open_message(&base, |_, _| true).is_ok());
        let _ = SignedSnapshot::open_message(&mutate(&base, &edits), |_, _| true);
        let envelope: serde_json::Value = serde_json::from_slice(&base).unwrap();
        let payload = meshauth_wire::b64::decode(envelope["payload"].as_str().unwrap()).unwrap();
        let mutated = serde_json::json!({
            "payload": meshauth_wire::b64::encode(mutate(&payload, &edits)),
            "signature": envelope["signature"],
        });
        let _ = SignedSnapshot::open_message(mutated.to_string().as_bytes(), |_, _| true);
    }

    #[test]
    fn any_json_is_a_valid_policy_or_an_error(json in "\\{(\"[a-z_]{1,12}\":(-?[0-9]{1,12}|\"[^\"]{0,20}\"|\\[\\]|\\{\\}|null|true),?){0,6}\\}") {
        if let Ok(p) = serde_json::from_str::<LimitPolicy>(&json) {
            let _ = p.validate();
        }
    }
}
