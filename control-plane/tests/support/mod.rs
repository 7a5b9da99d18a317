//! An in-process control plane over the embedded store on a fixed clock, driven through
//! the real router (`tower::ServiceExt::oneshot`): no binary, no port, no sleeping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use meshauth_cp::app::App;
use meshauth_cp::clock::FixedClock;
use meshauth_cp::config::Settings;
use meshauth_cp::store::embedded::EmbeddedStore;
use meshauth_cp::store::{Log, Store};

pub const ADMIN: &str = "admin-token-for-tests";
/// The fleet credential filters present on `/sync/v1/*`.
pub const SYNC: &str = "sync-fleet-credential-for-tests";
pub const SYNC_BEARER: &str = "Bearer sync-fleet-credential-for-tests";

pub struct Cp {
    pub app: Arc<App>,
    /// The control plane's clock: tests move it instead of sleeping.
    pub clock: Arc<FixedClock>,
    /// One router for every request, so its guards (failure budgets, parked polls)
    /// persist as a server's do.
    router: Router,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub async fn cp() -> Cp {
    cp_with(|_| {}).await
}

/// A control plane with its settings changed by `tweak`.
pub async fn cp_with(tweak: impl FnOnce(&mut Settings)) -> Cp {
    build(embedded, tweak).await
}

fn embedded(data: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(data).unwrap())
}

/// A control plane over the store `open` builds on a fresh data file.
pub async fn cp_over(open: impl FnOnce(&std::path::Path) -> Arc<dyn Store>) -> Cp {
    build(open, |_| {}).await
}

async fn build(
    open: impl FnOnce(&std::path::Path) -> Arc<dyn Store>,
    tweak: impl FnOnce(&mut Settings),
) -> Cp {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("meshauth.redb");
    let key = "ab".repeat(32);
    let hash = meshauth_cp::crypto::sha256_hex(ADMIN);
    let sync_hash = meshauth_cp::crypto::sha256_hex(SYNC);
    let data_s = data.display().to_string();
    let env = |k: &str| match k {
        "MESHAUTH_MASTER_KEY" => Some(key.clone()),
        "MESHAUTH_ADMIN_TOKEN_SHA256" => Some(hash.clone()),
        "MESHAUTH_SYNC_CREDENTIAL_SHA256" => Some(sync_hash.clone()),
        "MESHAUTH_DATA_FILE" => Some(data_s.clone()),
        _ => None,
    };
    let mut settings = Settings::load(None, &env).unwrap();
    tweak(&mut settings);
    let clock = Arc::new(FixedClock::at_system_time());
    let app = App::with_clock(open(&data), settings, clock.clone())
        .await
        .unwrap();
    Cp {
        router: meshauth_cp::http::router(app.clone()),
        app,
        clock,
        _dir: dir,
    }
}

impl Cp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.send_from(None, method, path, headers, body).await
    }

    /// A request from the peer address `from` (as the server's socket layer sets it).
    pub async fn send_from(
        &self,
        from: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Body::from(body.to_string())).unwrap();
        if let Some(from) = from {
            let peer: SocketAddr = format!("{from}:40000")
                .parse()
                .or_else(|_| format!("[{from}]:40000").parse())
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        dispatch(&self.router, req).await
    }
}

/// `req` through `router`, the answer read whole.
pub async fn dispatch(router: &Router, req: Request<Body>) -> Reply {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

impl Cp {
    pub async fn form(&self, path: &str, auth: &str, body: &str) -> Reply {
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        if !auth.is_empty() {
            h.push(("authorization", auth));
        }
        self.send("POST", path, &h, body).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bearer = format!("Bearer {ADMIN}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send(
            method,
            path,
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await
    }

    pub async fn client(&self, scopes: &[&str]) -> (String, String, String) {
        let r = self
            .admin(
                "POST",
                "/admin/clients",
                Some(json!({"name": "svc", "scopes": scopes})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let v = r.json();
        let (id, secret) = (
            v["client_id"].as_str().unwrap().to_string(),
            v["client_secret"].as_str().unwrap().to_string(),
        );
        let auth = basic(&id, &secret);
        (id, secret, auth)
    }

    pub async fn cc_token(&self, auth: &str) -> String {
        let r = self
            .form("/oauth2/token", auth, "grant_type=client_credentials")
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    /// Admin-issued session: (access, refresh, sid).
    pub async fn session(&self, sub: &str) -> (String, String, String) {
        let r = self
            .admin("POST", "/admin/tokens", Some(json!({"sub": sub})))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        (
            v["access_token"].as_str().unwrap().into(),
            v["refresh_token"].as_str().unwrap().into(),
            v["sid"].as_str().unwrap().into(),
        )
    }

    /// An admin revocation of `value` as a `kind` (sub, sid, client_id, jti, token).
    pub async fn admin_revoke(&self, kind: &str, value: &str) -> Reply {
        self.admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": kind, "value": value})),
        )
        .await
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let bearer = format!("Bearer {ADMIN}");
        let r = self
            .form("/oauth2/introspect", &bearer, &format!("token={token}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// RFC 7009 revocation of `token` by the client authenticating with `auth`.
    pub async fn rfc7009_revoke(&self, auth: &str, token: &str) -> Reply {
        self.form("/oauth2/revoke", auth, &format!("token={token}"))
            .await
    }

    pub async fn refresh(&self, token: &str) -> Reply {
        self.form(
            "/oauth2/token",
            "",
            &format!("grant_type=refresh_token&refresh_token={token}"),
        )
        .await
    }

    pub async fn logs(&self) -> (u64, u64) {
        let (changes, _) = self.app.store().log_head(Log::Changes).await.unwrap();
        let (audit, _) = self.app.store().log_head(Log::Audit).await.unwrap();
        (changes, audit)
    }
}

/// The signed message inside a sync answer.
pub fn payload(r: &Reply) -> Value {
    let p = r.json()["payload"].as_str().unwrap().to_string();
    serde_json::from_slice(&meshauth_wire::b64::decode(&p).unwrap()).unwrap()
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}
