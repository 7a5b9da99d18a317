//! The filter inside a real Envoy (`--concurrency 2`) in front of an echoing upstream.

use meshauth_tests::envoy::{edge_plugin_config, Envoy, Options};
use meshauth_tests::http::get;
use meshauth_tests::tokens::{claims, jwks_value, now, DevKey};
use serde_json::{json, Value};

struct Setup {
    envoy: Envoy,
    key: DevKey,
}

fn plugin_config(key: &DevKey) -> Value {
    edge_plugin_config(
        key,
        json!([
            {"name": "public", "path_prefix": "/public/", "auth": "anonymous"},
            {"name": "admin", "path_prefix": "/admin/", "scopes_all": ["admin"]},
            {"name": "tenant", "path_prefix": "/tenant-a/", "claims": {"tenant": ["a"]}}
        ]),
    )
}

fn setup() -> Setup {
    let key = DevKey::random();
    let envoy = Envoy::with_echo(&plugin_config(&key), Options::default());
    Setup { envoy, key }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a 401 with an RFC 6750 challenge and the JSON error body.
fn assert_invalid(s: &Setup, token: &str, code: &str) {
    let auth = bearer(token);
    let a = get(
        &s.envoy.url("/api/x"),
        &[("authorization", &auth), ("x-request-id", "corr-1")],
    );
    assert_eq!(a.status, 401, "{code}: {}", a.body);
    let challenge = a.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"meshauth\", error=\"invalid_token\""),
        "{challenge}"
    );
    let body = a.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["correlation_id"], "corr-1");
}

#[test]
fn valid_token_reaches_upstream_with_claim_headers() {
    let s = setup();
    let token = s.key.sign(&claims("alice", json!({"scope": "read write"})));
    // A client-sent copy of a forwarded header must not survive.
    let auth = bearer(&token);
    for _ in 0..4 {
        let a = get(
            &s.envoy.url("/api/items"),
            &[("authorization", &auth), ("x-meshauth-sub", "mallory")],
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let echoed = a.json();
        assert_eq!(echoed["headers"]["x-meshauth-sub"], "alice");
        assert_eq!(echoed["headers"]["x-meshauth-scope"], "read write");
        assert!(
            echoed["headers"].get("authorization").is_none(),
            "authorization is stripped by config"
        );
    }
    assert!(s.envoy.wait_counter("meshauth_requests_allowed", 4) >= 4);
    assert!(
        s.envoy.wait_counter("meshauth_verify_cache_hits", 2) >= 2,
        "{}",
        s.envoy.prometheus()
    );
}

/// A token for another issuer: the client learns only `bad_issuer` (naming the expected
/// issuer would tell an attacker the configuration), Envoy's log names both, so the
/// operator sees which setting to fix.
#[test]
fn a_bad_issuer_is_terse_to_the_client_and_named_in_envoys_log() {
    let s = setup();
    let token = s
        .key
        .sign(&claims("a", json!({"iss": "http://0.0.0.0:8080"})));
    let auth = bearer(&token);
    let a = get(&s.envoy.url("/api/x"), &[("authorization", &auth)]);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "bad_issuer");
    let answer = format!("{:?} {}", a.headers, a.body);
    assert!(
        !answer.contains("meshauth.test") && !answer.contains("0.0.0.0"),
        "{answer}"
    );
    meshauth_tests::wait::wait_until("the bad_issuer log line", 30, || {
        let log = s.envoy.log();
        let line = log.lines().find(|l| l.contains("meshauth: bad_issuer"));
        match line {
            Some(l)
                if l.contains(r#"expected issuer "https://meshauth.test""#)
                    && l.contains(r#"iss "http://0.0.0.0:8080""#) =>
            {
                Ok(())
            }
            _ => Err(log),
        }
    });
}

#[test]
fn bad_tokens_get_401_with_the_reason() {
    let s = setup();
    let k = &s.key;
    let t = now();
    assert_invalid(
        &s,
        &k.sign(&claims("a", json!({"exp": t - 60}))),
        "token_expired",
    );
    assert_invalid(
        &s,
        &k.sign(&claims("a", json!({"nbf": t + 600}))),
        "token_not_yet_valid",
    );
    assert_invalid(
        &s,
        &k.sign(&claims("a", json!({"iss": "https://evil"}))),
        "bad_issuer",
    );
    assert_invalid(
        &s,
        &k.sign(&claims("a", json!({"aud": "other"}))),
        "bad_audience",
    );
    assert_invalid(
        &s,
        &k.sign(&claims("a", json!({"exp": "tomorrow"}))),
        "bad_claim",
    );
    assert_invalid(
        &s,
        &DevKey::random().sign(&claims("a", json!({}))),
        "unknown_key",
    );
    // Right kid, wrong key.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": k.kid()}).to_string();
    let forged = DevKey::random().sign_raw(&header, &claims("a", json!({})).to_string());
    assert_invalid(&s, &forged, "bad_signature");
    // A valid token with one payload character changed.
    let good = k.sign(&claims("a", json!({})));
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    assert_invalid(&s, &parts.join("."), "bad_signature");
    let none = format!(
        "{}.{}.",
        meshauth_wire::b64::encode(r#"{"alg":"none","kid":"x"}"#),
        meshauth_wire::b64::encode("{}")
    );
    assert_invalid(&s, &none, "bad_algorithm");
    let hs256 = k.sign_raw(
        &json!({"alg": "HS256", "kid": k.kid()}).to_string(),
        &claims("a", json!({})).to_string(),
    );
    assert_invalid(&s, &hs256, "bad_algorithm");
    // Validly signed, but not an access token (RFC 9068 §4: typ at+jwt is required).
    for header in [
        json!({"alg": "EdDSA", "typ": "JWT", "kid": k.kid()}).to_string(),
        json!({"alg": "EdDSA", "kid": k.kid()}).to_string(),
    ] {
        let t = k.sign_raw(&header, &claims("a", json!({})).to_string());
        assert_invalid(&s, &t, "malformed_token");
    }
    // Validly signed with a repeated claim: we and an upstream could read different
    // subjects, so it is refused.
    let base = claims("alice", json!({})).to_string();
    let dup = format!("{},\"sub\":\"root\"}}", base.trim_end_matches('}'));
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": k.kid()}).to_string();
    assert_invalid(&s, &k.sign_raw(&header, &dup), "malformed_token");
    assert_invalid(&s, "not-a-token", "malformed_token");
    assert_invalid(&s, "a.b.c", "malformed_token");
    assert_invalid(&s, &"x".repeat(64 * 1024), "token_too_large");
    assert!(
        s.envoy
            .wait_counter("meshauth_requests_denied_bad_signature", 2)
            >= 2
    );
}

#[test]
fn missing_token_gets_a_bare_challenge() {
    let s = setup();
    let a = get(&s.envoy.url("/api/x"), &[]);
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"meshauth\"")
    );
    assert_eq!(a.json()["error"]["code"], "missing_token");
    // A correlation id is there even when the client sent none (Envoy makes one).
    assert!(!a.json()["error"]["correlation_id"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
}

#[test]
fn scopes_and_claims_decide_per_route() {
    let s = setup();
    let reader = bearer(&s.key.sign(&claims("bob", json!({"scope": "read"}))));
    let a = get(&s.envoy.url("/admin/users"), &[("authorization", &reader)]);
    assert_eq!(a.status, 403, "{}", a.body);
    let challenge = a.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"admin\""),
        "{challenge}"
    );
    let admin = bearer(&s.key.sign(&claims("root", json!({"scope": "read admin"}))));
    assert_eq!(
        get(&s.envoy.url("/admin/users"), &[("authorization", &admin)]).status,
        200
    );
    let tenant_b = bearer(&s.key.sign(&claims("carol", json!({"tenant": "b"}))));
    let a = get(&s.envoy.url("/tenant-a/x"), &[("authorization", &tenant_b)]);
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (403, json!("claim_mismatch"))
    );
    let tenant_a = bearer(&s.key.sign(&claims("dave", json!({"tenant": "a"}))));
    assert_eq!(
        get(&s.envoy.url("/tenant-a/x"), &[("authorization", &tenant_a)]).status,
        200
    );
}

#[test]
fn anonymous_route_needs_no_token_and_strips_claim_headers() {
    let s = setup();
    let a = get(
        &s.envoy.url("/public/hello"),
        &[("x-meshauth-sub", "spoofed")],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["headers"].get("x-meshauth-sub").is_none());
    // Path normalization: a dot-segment cannot walk out of /public/ into a protected route.
    let a = get(&s.envoy.url("/public/../api/x"), &[]);
    assert_eq!(a.status, 401);
}

#[test]
fn bad_configuration_is_refused_by_envoy() {
    let key = DevKey::random();
    for (bad, field) in [
        (
            json!({"routes": [{"path_prefix": "/a", "auth": "sometimes"}]}),
            "routes[0].auth",
        ),
        (json!({"clock_skew_seconds": 99999}), "clock_skew_seconds"),
        (
            json!({"bootstrap_jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "short", "kid": "k"}]}}),
            "bootstrap_jwks",
        ),
        (
            json!({"issuer": "x", "typo_field": true, "bootstrap_jwks": jwks_value(&[&key])}),
            "typo_field",
        ),
    ] {
        let log = match Envoy::start(&bad, Options::default()) {
            Ok(e) => panic!("envoy accepted a bad config {bad}:\n{}", e.log()),
            Err(log) => log,
        };
        assert!(
            log.contains("meshauth: invalid plugin configuration") && log.contains(field),
            "{field}:\n{log}"
        );
    }
}

#[test]
fn garbage_never_breaks_the_filter() {
    let s = setup();
    let junk = [
        "Bearer",
        "Bearer x",
        "Bearer ....",
        "Bearer ~~~",
        "Basic Zm9vOmJhcg==",
        "bearer e30.e30.e30",
        "Bearer eyJhbGciOiJFZERTQSJ9.eyJleHAiOjF9.AAAA",
        "Bearer %%%.%%%.%%%",
    ];
    for j in junk {
        let a = get(&s.envoy.url("/api/x"), &[("authorization", j)]);
        assert_eq!(a.status, 401, "{j}: {}", a.body);
    }
    // Huge header values of every shape, then a valid request still works on every worker.
    for shape in ["Bearer ", "", "Bearer a.b."] {
        let v = format!("{shape}{}", "A".repeat(64 * 1024));
        assert_eq!(
            get(&s.envoy.url("/api/x"), &[("authorization", &v)]).status,
            401
        );
    }
    let token = bearer(&s.key.sign(&claims("erin", json!({}))));
    for _ in 0..8 {
        assert_eq!(
            get(&s.envoy.url("/api/x"), &[("authorization", &token)]).status,
            200
        );
    }
    assert!(!s.envoy.log().contains("panicked"), "{}", s.envoy.log());
}

#[test]
fn without_route_rules_the_default_applies_and_spoofed_headers_go() {
    let key = DevKey::random();
    let config = json!({
        "bootstrap_jwks": jwks_value(&[&key]),
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "default_route": {"auth": "anonymous"}
    });
    let envoy = Envoy::with_echo(&config, Options::default());
    let a = get(&envoy.url("/anything"), &[("x-meshauth-sub", "spoofed")]);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["headers"].get("x-meshauth-sub").is_none());
}
