#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `serve::run` on listeners the test bound itself (no free-port race), stopped by the
//! test's own shutdown signal.

use std::io::{Read, Write};

use tokio::net::{TcpListener, TcpStream};

use meshauth_cp::config::Settings;
use meshauth_cp::serve::{run, Listeners};

/// One request on its own connection; the whole answer as text.
async fn exchange(addr: std::net::SocketAddr, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    exchange(addr, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_the_callers_listeners_and_stops_on_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, metrics_addr) = (public.local_addr().unwrap(), metrics.local_addr().unwrap());
    let data = dir.path().join("m.redb").display().to_string();
    let key = "cd".repeat(32);
    let metrics_listen = metrics_addr.to_string();
    let env = |k: &str| match k {
        "MESHAUTH_MASTER_KEY" => Some(key.clone()),
        "MESHAUTH_DATA_FILE" => Some(data.clone()),
        "MESHAUTH_METRICS_LISTEN" => Some(metrics_listen.clone()),
        _ => None,
    };
    let settings = Settings::load(None, &env).unwrap();
    let listeners = Listeners {
        public,
        separate: vec![(metrics_listen.clone(), metrics)],
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listeners, settings, async move {
        let _ = stopped.await;
    }));
    let jwks = get(public_addr, "/.well-known/jwks.json").await;
    assert!(jwks.starts_with("HTTP/1.1 200"), "{jwks}");
    assert!(jwks.contains("\"keys\""), "{jwks}");
    // `/metrics` is on its own listener, and only there.
    let m = get(metrics_addr, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    let elsewhere = get(public_addr, "/metrics").await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(public_addr).await.is_err(),
        "the listener is closed once run returns"
    );
}

#[tokio::test]
async fn a_configured_address_without_its_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("m.redb").display().to_string();
    let key = "cd".repeat(32);
    let env = |k: &str| match k {
        "MESHAUTH_MASTER_KEY" => Some(key.clone()),
        "MESHAUTH_DATA_FILE" => Some(data.clone()),
        "MESHAUTH_ADMIN_LISTEN" => Some("127.0.0.1:1".into()),
        _ => None,
    };
    let settings = Settings::load(None, &env).unwrap();
    let listeners = Listeners {
        public: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        separate: Vec::new(),
    };
    let err = run(listeners, settings, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.contains("no listener for 127.0.0.1:1"), "{err}");
}

/// A provider on a thread: every request gets one JWKS with one RSA key.
fn jwks_provider() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut n = vec![0x9bu8; 256];
    n[0] = 0xc3;
    let body = serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1", "n": meshauth_wire::b64::encode(&n), "e": "AQAB"}]}).to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

async fn admin(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer adm\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, request).await
}

/// `serve` runs the federated key fetch loop: an issuer added over the API gets its keys
/// without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_fetches_the_keys_of_trusted_issuers() {
    let provider = jwks_provider();
    let dir = tempfile::tempdir().unwrap();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap();
    let data = dir.path().join("m.redb").display().to_string();
    let key = "cd".repeat(32);
    let admin_hash = meshauth_cp::crypto::sha256_hex("adm");
    let env = |k: &str| match k {
        "MESHAUTH_MASTER_KEY" => Some(key.clone()),
        "MESHAUTH_DATA_FILE" => Some(data.clone()),
        "MESHAUTH_ADMIN_TOKEN_SHA256" => Some(admin_hash.clone()),
        _ => None,
    };
    let mut settings = Settings::load(None, &env).unwrap();
    settings.federation.allow_insecure_http = true;
    let listeners = Listeners {
        public,
        separate: Vec::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listeners, settings, async move {
        let _ = stopped.await;
    }));
    let spec = serde_json::json!({
        "name": "idp", "issuer": "https://idp.test", "jwks_uri": format!("http://{provider}/jwks"),
        "audiences": ["api"], "algorithms": ["RS256"],
    });
    let added = admin(addr, "POST", "/admin/issuers", &spec.to_string()).await;
    assert!(added.starts_with("HTTP/1.1 201"), "{added}");
    // The loop ticks every second; this waits for its first fetch, 30 s at most.
    let mut last = String::new();
    for _ in 0..300 {
        last = admin(addr, "GET", "/admin/issuers/idp", "").await;
        if last.contains("\"key_count\":1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(last.contains("\"kids\":[\"k1\"]"), "{last}");
    assert!(last.contains("\"state\":\"closed\""), "{last}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
