#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `serve::run` on listeners the test bound itself (no free-port race), stopped by the
//! test's own shutdown signal.

use std::io::{Read, Write};

use tokio::net::{TcpListener, TcpStream};

use meshauth_cp::config::Settings;
use meshauth_cp::serve::{run, Listeners};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
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
