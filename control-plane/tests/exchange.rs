#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Token exchange (RFC 8693) through the real router on a fixed clock: a hand-made
//! provider key served on loopback and fetched into the store, then subject tokens
//! signed with it, well-formed and hostile.

mod support;

use meshauth_tests::tokens::DevKey;
use meshauth_wire::b64;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDP: &str = "https://idp.test";
const NOEX: &str = "https://noex.test";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Serves `jwks` to every request, on loopback.
async fn serve_jwks(jwks: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = jwks.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(out.as_bytes()).await;
            });
        }
    });
    url
}

fn jwks(key: &DevKey) -> String {
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64::encode(key.public()),
        "kid": key.kid(), "use": "sig", "alg": "EdDSA"}]})
    .to_string()
}

struct World {
    cp: Cp,
    idp: DevKey,
    noex: DevKey,
    /// Basic credentials of a client allowed to exchange, and its id.
    auth: String,
    client_id: String,
}

async fn world() -> World {
    let cp = cp_with(|s| s.federation.allow_insecure_http = true).await;
    let (idp, noex) = (DevKey::seeded(41), DevKey::seeded(42));
    for (name, iss, key, exchange) in [
        (
            "idp",
            IDP,
            &idp,
            json!({"audiences": ["api", "https://orders.example"], "scopes": ["read", "write"]}),
        ),
        ("noex", NOEX, &noex, Value::Null),
    ] {
        let mut body = json!({
            "name": name, "issuer": iss, "jwks_uri": serve_jwks(jwks(key)).await,
            "audiences": ["mesh"], "algorithms": ["EdDSA"], "typ": "at+jwt",
        });
        if !exchange.is_null() {
            body["exchange"] = exchange;
        }
        let r = cp.admin("POST", "/admin/issuers", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    cp.app.fetch_issuer_keys().await.unwrap();
    let r = cp
        .admin(
            "POST",
            "/admin/clients",
            Some(json!({"name": "gw", "token_exchange": true, "scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["token_exchange"], true);
    let client_id = v["client_id"].as_str().unwrap().to_string();
    let auth = basic(&client_id, v["client_secret"].as_str().unwrap());
    World {
        cp,
        idp,
        noex,
        auth,
        client_id,
    }
}

impl World {
    fn now(&self) -> i64 {
        self.cp.app.now()
    }

    /// Claims of a good subject token from `iss`, with `extra` merged over them.
    fn claims(&self, iss: &str, extra: Value) -> Value {
        let now = self.now();
        let mut c = json!({"iss": iss, "sub": "alice", "aud": "mesh", "exp": now + 600,
            "iat": now, "scope": "read write admin", "jti": "j1"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn subject(&self, extra: Value) -> String {
        self.idp.sign(&self.claims(IDP, extra))
    }

    async fn exchange(&self, auth: &str, params: &[(&str, &str)]) -> Reply {
        let mut all = vec![("grant_type", GRANT)];
        all.extend_from_slice(params);
        let body = serde_urlencoded::to_string(&all).unwrap();
        self.cp.form("/oauth2/token", auth, &body).await
    }

    async fn exchange_subject(&self, token: &str, more: &[(&str, &str)]) -> Reply {
        let mut p = vec![("subject_token", token), ("subject_token_type", JWT)];
        p.extend_from_slice(more);
        self.exchange(&self.auth, &p).await
    }

    async fn audit(&self, action: &str) -> Vec<Value> {
        let r = self.cp.admin("GET", "/admin/audit?last=200", None).await;
        r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }
}

/// A request's parameters besides the grant type.
type Params = Vec<(&'static str, String)>;

fn refused(r: &Reply, status: u16, code: &str) -> String {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], code, "{}", r.body);
    v["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn an_allowed_client_gets_a_short_mesh_token_naming_the_external_subject() {
    let w = world().await;
    let subject = w.subject(json!({}));
    let r = w
        .exchange_subject(&subject, &[("audience", "api"), ("scope", "read")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let v = r.json();
    assert_eq!(v["issued_token_type"], AT);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300, "the policy's default TTL");
    assert_eq!(v["scope"], "read");
    assert!(v.get("refresh_token").is_none(), "{v}");
    let mesh = v["access_token"].as_str().unwrap();
    let c = w.cp.app.verify_access(mesh).expect("a mesh token of ours");
    assert_eq!(c.sub, "ext:idp:alice");
    assert_eq!(c.aud, ["api"]);
    assert_eq!(c.client_id, w.client_id);
    let ext = c.ext.clone().unwrap();
    assert_eq!((ext.iss.as_str(), ext.sub.as_str()), (IDP, "alice"));
    assert_eq!(c.act, None);
    let i = w.cp.introspect(mesh).await;
    // With the subject token's id, for rules made later (no sid or client_id: none).
    assert_eq!(
        i["ext"],
        json!({"iss": IDP, "sub": "alice", "jti": "j1"}),
        "{i}"
    );

    // Audited with what was decided, never the tokens.
    let granted = w.audit("token.exchanged").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["actor"], w.client_id.as_str());
    assert_eq!(granted[0]["target"], "ext:idp:alice");
    assert_eq!(
        granted[0]["detail"],
        json!({"issuer": "idp", "subject": "alice", "aud": ["api"], "scope": "read",
            "ttl": 300, "jti": c.jti})
    );
    let log = w.cp.admin("GET", "/admin/audit?last=200", None).await.body;
    assert!(!log.contains(&subject) && !log.contains(mesh));

    // Without audience or scope: every audience and scope both allow (not `admin`,
    // which the subject holds but the policy does not give).
    let r = w.exchange_subject(&subject, &[]).await;
    let v = r.json();
    assert_eq!(v["scope"], "read write", "{v}");
    let again =
        w.cp.app
            .verify_access(v["access_token"].as_str().unwrap())
            .unwrap();
    assert_eq!(again.aud, ["api", "https://orders.example"]);
    // Replay is allowed until the subject token expires: a new token each time.
    assert_ne!(again.jti, c.jti);
    let r = w
        .exchange_subject(&subject, &[("resource", "https://orders.example")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // An exchanged token never outlives its subject token.
    let short = w.subject(json!({"exp": w.now() + 42}));
    let r = w.exchange_subject(&short, &[]).await;
    assert_eq!(r.json()["expires_in"], 42, "{}", r.body);

    // Revoked like any mesh token.
    assert!(w.cp.admin_revoke("token", mesh).await.status.is_success());
    assert_eq!(w.cp.introspect(mesh).await["active"], false);
    // The namespace of exchanged subjects is not the admin's to issue in.
    let r =
        w.cp.admin(
            "POST",
            "/admin/tokens",
            Some(json!({"sub": "ext:idp:alice"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Advertised.
    let d =
        w.cp.send("GET", "/.well-known/oauth-authorization-server", &[], "")
            .await;
    assert!(d.json()["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(GRANT)));
}

#[tokio::test]
async fn hostile_exchanges_are_refused_with_rfc_8693_errors_and_audited() {
    let w = world().await;
    let good = w.subject(json!({}));
    // Without client authentication: not an exchange at all.
    let r = w
        .exchange("", &[("subject_token", &good), ("subject_token_type", JWT)])
        .await;
    refused(&r, 401, "invalid_client");
    // An authenticated client that was not allowed to exchange.
    let (_, _, plain) = w.cp.client(&["read"]).await;
    let r = w
        .exchange(
            &plain,
            &[("subject_token", &good), ("subject_token_type", JWT)],
        )
        .await;
    refused(&r, 400, "unauthorized_client");

    let mut forged: Vec<String> = good.split('.').map(str::to_owned).collect();
    forged[1] = b64::encode(w.claims(IDP, json!({"sub": "admin"})).to_string());
    let forged = forged.join(".");
    let none = format!(
        "{}.{}.",
        b64::encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        b64::encode(w.claims(IDP, json!({})).to_string())
    );
    let hs = w.idp.sign_raw(
        &json!({"alg": "HS256", "kid": w.idp.kid(), "typ": "at+jwt"}).to_string(),
        &w.claims(IDP, json!({})).to_string(),
    );
    let own = w.cp.cc_token(&w.auth).await;
    let stranger = DevKey::seeded(43).sign(&w.claims("https://stranger.test", json!({})));
    // Signed by another key but claiming the trusted issuer.
    let impostor = DevKey::seeded(43).sign_raw(
        &json!({"alg": "EdDSA", "kid": w.idp.kid(), "typ": "at+jwt"}).to_string(),
        &w.claims(IDP, json!({})).to_string(),
    );
    let oversized = w.subject(json!({"pad": "x".repeat(9000)}));
    let cases: Vec<(Params, &str, &str)> = vec![
        (vec![], "invalid_request", "subject_token is required"),
        (
            vec![
                ("subject_token", good.clone()),
                ("subject_token_type", "urn:x".into()),
            ],
            "invalid_request",
            "is not supported",
        ),
        (
            vec![
                ("subject_token", oversized),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_request",
            "too long",
        ),
        (
            vec![
                ("subject_token", good.clone()),
                ("subject_token_type", JWT.into()),
                ("actor_token", good.clone()),
            ],
            "invalid_request",
            "actor_token_type is required",
        ),
        (
            vec![
                ("subject_token", forged),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_grant",
            "signature is not valid",
        ),
        (
            vec![
                ("subject_token", impostor),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_grant",
            "signature is not valid",
        ),
        (
            vec![("subject_token", none), ("subject_token_type", JWT.into())],
            "invalid_grant",
            "algorithm",
        ),
        (
            vec![("subject_token", hs), ("subject_token_type", JWT.into())],
            "invalid_grant",
            "algorithm",
        ),
        (
            vec![
                ("subject_token", w.subject(json!({"exp": w.now() - 61}))),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_grant",
            "expired",
        ),
        (
            vec![
                ("subject_token", w.subject(json!({"aud": "web"}))),
                ("subject_token_type", AT.into()),
            ],
            "invalid_grant",
            "audience",
        ),
        (
            vec![
                ("subject_token", stranger),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_grant",
            "not from a trusted issuer",
        ),
        (
            vec![("subject_token", own), ("subject_token_type", AT.into())],
            "invalid_grant",
            "this control plane",
        ),
        (
            vec![
                ("subject_token", w.noex.sign(&w.claims(NOEX, json!({})))),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_grant",
            "not enabled for this issuer",
        ),
        (
            vec![
                ("subject_token", good.clone()),
                ("subject_token_type", JWT.into()),
                ("audience", "admin-api".into()),
            ],
            "invalid_target",
            "audience 'admin-api'",
        ),
        (
            vec![
                ("subject_token", good.clone()),
                ("subject_token_type", JWT.into()),
                ("resource", "https://evil.example".into()),
            ],
            "invalid_target",
            "resource",
        ),
        (
            vec![
                ("subject_token", good.clone()),
                ("subject_token_type", JWT.into()),
                ("scope", "read admin".into()),
            ],
            "invalid_scope",
            "'admin'",
        ),
        (
            vec![
                ("subject_token", w.subject(json!({"scope": "read"}))),
                ("subject_token_type", JWT.into()),
                ("scope", "write".into()),
            ],
            "invalid_scope",
            "'write'",
        ),
    ];
    let n = cases.len();
    for (params, code, says) in cases {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = w.exchange(&w.auth, &p).await;
        let d = refused(&r, 400, code);
        assert!(d.contains(says), "{code}: {d}");
        assert!(d.len() < 200, "short descriptions: {d}");
    }
    // Every refusal after client authentication is on record (the oversized one was
    // refused by the form parser, before the grant was looked at).
    let audited = w.audit("token.exchange_refused").await;
    assert_eq!(audited.len(), n, "{audited:#?}");
    let not_allowed = &audited[0];
    assert_eq!(not_allowed["detail"]["error"], "unauthorized_client");
    let target = audited
        .iter()
        .find(|e| e["detail"]["error"] == "invalid_target")
        .unwrap();
    assert_eq!(target["target"], "ext:idp:alice");
    assert_eq!(target["detail"]["issuer"], "idp");
    assert_eq!(w.audit("token.exchanged").await.len(), 0);
    let log = w.cp.admin("GET", "/admin/audit?last=200", None).await.body;
    assert!(!log.contains(&good), "no token in the audit log");
}

#[tokio::test]
async fn an_actor_token_makes_a_bounded_delegation_chain() {
    let w = world().await;
    // The actor is the client asking: its own mesh token, or a trusted issuer's token
    // issued to it (its client claim, `client_id` here, is the client's id).
    let actor_id = w.client_id.clone();
    let mesh_actor = w.cp.cc_token(&w.auth).await;
    let own_iss = w.cp.app.settings().issuer.clone();
    let subject = w.subject(json!({}));
    let act = |r: &Reply| {
        assert_eq!(r.status, 200, "{}", r.body);
        let t = r.json()["access_token"].as_str().unwrap().to_string();
        serde_json::to_value(w.cp.app.verify_access(&t).unwrap().act).unwrap()
    };
    let r = w
        .exchange_subject(
            &subject,
            &[("actor_token", &mesh_actor), ("actor_token_type", AT)],
        )
        .await;
    assert_eq!(act(&r), json!({"sub": actor_id, "iss": own_iss}));
    let gw = w.subject(json!({"sub": "gateway", "client_id": w.client_id}));
    let r = w
        .exchange_subject(&subject, &[("actor_token", &gw), ("actor_token_type", JWT)])
        .await;
    assert_eq!(act(&r), json!({"sub": "gateway", "iss": IDP}));
    let audited = w.audit("token.exchanged").await;
    assert_eq!(audited.last().unwrap()["detail"]["actor"], "gateway");

    // The subject token's own chain is kept under the new actor, up to 4 actors.
    let nested = |depth: usize| {
        let mut a = json!({"sub": "first", "extra": "dropped"});
        for i in 1..depth {
            a = json!({"sub": format!("a{i}"), "act": a});
        }
        a
    };
    let three = w.subject(json!({"act": nested(3)}));
    let r = w
        .exchange_subject(&three, &[("actor_token", &gw), ("actor_token_type", JWT)])
        .await;
    let chain = act(&r);
    assert_eq!(chain["sub"], "gateway");
    assert_eq!(chain["act"]["act"]["act"], json!({"sub": "first"}));
    let four = w.subject(json!({"act": nested(4)}));
    let r = w
        .exchange_subject(&four, &[("actor_token", &gw), ("actor_token_type", JWT)])
        .await;
    assert!(refused(&r, 400, "invalid_grant").contains("more than 4 actors"));
    let five = w.subject(json!({"act": nested(5)}));
    let r = w.exchange_subject(&five, &[]).await;
    refused(&r, 400, "invalid_grant");

    // may_act names who may act; a revoked or forged actor token is refused.
    let only_bob = w.subject(json!({"may_act": {"sub": "bob"}}));
    let r = w
        .exchange_subject(
            &only_bob,
            &[("actor_token", &gw), ("actor_token_type", JWT)],
        )
        .await;
    assert!(refused(&r, 400, "invalid_grant").contains("may_act"));
    let bad_actor = DevKey::seeded(43)
        .sign(&w.claims(IDP, json!({"sub": "gateway", "client_id": w.client_id})));
    let r = w
        .exchange_subject(
            &subject,
            &[("actor_token", &bad_actor), ("actor_token_type", JWT)],
        )
        .await;
    assert!(refused(&r, 400, "invalid_grant").starts_with("actor_token"));
    assert!(w
        .cp
        .admin_revoke("token", &mesh_actor)
        .await
        .status
        .is_success());
    let r = w
        .exchange_subject(
            &subject,
            &[("actor_token", &mesh_actor), ("actor_token_type", AT)],
        )
        .await;
    assert!(refused(&r, 400, "invalid_grant").contains("revoked"));
}

/// A provider's subject revoked at the control plane (scoped to its issuer): its tokens
/// issued before the rule are no longer exchanged (a fresh mesh token would escape the
/// rule); a token of another subject still is.
#[tokio::test]
async fn a_subject_revoked_at_its_issuer_is_not_exchanged() {
    let w = world().await;
    let before = w.subject(json!({"iat": w.now() - 5}));
    let r =
        w.cp.admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "sub", "value": "alice", "issuer": "idp"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = w.exchange_subject(&before, &[("audience", "api")]).await;
    let why = refused(&r, 400, "invalid_grant");
    assert!(why.contains("revoked"), "{why}");
    let bob = w.subject(json!({"sub": "bob", "iat": w.now() - 5}));
    let r = w.exchange_subject(&bob, &[("audience", "api")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Every refused exchange is audited, so a client has a budget of them: past it, its
/// exchanges get 429 with `Retry-After` before any verification or audit record, and
/// another client's budget is untouched.
#[tokio::test]
async fn a_client_that_keeps_being_refused_is_throttled_before_the_audit_log_grows() {
    let w = world().await;
    let junk = w.subject(json!({"aud": "not-mesh"}));
    let mut refused_at = None;
    for i in 0..100 {
        let r = w.exchange_subject(&junk, &[("audience", "api")]).await;
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
            assert_eq!(r.json()["error"]["code"], "rate_limited", "{}", r.body);
            refused_at = Some(i);
            break;
        }
        refused(&r, 400, "invalid_grant");
    }
    let n = refused_at.expect("never throttled");
    assert!((20..=40).contains(&n), "throttled after {n} refusals");
    let audited = w.audit("token.exchange_refused").await.len();
    // Then even a good exchange waits, and is not audited either.
    let r = w
        .exchange_subject(&w.subject(json!({})), &[("audience", "api")])
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(w.audit("token.exchange_refused").await.len(), audited);
    assert_eq!(
        audited, n,
        "one audit record per refusal before the throttle"
    );
    // Another client is not affected, once an admin allows it to exchange
    // (`PATCH /admin/clients/{id}`, audited); and not after it is disallowed again.
    let (other_id, _, other) = w.cp.client(&["read"]).await;
    let good = w.subject(json!({}));
    let params = [
        ("subject_token", good.as_str()),
        ("subject_token_type", JWT),
        ("audience", "api"),
    ];
    refused(
        &w.exchange(&other, &params).await,
        400,
        "unauthorized_client",
    );
    let path = format!("/admin/clients/{other_id}");
    let allow = |on: bool| {
        w.cp.admin("PATCH", &path, Some(json!({"token_exchange": on})))
    };
    let r = allow(true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_exchange"], true, "{}", r.body);
    assert_eq!(r.json().get("client_secret"), None, "{}", r.body);
    let r = w.exchange(&other, &params).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let updates = w.audit("client.updated").await;
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["target"], other_id.as_str(), "{updates:?}");
    assert_eq!(allow(false).await.status, 200);
    refused(
        &w.exchange(&other, &params).await,
        400,
        "unauthorized_client",
    );
    // Hostile updates change nothing.
    for body in [
        json!({"token_exchange": "yes"}),
        json!({"token_exchange": true, "scopes": ["admin"]}),
        json!({}),
    ] {
        let r =
            w.cp.admin("PATCH", &format!("/admin/clients/{other_id}"), Some(body))
                .await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let r =
        w.cp.admin(
            "PATCH",
            "/admin/clients/c-nobody",
            Some(json!({"token_exchange": true})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    refused(
        &w.exchange(&other, &params).await,
        400,
        "unauthorized_client",
    );
}

/// Any client allowed to exchange could name anyone in `act` by presenting their token:
/// another client's mesh token, or a provider token issued to another client (or to
/// none). An actor token must be the asking client's.
#[tokio::test]
async fn an_actor_token_of_another_client_is_refused() {
    let w = &world().await;
    let subject = &w.subject(json!({}));
    let (other_id, _, other_auth) = w.cp.client(&["read"]).await;
    let others_mesh = w.cp.cc_token(&other_auth).await;
    let with_actor = |t: String, ty: &'static str| async move {
        w.exchange_subject(subject, &[("actor_token", &t), ("actor_token_type", ty)])
            .await
    };
    for (token, ty) in [
        (others_mesh, AT),
        (
            w.subject(json!({"sub": "gateway", "client_id": other_id})),
            JWT,
        ),
        (w.subject(json!({"sub": "gateway"})), JWT),
        (
            w.subject(json!({"sub": "gateway", "client_id": [w.client_id]})),
            JWT,
        ),
    ] {
        let r = with_actor(token, ty).await;
        let why = refused(&r, 400, "invalid_grant");
        assert!(why.contains("not issued to this client"), "{why}");
    }
    let mine = w.subject(json!({"sub": "gateway", "client_id": w.client_id}));
    assert_eq!(with_actor(mine, JWT).await.status, 200);
    let refusals = w.audit("token.exchange_refused").await;
    assert_eq!(refusals.len(), 4, "{refusals:?}");

    // `may_act` without `iss` names a subject of the subject token's issuer: the
    // asking client's own mesh token (issued by the control plane) is not it.
    let own_iss = w.cp.app.settings().issuer.clone();
    let mesh = w.cp.cc_token(&w.auth).await;
    for (may, ok) in [
        (json!({"sub": w.client_id}), false),
        (json!({"sub": w.client_id, "iss": own_iss}), true),
    ] {
        let subject = w.subject(json!({"may_act": may}));
        let r = w
            .exchange_subject(
                &subject,
                &[("actor_token", &mesh), ("actor_token_type", AT)],
            )
            .await;
        if ok {
            assert_eq!(r.status, 200, "{}", r.body);
        } else {
            assert!(refused(&r, 400, "invalid_grant").contains("may_act"));
        }
    }

    // A client granted `read` only gets no `write` by exchange, asked for or not.
    let r =
        w.cp.admin(
            "POST",
            "/admin/clients",
            Some(json!({"name": "ro", "token_exchange": true, "scopes": ["read"]})),
        )
        .await;
    let v = r.json();
    let ro = basic(
        v["client_id"].as_str().unwrap(),
        v["client_secret"].as_str().unwrap(),
    );
    let subject = w.subject(json!({}));
    let base = [
        ("subject_token", subject.as_str()),
        ("subject_token_type", JWT),
    ];
    for asked in ["write", "read write"] {
        let mut p = base.to_vec();
        p.push(("scope", asked));
        refused(&w.exchange(&ro, &p).await, 400, "invalid_scope");
    }
    assert_eq!(w.exchange(&ro, &base).await.json()["scope"], "read");
}

/// Exchange applies every revocation the filters apply to a provider's token, to the
/// subject token and to an external actor token: session, client (the issuer's
/// `client_claim`) and subject rules scoped to the issuer, by `iat`, and the token's
/// id. Before, only a `sub` rule refused a subject token, and an actor token was not
/// checked: a revoked session or token bought a fresh mesh token no rule covered.
/// Rules made after an exchange reach the mesh token through its `ext` claim.
#[tokio::test]
async fn every_revocation_of_a_provider_token_refuses_it_at_exchange_as_subject_or_actor() {
    let w = &world().await;
    let revoke = |body: Value| async move {
        let r = w.cp.admin("POST", "/admin/revocations", Some(body)).await;
        assert_eq!(r.status, 204, "{}", r.body);
    };
    // Exchanged before the rules: its session and id are in `ext`.
    let early = w
        .exchange_subject(&w.subject(json!({"sid": "s-late", "jti": "j-late"})), &[])
        .await;
    let early = early.json()["access_token"].as_str().unwrap().to_string();
    let early_by_id = w
        .exchange_subject(&w.subject(json!({"jti": "j-late"})), &[])
        .await;
    let early_by_id = early_by_id.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(w.cp.introspect(&early).await["active"], true);

    revoke(json!({"kind": "sid", "value": "s-gone", "issuer": "idp"})).await;
    revoke(json!({"kind": "client_id", "value": "app-gone", "issuer": "idp"})).await;
    revoke(json!({"kind": "jti", "value": "j-gone"})).await;
    let me = w.client_id.clone();
    for (what, extra) in [
        ("session", json!({"sid": "s-gone"})),
        ("client", json!({"client_id": "app-gone"})),
        ("id", json!({"jti": "j-gone"})),
    ] {
        let r = w.exchange_subject(&w.subject(extra.clone()), &[]).await;
        let why = refused(&r, 400, "invalid_grant");
        assert!(why.contains("subject has been revoked"), "{what}: {why}");
        if what == "client" {
            continue; // an actor token's client is the asking client's, below
        }
        let mut actor = extra;
        actor["sub"] = json!("gateway");
        actor["client_id"] = json!(me);
        let actor = w.subject(actor);
        let r = w
            .exchange_subject(
                &w.subject(json!({})),
                &[("actor_token", &actor), ("actor_token_type", JWT)],
            )
            .await;
        let why = refused(&r, 400, "invalid_grant");
        assert!(
            why.contains("actor_token has been revoked"),
            "{what}: {why}"
        );
    }
    // Issued after a rule (its `iat` at or past the rule's start): exchanged again.
    let later = w.subject(json!({"sid": "s-gone", "iat": w.now() + 1}));
    assert_eq!(w.exchange_subject(&later, &[]).await.status, 200);
    // Another issuer's rule on the same session is not this one's.
    let noex = w.noex.sign(&w.claims(
        NOEX,
        json!({"sub": "gateway", "sid": "s-x", "client_id": me}),
    ));
    revoke(json!({"kind": "sid", "value": "s-x", "issuer": "noex"})).await;
    let r = w
        .exchange_subject(
            &w.subject(json!({"sid": "s-x"})),
            &[("actor_token", &noex), ("actor_token_type", JWT)],
        )
        .await;
    assert!(refused(&r, 400, "invalid_grant").contains("actor_token has been revoked"));
    let r = w
        .exchange_subject(&w.subject(json!({"sid": "s-x"})), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The asking client's provider-side client revoked: its actor tokens are.
    revoke(json!({"kind": "client_id", "value": me, "issuer": "idp"})).await;
    let actor = w.subject(json!({"sub": "gateway", "client_id": me}));
    let r = w
        .exchange_subject(
            &w.subject(json!({})),
            &[("actor_token", &actor), ("actor_token_type", JWT)],
        )
        .await;
    assert!(refused(&r, 400, "invalid_grant").contains("actor_token has been revoked"));

    // Rules made after the exchange reach the mesh tokens minted before them.
    revoke(json!({"kind": "sid", "value": "s-late", "issuer": "idp"})).await;
    assert_eq!(w.cp.introspect(&early).await["active"], false);
    assert_eq!(w.cp.introspect(&early_by_id).await["active"], true);
    revoke(json!({"kind": "jti", "value": "j-late"})).await;
    assert_eq!(w.cp.introspect(&early_by_id).await["active"], false);
}
