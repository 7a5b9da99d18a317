#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Federation end to end: a real OpenID Provider (`oidc-provider`, tests/idp) issues
//! RS256, ES256, ES384 and EdDSA access tokens; the real control plane trusts it, fetches its
//! keys and pushes them; the filter in a real Envoy verifies its tokens.

use std::time::{Duration, Instant};

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{Envoy, Options};
use meshauth_tests::http::{get, request, Answer};
use meshauth_tests::idp::{jose_header, Idp, Resource};
use meshauth_tests::wait::wait_until;
use serde_json::json;

/// Loopback http provider; a key set is refetched every second (no max-age is sent).
const FEDERATION: &str = "[federation]\nallow_insecure_http = true\ncache_floor = \"1s\"\n";
/// A key set is refetched on schedule no sooner than a minute after the last fetch: within
/// a test, only a filter's unknown-kid report can explain another fetch. The report
/// gate keeps its default (5 s).
const SLOW_SCHEDULE: &str = "[federation]\nallow_insecure_http = true\ncache_floor = \"60s\"\n";

fn envoy_for(cp: &ControlPlane) -> Envoy {
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let config = json!({
        "issuer": cp.base_url(),
        "audiences": ["api"],
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "routes": [
            {"name": "api", "path_prefix": "/api", "scopes_all": ["read"]},
            {"name": "idp-only", "path_prefix": "/idp-only", "issuers": ["idp"]}
        ],
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
    args.extend([
        "--typ",
        "at+jwt",
        "--forward-claim",
        "sub=x-meshauth-idp-sub",
    ]);
    cp.cli_ok(&args);
}

fn call(envoy: &Envoy, token: &str) -> Answer {
    call_at(envoy, "/api/x", token)
}

/// A call with `x-meshauth-idp-sub` and `x-meshauth-sub` forged by the client.
fn call_at(envoy: &Envoy, path: &str, token: &str) -> Answer {
    get(
        &envoy.url(path),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-meshauth-idp-sub", "forged"),
            ("x-meshauth-sub", "forged"),
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
    // The issuer's forwarded claim; the filter's own is for our tokens.
    assert_eq!(a.json()["headers"]["x-meshauth-idp-sub"], "mesh");
    assert_eq!(a.json()["headers"].get("x-meshauth-sub"), None);
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

/// A real provider's tokens refused by each rule an admin sets beside the audience: an
/// algorithm the provider signs with that the issuer does not list, a `typ` other than
/// the issuer's, and an `iss` other than the one registered.
#[test]
fn a_real_providers_tokens_off_the_issuers_alg_typ_or_iss_are_refused() {
    let idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, FEDERATION);
    let envoy = envoy_for(&cp);
    let discovery = idp.discovery_url();
    let jwks_uri = get(&discovery, &[]).json()["jwks_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let add = |source: &[&str], typ: &str| {
        let mut args = vec!["issuers", "add", "idp"];
        args.extend_from_slice(source);
        args.extend([
            "--audience",
            Resource::Rs256.audience(),
            "--audience",
            Resource::Es256.audience(),
            "--alg",
            "RS256",
            "--typ",
            typ,
        ]);
        cp.cli_ok(&args);
    };
    let rs = idp.token(Resource::Rs256, "read");
    let es = idp.token(Resource::Es256, "read");
    let refused_with = |token: &str, code: &str| {
        wait_until(&format!("401 {code}"), 15, || {
            let a = call(&envoy, token);
            if (a.status, error_code(&a).as_str()) == (401, code) {
                return Ok(());
            }
            Err(format!("{} {}", a.status, a.body))
        })
    };

    // RS256 only: the provider's ES256 token is refused, its RS256 one admitted.
    add(&["--discovery", &discovery], "at+jwt");
    eventually(&envoy, &rs, 200);
    refused_with(&es, "bad_algorithm");

    // The same provider registered with another typ: its at+jwt tokens are refused.
    cp.cli_ok(&["issuers", "delete", "idp"]);
    add(&["--discovery", &discovery], "jwt");
    refused_with(&rs, "malformed_token");

    // Its keys under an issuer name it does not use: its tokens' iss is not trusted.
    cp.cli_ok(&["issuers", "delete", "idp"]);
    add(
        &[
            "--issuer",
            "https://not-the-provider.example",
            "--jwks-uri",
            &jwks_uri,
        ],
        "at+jwt",
    );
    wait_until(
        "the impostor issuer's keys at the edge",
        15,
        || match cp_metric(&cp, "meshauth_federation_keys{issuer=\"idp\"}") {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let a = call(&envoy, &rs);
    assert_eq!(a.status, 401, "{}", a.body);
}

/// One subject name, "mesh", at the provider (its client_credentials tokens) and at the
/// control plane: revoking either leaves the other, each issuer's tokens forward their
/// own headers (a client's forged copies never reach the upstream), and a route that
/// requires the provider refuses ours.
#[test]
fn a_subject_revoked_at_one_issuer_stays_valid_at_the_other() {
    let idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, FEDERATION);
    let envoy = envoy_for(&cp);
    trust(&cp, &idp);
    let fed = idp.token(Resource::Rs256, "read");
    let own = cp
        .cli_ok(&["token", "issue", "--sub", "mesh", "--scope", "read"])
        .trim()
        .to_string();
    let a = eventually(&envoy, &fed, 200);
    let headers = &a.json()["headers"];
    assert_eq!(headers["x-meshauth-idp-sub"], "mesh", "{headers}");
    assert_eq!(headers.get("x-meshauth-sub"), None, "{headers}");
    let a = call(&envoy, &own);
    assert_eq!(a.status, 200, "{}", a.body);
    let headers = &a.json()["headers"];
    assert_eq!(headers["x-meshauth-sub"], "mesh", "{headers}");
    assert_eq!(headers.get("x-meshauth-idp-sub"), None, "{headers}");

    // A route that requires the provider.
    assert_eq!(call_at(&envoy, "/idp-only/x", &fed).status, 200);
    let a = call_at(&envoy, "/idp-only/x", &own);
    assert_eq!(
        (a.status, error_code(&a)),
        (403, "issuer_not_allowed".into())
    );

    // The provider's "mesh" is revoked; ours is not.
    cp.cli_ok(&["revoke", "subject", "mesh", "--issuer", "idp"]);
    let a = eventually(&envoy, &fed, 403);
    assert_eq!(error_code(&a), "token_revoked");
    assert_eq!(call(&envoy, &own).status, 200);
    // An unknown issuer is refused, and nothing changes.
    let out = cp.cli(&["revoke", "subject", "mesh", "--issuer", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a trusted issuer"),
        "{out:?}"
    );
    assert_eq!(call(&envoy, &own).status, 200);

    // A provider token issued after its rule passes again (its `iat` is past the rule)...
    let fresh = wait_until("a provider token issued after the rule", 15, || {
        let t = idp.token(Resource::Rs256, "read");
        match call(&envoy, &t).status {
            200 => Ok(t),
            s => {
                std::thread::sleep(Duration::from_millis(200));
                Err(format!("still {s}"))
            }
        }
    });
    // ...and revoking our "mesh" does not touch it.
    cp.cli_ok(&["revoke", "subject", "mesh"]);
    let a = eventually(&envoy, &own, 403);
    assert_eq!(error_code(&a), "token_revoked");
    assert_eq!(call(&envoy, &fresh).status, 200);
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
    let created: serde_json::Value = serde_json::from_str(&cp.cli_ok(&[
        "clients",
        "create",
        "gw",
        "--scope",
        "read",
        "--token-exchange",
    ]))
    .unwrap();
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

    // Another exchange of the same provider token, then the provider's client (its
    // `client_id` claim: "mesh") revoked at that issuer, after the exchange: the mesh
    // token carries that client in `ext`, so the edge refuses it too, and the
    // provider token is no longer exchanged.
    let again = exchange(&gw);
    assert_eq!(again.status, 200, "{}", again.body);
    let mesh = again.json()["access_token"].as_str().unwrap().to_string();
    eventually(&envoy, &mesh, 200);
    cp.cli_ok(&["revoke", "client", "mesh", "--issuer", "idp"]);
    let a = eventually(&envoy, &mesh, 403);
    assert_eq!(error_code(&a), "token_revoked", "{}", a.body);
    let a = exchange(&gw);
    assert_eq!(
        (a.status, a.json()["error"].clone()),
        (400, json!("invalid_grant")),
        "{}",
        a.body
    );
}

/// `token` with its header's `kid` replaced: the signature no longer matters, the filter
/// refuses it for the unknown key before checking it.
fn with_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    let mut header = jose_header(token);
    header["kid"] = json!(kid);
    let head = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    let rest = token.split_once('.').unwrap().1;
    format!("{head}.{rest}")
}

fn report(cp: &ControlPlane, auth: Option<(&str, &str)>, body: &str) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(auth);
    request(
        "POST",
        &cp.url("/sync/v1/unknown-kid"),
        &headers,
        Some(body),
    )
}

fn wait_for_fetches(idp: &Idp, at_least: u64) {
    wait_until(&format!("{at_least} JWKS fetches"), 15, || {
        let n = idp.jwks_fetches();
        (n >= at_least)
            .then_some(())
            .ok_or_else(|| format!("{n} fetches"))
    });
}

/// The provider rotates its keys; a token signed with the new key is refused once for
/// the unknown kid, the filter reports it, the control plane fetches at once (its
/// schedule would wait a minute) and the edge admits the token seconds later. A flood
/// of made-up kids costs the provider at most a fetch or two.
#[test]
fn a_rotation_reaches_the_edge_through_the_filters_unknown_kid_report() {
    let idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, SLOW_SCHEDULE);
    let envoy = envoy_for(&cp);
    trust(&cp, &idp);
    let old = idp.token(Resource::Rs256, "read");
    eventually(&envoy, &old, 200);
    let fetched = idp.jwks_fetches();

    let kids = idp.rotate();
    let new = idp.token(Resource::Rs256, "read");
    assert_eq!(jose_header(&new)["kid"], kids[0].as_str());
    let rotated = Instant::now();
    let first = call(&envoy, &new);
    assert!(
        first.status == 200 || (first.status, error_code(&first)) == (401, "unknown_key".into()),
        "{} {}",
        first.status,
        first.body
    );
    wait_until("the new key at the edge", 20, || {
        let a = call(&envoy, &new);
        if a.status == 200 {
            return Ok(());
        }
        Err(format!("still {} ({})\n{}", a.status, a.body, cp.log()))
    });
    eprintln!(
        "rotation to admission at the edge: {:?} (first call {})",
        rotated.elapsed(),
        first.status
    );
    assert!(
        cp_metric(
            &cp,
            "meshauth_federation_unknown_kid_reports_total{outcome=\"triggered\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the report, not the schedule, brought the key"
    );
    assert!(idp.jwks_fetches() > fetched);
    assert_eq!(
        call(&envoy, &old).status,
        200,
        "the old key is still published"
    );

    // A flood of tokens with made-up kids, spread over a few seconds so every worker
    // reports several times: the control plane's gate lets through at most one fetch
    // per interval, deferred to when the interval has passed.
    let before = idp.jwks_fetches();
    for i in 0..50 {
        let forged = with_kid(&new, &format!("forged-{i}-{}", rand::random::<u64>()));
        let a = call(&envoy, &forged);
        assert_eq!((a.status, error_code(&a)), (401, "unknown_key".into()));
        std::thread::sleep(Duration::from_millis(60));
    }
    // Past the interval: a deferred fetch has had its chance.
    std::thread::sleep(Duration::from_secs(7));
    let flood_fetches = idp.jwks_fetches() - before;
    eprintln!("JWKS fetches caused by 50 forged kids: {flood_fetches}");
    assert!(flood_fetches <= 2, "{flood_fetches} fetches");
    assert!(
        cp_metric(
            &cp,
            "meshauth_federation_unknown_kid_reports_total{outcome=\"suppressed\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "the flood reached the gate"
    );
    for t in [&old, &new] {
        assert_eq!(call(&envoy, t).status, 200);
    }
}

/// The report endpoint itself: only for holders of the sync credential, bounded,
/// ignoring issuers it does not trust, and gated per issuer.
#[test]
fn unknown_kid_reports_are_authenticated_bounded_and_gated() {
    let idp = Idp::start();
    let cp = ControlPlane::start(StoreKind::Embedded, SLOW_SCHEDULE);
    trust(&cp, &idp);
    wait_for_fetches(&idp, 1);
    wait_until("the keys held", 15, || {
        cp_metric(&cp, "meshauth_federation_keys{issuer=\"idp\"}")
            .filter(|n| *n >= 1.0)
            .ok_or_else(|| "no keys yet".to_string())
    });
    let start = idp.jwks_fetches();
    let (k, v) = cp.sync_auth();
    let auth = Some((k, v.as_str()));
    let body = |iss: &str, kid: &str| json!({"issuer": iss, "kid": kid}).to_string();

    // Hostile first: none of these fetches anything.
    let a = report(&cp, None, &body(&idp.issuer, "k"));
    assert_eq!(a.status, 401, "{}", a.body);
    let a = report(
        &cp,
        Some(("authorization", "Bearer wrong")),
        &body(&idp.issuer, "k"),
    );
    assert_eq!(a.status, 401, "{}", a.body);
    for bad in [
        "not json".to_string(),
        "{}".to_string(),
        body(&idp.issuer, ""),
        body(&idp.issuer, &"k".repeat(129)),
        body(&idp.issuer, "k\u{0}"),
        body(&"i".repeat(513), "k"),
        json!({"issuer": idp.issuer, "kid": "k", "extra": 1}).to_string(),
        json!({"issuer": idp.issuer, "kid": 7}).to_string(),
    ] {
        let a = report(&cp, auth, &bad);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    let outcome = |a: &Answer| a.json()["outcome"].as_str().unwrap_or("").to_string();
    let a = report(&cp, auth, &body("https://not-trusted.example", "k"));
    assert_eq!(
        (a.status, outcome(&a)),
        (202, "ignored".into()),
        "{}",
        a.body
    );
    // A kid the control plane holds: the filter is merely behind, nothing to fetch.
    let held = idp.rotate(); // not fetched yet: the held kids are generation 1
    let old_kid = held[0].replace("-2", "-1");
    let a = report(&cp, auth, &body(&idp.issuer, &old_kid));
    assert_eq!((a.status, outcome(&a)), (202, "held".into()), "{}", a.body);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(idp.jwks_fetches(), start, "nothing above fetched");

    // A real unknown kid: one fetch at once; the next reports within the interval
    // wait for it to pass, however many come.
    let a = report(&cp, auth, &body(&idp.issuer, &held[0]));
    assert_eq!(
        (a.status, outcome(&a)),
        (202, "triggered".into()),
        "{}",
        a.body
    );
    wait_for_fetches(&idp, start + 1);
    for i in 0..20 {
        let a = report(&cp, auth, &body(&idp.issuer, &format!("random-{i}")));
        assert_eq!(
            (a.status, outcome(&a)),
            (202, "suppressed".into()),
            "{}",
            a.body
        );
    }
    // Once fetched, the rotated kid is held.
    wait_until("the rotated kid held", 15, || {
        let a = report(&cp, auth, &body(&idp.issuer, &held[0]));
        match outcome(&a).as_str() {
            "held" => Ok(()),
            "suppressed" => Err("not yet".to_string()),
            other => panic!("{other}: {}", a.body),
        }
    });
    wait_for_fetches(&idp, start + 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        idp.jwks_fetches(),
        start + 2,
        "twenty reports: one deferred fetch"
    );
}
