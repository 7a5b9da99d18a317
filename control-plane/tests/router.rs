#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The router's main flows and refusals, in process: the client-credentials grant,
//! introspection, admin and sync authentication, error bodies.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn the_client_credentials_grant_answers_as_rfc6749_says() {
    let cp = cp().await;
    let (id, secret, auth) = cp.client(&["read"]).await;
    let r = cp
        .form("/oauth2/token", &auth, "grant_type=client_credentials")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "read");
    assert!(v["expires_in"].as_i64().unwrap() > 0);
    assert!(v.get("refresh_token").is_none(), "{v}");
    let token = v["access_token"].as_str().unwrap();
    let claims = cp.introspect(token).await;
    assert_eq!(claims["active"], true);
    assert_eq!(claims["client_id"], id.as_str());
    // client_secret_post works as well; the client may introspect its token.
    let post = format!("token={token}&client_id={id}&client_secret={secret}");
    let r = cp.form("/oauth2/introspect", "", &post).await;
    assert_eq!(r.json()["active"], true, "{}", r.body);
}

#[tokio::test]
async fn oauth_refusals_carry_their_code_status_and_challenge() {
    let cp = cp().await;
    let (id, _, auth) = cp.client(&[]).await;
    let wrong = basic(&id, "not-the-secret");
    let r = cp
        .form("/oauth2/token", &wrong, "grant_type=client_credentials")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(r.headers["www-authenticate"], "Basic realm=\"meshauth\"");
    for (body, status, code) in [
        ("grant_type=password", 400, "unsupported_grant_type"),
        ("grant_type=", 400, "invalid_request"),
        ("grant_type=refresh_token", 400, "invalid_request"),
        (
            "grant_type=client_credentials&scope=admin",
            400,
            "invalid_scope",
        ),
        (
            "grant_type=refresh_token&refresh_token=rt1.x.y.z",
            400,
            "invalid_grant",
        ),
    ] {
        let r = cp.form("/oauth2/token", &auth, body).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.json()["error"], code, "{body}");
        assert!(!r.headers.contains_key("www-authenticate"), "{body}");
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    // Introspection and revocation need a caller.
    for path in ["/oauth2/introspect", "/oauth2/revoke"] {
        let r = cp.form(path, "", "token=abc").await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["error"], "invalid_client");
    }
}

#[tokio::test]
async fn admin_routes_refuse_callers_without_the_admin_bearer() {
    let cp = cp().await;
    let basic_admin = basic("admin", ADMIN);
    let wrong = format!("Bearer {ADMIN}x");
    for auth in ["", "Bearer ", wrong.as_str(), basic_admin.as_str(), ADMIN] {
        let mut h = vec![("x-request-id", "req-1")];
        if !auth.is_empty() {
            h.push(("authorization", auth));
        }
        let r = cp.send("GET", "/admin/keys", &h, "").await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.headers["www-authenticate"],
            "Bearer realm=\"meshauth-admin\""
        );
        let v = r.json();
        assert_eq!(v["error"]["code"], "unauthenticated");
        assert_eq!(v["error"]["correlation_id"], "req-1");
    }
    // The scheme is matched without regard to case; the token exactly.
    let lower = format!("bearer {ADMIN}");
    let r = cp
        .send("GET", "/admin/keys", &[("authorization", &lower)], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An admin bearer token is no client credential.
    let r = cp
        .form(
            "/oauth2/token",
            &format!("Bearer {ADMIN}"),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn every_api_error_names_its_request() {
    let cp = cp().await;
    let r = cp
        .send("GET", "/no/such/thing", &[("x-request-id", "trace-7")], "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-request-id"], "trace-7");
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.json();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["correlation_id"], "trace-7");
    // Without one, an id is made up, the same in the header and the body.
    let r = cp.admin("DELETE", "/admin/clients/nobody", None).await;
    assert_eq!(r.status, 404);
    let made = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(!made.is_empty());
    assert_eq!(r.json()["error"]["correlation_id"], made.as_str());
    // Rejected JSON bodies are API errors too, and a bad revocation kind names the
    // kinds there are.
    let r = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "user", "value": "x"})),
        )
        .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_request");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("expected token, jti, sub, sid or client_id"),
        "{message}"
    );
    assert!(!v["error"]["correlation_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn sync_routes_need_the_fleet_credential() {
    let cp = cp().await;
    let wrong = format!("{SYNC_BEARER}x");
    for auth in ["", wrong.as_str(), "Basic c3luYzp4"] {
        let mut h = vec![];
        if !auth.is_empty() {
            h.push(("authorization", auth));
        }
        for (method, path) in [("GET", "/sync/v1/snapshot"), ("POST", "/sync/v1/confirm")] {
            let r = cp.send(method, path, &h, "").await;
            assert_eq!(r.status, 401, "{method} {path} {auth:?}");
            assert_eq!(
                r.headers["www-authenticate"],
                "Bearer realm=\"meshauth-sync\""
            );
        }
    }
    // The key filters pin is public.
    let r = cp.send("GET", "/sync/v1/distribution-key", &[], "").await;
    assert_eq!(r.status, 200);
    let key = r.json();
    assert!(key["public_key"].as_str().is_some_and(|k| !k.is_empty()));
    let epoch = key["epoch"].as_str().unwrap().to_string();
    let auth = [("authorization", SYNC_BEARER)];
    let r = cp.send("GET", "/sync/v1/snapshot", &auth, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let version: u64 = r.headers["x-meshauth-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(payload(&r)["epoch"], epoch.as_str());
    // Holding the head: 304 with a signed head statement, at once when no wait is asked.
    let poll = format!("/sync/v1/snapshot?version={version}&epoch={epoch}");
    let r = cp.send("GET", &poll, &auth, "").await;
    assert_eq!(r.status, 304);
    assert!(r.headers.contains_key(meshauth_wire::sync::HEAD_HEADER));
    // Unknown poll parameters and bad confirm nonces are refused.
    let r = cp
        .send("GET", "/sync/v1/snapshot?versoin=1", &auth, "")
        .await;
    assert_eq!(r.status, 400);
    let r = cp
        .send(
            "POST",
            "/sync/v1/confirm",
            &[
                ("authorization", SYNC_BEARER),
                ("content-type", "application/json"),
            ],
            r#"{"jti": "j", "nonce": "short"}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

// ---- time, by the injected clock (no sleeping) ----

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&meshauth_wire::b64::decode(header).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

/// A refresh token presented again within the retry grace gets the same answer (a
/// client retrying after a lost response keeps its session); one second past the grace
/// it is reuse: refused, and the whole session is revoked, its newer tokens included.
#[tokio::test]
async fn a_replayed_refresh_token_is_a_retry_within_the_grace_and_reuse_after_it() {
    let cp = cp().await;
    let grace = cp.app.settings().tokens.refresh_retry_grace.as_secs() as i64;
    assert!(grace > 0);
    let (_, r1, sid) = cp.session("alice").await;
    let first = cp.refresh(&r1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let (a2, r2) = (
        first.json()["access_token"].as_str().unwrap().to_string(),
        first.json()["refresh_token"].as_str().unwrap().to_string(),
    );
    cp.clock.advance(grace);
    let retry = cp.refresh(&r1).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(
        retry.json(),
        first.json(),
        "the same answer, to the last second"
    );
    assert_eq!(cp.introspect(&a2).await["active"], true);
    cp.clock.advance(1);
    let reuse = cp.refresh(&r1).await;
    assert_eq!(reuse.status, 400, "{}", reuse.body);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    // The session is gone: its newest refresh token and its access token with it.
    assert_eq!(cp.refresh(&r2).await.json()["error"], "invalid_grant");
    assert_eq!(cp.introspect(&r2).await["active"], false);
    assert_eq!(cp.introspect(&a2).await["active"], false);
    let live = cp.app.live_revocations().await.unwrap();
    assert!(
        live.iter().any(|r| r.key() == format!("sid:{sid}")),
        "{live:?}"
    );
}

/// The JWKS as a cache revalidating with `etag` sees it: status, entity tag, kids
/// (none on a 304).
async fn jwks(cp: &Cp, etag: &str) -> (u16, String, Vec<String>) {
    let r = cp
        .send(
            "GET",
            "/.well-known/jwks.json",
            &[("if-none-match", etag)],
            "",
        )
        .await;
    let kids: Vec<String> = match r.status.as_u16() {
        304 => Vec::new(),
        200 => r.json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect(),
        other => panic!("jwks: {other}"),
    };
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    (r.status.as_u16(), etag, kids)
}

/// A rotation asked for through the admin API, followed through the public JWKS: the
/// new key is published before it signs, signs once the JWKS max-age (and skew) has
/// passed, and the former key leaves the JWKS when its last token has expired. Each
/// change of the set changes its entity tag.
#[tokio::test]
async fn a_rotation_is_published_before_it_signs_and_the_old_key_retires() {
    let cp = cp().await;
    let s = cp.app.settings();
    let prepublish = (s.keys.jwks_max_age + s.keys.clock_skew).as_secs() as i64;
    let retention = (s.tokens.max_access_ttl + s.keys.clock_skew).as_secs() as i64;
    let (_, _, auth) = cp.client(&[]).await;
    let (_, etag1, kids) = jwks(&cp, "").await;
    assert_eq!(kids.len(), 1);
    let old = kids[0].clone();
    assert_eq!(kid_of(&cp.cc_token(&auth).await), old);

    let r = cp.admin("POST", "/admin/keys/rotate", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    cp.app.key_tick().await.unwrap();
    let (status, etag2, kids) = jwks(&cp, &etag1).await;
    assert_eq!(status, 200, "the set changed");
    assert_ne!(etag2, etag1);
    assert_eq!(kids.len(), 2, "{kids:?}");
    let new = kids.iter().find(|k| **k != old).unwrap().clone();
    assert_eq!(
        kid_of(&cp.cc_token(&auth).await),
        old,
        "published, not signing"
    );
    assert_eq!(jwks(&cp, &etag2).await.0, 304);

    cp.clock.advance(prepublish - 1);
    cp.app.key_tick().await.unwrap();
    assert_eq!(kid_of(&cp.cc_token(&auth).await), old, "one second early");
    cp.clock.advance(1);
    cp.app.key_tick().await.unwrap();
    let signed_by_new = cp.cc_token(&auth).await;
    assert_eq!(kid_of(&signed_by_new), new);
    // The former key is still published: it verifies what it signed.
    let (_, _, kids) = jwks(&cp, "").await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");

    cp.clock.advance(retention);
    cp.app.key_tick().await.unwrap();
    let (status, _, kids) = jwks(&cp, &etag2).await;
    assert_eq!(status, 200);
    assert_eq!(kids, vec![new.clone()], "the former key retired");
    assert_eq!(
        cp.introspect(&signed_by_new).await["active"],
        false,
        "expired"
    );
}

/// The admin API's answers keep the fields they had when they were built by hand: the
/// typed answers (`meshauth_cp::api`) add none and drop none.
#[tokio::test]
async fn admin_answers_keep_their_fields() {
    let cp = cp().await;
    let fields = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k.join(",")
    };
    let created = cp
        .admin(
            "POST",
            "/admin/clients",
            Some(json!({"name": "svc", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.headers["cache-control"], "no-store");
    assert_eq!(
        fields(&created.json()),
        "client_id,client_secret,created_at,name,scopes,token_exchange"
    );
    let id = created.json()["client_id"].as_str().unwrap().to_string();
    let listed = cp.admin("GET", "/admin/clients", None).await.json();
    assert_eq!(
        fields(&listed["clients"][0]),
        "client_id,created_at,name,scopes,token_exchange"
    );
    let secret = cp
        .admin("POST", &format!("/admin/clients/{id}/secret"), None)
        .await;
    assert_eq!(fields(&secret.json()), "client_id,client_secret");
    let keys = cp.admin("GET", "/admin/keys", None).await.json();
    assert_eq!(fields(&keys), "keys,rotation_requested");
    assert_eq!(
        fields(&keys["keys"][0]),
        "activated_at,created_at,deactivated_at,kid,retired_at,revoked,state"
    );
    let status = cp.admin("GET", "/admin/status", None).await.json();
    assert_eq!(
        fields(&status),
        "filters,issuer,keys,replica,store,sync,version"
    );
    assert_eq!(fields(&status["sync"]), "distribution_key,epoch,version");
    let verify = cp.admin("GET", "/admin/audit/verify", None).await.json();
    assert_eq!(fields(&verify), "entries,head,ok,problem");
    let issued = cp
        .admin(
            "POST",
            "/admin/tokens",
            Some(json!({"sub": "alice", "ttl": "5m"})),
        )
        .await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!(issued.headers["cache-control"], "no-store");
    assert_eq!(issued.json()["expires_in"], 300);
    let meta = cp
        .send("GET", "/.well-known/oauth-authorization-server", &[], "")
        .await
        .json();
    assert_eq!(
        fields(&meta),
        "grant_types_supported,introspection_endpoint,introspection_endpoint_auth_methods_supported,issuer,jwks_uri,response_types_supported,revocation_endpoint,revocation_endpoint_auth_methods_supported,token_endpoint,token_endpoint_auth_methods_supported"
    );
}

// ---- every route behind its authentication, read from the router's source ----

/// `pub const NAME: &str = "…";` in `file`, by name.
fn consts(file: &std::path::Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(": &str = \"")?;
            Some((name.to_string(), rest.split_once('"')?.0.to_string()))
        })
        .collect()
}

/// Every path template the HTTP module routes: the first argument of each `.route(`
/// in `src/http`, a literal or a constant of the admin API or the sync wire format.
fn routed_paths() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = consts(&root.join("src/api/mod.rs"));
    names.extend(consts(&root.join("../wire/src/sync/mod.rs")));
    let mut paths = Vec::new();
    for e in std::fs::read_dir(root.join("src/http")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for call in text.split(".route(").skip(1) {
            let arg = call.split(',').next().unwrap().trim();
            let path = match arg.strip_prefix('"') {
                Some(lit) => lit.trim_end_matches('"').to_string(),
                None => {
                    let name = arg.rsplit("::").next().unwrap();
                    names
                        .get(name)
                        .unwrap_or_else(|| panic!("route {arg}: no such constant"))
                        .clone()
                }
            };
            paths.push(path);
        }
    }
    assert!(paths.len() >= 20, "{paths:?}");
    paths
}

/// Routes anyone may call: public documents, probes, the module, and the OAuth
/// endpoints (which authenticate the client themselves).
const PUBLIC: &[&str] = &[
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/oauth2/token",
    "/oauth2/revoke",
    "/oauth2/introspect",
    "/healthz",
    "/readyz",
    "/metrics",
    "/sync/v1/distribution-key",
    "/filter/meshauth.wasm",
    "/filter/meshauth.wasm.sha256",
];

/// Every routed path not on the public list, with every method, refuses a caller
/// without credentials (or with the other listener's, or a wrong one) on one listener
/// and with the admin, sync and metrics routes split onto listeners of their own: a
/// route added outside the authentication layer fails here until it is named public.
#[tokio::test]
async fn every_private_route_refuses_callers_without_credentials() {
    let paths = routed_paths();
    let private: Vec<String> = paths
        .iter()
        .filter(|p| !PUBLIC.contains(&p.as_str()))
        .map(|p| match p.split_once('{') {
            Some((head, tail)) => format!("{head}x{}", tail.split_once('}').unwrap().1),
            None => p.clone(),
        })
        .collect();
    assert!(private.iter().any(|p| p.starts_with("/admin/")));
    assert!(private.iter().any(|p| p.starts_with("/sync/")));
    let together = cp().await;
    let split = cp_with(|s| {
        s.admin_listen = Some("127.0.0.1:0".into());
        s.sync_listen = Some("127.0.0.1:0".into());
        s.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let mut split_routers: Vec<axum::Router> = meshauth_cp::http::separate_routers(&split.app)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    split_routers.push(meshauth_cp::http::router(split.app.clone()));
    assert_eq!(split_routers.len(), 4);
    let setups = [
        vec![meshauth_cp::http::router(together.app.clone())],
        split_routers,
    ];
    let admin = format!("Bearer {ADMIN}x");
    let sync_as_admin = SYNC_BEARER.to_string();
    let admin_as_sync = format!("Bearer {ADMIN}");
    // Each request from an address of its own, so the failure throttle (429) never
    // answers in the place of the authentication layer.
    let mut peer = 0u32;
    for routers in &setups {
        for path in &private {
            let mut refused = 0;
            for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                let other = if path.starts_with("/admin/") {
                    sync_as_admin.as_str()
                } else {
                    admin_as_sync.as_str()
                };
                for auth in ["", admin.as_str(), other] {
                    for router in routers {
                        let mut req = axum::http::Request::builder()
                            .method(method)
                            .uri(path.as_str())
                            .header("content-type", "application/json");
                        if !auth.is_empty() {
                            req = req.header("authorization", auth);
                        }
                        let mut req = req.body(axum::body::Body::from("{}")).unwrap();
                        peer += 1;
                        let from = std::net::SocketAddr::from((peer.to_be_bytes(), 40000));
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(from));
                        let r = dispatch(router, req).await;
                        assert!(
                            [401, 404, 405].contains(&r.status.as_u16()),
                            "{method} {path} with {auth:?}: {} {}",
                            r.status,
                            r.body
                        );
                        refused += usize::from(r.status == 401);
                    }
                }
            }
            assert!(refused > 0, "{path} was never reached");
        }
    }
}

/// What each kind of audit entry records beside its action and target.
#[tokio::test]
async fn audit_entries_keep_their_details() {
    let cp = cp().await;
    cp.client(&["read"]).await;
    let (_, _, sid) = cp.session("hana").await;
    assert_eq!(cp.admin_revoke("sub", "hana").await.status, 204);
    let policy = json!({"name": "per-client", "key": ["claim:client_id"], "rate": 5, "burst": 5});
    let r = cp
        .admin("PUT", "/admin/limits/per-client", Some(policy))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = cp.admin("DELETE", "/admin/limits/per-client", None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = cp.admin("GET", "/admin/audit?last=100", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let detail = |action: &str| {
        entries
            .iter()
            .rfind(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:?}"))["detail"]
            .clone()
    };
    assert_eq!(
        detail("client.created"),
        json!({"name": "svc", "scopes": ["read"]})
    );
    let issued = detail("token.issued");
    assert_eq!(issued["sid"], sid.as_str());
    assert_eq!(issued["scope"], "");
    assert!(issued["ttl"].as_i64().unwrap() > 0);
    assert_eq!(issued.as_object().unwrap().len(), 3, "{issued}");
    let revoked = detail("revocation.added");
    assert_eq!(revoked["reason"], "admin");
    assert_eq!(revoked["revocation"]["kind"], "sub", "{revoked}");
    assert_eq!(revoked.as_object().unwrap().len(), 2, "{revoked}");
    let set = detail("limit.set");
    assert_eq!(set["policy"]["name"], "per-client", "{set}");
    assert_eq!(set["policy"]["rate"], 5, "{set}");
    assert_eq!(detail("limit.deleted"), json!({}));
    assert_eq!(detail("key.activated"), json!({}));
}
