#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Trusted issuers through the real router on a fixed clock: validation, duplicates,
//! bounds, both stores; and key fetching against a loopback provider this test runs
//! (ETag and max-age, then garbage, an empty set, a stalled body, an oversized body).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn good(name: &str, issuer: &str) -> Value {
    json!({
        "name": name,
        "issuer": issuer,
        "jwks_uri": "https://idp.example/certs",
        "audiences": ["api"],
        "algorithms": ["RS256"],
    })
}

async fn stored(cp: &Cp) -> Vec<Value> {
    let r = cp.admin("GET", "/admin/issuers", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["issuers"].as_array().unwrap().clone()
}

#[tokio::test]
async fn hostile_issuers_are_refused_with_a_clear_message_and_nothing_stored() {
    let cp = cp().await;
    let own = cp.app.settings().issuer.clone();
    let with = |k: &str, v: Value| {
        let mut b = good("idp", "https://idp.example");
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        (with("name", json!("../admin")), "name:"),
        (
            with("jwks_uri", json!("http://idp.example/certs")),
            "https required",
        ),
        (
            with("jwks_uri", json!("https://user:pw@idp.example/certs")),
            "no user name or password",
        ),
        (
            with("jwks_uri", json!("file:///etc/passwd")),
            "scheme \"file\"",
        ),
        (
            with("jwks_uri", Value::Null),
            "either discovery or jwks_uri",
        ),
        (
            with(
                "discovery",
                json!("https://idp.example/.well-known/openid-configuration"),
            ),
            "either discovery or jwks_uri",
        ),
        (with("issuer", json!(own)), "own issuer"),
        (with("issuer", json!(format!("{own}/"))), "own issuer"),
        (with("audiences", json!([])), "audiences: list 1 to 16"),
        (
            with("algorithms", json!(["HS256"])),
            "algorithms: \"HS256\" is not one of",
        ),
        (with("algorithms", json!(["none"])), "is not one of"),
        (
            with("algorithms", json!([])),
            "algorithms: list at least one",
        ),
        (
            with("clock_skew_seconds", json!(301)),
            "clock_skew_seconds: at most 300",
        ),
        (with("clock_skew_seconds", json!(-1)), "clock_skew_seconds"),
        (with("scope_claim", json!("a.b.c.d.e")), "scope_claim"),
        (
            with("forward_claims", json!({"sub": "authorization"})),
            "forward_claims.sub",
        ),
        (with("id_claim", json!("sub")), "id_claim:"),
        (with("id_claim", json!("a.b")), "id_claim:"),
        (with("id_optional", json!("yes")), "id_optional"),
        (
            with("required_claims", json!({"exp": ["1"]})),
            "required_claims.exp",
        ),
        (with("surprise", json!(1)), "unknown field"),
    ];
    let (_, audit_before) = cp.logs().await;
    for (body, says) in cases {
        let r = cp.admin("POST", "/admin/issuers", Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    assert!(stored(&cp).await.is_empty());
    assert_eq!(cp.logs().await.1, audit_before, "nothing audited");
}

#[tokio::test]
async fn names_and_issuers_are_unique_and_the_count_is_bounded() {
    let cp = cp_with(|s| s.federation.max_issuers = 2).await;
    let r = cp
        .admin(
            "POST",
            "/admin/issuers",
            Some(good("a", "https://a.example")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["fetch"]["state"], "closed");
    for (body, says) in [
        (good("a", "https://other.example"), "exists"),
        (good("b", "https://a.example"), "already trusted as \"a\""),
        (good("b", "https://a.example/"), "already trusted as \"a\""),
    ] {
        let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
        assert_eq!(r.status, 409, "{}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(says), "{msg}");
    }
    let r = cp
        .admin(
            "POST",
            "/admin/issuers",
            Some(good("b", "https://b.example")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = cp
        .admin(
            "POST",
            "/admin/issuers",
            Some(good("c", "https://c.example")),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 2 trusted issuers"), "{}", r.body);
    let names: Vec<Value> = stored(&cp)
        .await
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b")]);
}

/// Add, show, delete: audited; unknown names are 404.
async fn lifecycle(cp: &Cp) {
    let r = cp
        .admin(
            "POST",
            "/admin/issuers",
            Some(good("kc", "https://kc.example")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = cp.admin("GET", "/admin/issuers/kc", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["issuer"], "https://kc.example");
    assert_eq!(v["jwks_uri"], "https://idp.example/certs");
    assert_eq!(v["fetch"]["key_count"], 0);
    for (method, path) in [
        ("GET", "/admin/issuers/nope"),
        ("DELETE", "/admin/issuers/nope"),
    ] {
        let r = cp.admin(method, path, None).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    let r = cp.admin("DELETE", "/admin/issuers/kc", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cp.admin("GET", "/admin/issuers/kc", None).await.status, 404);
    let r = cp.admin("GET", "/admin/audit?last=10", None).await;
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let added = entries
        .iter()
        .find(|e| e["action"] == "issuer.added")
        .unwrap();
    assert_eq!(added["target"], "kc");
    assert_eq!(
        added["detail"],
        json!({"issuer": "https://kc.example", "source": "https://idp.example/certs", "audiences": ["api"], "algorithms": ["RS256"]})
    );
    assert!(entries
        .iter()
        .any(|e| e["action"] == "issuer.deleted" && e["target"] == "kc"));
}

#[tokio::test]
async fn issuers_live_in_the_embedded_store() {
    lifecycle(&cp().await).await;
}

#[tokio::test]
async fn issuers_live_in_redis() {
    let redis = meshauth_tests::control_plane::Redis::start();
    let url = redis.url();
    let store = meshauth_cp::store::redis::RedisStore::connect(
        meshauth_cp::store::redis::RedisTarget::Url(url),
        "t",
        0,
    )
    .await
    .unwrap();
    let cp = cp_over(move |_| Arc::new(store) as Arc<dyn meshauth_cp::store::Store>).await;
    lifecycle(&cp).await;
}

// ---- fetching from a loopback provider ----

#[derive(Clone)]
enum Serve {
    Jwks {
        body: String,
        etag: &'static str,
        max_age: u64,
    },
    Garbage,
    Empty,
    /// Headers, a few bytes, then nothing for longer than the fetch timeout.
    Stall,
    /// A body over 256 KiB, declared and not.
    Oversized {
        declare: bool,
    },
    Discovery {
        issuer: String,
        jwks_uri: String,
    },
}

#[derive(Default)]
struct Provider {
    serve: Vec<(&'static str, Serve)>,
    /// Each request: its path and its If-None-Match.
    seen: Vec<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Provider>>;

async fn answer(mut tcp: tokio::net::TcpStream, p: Shared) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text.split(' ').nth(1).unwrap_or_default().to_string();
    let inm = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("if-none-match:")
            .map(|v| v.trim().to_string())
    });
    let serve = {
        let mut p = p.lock().unwrap();
        p.seen.push((path.clone(), inm.clone()));
        p.serve
            .iter()
            .find(|(at, _)| *at == path)
            .map(|(_, s)| s.clone())
    };
    let reply = |status: &str, headers: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    };
    let out = match serve {
        None => reply("404 Not Found", "", ""),
        Some(Serve::Jwks { etag, .. }) if inm.as_deref() == Some(etag) => {
            "HTTP/1.1 304 Not Modified\r\ncache-control: max-age=120\r\nconnection: close\r\n\r\n"
                .to_string()
        }
        Some(Serve::Jwks {
            body,
            etag,
            max_age,
        }) => reply(
            "200 OK",
            &format!("etag: {etag}\r\ncache-control: public, max-age={max_age}\r\n"),
            &body,
        ),
        Some(Serve::Garbage) => reply("200 OK", "", "<html>not a key set</html>"),
        Some(Serve::Empty) => reply("200 OK", "", "{\"keys\": []}"),
        Some(Serve::Stall) => {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n{\"keys\": [")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Some(Serve::Oversized { declare }) => {
            let body = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(300 * 1024));
            if declare {
                reply("200 OK", "", &body)
            } else {
                format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{body}")
            }
        }
        Some(Serve::Discovery { issuer, jwks_uri }) => reply(
            "200 OK",
            "",
            &json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string(),
        ),
    };
    let _ = tcp.write_all(out.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn provider() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let p: Shared = Arc::default();
    let shared = p.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(answer(tcp, shared.clone()));
        }
    });
    (base, p)
}

fn set_serve(p: &Shared, path: &'static str, s: Serve) {
    let mut p = p.lock().unwrap();
    p.serve.retain(|(at, _)| *at != path);
    p.serve.push((path, s));
}

fn requests(p: &Shared) -> usize {
    p.lock().unwrap().seen.len()
}

fn rsa_jwks(kid: &str) -> String {
    let mut n = vec![0x9bu8; 256];
    n[0] = 0xc3;
    json!({"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": meshauth_wire::b64::encode(&n), "e": "AQAB"}]}).to_string()
}

async fn fetch_cp() -> Cp {
    cp_with(|s| {
        s.federation.allow_insecure_http = true;
        s.federation.fetch_timeout = Duration::from_millis(300);
    })
    .await
}

async fn status(cp: &Cp, name: &str) -> Value {
    let r = cp
        .admin("GET", &format!("/admin/issuers/{name}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["fetch"].clone()
}

async fn step(cp: &Cp, advance: i64) -> Value {
    cp.clock.advance(advance);
    cp.app.fetch_issuer_keys().await.unwrap();
    status(cp, "idp").await
}

fn metric(cp: &Cp, name: &str) -> Option<String> {
    let text = cp.app.metrics().encode();
    let prefix = format!("{name}{{issuer=\"idp\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
}

#[tokio::test]
async fn the_last_good_keys_outlive_bad_answers_and_the_circuit_opens_then_half_opens() {
    let cp = fetch_cp().await;
    let (base, p) = provider().await;
    set_serve(
        &p,
        "/jwks",
        Serve::Jwks {
            body: rsa_jwks("k1"),
            etag: "\"v1\"",
            max_age: 120,
        },
    );
    let mut body = good("idp", "https://idp.test");
    body["jwks_uri"] = json!(format!("{base}/jwks"));
    let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let s = step(&cp, 0).await;
    assert_eq!(
        (s["state"].clone(), s["key_count"].clone()),
        (json!("closed"), json!(1)),
        "{s}"
    );
    assert_eq!(s["kids"], json!(["k1"]));
    assert!(s["last_success"].is_i64());
    // max-age 120 (over the 60 s floor): nothing is fetched before it runs out...
    let s = step(&cp, 60).await;
    assert_eq!(requests(&p), 1, "{s}");
    // ...then the set is asked for again with its ETag, and a 304 keeps it.
    let s = step(&cp, 61).await;
    assert_eq!(p.lock().unwrap().seen[1].1.as_deref(), Some("\"v1\""));
    assert_eq!(s["key_count"], 1, "{s}");
    assert_eq!(s["last_error"], Value::Null);

    // Garbage, then an empty set: failures, the keys stay.
    set_serve(&p, "/jwks", Serve::Garbage);
    let s = step(&cp, 121).await;
    assert_eq!(
        (s["state"].clone(), s["key_count"].clone()),
        (json!("closed"), json!(1)),
        "{s}"
    );
    assert!(
        s["last_error"].as_str().unwrap().contains("not a JWKS"),
        "{s}"
    );
    set_serve(&p, "/jwks", Serve::Empty);
    let s = step(&cp, 61).await;
    assert!(
        s["last_error"].as_str().unwrap().contains("no usable key"),
        "{s}"
    );
    assert_eq!(
        s["kids"],
        json!(["k1"]),
        "an empty set never replaces a good one"
    );
    // A body that stalls past the fetch timeout: the third failure opens the circuit.
    set_serve(&p, "/jwks", Serve::Stall);
    let s = step(&cp, 61).await;
    assert_eq!(
        (s["state"].clone(), s["key_count"].clone()),
        (json!("open"), json!(1)),
        "{s}"
    );
    assert_eq!(
        metric(&cp, "meshauth_federation_circuit_open").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&cp, "meshauth_federation_fetch_failures_total").as_deref(),
        Some("3")
    );
    assert_eq!(
        metric(&cp, "meshauth_federation_keys").as_deref(),
        Some("1")
    );
    // Open: no request goes out until the backoff has passed.
    let before = requests(&p);
    step(&cp, 0).await;
    assert_eq!(requests(&p), before, "an open circuit sends nothing");
    // The probe after the backoff meets an oversized body (declared, then not): open again.
    for declare in [true, false] {
        set_serve(&p, "/jwks", Serve::Oversized { declare });
        let s = step(&cp, 61).await;
        assert_eq!(s["state"], "open", "{s}");
        assert!(
            s["last_error"].as_str().unwrap().contains("body over"),
            "{s}"
        );
        assert_eq!(s["kids"], json!(["k1"]));
    }
    // The provider recovers with a rotated key: half-open after one good answer,
    // closed after the second.
    set_serve(
        &p,
        "/jwks",
        Serve::Jwks {
            body: rsa_jwks("k2"),
            etag: "\"v2\"",
            max_age: 600,
        },
    );
    let s = step(&cp, 61).await;
    assert_eq!(
        (s["state"].clone(), s["kids"].clone()),
        (json!("half_open"), json!(["k2"])),
        "{s}"
    );
    let s = step(&cp, 1).await;
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["last_error"], Value::Null);
    assert_eq!(
        metric(&cp, "meshauth_federation_circuit_open").as_deref(),
        Some("0")
    );
    // Deleting the issuer drops its series.
    assert_eq!(
        cp.admin("DELETE", "/admin/issuers/idp", None).await.status,
        204
    );
    assert_eq!(metric(&cp, "meshauth_federation_keys"), None);
}

#[tokio::test]
async fn discovery_must_name_the_issuer_it_was_derived_for() {
    let cp = fetch_cp().await;
    let (base, p) = provider().await;
    const WELL_KNOWN: &str = "/.well-known/openid-configuration";
    set_serve(
        &p,
        WELL_KNOWN,
        Serve::Discovery {
            issuer: "https://evil.example".into(),
            jwks_uri: format!("{base}/jwks"),
        },
    );
    set_serve(
        &p,
        "/jwks",
        Serve::Jwks {
            body: rsa_jwks("k1"),
            etag: "\"v1\"",
            max_age: 120,
        },
    );
    let body = json!({
        "name": "idp",
        "discovery": format!("{base}{WELL_KNOWN}"),
        "audiences": ["api"],
        "algorithms": ["RS256", "ES256"],
    });
    let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json()["issuer"],
        base.as_str(),
        "derived from the discovery URL"
    );
    let s = step(&cp, 0).await;
    assert_eq!(s["key_count"], 0, "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("not \"http://127.0.0.1"),
        "{s}"
    );
    assert_eq!(
        requests(&p),
        1,
        "the JWKS of a mismatched discovery is not fetched"
    );
    set_serve(
        &p,
        WELL_KNOWN,
        Serve::Discovery {
            issuer: base.clone(),
            jwks_uri: format!("{base}/jwks"),
        },
    );
    let s = step(&cp, 61).await;
    assert_eq!(s["kids"], json!(["k1"]), "{s}");
}

/// Concurrent adds of one issuer under different names: the registry's
/// compare-and-swap lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_of_one_issuer_store_it_once() {
    let cp = cp().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = cp.app.clone();
        tasks.push(tokio::spawn(async move {
            let spec =
                serde_json::from_value(good(&format!("n{i}"), "https://same.example")).unwrap();
            app.issuers().add("admin", spec).await.is_ok()
        }));
    }
    let mut added = 0;
    for t in tasks {
        added += usize::from(t.await.unwrap());
    }
    assert_eq!(added, 1);
    assert_eq!(stored(&cp).await.len(), 1);
}

/// The snapshot a filter would be sent now: its version and its federated issuers.
async fn snapshot(cp: &Cp) -> (u64, Vec<meshauth_wire::federation::FederatedIssuer>) {
    let (version, text) = cp.app.snapshot().await.unwrap();
    let snap = meshauth_wire::sync::SignedSnapshot::open(text.as_bytes(), |_, _| true).unwrap();
    assert_eq!(snap.version, version);
    (version, snap.issuers)
}

fn kids(issuers: &[meshauth_wire::federation::FederatedIssuer]) -> Vec<String> {
    issuers
        .iter()
        .flat_map(|i| i.keys.iter().map(|k| k.kid.clone()))
        .collect()
}

/// Fetched keys reach the snapshot with the issuer's rules; a new key set or a deleted
/// issuer bumps the version (so long polls answer), an unchanged or failed fetch does
/// not, and a failed fetch never empties what filters hold — not even on a replica
/// that has fetched nothing itself.
#[tokio::test]
async fn fetched_keys_travel_in_snapshots_and_only_changes_bump_the_version() {
    let cp = fetch_cp().await;
    let (base, p) = provider().await;
    let jwks = |kid: &str, etag: &'static str| Serve::Jwks {
        body: rsa_jwks(kid),
        etag,
        max_age: 60,
    };
    set_serve(&p, "/jwks", jwks("k1", "\"1\""));
    let (v0, none) = snapshot(&cp).await;
    assert!(none.is_empty());
    let mut body = good("idp", "https://idp.test");
    body["jwks_uri"] = json!(format!("{base}/jwks"));
    body["audiences"] = json!(["api", "web"]);
    body["scope_claim"] = json!("realm_access.roles");
    let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Registered but never fetched: nothing a filter could verify with, so left out.
    assert!(snapshot(&cp).await.1.is_empty());

    step(&cp, 0).await;
    let (v1, issuers) = snapshot(&cp).await;
    assert!(v1 > v0, "{v1} after {v0}");
    assert_eq!(issuers.len(), 1);
    let idp = &issuers[0];
    assert_eq!(idp.issuer, "https://idp.test");
    assert_eq!(idp.audiences, ["api", "web"]);
    assert_eq!(idp.scope_claim, "realm_access.roles");
    assert_eq!(
        idp.algorithms,
        [meshauth_wire::federation::Alg::RS256],
        "{idp:?}"
    );
    assert_eq!(kids(&issuers), ["k1"]);

    // The same set again: no new version.
    step(&cp, 61).await;
    assert_eq!(snapshot(&cp).await.0, v1);
    // The provider rotates: a new version with the new key.
    set_serve(&p, "/jwks", jwks("k2", "\"2\""));
    // (The 304 said max-age 120.)
    step(&cp, 121).await;
    let (v2, issuers) = snapshot(&cp).await;
    assert!(v2 > v1);
    assert_eq!(kids(&issuers), ["k2"]);
    // Garbage and an empty set: failures; the snapshot keeps k2 at the same version.
    set_serve(&p, "/jwks", Serve::Garbage);
    step(&cp, 61).await;
    set_serve(&p, "/jwks", Serve::Empty);
    step(&cp, 600).await;
    let (v3, issuers) = snapshot(&cp).await;
    assert_eq!((v3, kids(&issuers)), (v2, vec!["k2".to_string()]));

    // Another replica (fresh memory, same store) whose provider is down still sends k2.
    let store = cp.app.store().clone();
    let other = cp_over(move |_| store).await;
    other.app.fetch_issuer_keys().await.unwrap();
    assert_eq!(kids(&snapshot(&other).await.1), ["k2"]);

    let r = cp.admin("DELETE", "/admin/issuers/idp", None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let (v4, issuers) = snapshot(&cp).await;
    assert!(v4 > v3);
    assert!(issuers.is_empty());
}

/// Revocation rules scoped to a trusted issuer: an unknown issuer (or one on a token) is
/// refused and nothing is stored; a scoped rule never touches our own tokens of the
/// same subject, and an unscoped one never the issuer's; a token we minted by exchange
/// for the issuer's subject (`ext`) is revoked with it.
#[tokio::test]
async fn a_subject_rule_scoped_to_an_issuer_reaches_its_tokens_only() {
    let cp = cp().await;
    let revoke = |body: Value| cp.admin("POST", "/admin/revocations", Some(body));
    let r = revoke(json!({"kind": "sub", "value": "mesh", "issuer": "idp"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not a trusted issuer"), "{}", r.body);
    let added = cp
        .admin(
            "POST",
            "/admin/issuers",
            Some(good("idp", "https://idp.example")),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    for body in [
        json!({"kind": "jti", "value": "j1", "issuer": "other"}),
        json!({"kind": "token", "value": "a.b.c", "issuer": "idp"}),
        json!({"kind": "sub", "value": "mesh", "issuer": "other"}),
        json!({"kind": "sub", "value": "mesh", "issuer": "../idp"}),
    ] {
        let r = revoke(body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    assert!(cp.app.live_revocations().await.unwrap().is_empty());

    let (own, _, _) = cp.session("mesh").await;
    let r = revoke(json!({"kind": "sub", "value": "mesh", "issuer": "idp"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // A repeat changes nothing.
    assert_eq!(
        revoke(json!({"kind": "sub", "value": "mesh", "issuer": "idp"}))
            .await
            .status,
        204
    );
    let live = cp.app.live_revocations().await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].key(), "sub@https://idp.example mesh");
    let listed = cp.admin("GET", "/admin/revocations", None).await.json();
    assert_eq!(
        listed["revocations"][0]["issuer"],
        json!({"name": "idp", "iss": "https://idp.example"})
    );
    // Our own "mesh" is untouched.
    assert_eq!(cp.introspect(&own).await["active"], true);

    // A token we minted by exchanging the issuer's token for "mesh" is covered.
    let now = cp.app.now();
    let exchanged = |iss: &str, sub: &str| meshauth_wire::AccessClaims {
        iss: cp.app.settings().issuer.clone(),
        sub: "exchanged-client".into(),
        aud: vec!["api".into()],
        exp: now + 60,
        iat: now - 1,
        nbf: now - 1,
        jti: "x1".into(),
        scope: String::new(),
        client_id: "exchanged-client".into(),
        sid: None,
        ext: Some(meshauth_wire::claims::ExternalSubject::subject(iss, sub)),
        act: None,
    };
    let revocations = cp.app.revocations();
    let idp = cp.app.issuers().get("idp").await.unwrap();
    let token_of = |sub: &str, iat: i64| json!({"iss": idp.issuer(), "sub": sub, "iat": iat});
    for (iss, sub, want) in [
        ("https://idp.example", "mesh", true),
        ("https://idp.example", "someone", false),
        ("https://other.example", "mesh", false),
    ] {
        let got = revocations.is_revoked(&exchanged(iss, sub)).await.unwrap();
        assert_eq!(got, want, "{iss} {sub}");
    }
    // What token exchange asks of a subject token of the issuer issued before the rule.
    for (sub, want) in [("mesh", true), ("someone", false)] {
        let claims = token_of(sub, now - 1);
        let external = revocations.external_token_revoked(&idp, claims.as_object().unwrap());
        assert_eq!(external.await.unwrap(), want, "{sub}");
    }
    // A subject token issued after the rule may still be exchanged.
    let later = token_of("mesh", now + 1);
    let later = revocations.external_token_revoked(&idp, later.as_object().unwrap());
    assert!(!later.await.unwrap());

    // `self` is the control plane's own: now our "mesh" goes.
    let r = revoke(json!({"kind": "sub", "value": "mesh", "issuer": "self"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cp.introspect(&own).await["active"], false);
    let keys: Vec<String> = cp
        .app
        .live_revocations()
        .await
        .unwrap()
        .iter()
        .map(|r| r.key())
        .collect();
    assert!(keys.contains(&"sub:mesh".to_string()), "{keys:?}");
}

/// The rules filters are sent in the snapshot now, as (value, issuer).
async fn snapshot_rules(cp: &Cp) -> Vec<(String, Option<String>)> {
    let (_, text) = cp.app.snapshot().await.unwrap();
    let snap = meshauth_wire::sync::SignedSnapshot::open(text.as_bytes(), |_, _| true).unwrap();
    snap.rules
        .into_iter()
        .map(|r| (r.value, r.issuer))
        .collect()
}

async fn live_values(cp: &Cp) -> Vec<String> {
    let live = cp.app.live_revocations().await.unwrap();
    live.iter().map(|r| r.value().to_string()).collect()
}

/// A rule scoped to a trusted issuer is kept (store, `revoke list`, snapshots) for the
/// issuer's longest token life plus the skew, not the control plane's own horizon (it
/// lapsed after ~70 min while a provider token may live a day); an own rule made at
/// the same time goes after the own horizon. A provider `jti` may be kept as long as
/// the issuer's tokens live (by default exactly that), no longer.
#[tokio::test]
async fn a_scoped_rule_is_kept_for_the_longest_lifetime_any_issuer_may_have() {
    let cp = cp().await;
    let mut body = good("idp", "https://idp.example");
    body["max_token_lifetime_seconds"] = json!(20_000);
    let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let revoke = |body: Value| cp.admin("POST", "/admin/revocations", Some(body));
    cp.session("own").await;
    for body in [
        json!({"kind": "sub", "value": "ext", "issuer": "idp"}),
        json!({"kind": "sub", "value": "own"}),
    ] {
        let r = revoke(body).await;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let s = cp.app.settings();
    let (own, skew) = (s.revocation_horizon(), s.revocation_skew());
    // Not the issuer's 20,000 s: a week, since its lifetime may be raised later.
    let scoped = 604_800 + skew;
    assert!(own < scoped, "{own} {scoped}");
    let made = cp.app.now();
    let nb = made + 1;

    // A provider jti: up to the longest lifetime any issuer may have, its default.
    let r =
        revoke(json!({"kind": "jti", "value": "p1", "issuer": "idp", "exp": made + 604_801})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("604800 s"), "{}", r.body);
    let r = revoke(json!({"kind": "jti", "value": "p1", "issuer": "idp"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let live = cp.app.live_revocations().await.unwrap();
    let p1 = live.iter().find(|r| r.value() == "p1").unwrap();
    assert_eq!(p1.key(), "jti:p1", "a jti names one token: unscoped");
    assert_eq!(
        *p1,
        meshauth_cp::revocation::Revocation::Jti {
            jti: "p1".into(),
            exp: made + 604_800
        }
    );
    // Without the issuer, our own longest TTL still bounds it.
    let r = revoke(json!({"kind": "jti", "value": "p2", "exp": made + 20_000})).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let ext = ("ext".to_string(), Some("https://idp.example".to_string()));
    let mine = ("own".to_string(), None);
    let rules = snapshot_rules(&cp).await;
    assert!(rules.contains(&ext) && rules.contains(&mine), "{rules:?}");

    // Past the own horizon: the own rule is gone, the scoped one kept everywhere.
    cp.clock.advance(nb + own + 1 - cp.app.now());
    cp.app.key_tick().await.unwrap();
    let rules = snapshot_rules(&cp).await;
    assert!(rules.contains(&ext) && !rules.contains(&mine), "{rules:?}");
    let live = live_values(&cp).await;
    assert!(live.contains(&"ext".to_string()) && !live.contains(&"own".to_string()));
    let stored = cp.app.revocations().all().await.unwrap();
    assert!(stored.iter().any(|r| r.value() == "ext"));
    assert!(!stored.iter().any(|r| r.value() == "own"), "own pruned");

    // Just before the issuer's horizon: still there; just after: pruned.
    cp.clock.advance(nb + scoped - 1 - cp.app.now());
    cp.app.key_tick().await.unwrap();
    assert!(snapshot_rules(&cp).await.contains(&ext));
    assert!(live_values(&cp).await.contains(&"ext".to_string()));
    cp.clock.advance(2);
    cp.app.key_tick().await.unwrap();
    let stored = cp.app.revocations().all().await.unwrap();
    assert!(!stored.iter().any(|r| r.value() == "ext"), "{stored:?}");
    assert!(!live_values(&cp).await.contains(&"ext".to_string()));
    // (A snapshot of an unchanged version is rebuilt every 30 minutes.)
    cp.clock.advance(1_800);
    assert!(!snapshot_rules(&cp).await.contains(&ext));
}

/// A rule whose issuer was deleted is kept for the longest lifetime any issuer may
/// have (a week): the issuer added again finds it in force.
#[tokio::test]
async fn a_rule_of_a_deleted_issuer_is_kept_for_the_longest_lifetime() {
    let cp = cp().await;
    let body = good("idp", "https://idp.example");
    assert_eq!(
        cp.admin("POST", "/admin/issuers", Some(body)).await.status,
        201
    );
    let r = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "sid", "value": "s1", "issuer": "idp"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let nb = cp.app.now() + 1;
    let r = cp.admin("DELETE", "/admin/issuers/idp", None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let week = 604_800 + cp.app.settings().revocation_skew();
    // Past the issuer's default day: still kept, its issuer being unknown.
    cp.clock.advance(nb + 86_400 + 3_600 - cp.app.now());
    cp.app.key_tick().await.unwrap();
    assert_eq!(live_values(&cp).await, ["s1"]);
    cp.clock.advance(nb + week + 1 - cp.app.now());
    cp.app.key_tick().await.unwrap();
    assert!(live_values(&cp).await.is_empty());
}
