#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Attacks on the filter in a real Envoy, each a regression test for a finding of the
//! security review (docs/security.md, "The edge"). Envoy here runs WITHOUT the path and
//! header hardening the shipped configs set, as a careless operator's would: the filter
//! must hold on its own.

use std::time::Duration;

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{unhardened_template, Envoy, Options};
use meshauth_tests::http::{get, raw_get};
use meshauth_tests::relay::{Confirm, Relay};
use meshauth_tests::tokens::{claims, jwks_value, DevKey};
use meshauth_tests::wait::wait_until;
use serde_json::{json, Value};

/// Envoy without the listener hardening (the default for these tests).
fn start(config: &Value, cp_port: Option<u16>) -> Envoy {
    start_with(config, cp_port, Some(unhardened_template()))
}

/// Envoy with the shipped bootstrap as it is.
fn start_shipped(config: &Value) -> Envoy {
    start_with(config, None, None)
}

fn start_with(config: &Value, cp_port: Option<u16>, template: Option<String>) -> Envoy {
    let opts = cp_port.map_or_else(Options::default, Options::control_plane);
    Envoy::with_echo(config, Options { template, ..opts })
}

fn routes_config(key: &DevKey) -> Value {
    json!({
        "bootstrap_jwks": jwks_value(&[key]),
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "forward_authorization": false,
        "routes": [
            {"name": "public", "path_prefix": "/public/", "auth": "anonymous"},
            {"name": "admin", "path_prefix": "/admin/", "scopes_all": ["admin"]},
            {"name": "stats", "path_exact": "/internal/stats", "scopes_all": ["admin"]}
        ]
    })
}

#[test]
fn dot_segments_and_encoded_separators_cannot_reach_a_token_route_anonymously() {
    let key = DevKey::random();
    let envoy = start(&routes_config(&key), None);
    // Without a token, through the anonymous route's prefix.
    for path in [
        "/public/..%2Fadmin/users",
        "/public/..%2fadmin/users",
        "/public/%2e%2e/admin/users",
        "/public/../admin/users",
        "/public/..;/admin/users",
        "/public/..%5Cadmin/users",
        "/public/%61dmin",
        "//admin/users",
        "/admin;x/users",
        "/public/..%252fadmin",
        "/public/%C0%AE%C0%AE/admin",
        "/public/%EF%BC%8E%EF%BC%8E/admin",
        "/public/..%20/admin",
    ] {
        let a = raw_get(envoy.port, path, &[("x-request-id", "p-1")]);
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        let body: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["error"]["code"], "bad_path", "{path}");
        assert_eq!(body["error"]["correlation_id"], "p-1");
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    // Normal paths are untouched, query strings are not paths.
    assert_eq!(
        raw_get(envoy.port, "/public/info?next=/../admin", &[]).status,
        200
    );
    assert_eq!(raw_get(envoy.port, "/admin/users", &[]).status, 401);
    assert!(envoy.wait_counter("meshauth_requests_denied_bad_path", 13) >= 13);
}

#[test]
fn case_variants_of_a_route_need_its_scope() {
    let key = DevKey::random();
    let envoy = start(&routes_config(&key), None);
    let read = format!(
        "Bearer {}",
        key.sign(&claims("bob", json!({"scope": "read"})))
    );
    for path in [
        "/admin/users",
        "/ADMIN/users",
        "/Admin/users",
        "/internal/stats",
        "/INTERNAL/stats",
        "/internal/stats/",
    ] {
        let a = get(&envoy.url(path), &[("authorization", &read)]);
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], "insufficient_scope");
    }
    // And an anonymous prefix in another case is still anonymous (the default for prefixes).
    assert_eq!(get(&envoy.url("/PUBLIC/info"), &[]).status, 200);
}

#[test]
fn underscore_spellings_of_identity_headers_never_reach_the_upstream() {
    let key = DevKey::random();
    let envoy = start(&routes_config(&key), None);
    let alice = format!("Bearer {}", key.sign(&claims("alice", json!({}))));
    let spoofs = [
        ("x_meshauth_sub", "admin"),
        ("x-meshauth_sub", "admin"),
        ("x-meshauth-sub", "admin"),
        // Not forwarded by this configuration, but under the reserved prefix.
        ("x-meshauth-tenant", "a"),
    ];
    // Anonymous route, token route: neither lets a lookalike through.
    for (path, auth) in [("/public/x", None), ("/api/x", Some(alice.as_str()))] {
        let mut headers: Vec<(&str, &str)> = spoofs.to_vec();
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let a = raw_get(envoy.port, path, &headers);
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let seen = &serde_json::from_str::<Value>(&a.body).unwrap()["headers"];
        assert!(seen.get("x_meshauth_sub").is_none(), "{path}: {seen}");
        assert!(seen.get("x-meshauth_sub").is_none(), "{path}: {seen}");
        assert!(seen.get("x-meshauth-tenant").is_none(), "{path}: {seen}");
        let want = if auth.is_some() {
            json!("alice")
        } else {
            Value::Null
        };
        assert_eq!(
            seen.get("x-meshauth-sub").cloned().unwrap_or(Value::Null),
            want,
            "{path}"
        );
    }
}

#[test]
fn path_and_method_scoped_limits_apply_without_routes() {
    let key = DevKey::random();
    let config = json!({
        "bootstrap_jwks": jwks_value(&[&key]),
        "rate_limits": {"policies": [
            {"name": "api", "key": ["claim:sub"], "rate": 1, "window_seconds": 3600, "burst": 3,
             "match": {"path_prefix": "/api/", "methods": ["GET"]}}
        ]}
    });
    let envoy = start(&config, None);
    let carol = format!("Bearer {}", key.sign(&claims("carol", json!({}))));
    let codes: Vec<u16> = (0..5)
        .map(|_| {
            get(
                &envoy.url("/api/x"),
                &[("authorization", &carol), ("connection", "close")],
            )
            .status
        })
        .collect();
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    // Other paths and methods are outside the policy.
    assert_eq!(
        get(&envoy.url("/other"), &[("authorization", &carol)]).status,
        200
    );
}

/// The control plane behind a relay that never answers `/sync/v1/confirm`, its
/// distribution key, and a token issued to `mallory` and revoked before any Envoy
/// starts: the first snapshot carries it in the Bloom filter only, so a filter has to
/// ask about it, and never hears back.
struct StalledConfirm {
    cp: ControlPlane,
    relay: Relay,
    distribution_key: String,
    revoked: String,
}

impl StalledConfirm {
    /// The filter polls through the relay; its confirmations wait 300 ms at most.
    fn plugin_config(&self) -> Value {
        json!({
            "issuer": self.cp.base_url(),
            "audiences": ["api"],
            "sync": {"cluster": "meshauth_control_plane", "distribution_key": self.distribution_key,
                     "credential": self.cp.sync_credential, "poll_wait_ms": 2000, "callout_timeout_ms": 300},
        })
    }
}

fn stalled_confirm() -> StalledConfirm {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let relay = Relay::spawn(cp.port, Confirm::Stall).unwrap();
    let distribution_key = get(&cp.url("/sync/v1/distribution-key"), &[]).json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = cp
        .cli_ok(&["token", "issue", "--sub", "mallory"])
        .trim()
        .to_string();
    cp.cli_ok(&["revoke", "token", &revoked]);
    StalledConfirm {
        cp,
        relay,
        distribution_key,
        revoked,
    }
}

/// A revoked token whose confirmation never comes back, with `on_unconfirmed: allow`:
/// the filter's deadline lets it through the allow path (client identity headers
/// replaced, Authorization stripped), and the callout's late timeout afterwards must
/// neither touch the finished request nor break the worker.
#[test]
fn a_confirmation_that_never_answers_neither_leaks_headers_nor_kills_the_worker() {
    let stalled = stalled_confirm();
    let (relay, victim) = (&stalled.relay, &stalled.revoked);
    let other = stalled
        .cp
        .cli_ok(&["token", "issue", "--sub", "alice"])
        .trim()
        .to_string();
    let mut config = stalled.plugin_config();
    config["forward_claims"] = json!([{"claim": "sub", "header": "x-meshauth-sub"}]);
    config["forward_authorization"] = json!(false);
    config["sync"]["on_unconfirmed"] = json!("allow");
    let envoy = start(&config, Some(relay.port));
    let auth = format!("Bearer {other}");
    wait_until("a snapshot", 10, || {
        (get(&envoy.url("/api"), &[("authorization", &auth)]).status == 200)
            .then_some(())
            .ok_or(format!("no snapshot: {}", envoy.log()))
    });
    let bad = format!("Bearer {victim}");
    for round in 0..4 {
        let a = get(
            &envoy.url("/api"),
            &[
                ("authorization", &bad),
                ("x-meshauth-sub", "root"),
                ("x_meshauth_sub", "root"),
                ("connection", "close"),
            ],
        );
        assert_eq!(a.status, 200, "round {round}: {}\n{}", a.body, envoy.log());
        let seen = &a.json()["headers"];
        assert_eq!(seen["x-meshauth-sub"], "mallory", "round {round}: {seen}");
        assert!(
            seen.get("x_meshauth_sub").is_none(),
            "round {round}: {seen}"
        );
        assert!(seen.get("authorization").is_none(), "round {round}: {seen}");
        // Let the callout's own (later) timeout fire on the finished request.
        std::thread::sleep(Duration::from_millis(1_600));
    }
    assert!(relay.confirms() >= 1, "the filter never asked");
    // Both workers still serve (fresh connections spread over them).
    for _ in 0..20 {
        let a = get(
            &envoy.url("/api"),
            &[("authorization", &auth), ("connection", "close")],
        );
        assert_eq!(a.status, 200, "{}\n{}", a.body, envoy.log());
    }
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("unexpected status"), "{log}");
}

/// The same with `on_unconfirmed: deny` (the default): a 403 with every header every
/// other refusal carries.
#[test]
fn an_unconfirmed_refusal_is_answered_like_every_other() {
    let stalled = stalled_confirm();
    let (relay, victim) = (&stalled.relay, &stalled.revoked);
    let envoy = start(&stalled.plugin_config(), Some(relay.port));
    let bad = format!("Bearer {victim}");
    let a = wait_until("a 403", 10, || {
        let a = get(
            &envoy.url("/api"),
            &[("authorization", &bad), ("x-request-id", "corr-7")],
        );
        match a.status {
            403 => Ok(a),
            _ => Err(format!("{} {}\n{}", a.status, a.body, envoy.log())),
        }
    });
    assert_eq!(a.status, 403, "{}\n{}", a.body, envoy.log());
    assert_eq!(a.json()["error"]["code"], "token_revoked");
    assert_eq!(a.json()["error"]["correlation_id"], "corr-7");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert!(a.header("www-authenticate").is_some());
    // The refusal came from the unanswered confirmation, not from elsewhere.
    assert!(relay.confirms() >= 1, "the filter never asked");
    std::thread::sleep(Duration::from_millis(1_600));
    assert_eq!(
        get(&envoy.url("/api"), &[("authorization", &bad)]).status,
        403
    );
    assert!(!envoy.log().contains("panicked"));
}

/// The shipped bootstrap (what the demo and guides use) stops the same attacks before
/// the filter: underscore headers are refused and escaped slashes never reach a route.
#[test]
fn the_shipped_bootstrap_is_hardened_too() {
    let key = DevKey::random();
    let envoy = start_shipped(&routes_config(&key));
    let a = raw_get(envoy.port, "/public/x", &[("x_meshauth_sub", "admin")]);
    assert_eq!(a.status, 400, "{}", a.body);
    let a = raw_get(envoy.port, "/public/..%2Fadmin/users", &[]);
    assert_ne!(a.status, 200, "{}", a.body);
    assert!(
        !a.body.contains("\"path\""),
        "reached the upstream: {}",
        a.body
    );
    assert_eq!(raw_get(envoy.port, "/public/x", &[]).status, 200);
}

#[test]
fn two_authorization_headers_are_refused() {
    let key = DevKey::random();
    let envoy = start(&routes_config(&key), None);
    let mine = format!("Bearer {}", key.sign(&claims("bob", json!({}))));
    let forged = format!(
        "Bearer {}",
        DevKey::random().sign(&claims("root", json!({"scope": "admin"})))
    );
    let a = raw_get(
        envoy.port,
        "/api/x",
        &[("authorization", &mine), ("authorization", &forged)],
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(
        serde_json::from_str::<Value>(&a.body).unwrap()["error"]["code"],
        "malformed_token"
    );
    assert_eq!(
        raw_get(envoy.port, "/api/x", &[("authorization", &mine)]).status,
        200
    );
}

/// Envoy passes header values that are not UTF-8; the SDK's header reader unwraps
/// UTF-8 and would panic the VM (the review's F1). Both workers must keep answering.
#[test]
fn header_values_that_are_not_utf8_do_not_break_the_worker() {
    let key = DevKey::random();
    let envoy = start_shipped(&routes_config(&key));
    let alice = format!("Bearer {}", key.sign(&claims("alice", json!({}))));
    for round in 0..6 {
        let mut req =
            b"GET /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-junk: \xff\xfe".to_vec();
        req.extend_from_slice(b"\r\n\r\n");
        let a = meshauth_tests::http::raw(envoy.port, &req);
        assert_eq!(a.status, 200, "round {round}: {}", a.body);
        let mut req = format!("GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: {alice}\r\nx-meshauth-sub: ").into_bytes();
        req.extend_from_slice(b"\xc0\xaf\r\n\r\n");
        let a = meshauth_tests::http::raw(envoy.port, &req);
        assert_eq!(a.status, 200, "round {round}: {}", a.body);
        assert!(
            a.body.contains("\"x-meshauth-sub\":\"alice\""),
            "{}",
            a.body
        );
    }
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
}
