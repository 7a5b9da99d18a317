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

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::http::{get, request};
use meshauth_tests::redis::Redis;
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
    // 9 KiB fits in a request head; 40 KiB fits in a body.
    let long = "i".repeat(40 * 1024);
    let before = redis_input_bytes(&redis);
    let a = request(
        "POST",
        &cp.url("/oauth2/token"),
        &[
            FORM,
            (
                "authorization",
                &basic_raw(&format!("{}:secret", &long[..9 * 1024])),
            ),
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
    assert!(grew < 4 * 1024, "Redis received {grew} bytes");
}

/// One request over a fresh connection from `source`.
fn raw_request(
    source: &str,
    port: u16,
    method_path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!("{method_path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw_exchange(source, port, req.as_bytes())
}

/// Writes `head`, then one more header line every 300 ms; how long until the server
/// closed the connection (or `None` if it had not after `give_up`).
fn trickle(port: u16, head: &str, line: &str, give_up: Duration) -> Option<(Duration, String)> {
    let mut s = connect_from("127.0.0.1", port).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    while started.elapsed() < give_up {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return Some((started.elapsed(), String::from_utf8_lossy(&got).into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some((started.elapsed(), String::from_utf8_lossy(&got).into())),
        }
        if s.write_all(line.as_bytes()).is_err() {
            return Some((started.elapsed(), String::from_utf8_lossy(&got).into()));
        }
    }
    None
}

const SHORT_TIMEOUTS: &str = "[server]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n";

#[test]
fn trickled_headers_are_cut_off() {
    let cp = ControlPlane::start(StoreKind::Embedded, SHORT_TIMEOUTS);
    let closed = trickle(
        cp.port,
        "GET /healthz HTTP/1.1\r\nhost: x\r\n",
        "x-slow: 1\r\n",
        Duration::from_secs(15),
    );
    let (after, _) = closed.expect("the connection was still open after 15 s");
    assert!(
        after < Duration::from_secs(8),
        "closed only after {after:?}"
    );
    assert_eq!(get(&cp.url("/healthz"), &[]).status, 200);
}

#[test]
fn trickled_bodies_get_408() {
    trickled_body_gets_408(
        "POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\n",
    );
}

/// Sends `head`, then its body a byte at a time: the control plane must answer 408 and
/// close well within 8 s (its body timeout is short here).
fn trickled_body_gets_408(head: &str) {
    let cp = ControlPlane::start(StoreKind::Embedded, SHORT_TIMEOUTS);
    let closed = trickle(cp.port, head, "a", Duration::from_secs(15));
    let (after, answer) = closed.expect("the connection was still open after 15 s");
    assert!(
        after < Duration::from_secs(8),
        "closed only after {after:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A body declared over the limit but small enough to be drained before the 413 (see
/// `read_body`) is drained within `body_read_timeout` too: an unauthenticated caller
/// trickling one into an admin route holds its connection no longer than any other
/// slow body.
#[test]
fn trickled_oversized_bodies_are_drained_within_the_body_timeout() {
    trickled_body_gets_408(
        "POST /admin/clients HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n",
    );
}

/// A client that declares a body over the limit and waits for `100 Continue` before
/// sending it is refused at once: the server does not ask for a body it would drop.
#[test]
fn an_oversized_body_awaiting_100_continue_is_refused_unsent() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let mut s = connect_from("127.0.0.1", cp.port).unwrap();
    let head = "POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 500000\r\nexpect: 100-continue\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn oversized_request_heads_get_431() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let big = "a".repeat(32 * 1024);
    let (status, _) = raw_request("127.0.0.1", cp.port, "GET /healthz", &[("x-big", &big)], "");
    assert_eq!(status, 431);
    let (status, _) = raw_request(
        "127.0.0.1",
        cp.port,
        "GET /healthz",
        &[("x-small", "a")],
        "",
    );
    assert_eq!(status, 200);
}

#[test]
fn connections_are_capped_per_source() {
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[server]\nmax_connections_per_source = 8\nheader_read_timeout = \"60s\"\n",
    );
    // An attacker from 127.0.0.2 opens 40 connections with unfinished heads.
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(mut s) = connect_from("127.0.0.2", cp.port) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n");
            held.push(s);
        }
    }
    // The server closes the ones over the cap; give it time on a loaded machine.
    let mut closed = vec![false; held.len()];
    let _ = meshauth_tests::wait::poll(10, || {
        for (s, c) in held.iter_mut().zip(closed.iter_mut()) {
            if *c {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                _ => *c = true,
            }
        }
        let open = closed.iter().filter(|c| !**c).count();
        (open <= 8)
            .then_some(())
            .ok_or(meshauth_tests::wait::Retry::Again(String::new()))
    });
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(open, 8, "connections kept open for one source");
    // Others are served meanwhile.
    let (status, _) = raw_request("127.0.0.1", cp.port, "GET /healthz", &[], "");
    assert_eq!(status, 200);
    let (status, _) = raw_request("127.0.0.2", cp.port, "GET /healthz", &[], "");
    assert_eq!(status, 0, "the ninth connection of 127.0.0.2 is closed");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = raw_request("127.0.0.2", cp.port, "GET /healthz", &[], "");
    assert_eq!(status, 200, "places are given back");
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_http_connections_refused_total"),
        "{metrics}"
    );
}

#[test]
fn parked_long_polls_are_capped_per_source() {
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[server]\nmax_long_polls_per_source = 4\n",
    );
    let a = cp.sync_get("/sync/v1/snapshot");
    let auth = cp.sync_auth().1;
    assert_eq!(a.status, 200, "{}", a.body);
    let version = a
        .header(meshauth_wire::headers::VERSION)
        .unwrap()
        .to_string();
    let poll = format!("GET /sync/v1/snapshot?version={version}&wait_ms=20000");
    let port = cp.port;
    let parked: Vec<_> = (0..4)
        .map(|_| {
            let (poll, auth) = (poll.clone(), auth.clone());
            std::thread::spawn(move || {
                raw_request("127.0.0.2", port, &poll, &[("authorization", &auth)], "").0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2000));
    let started = Instant::now();
    let (status, answer) = raw_request("127.0.0.2", port, &poll, &[("authorization", &auth)], "");
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Another source still parks (and gets 304 when its short wait ends).
    let short = format!("GET /sync/v1/snapshot?version={version}&wait_ms=300");
    assert_eq!(
        raw_request("127.0.0.1", port, &short, &[("authorization", &auth)], "").0,
        304
    );
    // A change releases the parked ones.
    cp.cli_ok(&["token", "issue", "--sub", "dos-test-subject"]); // a subject to revoke (no new version)
    cp.cli_ok(&["revoke", "subject", "dos-test-subject"]);
    for p in parked {
        assert_eq!(p.join().unwrap(), 200);
    }
}

#[test]
fn failed_authentication_is_throttled_per_source() {
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[server]\nauth_failure_burst = 5\nauth_failure_interval = \"60s\"\n",
    );
    let (id, secret) = create_client(&cp);
    let good = basic_raw(&format!("{id}:{secret}"));
    let token = |source: &str, auth: &str| {
        raw_request(
            source,
            cp.port,
            "POST /oauth2/token",
            &[FORM, ("authorization", auth)],
            "grant_type=client_credentials",
        )
    };
    // Guessed secrets (each one different) spend the source's budget, four times the
    // burst; then even the right secret, never used from there, is refused.
    for n in 0..20 {
        let bad = basic_raw(&format!("{id}:wrong{n}"));
        assert_eq!(token("127.0.0.3", &bad).0, 401);
    }
    let (status, answer) = token("127.0.0.3", &good);
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );
    assert!(!answer.contains(&secret));
    // Other sources are not affected.
    assert_eq!(token("127.0.0.1", &good).0, 200);
    // The admin API likewise: guessed tokens (each one different) spend the source's
    // budget, four times the burst, and then even the right token is refused from there.
    for n in 0..20 {
        let (status, _) = raw_request(
            "127.0.0.4",
            cp.port,
            "GET /admin/keys",
            &[("authorization", &format!("Bearer wrong{n}"))],
            "",
        );
        assert_eq!(status, 401);
    }
    let (k, v) = cp.admin_headers();
    let (status, _) = raw_request("127.0.0.4", cp.port, "GET /admin/keys", &[(&k, &v)], "");
    assert_eq!(status, 429);
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_auth_failures_total{kind=\"client\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshauth_auth_failures_total{kind=\"admin\"} 20"),
        "{metrics}"
    );
    assert!(!cp.log().contains("wrong"), "no credential in the log");
    // And the sync fleet credential.
    let poll = "GET /sync/v1/snapshot?version=0&wait_ms=0";
    for n in 0..20 {
        let (status, _) = raw_request(
            "127.0.0.5",
            cp.port,
            poll,
            &[("authorization", &format!("Bearer wrong{n}"))],
            "",
        );
        assert_eq!(status, 401);
    }
    let (k, v) = cp.sync_auth();
    let (status, _) = raw_request("127.0.0.5", cp.port, poll, &[(k, &v)], "");
    assert_eq!(
        status, 429,
        "a source over its budget is refused before its credential is checked"
    );
    assert_eq!(
        raw_request("127.0.0.1", cp.port, poll, &[(k, &v)], "").0,
        200
    );
}

/// `/readyz` and a token request: their statuses, and the slower one's time.
fn probe(cp: &ControlPlane, auth: &str) -> (u16, u16, Duration) {
    let started = Instant::now();
    let ready = get(&cp.url("/readyz"), &[]).status;
    let token = request(
        "POST",
        &cp.url("/oauth2/token"),
        &[FORM, ("authorization", auth)],
        Some("grant_type=client_credentials"),
    )
    .status;
    (ready, token, started.elapsed())
}

/// Polls until both probes answer 200; how long that took.
fn recovery(cp: &ControlPlane, auth: &str, give_up: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (ready, token, _) = probe(cp, auth);
        if ready == 200 && token == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < give_up,
            "not serving {give_up:?} after Redis returned: readyz {ready}, token {token}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn redis_outage_fails_fast_and_recovers_within_seconds() {
    let mut redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let (id, secret) = create_client(&cp);
    let auth = basic_raw(&format!("{id}:{secret}"));
    assert_eq!(probe(&cp, &auth).0, 200);

    // Redis gone for 12 s: every answer is a fast 503, never a hang.
    redis.stop();
    let down = Instant::now();
    let mut slowest = Duration::ZERO;
    while down.elapsed() < Duration::from_secs(12) {
        let (ready, token, took) = probe(&cp, &auth);
        assert_eq!((ready, token), (503, 503));
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(slowest < Duration::from_secs(2), "a probe took {slowest:?}");
    redis.start_again();
    let back = recovery(&cp, &auth, Duration::from_secs(10));
    eprintln!("serving again {back:?} after Redis restarted (slowest 503: {slowest:?})");
    // The change log is retried every 20 ms while Redis is down: the log says so when
    // it goes, every 30 s after, and when it is back, not 600 times in 12 s.
    let log = cp.log();
    let warned = log.matches("change log unreachable").count();
    assert!(
        (1..=2).contains(&warned),
        "{warned} outage warnings:\n{log}"
    );
    assert!(log.contains("change log reachable again"), "{log}");

    // Redis frozen (connections accepted, nothing answered): 503 after the response
    // timeout, and serving again once it thaws.
    redis.freeze(true);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let (ready, token, took) = probe(&cp, &auth);
        assert_eq!((ready, token), (503, 503));
        assert!(took < Duration::from_secs(8), "a probe took {took:?}");
    }
    redis.freeze(false);
    recovery(&cp, &auth, Duration::from_secs(10));
}

fn answers_built(cp: &ControlPlane, kind: &str) -> u64 {
    let prefix = format!("meshauth_sync_answers_built_total{{kind=\"{kind}\"}} ");
    get(&cp.url("/metrics"), &[])
        .body
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn one_change_builds_one_answer_for_all_parked_pollers() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let a = cp.sync_get("/sync/v1/snapshot");
    let auth = cp.sync_auth().1;
    assert_eq!(a.status, 200, "{}", a.body);
    let version: u64 = a
        .header(meshauth_wire::headers::VERSION)
        .unwrap()
        .parse()
        .unwrap();
    let port = cp.port;
    let parked: Vec<_> = (0..40)
        .map(|i| {
            let delta = u8::from(i % 2 == 0);
            let poll =
                format!("GET /sync/v1/snapshot?version={version}&wait_ms=20000&delta={delta}");
            let auth = auth.clone();
            std::thread::spawn(move || {
                let (status, answer) =
                    raw_request("127.0.0.1", port, &poll, &[("authorization", &auth)], "");
                let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
                (status, body)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2000));
    let (deltas, snapshots) = (answers_built(&cp, "delta"), answers_built(&cp, "snapshot"));
    cp.cli_ok(&["token", "issue", "--sub", "one-change"]); // a subject to revoke (no new version)
    cp.cli_ok(&["revoke", "subject", "one-change"]);
    let answers: Vec<(u16, String)> = parked.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    // Pollers of one kind got the very same signed answer.
    let delta_bodies: std::collections::BTreeSet<_> =
        answers.iter().step_by(2).map(|(_, b)| b.clone()).collect();
    assert_eq!(delta_bodies.len(), 1);
    assert_eq!(answers_built(&cp, "delta") - deltas, 1, "deltas built");
    assert_eq!(
        answers_built(&cp, "snapshot") - snapshots,
        1,
        "snapshots built"
    );
}

#[test]
fn over_long_admin_path_ids_never_reach_the_store() {
    let redis = Redis::start();
    let cp = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let (k, v) = cp.admin_headers();
    let long = "c".repeat(12 * 1024);
    let before = redis_input_bytes(&redis);
    for (method, path) in [
        ("DELETE", format!("/admin/clients/{long}")),
        ("POST", format!("/admin/clients/{long}/secret")),
        ("GET", format!("/admin/limits/{long}")),
    ] {
        let a = request(method, &cp.url(&path), &[(&k, &v)], None);
        assert_eq!(a.status, 400, "{method} {:.200}", a.body);
    }
    let grew = redis_input_bytes(&redis) - before;
    assert!(grew < 4 * 1024, "Redis received {grew} bytes");
    let a = request("DELETE", &cp.url("/admin/clients/nope"), &[(&k, &v)], None);
    assert_eq!(a.status, 404, "ordinary ids still reach the store");
}

/// Each listener has its own connection budget: a source holding its share of the
/// public port does not shut the admin listener out for it (or anyone).
#[test]
fn connections_to_one_listener_do_not_shut_out_another() {
    let admin = meshauth_tests::free_port();
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\n[server]\nmax_connections_per_source = 4\nheader_read_timeout = \"60s\"\n"
        ),
    );
    let mut held = Vec::new();
    for _ in 0..10 {
        if let Ok(mut s) = connect_from("127.0.0.2", cp.port) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n");
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (k, v) = cp.admin_headers();
    let (status, answer) = raw_request("127.0.0.2", admin, "GET /admin/keys", &[(&k, &v)], "");
    assert_eq!(status, 200, "{answer}");
    drop(held);
}

/// A client still sending a body over the limit reads the 413, not a broken pipe or a
/// reset: the server reads (and drops) what remains before closing.
#[test]
fn an_oversized_body_gets_its_413_not_a_reset() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let chunk = "x".repeat(16 * 1024);
    let mut s = connect_from("127.0.0.1", cp.port).unwrap();
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        chunk.len() * 24
    );
    s.write_all(head.as_bytes()).unwrap();
    // Slowly enough that the server has answered long before the last chunk.
    for i in 0..24 {
        if let Err(e) = s.write_all(chunk.as_bytes()) {
            panic!("chunk {i}: {e}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

/// A client refused with 413 before its `100 Continue` that sends the body anyway, here
/// a second request, gets no answer to it: the connection closes after the 413, so
/// bytes of an unread body are never parsed as a request (no desync).
#[test]
fn a_body_sent_after_an_early_413_is_not_read_as_a_request() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    for expect in ["expect: 100-continue\r\n", ""] {
        let mut s = connect_from("127.0.0.1", cp.port).unwrap();
        let declared = if expect.is_empty() { 2 << 20 } else { 500_000 };
        let head = format!("POST /oauth2/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {declared}\r\n{expect}\r\n");
        let smuggled = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
        s.write_all(format!("{head}{smuggled}").as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{expect:?}: {answer}"
        );
    }
}
