#![allow(clippy::unwrap_used)]
//! `TrustedIssuer::new`: every hostile field refused with its name, a good one kept.

use super::model::*;
use super::url::UrlPolicy;

const STRICT: UrlPolicy = UrlPolicy { allow_http: false };
const OWN: Option<&str> = Some("https://cp.example");

pub fn spec() -> IssuerSpec {
    serde_json::from_value(serde_json::json!({
        "name": "keycloak",
        "discovery": "https://kc.example/realms/a/.well-known/openid-configuration",
        "audiences": ["api"],
        "algorithms": ["RS256", "ES256"],
    }))
    .unwrap()
}

fn refused(change: impl FnOnce(&mut IssuerSpec), says: &str) {
    let mut s = spec();
    change(&mut s);
    let e = TrustedIssuer::new(s.clone(), &STRICT, OWN).unwrap_err();
    assert!(e.contains(says), "{s:?}: {e}");
}

#[test]
fn a_good_spec_derives_its_issuer_from_discovery_and_round_trips() {
    let t = TrustedIssuer::new(spec(), &STRICT, OWN).unwrap();
    assert_eq!(t.issuer(), "https://kc.example/realms/a");
    assert_eq!(t.algorithms(), [Alg::RS256, Alg::ES256]);
    assert_eq!(t.clock_skew_seconds(), DEFAULT_SKEW_SECONDS);
    assert_eq!(t.scope_claim().segments(), ["scope"]);
    // Stored and read back: the same record (read back through the validation).
    let text = serde_json::to_string(&t).unwrap();
    let back: TrustedIssuer = serde_json::from_str(&text).unwrap();
    assert_eq!(back, t);
    // A stored record that breaks a rule does not load.
    let broken = text.replace("\"RS256\"", "\"HS256\"");
    assert!(serde_json::from_str::<TrustedIssuer>(&broken).is_err());
}

/// The longest token life: a day unless given (a record stored before the setting
/// reads as a day too), 60 s to a week, sent to filters as set.
#[test]
fn the_token_lifetime_defaults_to_a_day_and_is_bounded() {
    let t = TrustedIssuer::new(spec(), &STRICT, OWN).unwrap();
    assert_eq!(t.max_token_lifetime_seconds(), 86_400);
    let mut old = serde_json::to_value(&t).unwrap();
    old.as_object_mut()
        .unwrap()
        .remove("max_token_lifetime_seconds")
        .unwrap();
    let back: TrustedIssuer = serde_json::from_value(old).unwrap();
    assert_eq!(back.max_token_lifetime_seconds(), 86_400);
    for bad in [
        0,
        MIN_TOKEN_LIFETIME_SECONDS - 1,
        MAX_TOKEN_LIFETIME_SECONDS + 1,
        u64::MAX,
    ] {
        refused(
            |s| s.max_token_lifetime_seconds = bad,
            "max_token_lifetime_seconds:",
        );
    }
    for ok in [MIN_TOKEN_LIFETIME_SECONDS, MAX_TOKEN_LIFETIME_SECONDS] {
        let mut s = spec();
        s.max_token_lifetime_seconds = ok;
        let t = TrustedIssuer::new(s, &STRICT, OWN).unwrap();
        assert_eq!(t.max_token_lifetime_seconds(), ok);
        assert_eq!(t.spec().max_token_lifetime_seconds, ok);
        assert_eq!(t.to_wire(Vec::new()).max_token_lifetime_seconds, ok);
    }
}

#[test]
fn hostile_specs_are_refused_naming_the_field() {
    refused(|s| s.name = "Key Cloak".into(), "name:");
    refused(|s| s.name = "a".repeat(65), "name:");
    refused(|s| s.name = String::new(), "name:");
    refused(|s| s.name = "self".into(), "reserved");
    refused(
        |s| s.jwks_uri = Some("https://kc.example/certs".into()),
        "either discovery or jwks_uri",
    );
    refused(|s| s.discovery = None, "either discovery or jwks_uri");
    refused(
        |s| s.discovery = Some("https://kc.example/meta".into()),
        "issuer: required",
    );
    refused(
        |s| s.discovery = Some("http://kc.example/.well-known/openid-configuration".into()),
        "https required",
    );
    refused(
        |s| s.discovery = Some("https://u:p@kc.example/.well-known/openid-configuration".into()),
        "no user name",
    );
    refused(
        |s| s.issuer = Some("https://cp.example".into()),
        "own issuer",
    );
    refused(
        |s| s.issuer = Some("https://cp.example/".into()),
        "own issuer",
    );
    refused(|s| s.issuer = Some("has space".into()), "issuer: must be");
    refused(
        |s| s.issuer = Some("x".repeat(MAX_ISSUER_LEN + 1)),
        "issuer: must be",
    );
    refused(|s| s.audiences.clear(), "audiences: list 1");
    refused(
        |s| s.audiences = vec!["a".into(); MAX_AUDIENCES + 1],
        "audiences: list 1",
    );
    refused(
        |s| s.audiences = vec!["a".into(), "a".into()],
        "listed twice",
    );
    refused(|s| s.audiences = vec![String::new()], "audiences:");
    refused(|s| s.algorithms.clear(), "algorithms: list at least one");
    refused(
        |s| s.algorithms = vec!["HS256".into()],
        "\"HS256\" is not one of",
    );
    refused(|s| s.algorithms = vec!["none".into()], "is not one of");
    refused(|s| s.algorithms = vec!["rs256".into()], "is not one of");
    refused(|s| s.algorithms = vec!["ES512".into()], "is not one of");
    refused(
        |s| s.algorithms = vec!["RS256".into(), "RS256".into()],
        "listed twice",
    );
    refused(|s| s.typ = Some("at+jwt\"".into()), "typ:");
    refused(
        |s| s.clock_skew_seconds = MAX_SKEW_SECONDS + 1,
        "clock_skew_seconds",
    );
    refused(|s| s.scope_claim = "a..b".into(), "scope_claim");
    refused(|s| s.scope_claim = "a.b.c.d.e".into(), "scope_claim");
    refused(
        |s| s.scope_claim = "x".repeat(MAX_CLAIM_PATH_LEN + 1),
        "scope_claim",
    );
    refused(|s| s.scope_claim = String::new(), "scope_claim");
    refused(
        |s| {
            s.required_claims.insert("aud".into(), vec!["x".into()]);
        },
        "required_claims.aud",
    );
    refused(
        |s| {
            s.required_claims.insert("tenant".into(), vec![]);
        },
        "required_claims.tenant",
    );
    refused(
        |s| {
            s.required_claims.insert("t".into(), vec!["a\nb".into()]);
        },
        "required_claims.t",
    );
    refused(
        |s| {
            for i in 0..=MAX_REQUIRED_CLAIMS {
                s.required_claims.insert(format!("c{i}"), vec!["v".into()]);
            }
        },
        "required_claims: at most",
    );
    for header in [
        "authorization",
        "Host",
        "x user",
        "x-user:",
        "te",
        "x-request-id",
        "",
        // Outside the prefix filters always remove: a client could send it.
        "x-user",
        "x-meshauth-",
        "x-meshauth-version",
        "x-meshauth-head",
        "x-meshauth-user_email",
    ] {
        refused(
            |s| {
                s.forward_claims.insert("sub".into(), header.into());
            },
            "forward_claims.sub",
        );
    }
    refused(
        |s| {
            s.forward_claims
                .insert("sub".into(), "x-meshauth-user".into());
            s.forward_claims
                .insert("email".into(), "x-meshauth-user".into());
        },
        "already used",
    );
}

#[test]
fn explicit_sources_and_claim_paths_are_kept() {
    let mut s = spec();
    s.discovery = None;
    s.jwks_uri = Some("https://tenant.auth0.example/.well-known/jwks.json".into());
    s.issuer = Some("https://tenant.auth0.example/".into());
    s.scope_claim = "realm_access.roles".into();
    s.typ = Some("at+jwt".into());
    s.clock_skew_seconds = MAX_SKEW_SECONDS;
    s.forward_claims
        .insert("email".into(), "x-meshauth-user-email".into());
    s.required_claims
        .insert("tenant".into(), vec!["acme".into()]);
    let t = TrustedIssuer::new(s.clone(), &STRICT, OWN).unwrap();
    assert!(matches!(t.source(), KeySource::Jwks(_)));
    assert_eq!(t.scope_claim().segments(), ["realm_access", "roles"]);
    assert_eq!(t.forward_claims()[0].0.segments(), ["email"]);
    assert_eq!(t.spec(), s, "the spec round-trips");
}

#[test]
fn exchange_is_off_unless_a_policy_within_bounds_is_given() {
    let t = TrustedIssuer::new(spec(), &STRICT, OWN).unwrap();
    assert_eq!(t.exchange(), None);
    let policy = |v: serde_json::Value| -> ExchangePolicy { serde_json::from_value(v).unwrap() };
    let mut s = spec();
    s.exchange = Some(policy(
        serde_json::json!({"audiences": ["api"], "scopes": ["read"]}),
    ));
    let t = TrustedIssuer::new(s, &STRICT, OWN).unwrap();
    assert_eq!(t.exchange().unwrap().ttl_seconds, DEFAULT_EXCHANGE_TTL);
    let text = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<TrustedIssuer>(&text).unwrap(), t);
    for (p, says) in [
        (
            serde_json::json!({"audiences": []}),
            "exchange.audiences: list 1 to 16",
        ),
        (
            serde_json::json!({"audiences": ["a b"]}),
            "exchange.audiences",
        ),
        (serde_json::json!({"audiences": ["a", "a"]}), "listed twice"),
        (
            serde_json::json!({"audiences": ["a"], "scopes": ["r\"w"]}),
            "exchange.scopes",
        ),
        (
            serde_json::json!({"audiences": ["a"], "ttl_seconds": 0}),
            "exchange.ttl_seconds",
        ),
        (
            serde_json::json!({"audiences": ["a"], "ttl_seconds": 901}),
            "exchange.ttl_seconds",
        ),
    ] {
        refused(|s| s.exchange = Some(policy(p)), says);
    }
    let unknown = serde_json::from_value::<ExchangePolicy>(
        serde_json::json!({"audiences": ["a"], "max_ttl": 1}),
    );
    assert!(unknown.is_err());
}

/// A header already carrying another issuer's claims is refused (409): the upstream
/// must know which issuer asserted what it reads.
#[test]
fn a_second_issuer_may_not_forward_into_the_first_ones_header() {
    let with = |name: &str, host: &str, header: &str| {
        let mut s = spec();
        s.name = name.into();
        s.discovery = Some(format!("https://{host}/.well-known/openid-configuration"));
        s.forward_claims.insert("sub".into(), header.into());
        TrustedIssuer::new(s, &STRICT, OWN).unwrap()
    };
    let reg = super::Registry {
        issuers: vec![with("kc", "kc.example", "x-meshauth-kc-sub")],
    };
    let clash = with("okta", "okta.example", "x-meshauth-kc-sub");
    match super::refusal(&reg, &clash, 8) {
        Some(crate::error::ServiceError::Conflict(e)) => assert!(e.contains("\"kc\""), "{e}"),
        other => panic!("{other:?}"),
    }
    let own = with("okta", "okta.example", "x-meshauth-okta-sub");
    assert!(super::refusal(&reg, &own, 8).is_none());
}

/// Client rules scoped to an issuer match its `client_claim` (`azp`, `cid`), one plain
/// claim name; `client_id` spelled out is the default, stored as absent.
#[test]
fn the_client_claim_is_one_plain_claim_name_and_client_id_by_default() {
    let t = TrustedIssuer::new(spec(), &STRICT, OWN).unwrap();
    assert_eq!(t.client_claim(), "client_id");
    let mut s = spec();
    s.client_claim = Some("azp".into());
    let t = TrustedIssuer::new(s.clone(), &STRICT, OWN).unwrap();
    assert_eq!(t.client_claim(), "azp");
    assert_eq!(t.spec().client_claim.as_deref(), Some("azp"));
    let text = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<TrustedIssuer>(&text).unwrap(), t);
    s.client_claim = Some("client_id".into());
    let t = TrustedIssuer::new(s, &STRICT, OWN).unwrap();
    assert_eq!(
        (t.client_claim(), t.spec().client_claim),
        ("client_id", None)
    );
    for bad in ["", "sub", "iss", "exp", "a.b", "a b", "x\n"] {
        refused(|s| s.client_claim = Some(bad.into()), "client_claim:");
    }
    refused(|s| s.client_claim = Some("c".repeat(65)), "client_claim:");
}
