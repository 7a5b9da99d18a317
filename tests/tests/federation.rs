#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Federation end to end: a real OpenID Provider (`oidc-provider`, tests/idp) issues
//! RS256, ES256 and EdDSA access tokens; the real control plane trusts it, fetches its
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
    for r in [Resource::Rs256, Resource::Es256, Resource::EdDsa] {
        args.extend(["--audience", r.audience()]);
    }
    args.extend(["--alg", "RS256", "--alg", "ES256", "--alg", "EdDSA"]);
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
        Some(3.0)
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
            Some(3.0),
            "{mode}"
        );
        for t in [&rs, &es, &ed] {
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
    for t in [&rs, &es, &ed] {
        assert_eq!(call(&envoy, t).status, 200);
    }
    let listed = cp.cli_ok(&["issuers", "list"]);
    let row: Vec<&str> = listed
        .lines()
        .find(|l| l.starts_with("idp\t"))
        .unwrap_or_else(|| panic!("{listed}"))
        .split('\t')
        .collect();
    assert_eq!((row[1], row[2]), ("open", "3"), "{listed}");
}
