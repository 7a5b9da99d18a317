#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real control-plane binary and CLI, on the embedded store and on a real Redis.

use meshauth_tests::control_plane::{per_user_limit, ControlPlane, StoreKind};
use meshauth_tests::http::{get, request, Answer};
use meshauth_tests::redis::{Redis, Sentinel, SENTINEL_MASTER_NAME};
use meshauth_tests::wait::wait_until;
use serde_json::{json, Value};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn post_form(cp: &ControlPlane, path: &str, body: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![FORM];
    headers.extend_from_slice(extra);
    request("POST", &cp.url(path), &headers, Some(body))
}

fn admin(cp: &ControlPlane, method: &str, path: &str, body: Option<&str>) -> Answer {
    let (k, v) = cp.admin_headers();
    request(
        method,
        &cp.url(path),
        &[(&k, &v), ("content-type", "application/json")],
        body,
    )
}

fn create_client(cp: &ControlPlane, scope: &str) -> (String, String) {
    let v: Value =
        serde_json::from_str(&cp.cli_ok(&["clients", "create", "svc", "--scope", scope])).unwrap();
    (
        v["client_id"].as_str().unwrap().into(),
        v["client_secret"].as_str().unwrap().into(),
    )
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&meshauth_wire::b64::decode(payload).unwrap()).unwrap()
}

#[test]
fn refuses_to_start_without_a_master_key() {
    let out = std::process::Command::new(meshauth_tests::control_plane::meshauth_bin())
        .args(["serve"])
        .env_remove("MESHAUTH_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no master key"), "{err}");
}

#[test]
fn jwks_and_discovery() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let a = get(&cp.url("/.well-known/jwks.json"), &[]);
    assert_eq!(a.status, 200);
    let jwks = a.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(key.get("d").is_none(), "no private part");
    let jwk: meshauth_wire::Jwk = serde_json::from_value(key.clone()).unwrap();
    assert_eq!(
        jwk.kid.as_deref(),
        Some(jwk.thumbprint().as_str()),
        "kid is the RFC 7638 thumbprint"
    );
    assert_eq!(a.header("cache-control"), Some("public, max-age=300"));
    let etag = a.header("etag").unwrap().to_string();
    let again = get(
        &cp.url("/.well-known/jwks.json"),
        &[("if-none-match", &etag)],
    );
    assert_eq!(again.status, 304);
    // RFC 8414 metadata only: this is not an OpenID Provider.
    let d = get(&cp.url("/.well-known/oauth-authorization-server"), &[]).json();
    assert_eq!(d["jwks_uri"], cp.url("/.well-known/jwks.json"));
    assert_eq!(d["issuer"], cp.base_url());
    assert_eq!(
        get(&cp.url("/.well-known/openid-configuration"), &[]).status,
        404
    );
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(metrics.contains("meshauth_key_age_seconds"), "{metrics}");
    // Private key material never appears in answers or logs.
    let keys = admin(&cp, "GET", "/admin/keys", None).body;
    assert!(
        !keys.contains("sealed") && !cp.log().contains("sealed_private"),
        "{keys}"
    );
}

#[test]
fn client_credentials_grant() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (id, secret) = create_client(&cp, "read write");
    assert!(secret.len() >= 43, "256-bit secret");
    // client_secret_basic
    let a = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials&scope=read",
        &[("authorization", &basic(&id, &secret))],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let t = a.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 1800);
    let claims = decode_claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        (
            claims["client_id"].as_str(),
            claims["sub"].as_str(),
            claims["scope"].as_str()
        ),
        (Some(id.as_str()), Some(id.as_str()), Some("read"))
    );
    let header: Value = serde_json::from_slice(
        &meshauth_wire::b64::decode(
            t["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("EdDSA"), Some("at+jwt"))
    );
    // client_secret_post, all of the client's scopes by default
    let a = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
        &[],
    );
    assert_eq!(
        decode_claims(a.json()["access_token"].as_str().unwrap())["scope"],
        "read write"
    );
    // Refusals, RFC 6749 bodies.
    let wrong = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials",
        &[("authorization", &basic(&id, "nope"))],
    );
    assert_eq!(
        (wrong.status, wrong.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    let unknown = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials",
        &[("authorization", &basic("c-unknown", &secret))],
    );
    assert_eq!(unknown.status, 401);
    let scope = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials&scope=admin",
        &[("authorization", &basic(&id, &secret))],
    );
    assert_eq!(
        (scope.status, scope.json()["error"].clone()),
        (400, json!("invalid_scope"))
    );
    let grant = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=password",
        &[("authorization", &basic(&id, &secret))],
    );
    assert_eq!(grant.json()["error"], "unsupported_grant_type");
    let dup = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials&grant_type=client_credentials",
        &[("authorization", &basic(&id, &secret))],
    );
    assert_eq!(dup.json()["error"], "invalid_request");
    let none = post_form(&cp, "/oauth2/token", "", &[]);
    assert_eq!(
        (none.status, none.json()["error"].clone()),
        (400, json!("invalid_request"))
    );
    // A rotated secret replaces the old one.
    let v: Value = serde_json::from_str(&cp.cli_ok(&["clients", "rotate-secret", &id])).unwrap();
    let fresh = v["client_secret"].as_str().unwrap();
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/token",
            "grant_type=client_credentials",
            &[("authorization", &basic(&id, &secret))]
        )
        .status,
        401
    );
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/token",
            "grant_type=client_credentials",
            &[("authorization", &basic(&id, fresh))]
        )
        .status,
        200
    );
}

#[test]
fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    // The CLI prints the access token alone.
    let token = cp.cli_ok(&[
        "token",
        "issue",
        "--sub",
        "alice",
        "--scope",
        "read admin",
        "--ttl",
        "5m",
    ]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let c = decode_claims(token);
    assert_eq!(
        (c["sub"].as_str(), c["scope"].as_str()),
        (Some("alice"), Some("read admin"))
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    let full: Value =
        serde_json::from_str(&cp.cli_ok(&["token", "issue", "--sub", "bob", "--json"])).unwrap();
    let sid = full["sid"].as_str().unwrap().to_string();
    assert_eq!(
        decode_claims(full["access_token"].as_str().unwrap())["sid"],
        sid.as_str()
    );
    let r1 = full["refresh_token"].as_str().unwrap().to_string();
    let (k, v) = cp.admin_headers();
    let introspect = |t: &str| {
        post_form(
            &cp,
            "/oauth2/introspect",
            &format!("token={t}"),
            &[(&k, &v)],
        )
        .json()
    };
    assert_eq!(introspect(&r1)["active"], true);
    let a = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r1}"),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let second = a.json();
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    let access2 = second["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "rotated on use");
    assert_eq!(introspect(&r1)["active"], false, "spent");
    assert_eq!(introspect(&access2)["active"], true);
    // A retry of r1 within the grace gets the same answer (a lost answer is not reuse)...
    let retry = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r1}"),
        &[],
    );
    assert_eq!(retry.json(), second, "{}", retry.body);
    // ...but once r2 was used, r1 again is reuse: refused, and the whole family goes.
    let third = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r2}"),
        &[],
    );
    assert_eq!(third.status, 200, "{}", third.body);
    let r3 = third.json()["refresh_token"].as_str().unwrap().to_string();
    let reuse = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r1}"),
        &[],
    );
    assert_eq!(
        (reuse.status, reuse.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let after = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r3}"),
        &[],
    );
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the family is revoked"
    );
    assert_eq!(
        introspect(&access2)["active"],
        false,
        "access tokens of the family are revoked by sid"
    );
    let revs = admin(&cp, "GET", "/admin/revocations", None).json();
    assert!(
        revs["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "sid" && r["value"] == sid.as_str()),
        "{revs}"
    );
    // Garbage refresh tokens are just invalid.
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/token",
            "grant_type=refresh_token&refresh_token=zzz",
            &[]
        )
        .json()["error"],
        "invalid_grant"
    );
}

#[test]
fn rfc7009_revocation_and_rfc7662_introspection() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (id, secret) = create_client(&cp, "read");
    let auth = basic(&id, &secret);
    let t = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials",
        &[("authorization", &auth)],
    )
    .json();
    let at = t["access_token"].as_str().unwrap();
    let i = post_form(
        &cp,
        "/oauth2/introspect",
        &format!("token={at}"),
        &[("authorization", &auth)],
    )
    .json();
    assert_eq!(
        (i["active"].clone(), i["client_id"].clone()),
        (json!(true), json!(id))
    );
    // Introspection needs an authenticated caller.
    assert_eq!(
        post_form(&cp, "/oauth2/introspect", &format!("token={at}"), &[]).status,
        401
    );
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/revoke",
            &format!("token={at}"),
            &[("authorization", &auth)]
        )
        .status,
        200
    );
    let i = post_form(
        &cp,
        "/oauth2/introspect",
        &format!("token={at}"),
        &[("authorization", &auth)],
    )
    .json();
    assert_eq!(i["active"], false);
    // Unknown tokens: 200 all the same (RFC 7009 §2.2).
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/revoke",
            "token=unknown",
            &[("authorization", &auth)]
        )
        .status,
        200
    );
    assert_eq!(
        post_form(
            &cp,
            "/oauth2/introspect",
            "token=x.y.z",
            &[("authorization", &auth)]
        )
        .json(),
        json!({"active": false})
    );
}

#[test]
fn bad_admin_input_is_a_clear_4xx_and_changes_nothing() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let before = admin(&cp, "GET", "/admin/clients", None).json();
    let audit_before = admin(&cp, "GET", "/admin/audit/verify", None).json()["entries"].clone();
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("POST", "/admin/clients", "{not json".into(), 400),
        (
            "POST",
            "/admin/clients",
            r#"{"name": "x", "colour": "red"}"#.into(),
            400,
        ),
        ("POST", "/admin/clients", r#"{"name": 5}"#.into(), 400),
        ("POST", "/admin/clients", r#"{"name": ""}"#.into(), 400),
        (
            "POST",
            "/admin/clients",
            r#"{"name": "x", "scopes": ["bad scope\""]}"#.into(),
            400,
        ),
        (
            "POST",
            "/admin/clients",
            format!(r#"{{"name": "{}"}}"#, "x".repeat(100_000)),
            413,
        ),
        (
            "POST",
            "/admin/tokens",
            r#"{"sub": "a", "ttl": "forever"}"#.into(),
            400,
        ),
        (
            "POST",
            "/admin/tokens",
            r#"{"sub": "a", "ttl": 999999}"#.into(),
            400,
        ),
        ("POST", "/admin/tokens", r#"{"scope": "x"}"#.into(), 400),
        (
            "POST",
            "/admin/revocations",
            r#"{"kind": "everything", "value": "x"}"#.into(),
            400,
        ),
        ("POST", "/admin/keys/nope/revoke", String::new(), 404),
        ("DELETE", "/admin/clients/nope", String::new(), 404),
    ];
    for (method, path, body, status) in &cases {
        let a = admin(&cp, method, path, Some(body));
        assert_eq!(
            a.status,
            *status,
            "{method} {path} {}: {}",
            &body[..body.len().min(60)],
            a.body
        );
        let e = a.json();
        assert!(
            e["error"]["code"].is_string() && e["error"]["message"].is_string(),
            "{e}"
        );
        assert!(
            !e["error"]["correlation_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{e}"
        );
    }
    // Correlation ids follow x-request-id.
    let (k, v) = cp.admin_headers();
    let a = request(
        "POST",
        &cp.url("/admin/clients"),
        &[
            (&k, &v),
            ("content-type", "application/json"),
            ("x-request-id", "req-42"),
        ],
        Some("[]"),
    );
    assert_eq!(a.json()["error"]["correlation_id"], "req-42");
    // Wrong or missing admin token.
    assert_eq!(get(&cp.url("/admin/clients"), &[]).status, 401);
    assert_eq!(
        get(
            &cp.url("/admin/clients"),
            &[("authorization", "Bearer wrong")]
        )
        .status,
        401
    );
    assert_eq!(admin(&cp, "GET", "/admin/clients", None).json(), before);
    assert_eq!(
        admin(&cp, "GET", "/admin/audit/verify", None).json()["entries"],
        audit_before
    );
    assert!(!cp.log().contains("panicked"));
    // The CLI reports errors on one line and exits non-zero.
    let out = cp.cli(&["keys", "revoke", "nope"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "meshauth: 404: key nope not found"
    );
}

#[test]
fn keys_rotate_and_revoke() {
    // A short pre-publication window so a forced rotation completes within the test.
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[keys]\njwks_max_age = \"1s\"\nclock_skew = \"1s\"\ncheck_interval = \"200ms\"\n",
    );
    let first = cp.cli_ok(&["token", "issue", "--sub", "a"]);
    let kid1 = decode_claims_header_kid(first.trim());
    let v: Value = serde_json::from_str(&cp.cli_ok(&["keys", "rotate"])).unwrap();
    let states: Vec<(String, String)> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().into(),
                k["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&(kid1.clone(), "current".into())),
        "the new key is only published: {states:?}"
    );
    let next = states.iter().find(|s| s.1 == "next").unwrap().0.clone();
    let jwks = get(&cp.url("/.well-known/jwks.json"), &[]).json();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "next is published before it signs"
    );
    // After the pre-publication window the scheduler promotes it.
    wait_until("the rotation", 10, || {
        let t = cp.cli_ok(&["token", "issue", "--sub", "a"]);
        (decode_claims_header_kid(t.trim()) == next)
            .then_some(())
            .ok_or_else(|| "rotation did not complete".to_string())
    });
    let v: Value = serde_json::from_str(&cp.cli_ok(&["keys", "list"])).unwrap();
    assert!(v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid1.as_str() && k["state"] == "previous"));
    // Emergency revoke of the signing key: gone from the JWKS at once, a new key signs.
    cp.cli_ok(&["keys", "revoke", &next]);
    let jwks = get(&cp.url("/.well-known/jwks.json"), &[]).json();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["kid"] != next.as_str()));
    let t = cp.cli_ok(&["token", "issue", "--sub", "a"]);
    let kid3 = decode_claims_header_kid(t.trim());
    assert!(kid3 != next && kid3 != kid1);
    // Every key operation is audited.
    let audit = admin(&cp, "GET", "/admin/audit?limit=1000", None).json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "key.published",
        "key.activated",
        "key.deactivated",
        "key.revoked",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(cp
        .cli_ok(&["audit", "verify"])
        .starts_with("audit chain ok"));
}

fn decode_claims_header_kid(token: &str) -> String {
    let h: Value = serde_json::from_slice(
        &meshauth_wire::b64::decode(token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_string()
}

/// Everything acknowledged survives a kill -9 of the control plane (and of Redis).
/// What a control plane acknowledged: a client, a refresh family, a revocation, a
/// rate-limit policy, the keys and the audit chain's length.
struct Acknowledged {
    client: (String, String),
    refresh: String,
    jwks: String,
    audit_entries: u64,
}

fn acknowledge(cp: &ControlPlane) -> Acknowledged {
    let client = create_client(cp, "read");
    let full: Value =
        serde_json::from_str(&cp.cli_ok(&["token", "issue", "--sub", "carol", "--json"])).unwrap();
    cp.cli_ok(&["token", "issue", "--sub", "mallory"]);
    cp.cli_ok(&["revoke", "subject", "mallory"]);
    cp.cli_ok(&per_user_limit("5", "2", &["--override", "carol=50/20"]));
    Acknowledged {
        client,
        refresh: full["refresh_token"].as_str().unwrap().to_string(),
        jwks: get(&cp.url("/.well-known/jwks.json"), &[]).body,
        audit_entries: admin(cp, "GET", "/admin/audit/verify", None).json()["entries"]
            .as_u64()
            .unwrap(),
    }
}

/// Everything in `ack` is still there and works.
fn assert_kept(cp: &ControlPlane, ack: &Acknowledged) {
    assert_eq!(
        get(&cp.url("/.well-known/jwks.json"), &[]).body,
        ack.jwks,
        "same keys"
    );
    let (id, secret) = &ack.client;
    let a = post_form(
        cp,
        "/oauth2/token",
        "grant_type=client_credentials",
        &[("authorization", &basic(id, secret))],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post_form(
        cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={}", ack.refresh),
        &[],
    );
    assert_eq!(a.status, 200, "refresh family survived: {}", a.body);
    let revs = admin(cp, "GET", "/admin/revocations", None).json();
    assert!(revs["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["value"] == "mallory"));
    let limit = admin(cp, "GET", "/admin/limits/per-user", None).json();
    assert_eq!(limit["overrides"]["carol"]["rate"], 50, "{limit}");
    let report = admin(cp, "GET", "/admin/audit/verify", None).json();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["entries"].as_u64().unwrap() >= ack.audit_entries);
}

/// Everything acknowledged survives a kill -9 of the control plane (and of Redis).
fn survives_restarts(mut cp: ControlPlane, redis: Option<&mut Redis>) {
    let ack = acknowledge(&cp);
    cp.restart();
    if let Some(r) = redis {
        r.crash_and_restart();
        cp.restart();
    }
    assert_kept(&cp, &ack);
}

#[test]
fn rate_limit_policies_are_validated_audited_and_listed() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let good = r#"{"key":["claim:client_id","route"],"rate":100,"window_seconds":60,"burst":20,
                   "match":{"path_prefix":"/api","methods":["GET","POST"]}}"#;
    let a = admin(&cp, "PUT", "/admin/limits/per-client", Some(good));
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.json()["name"], "per-client");
    let version = admin(&cp, "GET", "/admin/status", None).json()["sync"]["version"]
        .as_u64()
        .unwrap();
    // The same policy again changes nothing (no new snapshot); a new rate replaces it.
    assert_eq!(
        admin(&cp, "PUT", "/admin/limits/per-client", Some(good)).status,
        200
    );
    let status = admin(&cp, "GET", "/admin/status", None).json();
    assert_eq!(status["sync"]["version"].as_u64().unwrap(), version);
    let bad_bodies = [
        (
            r#"{"key":["cookie:x"],"rate":1,"burst":1}"#,
            "unknown key part",
        ),
        (r#"{"key":["route"],"rate":0,"burst":1}"#, "rate"),
        (r#"{"key":["route"],"rate":1,"burst":1000001}"#, "burst"),
        (r#"{"key":["route"],"rate":-5,"burst":1}"#, "rate"),
        (r#"{"key":["route"],"rate":"10","burst":1}"#, "rate"),
        (
            r#"{"key":["route"],"rate":1,"burst":1,"window_seconds":90000}"#,
            "window_seconds",
        ),
        (
            r#"{"key":["route"],"rate":1,"burst":1,"colour":"red"}"#,
            "unknown field",
        ),
        (r#"{"key":["route"],"burst":1}"#, "rate"),
        (
            r#"{"name":"other","key":["route"],"rate":1,"burst":1}"#,
            "as in the path",
        ),
        (r#"[1,2]"#, "JSON object"),
        (
            r#"{"key":["route"],"rate":1,"burst":1,"match":{"path_prefix":"x"}}"#,
            "match.path_prefix",
        ),
        (
            r#"{"key":["route"],"rate":1,"burst":1,"overrides":{"alice":{"rate":1}}}"#,
            "burst",
        ),
        (r#"{"key":"#, "invalid_request"),
    ];
    for (body, expected) in bad_bodies {
        let a = admin(&cp, "PUT", "/admin/limits/per-client", Some(body));
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(a.body.contains(expected), "{body}: {}", a.body);
    }
    let a = admin(
        &cp,
        "PUT",
        "/admin/limits/Bad%20Name",
        Some(r#"{"key":["route"],"rate":1,"burst":1}"#),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    // Nothing above changed the stored policy.
    let list = admin(&cp, "GET", "/admin/limits", None).json();
    assert_eq!(list["limits"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["limits"][0]["rate"], 100);
    assert_eq!(admin(&cp, "DELETE", "/admin/limits/nope", None).status, 404);
    // The CLI: flags, overrides, clear errors, delete.
    cp.cli_ok(&[
        "limits",
        "set",
        "per-ip",
        "--key",
        "client_address",
        "--rate",
        "10",
        "--burst",
        "5",
        "--method",
        "POST",
        "--override",
        "10.0.0.1=100/50/1",
    ]);
    let out = cp.cli(&[
        "limits", "set", "x", "--key", "cookie:a", "--rate", "1", "--burst", "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key part"));
    let out = cp.cli(&[
        "limits",
        "set",
        "x",
        "--key",
        "route",
        "--rate",
        "1",
        "--burst",
        "1",
        "--override",
        "a=b",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VALUE=RATE/BURST"));
    let listed: Value = serde_json::from_str(&cp.cli_ok(&["limits", "list"])).unwrap();
    let names: Vec<&str> = listed["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["per-client", "per-ip"]);
    assert_eq!(listed["limits"][1]["overrides"]["10.0.0.1"]["burst"], 50);
    cp.cli_ok(&["limits", "delete", "per-ip"]);
    assert_eq!(admin(&cp, "GET", "/admin/limits/per-ip", None).status, 404);
    let audit = admin(&cp, "GET", "/admin/audit?limit=1000", None).json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("limit."))
        .collect();
    assert_eq!(actions, vec!["limit.set", "limit.set", "limit.deleted"]);
}

#[test]
fn embedded_store_survives_restart() {
    survives_restarts(ControlPlane::start(StoreKind::Embedded, ""), None);
}

#[test]
fn redis_store_survives_restart_of_control_plane_and_redis() {
    let mut redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    survives_restarts(cp, Some(&mut redis));
}

#[test]
fn audit_verify_finds_an_edited_entry() {
    let redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    create_client(&cp, "read");
    create_client(&cp, "write");
    assert!(cp
        .cli_ok(&["audit", "verify"])
        .starts_with("audit chain ok"));
    let entry = redis.cli(&["LINDEX", "{meshauth}:log:audit", "1"]);
    let edited = entry
        .trim()
        .replace("\"client.created\"", "\"client.deleted\"");
    assert_ne!(edited, entry.trim());
    redis.cli(&["LSET", "{meshauth}:log:audit", "1", &edited]);
    let out = cp.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry 1 has been edited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Whoever can write Redis rehashes the whole chain after the edit, with plain
    // SHA-256 as the chain once was: without the master key it still fails.
    use sha2::Digest;
    let len: u64 = redis
        .cli(&["LLEN", "{meshauth}:log:audit"])
        .trim()
        .parse()
        .unwrap();
    let mut prev = "0".repeat(64);
    for i in 0..len {
        let raw = redis.cli(&["LINDEX", "{meshauth}:log:audit", &i.to_string()]);
        let mut e: Value = serde_json::from_str(raw.trim()).unwrap();
        e["prev"] = json!(prev);
        let canonical = json!([
            e["seq"],
            e["at"],
            e["actor"],
            e["action"],
            e["target"],
            e["detail"],
            e["prev"]
        ])
        .to_string();
        let hash: String = sha2::Sha256::digest(canonical.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        e["hash"] = json!(hash);
        redis.cli(&[
            "LSET",
            "{meshauth}:log:audit",
            &i.to_string(),
            &e.to_string(),
        ]);
        prev = hash;
    }
    redis.cli(&["SET", "{meshauth}:head:audit", &prev]);
    let out = cp.cli(&["audit", "verify"]);
    assert!(
        !out.status.success(),
        "a chain rehashed without the key passed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry 0 has been edited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whoever can write Redis cuts entries off the end of the audit log. Cutting and
/// pointing the head at the new last entry fails on its own (the head's MAC covers the
/// count); putting back a head saved from an earlier state (a rollback) is only caught
/// by an anchor recorded outside the store, which `audit verify --anchor` checks.
#[test]
fn audit_verify_detects_a_truncated_log() {
    let redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let log = "{meshauth}:log:audit";
    let head = "{meshauth}:head:audit";
    create_client(&cp, "read");
    let saved_head = redis.cli(&["GET", head]).trim().to_string();
    let saved_len: u64 = redis.cli(&["LLEN", log]).trim().parse().unwrap();
    create_client(&cp, "write");
    create_client(&cp, "admin");
    let entries = admin(&cp, "GET", "/admin/audit?limit=1000", None).json();
    let last = entries["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let anchor = format!("{}:{}", last["seq"], last["hash"].as_str().unwrap());
    let ok = cp.cli_ok(&["audit", "verify", "--anchor", &anchor]);
    assert!(ok.starts_with("audit chain ok"), "{ok}");
    assert!(
        ok.contains(&anchor),
        "verify prints the head to anchor: {ok}"
    );
    let len: u64 = redis.cli(&["LLEN", log]).trim().parse().unwrap();
    let failing = |args: &[&str]| {
        let out = cp.cli(args);
        assert!(
            !out.status.success(),
            "{args:?} passed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // The admin API takes the anchor too.
    let wrong = format!("{}:{}", last["seq"], "0".repeat(64));
    let r = admin(
        &cp,
        "GET",
        &format!("/admin/audit/verify?anchor={wrong}"),
        None,
    )
    .json();
    assert_eq!(r["ok"], false, "{r}");
    // Cut the tail and point the head at the new last entry.
    for _ in saved_len..len {
        redis.cli(&["RPOP", log]);
    }
    let kept: Value = serde_json::from_str(
        redis
            .cli(&["LINDEX", log, &(saved_len - 1).to_string()])
            .trim(),
    )
    .unwrap();
    redis.cli(&["SET", head, kept["hash"].as_str().unwrap()]);
    let err = failing(&["audit", "verify"]);
    assert!(err.contains("truncated"), "{err}");
    // A rollback: the tail cut and the head saved before it put back.
    redis.cli(&["SET", head, &saved_head]);
    let err = failing(&["audit", "verify", "--anchor", &anchor]);
    assert!(
        err.contains(&format!("anchor names entry {}", last["seq"])) && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn two_replicas_on_one_redis_serve_one_key_set() {
    let redis = Redis::start();
    let cfg = "[keys]\njwks_max_age = \"1s\"\nclock_skew = \"1s\"\ncheck_interval = \"200ms\"\nrotation_interval = \"4s\"\n";
    let a = ControlPlane::start(StoreKind::Redis(redis.url()), cfg);
    let b = ControlPlane::start(StoreKind::Redis(redis.url()), cfg);
    // Let several scheduled rotations happen with both replicas ticking.
    std::thread::sleep(std::time::Duration::from_secs(9));
    let audit = admin(&a, "GET", "/admin/audit?limit=1000", None).json();
    let activated: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "key.activated")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(
        activated.len() >= 2,
        "scheduled rotations happened: {activated:?}"
    );
    let mut unique = activated.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        activated.len(),
        "each key activated exactly once: {activated:?}"
    );
    // Both replicas answer with the same key set (allowing one check interval to converge).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ja = get(&a.url("/.well-known/jwks.json"), &[]).json();
    let jb = get(&b.url("/.well-known/jwks.json"), &[]).json();
    assert_eq!(ja, jb);
    // A token from one replica introspects as active on the other.
    let t = a.cli_ok(&["token", "issue", "--sub", "x"]);
    let (k, v) = b.admin_headers();
    let i = post_form(
        &b,
        "/oauth2/introspect",
        &format!("token={}", t.trim()),
        &[(&k, &v)],
    );
    assert_eq!(i.json()["active"], true, "{}", i.body);
    // Admin tokens are per deployment configuration: a's is not valid on b.
    let (k, v) = a.admin_headers();
    let i = post_form(
        &b,
        "/oauth2/introspect",
        &format!("token={}", t.trim()),
        &[(&k, &v)],
    );
    assert_eq!(i.status, 401);
    // A client registered through a is known to b.
    let (id, secret) = create_client(&a, "read");
    let i = post_form(
        &b,
        "/oauth2/introspect",
        &format!("token={}", t.trim()),
        &[("authorization", &basic(&id, &secret))],
    );
    assert_eq!(i.json()["active"], true, "{}", i.body);
}

#[test]
fn serves_the_filter_module_for_istio() {
    let wasm = meshauth_tests::filter_wasm();
    let bytes = std::fs::read(&wasm).unwrap();
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        &format!("filter_wasm = \"{}\"", wasm.display()),
    );
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let resp = ureq::get(&cp.url("/filter/meshauth.wasm")).call().unwrap();
    assert_eq!(resp.header("content-type"), Some("application/wasm"));
    let etag = resp.header("etag").unwrap().to_string();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    assert!(body == bytes, "served module differs from the built one");
    assert_eq!(
        get(&cp.url("/filter/meshauth.wasm.sha256"), &[])
            .body
            .trim(),
        sha
    );
    assert_eq!(
        get(
            &cp.url("/filter/meshauth.wasm"),
            &[("if-none-match", &etag)]
        )
        .status,
        304
    );
    // A control plane without a module says so.
    let plain = ControlPlane::start(StoreKind::Embedded, "");
    let a = get(&plain.url("/filter/meshauth.wasm"), &[]);
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (404, json!("not_found"))
    );
}

/// Sentinel: the master is killed; the control plane follows the promoted replica and
/// everything it acknowledged is there. While no replica can hold a write, writes are
/// refused (503) rather than acknowledged and then lost.
#[test]
fn redis_sentinel_failover_loses_nothing_acknowledged() {
    let mut redis = Sentinel::start();
    let cp = ControlPlane::start(
        StoreKind::Sentinel(redis.addresses(), SENTINEL_MASTER_NAME.into()),
        "",
    );
    let ack = acknowledge(&cp);
    // Every acknowledged write is on the replica already (WAIT), so the failover keeps it.
    redis.fail_master();
    // The new master has no replica: writes are refused, not acknowledged and then lost.
    let a = admin(
        &cp,
        "POST",
        "/admin/clients",
        Some(r#"{"name":"x","scopes":[]}"#),
    );
    assert_eq!(a.status, 503, "{}", a.body);
    // Reads follow the new master.
    let (id, secret) = &ack.client;
    let answered = |a: Answer, want: u16| {
        (a.status == want)
            .then_some(())
            .ok_or_else(|| format!("{} {}\n{}", a.status, a.body, cp.log()))
    };
    wait_until("grants after the failover", 20, || {
        let a = post_form(
            &cp,
            "/oauth2/token",
            "grant_type=client_credentials",
            &[("authorization", &basic(id, secret))],
        );
        answered(a, 200)
    });
    // The old master comes back as a replica: writes are accepted again.
    redis.restart_old_master_as_replica();
    wait_until("writes with a replica back", 20, || {
        let body = r#"{"name":"after","scopes":[]}"#;
        answered(admin(&cp, "POST", "/admin/clients", Some(body)), 201)
    });
    assert_kept(&cp, &ack);
    assert!(cp.log().contains("redis master moved"), "{}", cp.log());
}

/// Random and mutated bodies on every endpoint that takes one: never a 5xx, the server
/// keeps answering, nothing stored before is touched and the audit chain holds.
#[test]
fn fuzzed_bodies_never_get_a_5xx_or_harm_stored_state() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (id, secret) = create_client(&cp, "read");
    let before = admin(&cp, "GET", "/admin/clients", None).body;
    let seeds: [&[u8]; 6] = [
        br#"{"name":"svc","scopes":["read"]}"#,
        br#"{"sub":"alice","scope":"read","ttl":"10m"}"#,
        br#"{"kind":"sub","value":"x"}"#,
        br#"{"key":["claim:sub"],"rate":5,"burst":2,"match":{"path_prefix":"/a"}}"#,
        b"grant_type=client_credentials&scope=read",
        b"token=abc.def.ghi&token_type_hint=access_token",
    ];
    let endpoints = [
        ("POST", "/admin/clients", true),
        ("POST", "/admin/tokens", true),
        ("POST", "/admin/revocations", true),
        ("PUT", "/admin/limits/fuzz", true),
        ("POST", "/oauth2/token", false),
        ("POST", "/oauth2/revoke", false),
        ("POST", "/oauth2/introspect", false),
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let basic_auth = basic(&id, &secret);
    for round in 0..300 {
        let seed = seeds[round % seeds.len()];
        let mut body = seed.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % body.len().max(1);
            let byte = (next() % 256) as u8;
            match next() % 3 {
                0 if !body.is_empty() => body[at] = byte,
                1 => body.insert(at.min(body.len()), byte),
                _ if !body.is_empty() => {
                    body.remove(at);
                }
                _ => body.push(byte),
            }
        }
        let text = String::from_utf8_lossy(&body).to_string();
        let (method, path, json) = endpoints[(next() as usize) % endpoints.len()];
        let (k, v) = cp.admin_headers();
        let ctype = if json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let mut headers = vec![("content-type", ctype)];
        if json {
            headers.push((k.as_str(), v.as_str()));
        } else if path != "/oauth2/token" || round % 2 == 0 {
            headers.push(("authorization", basic_auth.as_str()));
        }
        let a = request(method, &cp.url(path), &headers, Some(&text));
        assert!(
            a.status < 500,
            "{method} {path} {text:?} → {} {}",
            a.status,
            a.body
        );
    }
    assert_eq!(get(&cp.url("/healthz"), &[]).status, 200);
    // Mutations that still parsed may have created things; the fixed seeds' own
    // resources aside, what was there before is untouched.
    let clients = admin(&cp, "GET", "/admin/clients", None).json();
    let before_clients: Value = serde_json::from_str(&before).unwrap();
    for c in before_clients["clients"].as_array().unwrap() {
        assert!(clients["clients"].as_array().unwrap().contains(c));
    }
    let report = admin(&cp, "GET", "/admin/audit/verify", None).json();
    assert_eq!(report["ok"], true, "{report}");
}

/// Revoking a session, a subject or a client (or deleting the client) stops its refresh
/// tokens and its access tokens, through the real binary, CLI and Redis; revoking
/// something never issued is an error, and `revoke list` shows what is in force.
#[test]
fn revocations_stop_sessions_subjects_and_deleted_clients_on_redis() {
    let redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let (k, v) = cp.admin_headers();
    let introspect = |t: &str| {
        post_form(
            &cp,
            "/oauth2/introspect",
            &format!("token={t}"),
            &[(&k, &v)],
        )
        .json()["active"]
            .clone()
    };
    let refresh = |t: &str| {
        post_form(
            &cp,
            "/oauth2/token",
            &format!("grant_type=refresh_token&refresh_token={t}"),
            &[],
        )
    };
    let session = |sub: &str| -> (String, String, String) {
        let v: Value =
            serde_json::from_str(&cp.cli_ok(&["token", "issue", "--sub", sub, "--json"])).unwrap();
        (
            v["access_token"].as_str().unwrap().into(),
            v["refresh_token"].as_str().unwrap().into(),
            v["sid"].as_str().unwrap().into(),
        )
    };
    let (a1, r1, sid) = session("alice");
    let (_, rb1, _) = session("bob");
    let (_, rb2, _) = session("bob");
    let (_, rc, _) = session("carol");
    cp.cli_ok(&["revoke", "session", &sid]);
    cp.cli_ok(&["revoke", "subject", "bob"]);
    // Past the rules' not-before second: the sessions themselves are revoked.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for t in [&r1, &rb1, &rb2] {
        assert_eq!(introspect(t), false);
        let r = refresh(t);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (400, json!("invalid_grant")),
            "{}",
            r.body
        );
    }
    assert_eq!(introspect(&a1), false);
    assert_eq!(refresh(&rc).status, 200, "another subject is untouched");
    // Deleting a client revokes what it holds.
    let (id, secret) = create_client(&cp, "read");
    let at = post_form(
        &cp,
        "/oauth2/token",
        "grant_type=client_credentials",
        &[("authorization", &basic(&id, &secret))],
    )
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(introspect(&at), true);
    cp.cli_ok(&["clients", "delete", &id]);
    assert_eq!(introspect(&at), false);
    // Unknown targets: a clear error and a non-zero exit, and nothing recorded.
    let out = cp.cli(&["revoke", "client", "c-never-was"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404") && err.contains("c-never-was"), "{err}");
    let listed: Value = serde_json::from_str(&cp.cli_ok(&["revoke", "list"])).unwrap();
    let all = listed["revocations"].as_array().unwrap();
    for (kind, value) in [
        ("sid", sid.as_str()),
        ("sub", "bob"),
        ("client_id", id.as_str()),
    ] {
        assert!(
            all.iter().any(|r| r["kind"] == kind && r["value"] == value),
            "{kind} {value}: {listed}"
        );
    }
    assert!(!listed.to_string().contains("c-never-was"));
}

/// Redis with a replica and `replica_acks = 1`: while the replica is detached, `WAIT`
/// fails although the write applied. The refresh grant says so (503 not_replicated), and
/// the client's retry of the same refresh token gets its answer instead of tripping
/// reuse detection and losing the session.
#[test]
fn a_refresh_whose_write_was_not_replicated_can_be_retried() {
    let master = Redis::start();
    let replica = Redis::start_replica_of(&master);
    let cp = ControlPlane::start(StoreKind::RedisReplicated(master.url(), 1), "");
    let v: Value =
        serde_json::from_str(&cp.cli_ok(&["token", "issue", "--sub", "ivy", "--json"])).unwrap();
    let r1 = v["refresh_token"].as_str().unwrap().to_string();
    let body = format!("grant_type=refresh_token&refresh_token={r1}");
    replica.cli(&["REPLICAOF", "NO", "ONE"]);
    let failed = post_form(&cp, "/oauth2/token", &body, &[]);
    assert_eq!(failed.status, 503, "{}", failed.body);
    let e = failed.json();
    assert_eq!(e["error"]["code"], "not_replicated", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("applied"),
        "{e}"
    );
    replica.cli(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    replica.wait_synced();
    let retried = post_form(&cp, "/oauth2/token", &body, &[]);
    assert_eq!(retried.status, 200, "{}", retried.body);
    let r2 = retried.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let next = post_form(
        &cp,
        "/oauth2/token",
        &format!("grant_type=refresh_token&refresh_token={r2}"),
        &[],
    );
    assert_eq!(next.status, 200, "the session lives on: {}", next.body);
}

#[test]
fn sigterm_answers_parked_polls_and_frees_the_store_for_a_restart() {
    let mut cp = ControlPlane::start(StoreKind::Embedded, "");
    let version = |a: &Answer| -> u64 {
        a.header(meshauth_wire::headers::VERSION)
            .unwrap()
            .parse()
            .unwrap()
    };
    let v0 = version(&cp.sync_get("/sync/v1/snapshot"));
    assert!(v0 > 0, "a version to poll past");
    // A poll parked for the longest wait the protocol allows.
    let url = cp.url(&format!(
        "/sync/v1/snapshot?version={v0}&wait_ms=60000&filter=parked&applied={v0}"
    ));
    let (k, v) = cp.sync_auth();
    let poll = std::thread::spawn(move || get(&url, &[(k, &v)]));
    // The poll records its filter just before it parks (a SIGTERM in between still
    // finds it: a closing control plane parks nothing).
    wait_until("the poll is in flight", 10, || {
        let status: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
        match status["filters"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            _ => Err(status.to_string()),
        }
    });
    // The poll waits up to 60 s: the process must end well before it would run out.
    let status = cp
        .terminate(std::time::Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", cp.log()));
    assert!(status.success(), "{status}:\n{}", cp.log());
    let answered = poll.join().unwrap();
    assert_eq!(answered.status, 304, "{}", answered.body);
    assert_eq!(version(&answered), v0);
    // At once, on the same data file: the store's lock was released.
    cp.start_again()
        .unwrap_or_else(|log| panic!("restart on the same data failed:\n{log}"));
    assert_eq!(version(&cp.sync_get("/sync/v1/snapshot")), v0);
}

#[test]
fn logs_to_a_file_carry_no_terminal_colours() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    cp.cli_ok(&["status"]);
    let log = cp.log();
    assert!(log.contains("meshauth control plane serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log:?}"
    );
}

#[test]
fn audit_list_shows_the_newest_entries_unless_asked_from_an_entry() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    for name in ["first", "second", "third"] {
        cp.cli_ok(&["clients", "create", name, "--scope", "read"]);
    }
    let seqs = |args: &[&str]| -> Vec<u64> {
        let v: Value = serde_json::from_str(&cp.cli_ok(args)).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    let all = seqs(&["audit", "list", "--from", "0", "--limit", "1000"]);
    assert!(all.len() >= 3, "{all:?}");
    let newest = all[all.len() - 2..].to_vec();
    // By default: the newest, oldest first.
    assert_eq!(seqs(&["audit", "list", "--limit", "2"]), newest);
    let tail = seqs(&["audit", "list"]);
    assert_eq!(tail.last(), all.last());
    // --from reads on from an entry, as before.
    assert_eq!(
        seqs(&["audit", "list", "--from", "0", "--limit", "1"]),
        vec![all[0]]
    );
    // The API: `last` and `from` together is a clear 400.
    let a = admin(&cp, "GET", "/admin/audit?from=0&last=1", None);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("not both"), "{}", a.body);
    assert_eq!(
        admin(&cp, "GET", "/admin/audit?last=1", None).json()["entries"][0]["seq"],
        json!(all[all.len() - 1])
    );
}
