//! The admin API's request bodies, parsed as the handlers parse them (`serde_json`
//! into the `api` types, the `PUT /admin/limits/{name}` parser) and validated with the
//! checks the handlers and services apply before touching the store.
//!
//! Input: `ROUTE\nJSON`, ROUTE one of `clients`, `tokens`, `revocations` or
//! `limits NAME`; any other first line tries the body on all four.
//!
//! Invariants: nothing panics; a refused body is an error; an accepted body serialized
//! again (as the CLI sends it) parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_cp::api::{IssueToken, NewClient, NewRevocation, RevocationKind, Scope};
use meshauth_cp::clients::{validate_name, validate_scopes};
use meshauth_cp::http::policy_named;
use meshauth_cp::revocation::Revocation;
use meshauth_wire::sync::RuleClaim;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const NOW: i64 = 1_800_000_000;
const MAX_TTL: i64 = 3600;

/// Parses as `ApiJson` does; what parses serializes back to an equal body.
fn parse<T: DeserializeOwned + Serialize>(body: &[u8]) -> Option<T> {
    let t: T = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_vec(&t).expect("an accepted body serializes");
    let again: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(
        serde_json::to_value(&again).expect("serializes"),
        serde_json::to_value(&t).expect("serializes")
    );
    Some(t)
}

fn clients(body: &[u8]) {
    let Some(c) = parse::<NewClient>(body) else {
        return;
    };
    let _ = validate_name("name", &c.name).and_then(|()| validate_scopes(&c.scopes));
}

fn tokens(body: &[u8]) {
    let Some(t) = parse::<IssueToken>(body) else {
        return;
    };
    let text = matches!(t.scope, Some(Scope::Text(_)));
    let scope = t.scope.map(|s| s.into_list()).unwrap_or_default();
    // A space-separated scope splits into words; a list is kept for validate_scopes.
    assert!(!text || scope.iter().all(|s| !s.is_empty() && !s.contains(' ')));
    // Text TTLs go through humantime: any text is a number of seconds or an error.
    let _ = t.ttl.map(|t| t.seconds()).transpose();
    let _ = validate_name("sub", &t.sub).and_then(|()| validate_scopes(&scope));
    if let Some(aud) = &t.aud {
        for a in aud {
            let _ = validate_name("aud", a);
        }
    }
}

fn revocations(body: &[u8]) {
    let Some(r) = parse::<NewRevocation>(body) else {
        return;
    };
    if validate_name("value", &r.value).is_err() {
        return;
    }
    let claim = match r.kind {
        RevocationKind::Token => return,
        RevocationKind::Jti => None,
        RevocationKind::Sub => Some(RuleClaim::Sub),
        RevocationKind::Sid => Some(RuleClaim::Sid),
        RevocationKind::ClientId => Some(RuleClaim::ClientId),
    };
    match claim {
        Some(c) => {
            let _ = Revocation::rule_from_now(c, r.value, NOW);
        }
        None => match Revocation::jti_until(r.value, r.exp, NOW, MAX_TTL) {
            Ok(Revocation::Jti { exp, .. }) => assert!((0..=NOW + MAX_TTL).contains(&exp)),
            Ok(other) => panic!("a jti revocation became {other:?}"),
            Err(_) => assert!(r.exp.is_some(), "the default exp is refused"),
        },
    }
}

fn limits(name: &str, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok(policy) = policy_named(name, value) else {
        return;
    };
    assert_eq!(policy.name, name, "the path names the policy");
    if policy.validate().is_ok() {
        let text = serde_json::to_value(&policy).expect("serializes");
        let again = policy_named(name, text).expect("a valid policy parses back");
        assert_eq!(again, policy);
    }
}

fuzz_target!(|data: &[u8]| {
    let (route, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    match route {
        b"clients" => clients(body),
        b"tokens" => tokens(body),
        b"revocations" => revocations(body),
        r if r.starts_with(b"limits ") => limits(&String::from_utf8_lossy(&r[7..]), body),
        _ => {
            clients(body);
            tokens(body);
            revocations(body);
            limits("p", body);
        }
    }
});
