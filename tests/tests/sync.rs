#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The control plane's side of filter sync: signed snapshots, long polls answered on
//! change (also across replicas on one Redis), Bloom-hit confirmation, filter status.

use std::time::{Duration, Instant};

use ed25519_dalek::Verifier;
use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::http::{get, request, Answer};
use meshauth_tests::redis::Redis;
use meshauth_tests::wait::wait_until;
use meshauth_wire::sync::{ConfirmAnswer, RuleClaim, SignedSnapshot, Snapshot};
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
    a.header(meshauth_wire::headers::VERSION)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn snapshots_are_signed_and_carry_keys_and_revocations() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let a = cp.sync_get("/sync/v1/snapshot");
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
    let b = cp.sync_get("/sync/v1/snapshot");
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
    // Confirmation of Bloom hits is exact, and signed over the jti and the nonce.
    let confirm = |jti: &str, nonce: &str| {
        let (k, v) = cp.sync_auth();
        request(
            "POST",
            &cp.url("/sync/v1/confirm"),
            &[(k, &v), ("content-type", "application/json")],
            Some(&json!({"jti": jti, "nonce": nonce}).to_string()),
        )
    };
    let open_confirm = |a: &Answer, jti: &str, nonce: &str| {
        ConfirmAnswer::open(a.body.as_bytes(), jti, nonce, |input, sig| {
            vk.verify(input, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
    };
    let nonce = "n0nce-0123456789abcdef";
    let c = confirm(&jti, nonce);
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(open_confirm(&c, &jti, nonce), Some(true));
    assert_eq!(open_confirm(&c, &jti, "another-nonce-0123456789"), None);
    assert_eq!(open_confirm(&c, "never-revoked", nonce), None);
    let c = confirm("never-revoked", nonce);
    assert_eq!(open_confirm(&c, "never-revoked", nonce), Some(false));
    // A question without a usable nonce is refused.
    for bad in ["", "short", "has spaces in it, too long"] {
        assert_eq!(confirm(&jti, bad).status, 400, "{bad:?}");
    }
}

#[test]
fn long_poll_answers_on_change_and_reports_filters() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let v0 = version(&cp.sync_get("/sync/v1/snapshot"));
    // Nothing newer: the poll is held, then answered 304.
    let a = cp.sync_get(&format!(
        "/sync/v1/snapshot?version={v0}&wait_ms=200&filter=envoy-1&applied={v0}"
    ));
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
    let (k, v) = cp.sync_auth();
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        (get(&url, &[(k, &v)]), t.elapsed())
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
    let v0 = version(&b.sync_get("/sync/v1/snapshot"));
    let url = b.url(&format!("/sync/v1/snapshot?version={v0}&wait_ms=20000"));
    let (k, v) = b.sync_auth();
    let poll = std::thread::spawn(move || get(&url, &[(k, &v)]));
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
    wait_until("the expired jti to go", 10, || {
        let list = get(&cp.url("/admin/revocations"), &h[..1]).json();
        let jtis: Vec<&str> = list["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["jti"].as_str())
            .collect();
        (jtis == ["live"])
            .then_some(())
            .ok_or(format!("expired jti still stored: {jtis:?}"))
    });
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
        cp.sync_get("/sync/v1/snapshot?version=1&filter=laggard&applied=1&wait_ms=0")
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
        cp.sync_get(&format!(
            "/sync/v1/snapshot?version={v}&filter=laggard&applied={v}&wait_ms=0"
        ));
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
    let poll = |v: u64| cp.sync_get(&format!("/sync/v1/snapshot?version={v}&delta=1"));
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
    let full = cp.sync_get(&format!("/sync/v1/snapshot?version={v0}"));
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

/// The sync endpoints are for filters holding the fleet credential: anonymous or
/// wrongly authenticated callers read no snapshot (revoked subjects, sessions, limits),
/// get no confirm answers and register no filter; every refusal is counted.
#[test]
fn sync_calls_need_the_fleet_credential() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let json_body = ("content-type", "application/json");
    let wrong = ("authorization", "Bearer fleet-guess");
    for headers in [vec![], vec![wrong]] {
        let a = get(
            &cp.url("/sync/v1/snapshot?version=0&filter=intruder&applied=0"),
            &headers,
        );
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(!a.body.contains("payload"), "{}", a.body);
        let mut h = headers.clone();
        h.push(json_body);
        let c = request(
            "POST",
            &cp.url("/sync/v1/confirm"),
            &h,
            Some(r#"{"jti":"j","nonce":"0123456789abcdef0123"}"#),
        );
        assert_eq!(c.status, 401, "{}", c.body);
    }
    // The admin token is not a fleet credential either.
    let (k, v) = cp.admin_headers();
    assert_eq!(get(&cp.url("/sync/v1/snapshot"), &[(&k, &v)]).status, 401);
    let status: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
    assert_eq!(
        status["filters"],
        json!([]),
        "no filter registered: {status}"
    );
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_sync_unauthorized_total 5"),
        "{metrics}"
    );
    // The public half of the distribution key stays public; filters pin it.
    assert_eq!(get(&cp.url("/sync/v1/distribution-key"), &[]).status, 200);
    let a = cp.sync_get("/sync/v1/snapshot?version=0&filter=envoy-1&applied=0");
    assert_eq!(a.status, 200);
    let status: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
    assert_eq!(status["filters"][0]["id"], "envoy-1");
}

/// Even an authenticated caller cannot grow the filter registry without bound: past
/// 4096 live ids a new one is served but not recorded (and counted).
#[test]
fn the_filter_registry_is_bounded() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (k, v) = cp.sync_auth();
    let n = meshauth_control_plane_max_filters() + 50;
    for i in 0..n {
        let a = get(
            &cp.url(&format!(
                "/sync/v1/snapshot?version=1&filter=made-up-{i}&applied=1&wait_ms=0"
            )),
            &[(k, &v)],
        );
        assert!(a.status == 200 || a.status == 304, "{}", a.status);
    }
    let (ak, av) = cp.admin_headers();
    let status = get(&cp.url("/admin/status"), &[(&ak, &av)]).json();
    let filters = status["filters"].as_array().unwrap().len();
    // The count is shared loosely (a listing running alongside may miss a few adds).
    assert!(
        filters <= meshauth_control_plane_max_filters() + 16,
        "{filters} filters registered"
    );
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_sync_registry_full_total"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("meshauth_sync_registry_full_total 0"),
        "{metrics}"
    );
}

/// The bound the control plane documents (`MAX_FILTERS`).
fn meshauth_control_plane_max_filters() -> usize {
    4096
}

/// A filter admits a token until `exp` plus its own clock skew (up to 600 s), so a
/// revoked `jti` must stay in snapshots, deltas, confirm answers and the store until
/// then, not drop out at `exp`.
#[test]
fn a_revoked_jti_outlives_exp_by_the_largest_filter_skew() {
    use meshauth_wire::sync::Message;
    let cp = ControlPlane::start(StoreKind::Embedded, "[keys]\ncheck_interval = \"200ms\"\n");
    let key = get(&cp.url("/sync/v1/distribution-key"), &[]).json();
    let public =
        meshauth_wire::b64::decode_array::<32>(key["public_key"].as_str().unwrap()).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let v0 = version(&cp.sync_get("/sync/v1/snapshot"));
    let (k, v) = cp.admin_headers();
    let h = [
        (k.as_str(), v.as_str()),
        ("content-type", "application/json"),
    ];
    // Expired a minute ago: a filter with 600 s of skew still admits it.
    let exp = meshauth_tests::tokens::now() - 60;
    let a = request(
        "POST",
        &cp.url("/admin/revocations"),
        &h,
        Some(&json!({"kind": "jti", "value": "just-expired", "exp": exp}).to_string()),
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let delta = cp.sync_get(&format!("/sync/v1/snapshot?version={v0}&delta=1"));
    let Message::Delta(d) = SignedSnapshot::open_message(delta.body.as_bytes(), |p, s| {
        vk.verify(p, &ed25519_dalek::Signature::from_bytes(s))
            .is_ok()
    })
    .unwrap() else {
        panic!("expected a delta: {}", delta.body)
    };
    assert_eq!(d.revoked_jti, vec!["just-expired".to_string()]);
    // Several pruning rounds later it is still in the snapshot and still confirmed.
    std::thread::sleep(Duration::from_millis(800));
    let snap = open(&cp, &cp.sync_get("/sync/v1/snapshot"));
    assert!(snap.revoked_jti.contains("just-expired"));
    let (sk, sv) = cp.sync_auth();
    let nonce = "0123456789abcdef-nonce";
    let c = request(
        "POST",
        &cp.url("/sync/v1/confirm"),
        &[(sk, &sv), ("content-type", "application/json")],
        Some(&json!({"jti": "just-expired", "nonce": nonce}).to_string()),
    );
    assert_eq!(
        ConfirmAnswer::open(c.body.as_bytes(), "just-expired", nonce, |p, s| vk
            .verify(p, &ed25519_dalek::Signature::from_bytes(s))
            .is_ok()),
        Some(true)
    );
}

/// Restoring the store from a backup rewinds the change log: a filter holding a later
/// version of the same epoch would get 304 until the head passed it, then deltas that
/// reuse version numbers it already holds. The first poll from such a filter starts a
/// new epoch, and it gets a full snapshot of it at once.
#[test]
fn a_store_restored_from_a_backup_starts_a_new_epoch() {
    let mut cp = ControlPlane::start(StoreKind::Embedded, "");
    cp.cli_ok(&["token", "issue", "--sub", "before-backup"]); // a subject to revoke
    cp.cli_ok(&["revoke", "subject", "before-backup"]);
    cp.kill();
    let backup = cp.dir().join("backup.redb");
    std::fs::copy(cp.data_file(), &backup).unwrap();
    cp.restart();
    for i in 0..3 {
        let sub = format!("after-backup-{i}");
        cp.cli_ok(&["token", "issue", "--sub", &sub]);
        cp.cli_ok(&["revoke", "subject", &sub]);
    }
    let ahead = open(&cp, &cp.sync_get("/sync/v1/snapshot"));
    cp.kill();
    std::fs::copy(&backup, cp.data_file()).unwrap();
    cp.restart();
    let restored = open(&cp, &cp.sync_get("/sync/v1/snapshot"));
    assert_eq!(
        restored.epoch, ahead.epoch,
        "the backup holds the old epoch"
    );
    assert!(restored.version < ahead.version);
    // The filter that applied `ahead` polls: a full snapshot of a new epoch, at once.
    let t = Instant::now();
    let a = cp.sync_get(&format!(
        "/sync/v1/snapshot?version={}&epoch={}&wait_ms=5000&filter=envoy-1&applied={}&delta=1",
        ahead.version, ahead.epoch, ahead.version
    ));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "held: {:?}",
        t.elapsed()
    );
    let fresh = open(&cp, &a);
    assert_ne!(fresh.epoch, ahead.epoch);
    assert!(fresh.rules.iter().any(|r| r.value == "before-backup"));
    assert!(
        !fresh.rules.iter().any(|r| r.value == "after-backup-0"),
        "what the restore removed is no longer enforced"
    );
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_sync_epoch_resets_total 1"),
        "{metrics}"
    );
    // A filter that keeps claiming a version from the future does not restart the
    // epoch again and again.
    let c = cp.sync_get(&format!(
        "/sync/v1/snapshot?version=999999&epoch={}&wait_ms=0",
        fresh.epoch
    ));
    assert_eq!(c.status, 304);
    let metrics = get(&cp.url("/metrics"), &[]).body;
    assert!(
        metrics.contains("meshauth_sync_epoch_resets_total 1"),
        "{metrics}"
    );
    // Filters of the old epoch, behind or not, move to the new one too.
    let b = cp.sync_get(&format!(
        "/sync/v1/snapshot?version={}&epoch={}&wait_ms=0",
        restored.version, restored.epoch
    ));
    assert_eq!(open(&cp, &b).epoch, fresh.epoch);
}
