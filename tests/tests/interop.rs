#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tokens the control plane issues verify in Envoy's native `jwt_authn` (remote JWKS),
//! in an independent JWT library, and in the meshauth filter; tampered ones nowhere.

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{Envoy, Options};
use meshauth_tests::http::get;
use serde_json::{json, Value};

fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut claims: Value =
        serde_json::from_slice(&meshauth_wire::b64::decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("root");
    parts[1] = meshauth_wire::b64::encode(claims.to_string());
    parts.join(".")
}

fn issue(cp: &ControlPlane) -> String {
    cp.cli_ok(&["token", "issue", "--sub", "interop", "--scope", "read"])
        .trim()
        .to_string()
}

#[test]
fn native_jwt_authn_with_remote_jwks_accepts_meshauth_tokens() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let template = std::fs::read_to_string(
        meshauth_tests::workspace_root().join("envoy/jwt_authn-interop.yaml"),
    )
    .unwrap();
    let envoy = Envoy::start(
        &json!({}),
        Options {
            template: Some(template),
            vars: vec![("CP_PORT", cp.port.to_string()), ("ISSUER", cp.base_url())],
            ..Default::default()
        },
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let token = issue(&cp);
    let auth = format!("Bearer {token}");
    // The remote JWKS is fetched asynchronously at start-up; allow it a moment.
    meshauth_tests::wait::wait_until("jwt_authn to accept", 10, || {
        let a = get(&envoy.url("/x"), &[("authorization", &auth)]);
        (a.status == 200).then_some(()).ok_or(format!(
            "jwt_authn refused a meshauth token: {} {}",
            a.status, a.body
        ))
    });
    let bad = format!("Bearer {}", tamper(&token));
    assert_eq!(
        get(&envoy.url("/x"), &[("authorization", &bad)]).status,
        401
    );
}

#[test]
fn an_independent_library_verifies_meshauth_tokens() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let jwks = get(&cp.url("/.well-known/jwks.json"), &[]).json();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["api"]);
    validation.set_issuer(&[cp.base_url()]);
    let token = issue(&cp);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "interop");
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    assert!(jsonwebtoken::decode::<Value>(&tamper(&token), &key, &validation).is_err());
}

#[test]
fn the_filter_accepts_tokens_from_the_control_plane() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let jwks = get(&cp.url("/.well-known/jwks.json"), &[]).json();
    let config = json!({
        "issuer": cp.base_url(), "audiences": ["api"], "bootstrap_jwks": jwks,
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
    });
    let envoy = Envoy::with_echo(&config, Options::default());
    let token = issue(&cp);
    let a = get(
        &envoy.url("/x"),
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-meshauth-sub"], "interop");
    let a = get(
        &envoy.url("/x"),
        &[("authorization", &format!("Bearer {}", tamper(&token)))],
    );
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (401, json!("bad_signature"))
    );
}
