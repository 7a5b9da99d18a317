#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Federation end to end: a real OpenID Provider (`oidc-provider`, tests/idp) issues
//! RS256, ES256, ES384 and EdDSA access tokens; the real control plane trusts it, fetches its
//! keys and pushes them; the filter in a real Envoy verifies its tokens.

use std::time::Duration;

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{Envoy, Options};
use meshauth_tests::http::{get, Answer};
use meshauth_tests::idp::{jose_header, Idp, Resource};
use meshauth_tests::wait::wait_until;
use serde_json::json;

/// Loopback http provider; a key set is refetched every second (no max-age is sent).
const FEDERATION: &str = "[federation]\nallow_insecure_http = true\ncache_floor = \"1s\"\n";

fn envoy_for(cp: &ControlPlane) -> Envoy {
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let config = json!({
        "issuer": cp.base_url(),
        "audiences": ["api"],
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "routes": [{"name": "api", "path_prefix": "/api", "scopes_all": ["read"]}],
        "sync": cp.filter_sync(&key),
    });
    Envoy::with_echo(&config, Options::control_plane(cp.port))
}

fn trust(cp: &ControlPlane, idp: &Idp) {
    let discovery = idp.discovery_url();
    let mut args = vec!["issuers", "add", "idp", "--discovery", &discovery];
    for r in [
        Resource::Rs256,
        Resource::Es256,
        Resource::Es384,
        Resource::EdDsa,
    ] {
        args.extend(["--audience", r.audience()]);
    }
    for alg in ["RS256", "ES256", "ES384", "EdDSA"] {
        args.extend(["--alg", alg]);
    }
    args.extend(["--typ", "at+jwt"]);
    // The provider's subjects are taken as mesh subjects upstream: said explicitly.
    args.extend(["--forward-claim", "sub=x-meshauth-sub"]);
    cp.cli_ok(&args);
}

fn call(envoy: &Envoy, token: &str) -> Answer {
    get(
        &envoy.url("/api/x"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("connection", "close"),
        ],
    )
}

fn eventually(envoy: &Envoy, token: &str, want: u16) -> Answer {
    wait_until(&format!("a {want}"), 15, || {
        let a = call(envoy, token);
        if a.status == want {
            return Ok(a);
        }
        Err(format!("still {} ({})\n{}", a.status, a.body, envoy.log()))
    })
}

fn cp_metric(cp: &ControlPlane, line_start: &str) -> Option<f64> {
    get(&cp.url("/metrics"), &[])
        .body
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn error_code(a: &Answer) -> String {
    a.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_real_providers_tokens_pass_by_their_rules_and_its_failures_keep_the_last_good_keys() {
    let mut idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, FEDERATION);
    let envoy = envoy_for(&cp);
    let rs = idp.token(Resource::Rs256, "read");
    assert_eq!(jose_header(&rs)["alg"], "RS256");
    // Untrusted so far: the filter knows no such issuer.
    assert_eq!(call(&envoy, &rs).status, 401);
    trust(&cp, &idp);

    // Each algorithm, from the provider's own token endpoint.
    let a = eventually(&envoy, &rs, 200);
    assert_eq!(a.json()["headers"]["x-meshauth-sub"], "mesh");
    let es = idp.token(Resource::Es256, "read");
    assert_eq!(jose_header(&es)["alg"], "ES256");
    assert_eq!(call(&envoy, &es).status, 200);
    let es384 = idp.token(Resource::Es384, "read");
    assert_eq!(jose_header(&es384)["alg"], "ES384");
    assert_eq!(call(&envoy, &es384).status, 200);
    let ed = idp.token(Resource::EdDsa, "read");
    assert_eq!(jose_header(&ed)["alg"], "EdDSA");
    assert_eq!(call(&envoy, &ed).status, 200);
    // The control plane's own tokens still pass beside them.
    let own = cp.cli_ok(&["token", "issue", "--sub", "alice", "--scope", "read"]);
    assert_eq!(call(&envoy, own.trim()).status, 200);

    // Off the issuer's rules or the route's.
    let other = idp.token(Resource::Other, "read");
    let a = call(&envoy, &other);
    assert_eq!((a.status, error_code(&a)), (401, "bad_audience".into()));
    let write_only = idp.token(Resource::Rs256, "write");
    assert_eq!(call(&envoy, &write_only).status, 403);
    let mut forged = rs.clone().into_bytes();
    let n = forged.len() - 3;
    forged[n] = if forged[n] == b'A' { b'B' } else { b'A' };
    let a = call(&envoy, std::str::from_utf8(&forged).unwrap());
    assert_eq!((a.status, error_code(&a)), (401, "bad_signature".into()));
    assert_eq!(
        cp_metric(&cp, "meshauth_federation_keys{issuer=\"idp\"}"),
        Some(4.0)
    );

    // The provider serves an empty set, then garbage: the last good keys stay, in the
    // control plane and at the edge.
    for mode in ["empty", "garbage"] {
        idp.serve_jwks(mode);
        let seen = idp.jwks_fetches();
        wait_until(&format!("two fetches of a {mode} JWKS"), 15, || {
            (idp.jwks_fetches() >= seen + 2)
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        });
        assert_eq!(
            cp_metric(&cp, "meshauth_federation_keys{issuer=\"idp\"}"),
            Some(4.0),
            "{mode}"
        );
        for t in [&rs, &es, &es384, &ed] {
            assert_eq!(call(&envoy, t).status, 200, "{mode}");
        }
    }
    idp.serve_jwks("normal");

    // The provider dies: the circuit opens (and says so), existing keys keep verifying.
    idp.kill();
    wait_until("the circuit to open", 30, || {
        match cp_metric(&cp, "meshauth_federation_circuit_open{issuer=\"idp\"}") {
            Some(v) if v >= 1.0 => Ok(()),
            other => Err(format!("circuit_open {other:?}")),
        }
    });
    assert!(cp_metric(
        &cp,
        "meshauth_federation_fetch_failures_total{issuer=\"idp\"}"
    )
    .is_some_and(|v| v >= 3.0));
    std::thread::sleep(Duration::from_millis(200));
    for t in [&rs, &es, &es384, &ed] {
        assert_eq!(call(&envoy, t).status, 200);
    }
    let listed = cp.cli_ok(&["issuers", "list"]);
    let row: Vec<&str> = listed
        .lines()
        .find(|l| l.starts_with("idp\t"))
        .unwrap_or_else(|| panic!("{listed}"))
        .split('\t')
        .collect();
    assert_eq!((row[1], row[2]), ("open", "4"), "{listed}");
}

/// `Authorization: Basic` for a client as `meshauth clients create` printed it.
fn basic_of(created: &serde_json::Value) -> String {
    use base64::Engine;
    let pair = format!(
        "{}:{}",
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap()
    );
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// RFC 8693 end to end: the provider's token, exchanged at the real control plane by
/// a client allowed to, is a mesh token the filter admits; revoking it (by the CLI)
/// makes the edge refuse it. The request is the one docs/federation.md shows with curl.
#[test]
fn a_providers_token_exchanged_for_a_mesh_token_is_admitted_then_revoked_at_the_edge() {
    let idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, FEDERATION);
    let envoy = envoy_for(&cp);
    let discovery = idp.discovery_url();
    cp.cli_ok(&[
        "issuers",
        "add",
        "idp",
        "--discovery",
        &discovery,
        "--audience",
        Resource::Rs256.audience(),
        "--alg",
        "RS256",
        "--typ",
        "at+jwt",
        "--exchange-audience",
        "api",
        "--exchange-scope",
        "read",
        "--exchange-ttl",
        "120",
    ]);
    let created: serde_json::Value =
        serde_json::from_str(&cp.cli_ok(&["clients", "create", "gw", "--token-exchange"])).unwrap();
    assert_eq!(created["token_exchange"], true, "{created}");
    let gw = basic_of(&created);
    let subject = idp.token(Resource::Rs256, "read");
    let exchange = |auth: &str| {
        // A JWT is base64url and dots, safe in a form as it is.
        let body = format!(
            "grant_type=urn:ietf:params:oauth:grant-type:token-exchange\
             &subject_token_type=urn:ietf:params:oauth:token-type:access_token\
             &subject_token={subject}&audience=api&scope=read"
        );
        meshauth_tests::http::request(
            "POST",
            &cp.url("/oauth2/token"),
            &[
                ("authorization", auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(&body),
        )
    };
    // Refused until the control plane holds the provider's keys (never fetched on the
    // request path), then granted.
    let answer = wait_until("the provider's keys held for exchange", 15, || {
        let a = exchange(&gw);
        (a.status == 200)
            .then(|| a.clone())
            .ok_or_else(|| format!("{} {}", a.status, a.body))
    });
    let v = answer.json();
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        (v["token_type"].clone(), v["scope"].clone()),
        (json!("Bearer"), json!("read"))
    );
    let ttl = v["expires_in"].as_i64().unwrap();
    assert!((1..=120).contains(&ttl), "{v}");
    let mesh = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        jose_header(&mesh)["alg"],
        "EdDSA",
        "a mesh token of the control plane"
    );

    // A client without the permission is refused, with the RFC 8693 code.
    let plain: serde_json::Value =
        serde_json::from_str(&cp.cli_ok(&["clients", "create", "svc"])).unwrap();
    let plain_auth = basic_of(&plain);
    let a = exchange(&plain_auth);
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (400, json!("unauthorized_client"))
    );

    // Admitted at the edge, as the exchanged subject.
    let a = eventually(&envoy, &mesh, 200);
    assert_eq!(a.json()["headers"]["x-meshauth-sub"], "ext:idp:mesh");
    // Revoked by the CLI: the edge refuses it once the revocation has synced.
    cp.cli_ok(&["revoke", "token", &mesh]);
    let a = eventually(&envoy, &mesh, 403);
    assert_eq!(error_code(&a), "token_revoked", "{}", a.body);
}
