#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The control plane's side of filter sync: signed snapshots, long polls answered on
//! change (also across replicas on one Redis), Bloom-hit confirmation, filter status.

use std::time::{Duration, Instant};

use ed25519_dalek::Verifier;
use meshauth_tests::control_plane::{ControlPlane, Redis, StoreKind};
use meshauth_tests::http::{get, request, Answer};
use meshauth_wire::sync::{RuleClaim, SignedSnapshot, Snapshot};
use serde_json::{json, Value};

fn open(cp: &ControlPlane, a: &Answer) -> Snapshot {
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json();
    let public =
        meshauth_wire::b64::decode_array::<32>(key["public_key"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    SignedSnapshot::open(a.body.as_bytes(), |payload, sig| {
        vk.verify(payload, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    })
    .unwrap()
}

fn version(a: &Answer) -> u64 {
    a.header("x-meshauth-version").unwrap().parse().unwrap()
}

#[test]
fn snapshots_are_signed_and_carry_keys_and_revocations() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let a = get(&cp.url("/sync/v1/snapshot"), &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let snap = open(&cp, &a);
    assert_eq!(snap.version, version(&a));
    assert_eq!(
        snap.jwks,
        serde_json::from_value(get(&cp.url("/.well-known/jwks.json"), &[]).json()).unwrap()
    );
    let token = cp.cli_ok(&["token", "issue", "--sub", "alice"]);
    let jti = {
        let p = token.trim().split('.').nth(1).unwrap();
        let c: Value = serde_json::from_slice(&meshauth_wire::b64::decode(p).unwrap()).unwrap();
        c["jti"].as_str().unwrap().to_string()
    };
    assert!(!snap.revoked_jti.contains(&jti));
    cp.cli_ok(&["revoke", "token", token.trim()]);
    // Revoking a subject that never got a token is a 404.
    cp.cli_ok(&["token", "issue", "--sub", "mallory"]);
    cp.cli_ok(&["revoke", "subject", "mallory"]);
    let b = get(&cp.url("/sync/v1/snapshot"), &[]);
    let snap2 = open(&cp, &b);
    assert!(snap2.version > snap.version);
    assert!(snap2.revoked_jti.contains(&jti));
    assert!(snap2
        .rules
        .iter()
        .any(|r| r.claim == RuleClaim::Sub && r.value == "mallory"));
    // A tampered payload does not open.
    let mut env: Value = serde_json::from_str(&b.body).unwrap();
    let mut body: Value = serde_json::from_slice(
        &meshauth_wire::b64::decode(env["payload"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    body["rules"] = json!([]);
    env["payload"] = json!(meshauth_wire::b64::encode(body.to_string()));
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json();
    let public =
        meshauth_wire::b64::decode_array::<32>(key["public_key"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let opened = SignedSnapshot::open(env.to_string().as_bytes(), |p, s| {
        vk.verify(p, &ed25519_dalek::Signature::from_bytes(s))
            .is_ok()
    });
    assert!(opened.is_err());
    // Confirmation of Bloom hits is exact.
    let (k, v) = ("content-type", "application/json");
    let c = request(
        "POST",
        &cp.url("/sync/v1/confirm"),
        &[(k, v)],
        Some(&json!({"jti": jti}).to_string()),
    )
    .json();
    assert_eq!(c["revoked"], true);
    let c = request(
        "POST",
        &cp.url("/sync/v1/confirm"),
        &[(k, v)],
        Some(r#"{"jti": "never-revoked"}"#),
    )
    .json();
    assert_eq!(c["revoked"], false);
}

#[test]
fn long_poll_answers_on_change_and_reports_filters() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let v0 = version(&get(&cp.url("/sync/v1/snapshot"), &[]));
    // Nothing newer: the poll is held, then answered 304.
    let a = get(
        &cp.url(&format!(
            "/sync/v1/snapshot?version={v0}&wait_ms=200&filter=envoy-1&applied={v0}"
        )),
        &[],
    );
    assert_eq!((a.status, version(&a)), (304, v0));
    let status: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
    assert_eq!(status["filters"][0]["id"], "envoy-1");
    assert_eq!(status["filters"][0]["applied_version"], v0);
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_sync_filters_connected 1"),
        "{metrics}"
    );
    // A change while a poll is held answers it with the new version, long before the wait ends.
    let url = cp.url(&format!("/sync/v1/snapshot?version={v0}&wait_ms=20000"));
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        (get(&url, &[]), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    cp.cli_ok(&["token", "issue", "--sub", "eve"]); // no new version
    cp.cli_ok(&["revoke", "subject", "eve"]);
    let (a, took) = poll.join().unwrap();
    assert_eq!(a.status, 200);
    assert!(version(&a) > v0);
    assert!(
        took < Duration::from_secs(15),
        "the poll was answered by the change, not the timeout"
    );
    assert!(open(&cp, &a).rules.iter().any(|r| r.value == "eve"));
}

#[test]
fn a_change_through_one_replica_reaches_polls_on_another() {
    let redis = Redis::start();
    let a = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let b = ControlPlane::start(StoreKind::Redis(redis.url()), "");
    let ka = get(&a.url("/sync/v1/distribution-key"), &[]).json();
    let kb = get(&b.url("/sync/v1/distribution-key"), &[]).json();
    assert_eq!(ka, kb, "one distribution key and epoch for the deployment");
    // A session to revoke (issuing one is no change filters see).
    let issued: Value =
        serde_json::from_str(&a.cli_ok(&["token", "issue", "--sub", "sam", "--json"])).unwrap();
    let sid = issued["sid"].as_str().unwrap().to_string();
    let v0 = version(&get(&b.url("/sync/v1/snapshot"), &[]));
    let url = b.url(&format!("/sync/v1/snapshot?version={v0}&wait_ms=20000"));
    let poll = std::thread::spawn(move || get(&url, &[]));
    // Listen on the nudge channel as the replicas do.
    let mut sub = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "subscribe",
            "{meshauth}:nudge:changes",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    a.cli_ok(&["revoke", "session", &sid]);
    let got = poll.join().unwrap();
    assert_eq!(got.status, 200);
    assert!(open(&b, &got)
        .rules
        .iter()
        .any(|r| r.claim == RuleClaim::Sid && r.value == sid));
    // The change was appended to the durable log and announced with its version.
    std::thread::sleep(Duration::from_millis(200));
    let _ = sub.kill();
    let out = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("message") && text.contains(&version(&got).to_string()),
        "{text}"
    );
    let logged = redis.cli(&["llen", "{meshauth}:log:changes"]);
    assert_eq!(logged.trim().parse::<u64>().unwrap(), version(&got));
}

#[test]
fn expired_revocations_leave_the_store() {
    let cp = ControlPlane::start(StoreKind::Embedded, "[keys]\ncheck_interval = \"200ms\"\n");
    let (k, v) = cp.admin_headers();
    let h = [
        (k.as_str(), v.as_str()),
        ("content-type", "application/json"),
    ];
    let past = meshauth_tests::tokens::now() - 3600;
    let future = meshauth_tests::tokens::now() + 3600;
    for (jti, exp) in [("old", past), ("live", future)] {
        let a = request(
            "POST",
            &cp.url("/admin/revocations"),
            &h,
            Some(&json!({"kind": "jti", "value": jti, "exp": exp}).to_string()),
        );
        assert_eq!(a.status, 204, "{}", a.body);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = get(&cp.url("/admin/revocations"), &h[..1]).json();
        let jtis: Vec<&str> = list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["jti"].as_str())
            .collect();
        if jtis == ["live"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired jti still stored: {jtis:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The key schedule waits for connected filters: a `next` key signs only once every
/// filter that polled recently has applied a snapshot carrying it, or once the cap
/// runs out (then it is audited and counted).
#[test]
fn key_activation_waits_for_filters_up_to_a_cap() {
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[keys]\njwks_max_age = \"1s\"\nclock_skew = \"1s\"\ncheck_interval = \"200ms\"\nmax_activation_wait = \"3s\"\n",
    );
    let kid_of = |token: &str| -> String {
        let h = token.trim().split('.').next().unwrap();
        let h: Value = serde_json::from_slice(&meshauth_wire::b64::decode(h).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    let first = kid_of(&cp.cli_ok(&["token", "issue", "--sub", "a"]));
    // A filter that stays at version 1 keeps polling.
    let laggard = |cp: &ControlPlane| {
        get(
            &cp.url("/sync/v1/snapshot?version=1&filter=laggard&applied=1&wait_ms=0"),
            &[],
        )
    };
    laggard(&cp);
    let rotated = Instant::now();
    let keys: Value = serde_json::from_str(&cp.cli_ok(&["keys", "rotate"])).unwrap();
    let next = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "next")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    // Pre-publication is 2 s, the cap 3 s more: until then the old key keeps signing.
    let signer = loop {
        laggard(&cp);
        let kid = kid_of(&cp.cli_ok(&["token", "issue", "--sub", "a"]));
        if kid != first || rotated.elapsed() > Duration::from_secs(15) {
            break kid;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(signer, next);
    let waited = rotated.elapsed();
    assert!(
        waited >= Duration::from_secs(4), // whole seconds: 2 s + 3 s after a creation time rounded down
        "activated after {waited:?}, before the cap"
    );
    let (k, v) = cp.admin_headers();
    let audit = get(&cp.url("/admin/audit?limit=1000"), &[(&k, &v)]).json();
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |e| e["action"] == "key.activated_past_lagging_filters" && e["target"] == next.as_str()
        ));
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_key_activations_forced_total 1"),
        "{metrics}"
    );

    // A filter that keeps up: the next rotation happens right after pre-publication.
    let current = |cp: &ControlPlane| {
        let s: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
        s["sync"]["version"].as_u64().unwrap()
    };
    let prompt = |cp: &ControlPlane| {
        let v = current(cp);
        get(
            &cp.url(&format!(
                "/sync/v1/snapshot?version={v}&filter=laggard&applied={v}&wait_ms=0"
            )),
            &[],
        );
    };
    prompt(&cp);
    let rotated = Instant::now();
    cp.cli_ok(&["keys", "rotate"]);
    loop {
        prompt(&cp);
        if kid_of(&cp.cli_ok(&["token", "issue", "--sub", "a"])) != next {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(15),
            "rotation never completed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        rotated.elapsed() < Duration::from_secs(5),
        "a filter that keeps up is not waited for: {:?}",
        rotated.elapsed()
    );
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_key_activations_forced_total 1"),
        "still one: {metrics}"
    );
}

/// A filter close behind gets a delta when every change since its version was a
/// revocation, and a full snapshot otherwise (a key change, a gap too wide, version 0).
#[test]
fn revocation_only_changes_come_as_signed_deltas() {
    use meshauth_wire::sync::Message;
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json();
    let public =
        meshauth_wire::b64::decode_array::<32>(key["public_key"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let open_any = |a: &Answer| {
        SignedSnapshot::open_message(a.body.as_bytes(), |payload, sig| {
            vk.verify(payload, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
        .unwrap()
    };
    let poll = |v: u64| {
        get(
            &cp.url(&format!("/sync/v1/snapshot?version={v}&delta=1")),
            &[],
        )
    };
    cp.cli_ok(&["token", "issue", "--sub", "mallory"]); // no new version
    let v0 = version(&poll(0));
    cp.cli_ok(&["revoke", "token", "jti-one"]);
    cp.cli_ok(&["revoke", "subject", "mallory"]);
    let a = poll(v0);
    let Message::Delta(d) = open_any(&a) else {
        panic!("expected a delta: {}", a.body)
    };
    assert_eq!((d.base_version, d.version), (v0, v0 + 2));
    assert_eq!(version(&a), v0 + 2);
    assert_eq!(d.revoked_jti, vec!["jti-one".to_string()]);
    assert!(d
        .rules
        .iter()
        .any(|r| r.claim == RuleClaim::Sub && r.value == "mallory"));
    // Without delta=1, or from version 0, a full snapshot.
    let full = get(&cp.url(&format!("/sync/v1/snapshot?version={v0}")), &[]);
    assert!(matches!(open_any(&full), Message::Full(_)));
    assert!(matches!(open_any(&poll(0)), Message::Full(_)));
    // A key change in between: full.
    cp.cli_ok(&["keys", "rotate"]);
    cp.cli_ok(&["revoke", "token", "jti-two"]);
    let Message::Full(snap) = open_any(&poll(v0 + 2)) else {
        panic!("a key change needs the full snapshot")
    };
    assert!(snap.revoked_jti.contains("jti-two"));
    let created: Value = serde_json::from_str(&cp.cli_ok(&["clients", "create", "c9"])).unwrap();
    let v = version(&poll(0));
    cp.cli_ok(&["revoke", "client", created["client_id"].as_str().unwrap()]);
    let Message::Delta(d) = open_any(&poll(v)) else {
        panic!("revocations after the rotation come as a delta again")
    };
    assert_eq!(d.rules.len(), 1);
}
