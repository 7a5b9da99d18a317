#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Denial of service against the real control-plane binary: cheap requests that cost
//! the server much, connections and requests that never finish, client input that
//! grows state, a Redis outage. Bounds are generous (the machine is shared); the
//! figures themselves are measured in `scripts/bench.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshauth_tests::control_plane::{ControlPlane, Redis, StoreKind};
use meshauth_tests::http::{get, request, Answer};
use serde_json::Value;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn create_client(cp: &ControlPlane) -> (String, String) {
    let v: Value =
        serde_json::from_str(&cp.cli_ok(&["clients", "create", "svc", "--scope", "read"])).unwrap();
    (
        v["client_id"].as_str().unwrap().into(),
        v["client_secret"].as_str().unwrap().into(),
    )
}

fn basic_raw(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// A TCP connection to the control plane from `source` (any 127.0.0.0/8 address, so a
/// test can play several clients).
fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&local.into())?;
    s.connect_timeout(&remote.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// Sends raw bytes and reads the answer until the server closes; the status line's
/// code (0 when the server closed without answering) and the whole answer.
fn raw_exchange(source: &str, port: u16, bytes: &[u8]) -> (u16, String) {
    let Ok(mut s) = connect_from(source, port) else {
        return (0, String::new());
    };
    if s.write_all(bytes).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A form body of about `size` bytes made of as many short distinct keys as fit.
fn many_keys(size: usize) -> String {
    let mut body = String::with_capacity(size);
    let mut i = 0u32;
    while body.len() + 8 < size {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(&format!("{i:x}=1"));
        i += 1;
    }
    body
}

fn healthz_latency(cp: &ControlPlane) -> Duration {
    let started = Instant::now();
    let a = get(&cp.url("/healthz"), &[]);
    assert_eq!(a.status, 200);
    started.elapsed()
}

/// Runs `n` threads that each call `attack` until told to stop (or 30 s, or 200
/// rounds), probes `/healthz` meanwhile and returns the slowest probe.
fn under_flood(cp: &ControlPlane, n: usize, attack: impl Fn() + Send + Sync + 'static) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Arc::new(attack);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (stop, attack) = (stop.clone(), attack.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(30);
                for _ in 0..200 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > until {
                        break;
                    }
                    attack();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        worst = worst.max(healthz_latency(cp));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    worst
}

#[test]
fn many_key_form_bodies_leave_healthz_answering() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let body = many_keys(64 * 1024 - 100);
    let a = request("POST", &cp.url("/oauth2/token"), &[FORM], Some(&body));
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"], "invalid_request");
    let port = cp.port;
    let req = format!(
        "POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let worst = under_flood(&cp, 64, move || {
        raw_exchange("127.0.0.1", port, req.as_bytes());
    });
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} under 64 senders of many-key bodies"
    );
}

#[test]
fn made_up_methods_do_not_become_metric_labels() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let before = get(&cp.url("/metrics"), &[]).body.len();
    for i in 0..300 {
        let (status, _) = raw_exchange(
            "127.0.0.1",
            cp.port,
            format!("MADEUP{i} /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_ne!(status, 0);
        // Unmatched paths are one label too.
        raw_exchange(
            "127.0.0.1",
            cp.port,
            format!("GET /nothing/{i} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        );
    }
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(!metrics.contains("MADEUP"), "a method became a label");
    assert!(!metrics.contains("/nothing/"), "a path became a label");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    // Two new label sets (other on /healthz, GET on unmatched), a few KB at most.
    assert!(
        metrics.len() < before + 16 * 1024,
        "/metrics grew from {before} to {} bytes",
        metrics.len()
    );
}

#[test]
fn basic_credentials_are_decoded_whole() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (id, secret) = create_client(&cp);
    let token = |auth: &str| {
        request(
            "POST",
            &cp.url("/oauth2/token"),
            &[FORM, ("authorization", auth)],
            Some("grant_type=client_credentials"),
        )
    };
    assert_eq!(token(&basic_raw(&format!("{id}:{secret}"))).status, 200);
    // A form parser would stop at `&` (or `;`) and drop the rest.
    for junk in ["&junk", "&x=y", "%26junk"] {
        let a = token(&basic_raw(&format!("{id}:{secret}{junk}")));
        assert_eq!(a.status, 401, "{junk}: {}", a.body);
        assert_eq!(a.json()["error"], "invalid_client");
    }
    let a = token(&basic_raw(&format!("{id}&junk:{secret}")));
    assert_eq!(a.status, 401, "{}", a.body);
    // Percent-encoding per RFC 6749 §2.3.1 still works.
    let encoded: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(token(&basic_raw(&format!("{id}:{encoded}"))).status, 200);
    // No colon, bad base64, bad percent-encoding: invalid_client.
    for bad in [
        basic_raw(&id),
        "Basic !!!".to_string(),
        basic_raw(&format!("{id}:%zz")),
    ] {
        let a = token(&bad);
        assert_eq!(a.status, 401, "{bad}: {}", a.body);
    }
}

/// Bytes Redis has received so far.
fn redis_input_bytes(redis: &Redis) -> u64 {
    redis
        .cli(&["info", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn over_long_client_ids_never_reach_the_store() {
    let redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let long = "i".repeat(40 * 1024);
    let before = redis_input_bytes(&redis);
    let a = request(
        "POST",
        &cp.url("/oauth2/token"),
        &[
            FORM,
            ("authorization", &basic_raw(&format!("{long}:secret"))),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["error"], "invalid_client");
    let a = request(
        "POST",
        &cp.url("/oauth2/token"),
        &[FORM],
        Some(&format!(
            "grant_type=client_credentials&client_id={long}&client_secret=s"
        )),
    );
    assert!(a.status == 400 || a.status == 401, "{}", a.body);
    let grew = redis_input_bytes(&redis) - before;
    assert!(grew < 16 * 1024, "Redis received {grew} bytes");
}

#[allow(dead_code)]
fn status_of(a: &Answer) -> u16 {
    a.status
}
