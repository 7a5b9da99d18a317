#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sync end to end: the real control plane pushes keys and revocations to the filter in
//! a real Envoy (`--concurrency 2`).

use std::time::{Duration, Instant};

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{Envoy, Options};
use meshauth_tests::fake_sync::FakeSync;
use meshauth_tests::http::{get, Answer};
use meshauth_tests::tokens::DevKey;
use meshauth_tests::wait::wait_until;
use serde_json::{json, Value};

fn envoy_for(cp: &ControlPlane, distribution_key: &str) -> Envoy {
    let config = json!({
        "issuer": cp.base_url(),
        "audiences": ["api"],
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "sync": cp.filter_sync(distribution_key),
    });
    Envoy::with_echo(&config, Options::control_plane(cp.port))
}

fn distribution_key(cp: &ControlPlane) -> String {
    get(&cp.url("/sync/v1/distribution-key"), &[]).json()["public_key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn call(envoy: &Envoy, token: &str) -> Answer {
    get(
        &envoy.url("/api"),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("connection", "close"),
        ],
    )
}

/// Polls until `want` answers, or panics after 10 s.
fn eventually(envoy: &Envoy, token: &str, want: u16) -> Answer {
    let a = wait_until(&format!("a {want}"), 10, || {
        let a = call(envoy, token);
        if a.status == want {
            return Ok(a);
        }
        Err(format!("still {} ({})\n{}", a.status, a.body, envoy.log()))
    });
    // One worker answered; the other picks the change up on its next 20 ms tick.
    std::thread::sleep(Duration::from_millis(60));
    a
}

fn issue(cp: &ControlPlane, sub: &str) -> String {
    cp.cli_ok(&["token", "issue", "--sub", sub])
        .trim()
        .to_string()
}

#[test]
fn keys_and_revocations_reach_every_worker_and_survive_an_outage() {
    let mut cp = ControlPlane::start(StoreKind::Embedded, "");
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    let alice = issue(&cp, "alice");
    // The key set arrives by sync: no bootstrap keys were configured.
    let a = eventually(&envoy, &alice, 200);
    assert_eq!(a.json()["headers"]["x-meshauth-sub"], "alice");

    // Revoke one token: 403 everywhere (new connections spread over both workers).
    let bob = issue(&cp, "bob");
    eventually(&envoy, &bob, 200);
    cp.cli_ok(&["revoke", "token", &bob]);
    let a = eventually(&envoy, &bob, 403);
    assert_eq!(a.json()["error"]["code"], "token_revoked");
    for _ in 0..20 {
        assert_eq!(call(&envoy, &bob).status, 403);
        assert_eq!(
            call(&envoy, &alice).status,
            200,
            "other tokens are untouched"
        );
    }
    // Revoke a subject: every token issued to it before now.
    let carol = issue(&cp, "carol");
    eventually(&envoy, &carol, 200);
    cp.cli_ok(&["revoke", "subject", "carol"]);
    eventually(&envoy, &carol, 403);
    // Filters report what they applied.
    let status: Value = serde_json::from_str(&cp.cli_ok(&["status"])).unwrap();
    let filters = status["filters"].as_array().unwrap();
    assert!(!filters.is_empty(), "{status}");
    assert!(envoy.wait_counter("meshauth_sync_snapshots_applied", 1) >= 1);
    // The revocations after the first snapshot came as deltas, on every worker.
    assert!(envoy.wait_counter("meshauth_sync_deltas_applied", 4) >= 4);

    // Control plane gone: the filter keeps enforcing its last snapshot.
    cp.kill();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        assert_eq!(call(&envoy, &bob).status, 403);
        assert_eq!(call(&envoy, &carol).status, 403);
        assert_eq!(call(&envoy, &alice).status, 200);
    }
    // Back again: the filter catches up with changes made since.
    cp.restart();
    let dave = issue(&cp, "dave");
    eventually(&envoy, &dave, 200);
    cp.cli_ok(&["revoke", "token", &dave]);
    eventually(&envoy, &dave, 403);
    assert_eq!(call(&envoy, &alice).status, 200);
}

#[test]
fn emergency_key_revoke_reaches_the_filter() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    let before = issue(&cp, "erin");
    eventually(&envoy, &before, 200);
    let keys: Value = serde_json::from_str(&cp.cli_ok(&["keys", "list"])).unwrap();
    let kid = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "current")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    cp.cli_ok(&["keys", "revoke", &kid]);
    let a = eventually(&envoy, &before, 401);
    assert_eq!(a.json()["error"]["code"], "unknown_key");
    // Tokens from the replacement key work.
    eventually(&envoy, &issue(&cp, "erin"), 200);
}

#[test]
fn snapshots_signed_by_another_key_are_refused() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let wrong = meshauth_wire::b64::encode(DevKey::seeded(7).public());
    let envoy = envoy_for(&cp, &wrong);
    let token = issue(&cp, "frank");
    assert!(
        envoy.wait_counter("meshauth_sync_snapshots_rejected", 1) >= 1,
        "{}",
        envoy.prometheus()
    );
    // Never having accepted a snapshot, it fails closed.
    let a = call(&envoy, &token);
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (503, json!("not_ready"))
    );
}

#[test]
fn refresh_token_reuse_revokes_the_familys_access_tokens_at_the_edge() {
    // No retry grace: the second use below is reuse at once.
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[tokens]\nrefresh_retry_grace = \"0s\"\n",
    );
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    let first: Value =
        serde_json::from_str(&cp.cli_ok(&["token", "issue", "--sub", "gina", "--json"])).unwrap();
    let access1 = first["access_token"].as_str().unwrap().to_string();
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    eventually(&envoy, &access1, 200);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = format!("grant_type=refresh_token&refresh_token={r1}");
    let second =
        meshauth_tests::http::request("POST", &cp.url("/oauth2/token"), &form, Some(&body));
    assert_eq!(second.status, 200, "{}", second.body);
    let access2 = second.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&envoy, &access2).status, 200);
    // Reuse of the spent refresh token: the whole session goes, at the edge too.
    let reuse = meshauth_tests::http::request("POST", &cp.url("/oauth2/token"), &form, Some(&body));
    assert_eq!(reuse.json()["error"], "invalid_grant");
    assert_eq!(
        eventually(&envoy, &access2, 403).json()["error"]["code"],
        "token_revoked"
    );
    // Each worker picks the change up on its next tick; then every call is refused.
    eventually(&envoy, &access1, 403);
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        assert_eq!(call(&envoy, &access1).status, 403);
        assert_eq!(call(&envoy, &access2).status, 403);
    }
}

/// Scheduled rotations under continuous load: clients keep fetching fresh tokens (so
/// each new key's first tokens reach the edge at once) and not one answer is non-2xx,
/// because a key signs only after the filter has applied the snapshot that carries it.
#[test]
fn scheduled_rotations_under_load_fail_no_request() {
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[keys]\nrotation_interval = \"4s\"\njwks_max_age = \"1s\"\nclock_skew = \"1s\"\ncheck_interval = \"200ms\"\n",
    );
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    eventually(&envoy, &issue(&cp, "warmup"), 200);
    let stop = Instant::now() + Duration::from_secs(13);
    let (answers, kids) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (cp, envoy) = (&cp, &envoy);
                s.spawn(move || {
                    let mut statuses = Vec::new();
                    let mut kids = std::collections::BTreeSet::new();
                    while Instant::now() < stop && statuses.len() < 20_000 {
                        let token = issue(cp, &format!("load-{i}"));
                        let header = token.split('.').next().unwrap();
                        let h: Value =
                            serde_json::from_slice(&meshauth_wire::b64::decode(header).unwrap())
                                .unwrap();
                        kids.insert(h["kid"].as_str().unwrap().to_string());
                        for _ in 0..20 {
                            let a = call(envoy, &token);
                            statuses.push((a.status, a.body));
                        }
                    }
                    (statuses, kids)
                })
            })
            .collect();
        workers.into_iter().fold(
            (Vec::new(), std::collections::BTreeSet::new()),
            |(mut a, mut k), w| {
                let (s, ks) = w.join().unwrap();
                a.extend(s);
                k.extend(ks);
                (a, k)
            },
        )
    });
    let bad: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of {} answers were not 200, e.g. {:?}",
        bad.len(),
        answers.len(),
        bad.first()
    );
    assert!(answers.len() > 1000, "too little load: {}", answers.len());
    assert!(
        kids.len() >= 3,
        "at least two rotations under load: {kids:?}"
    );
    let (k, v) = cp.admin_headers();
    let audit = get(&cp.url("/admin/audit?limit=1000"), &[(&k, &v)]).json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.iter().filter(|a| **a == "key.activated").count() >= 3,
        "{actions:?}"
    );
    assert!(
        !actions.contains(&"key.activated_past_lagging_filters"),
        "{actions:?}"
    );
}

/// A run of revocations: each comes as a delta; past 64 held deltas the leader takes a
/// full snapshot again; every worker ends up refusing every revoked token.
#[test]
fn a_run_of_revocations_reaches_every_worker_through_deltas_and_snapshots() {
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    let tokens: Vec<String> = (0..80).map(|i| issue(&cp, &format!("user-{i}"))).collect();
    eventually(&envoy, &tokens[0], 200);
    let (k, v) = cp.admin_headers();
    for t in &tokens {
        let a = meshauth_tests::http::request(
            "POST",
            &cp.url("/admin/revocations"),
            &[(&k, &v), ("content-type", "application/json")],
            Some(&json!({"kind": "token", "value": t}).to_string()),
        );
        assert_eq!(a.status, 204, "{}", a.body);
        // Let the filter take each change on its own, as deltas.
        std::thread::sleep(Duration::from_millis(15));
    }
    eventually(&envoy, &tokens[79], 403);
    for t in &tokens {
        for _ in 0..2 {
            assert_eq!(call(&envoy, t).status, 403);
        }
    }
    let survivor = issue(&cp, "survivor");
    assert_eq!(call(&envoy, &survivor).status, 200);
    assert!(envoy.wait_counter("meshauth_sync_deltas_applied", 64) >= 64);
    // The first snapshot, and at least one more once 64 deltas were held (per worker).
    assert!(
        envoy.wait_counter("meshauth_sync_snapshots_applied", 4) >= 4,
        "{}",
        envoy.prometheus()
    );
}

/// `meshauth_sync_staleness_seconds` says how long ago the leader last heard from the
/// control plane: near zero while polls are answered (200 or 304), growing once they
/// fail. (It used to count from start-up, so the stale-filter alert always fired.)
#[test]
fn staleness_resets_while_polls_succeed_and_grows_when_they_fail() {
    let mut cp = ControlPlane::start(StoreKind::Embedded, "");
    let mut sync = cp.filter_sync(&distribution_key(&cp));
    sync["poll_wait_ms"] = json!(1000);
    let config = json!({"issuer": cp.base_url(), "audiences": ["api"], "sync": sync});
    let envoy = Envoy::with_echo(&config, Options::control_plane(cp.port));
    let gauge = |envoy: &Envoy| -> Option<u64> {
        envoy
            .prometheus()
            .lines()
            .find(|l| l.starts_with("meshauth_sync_staleness_seconds"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
    };
    // Long enough that start-up time alone would show; every poll is a 304 within 1 s.
    std::thread::sleep(Duration::from_secs(8));
    let fresh = gauge(&envoy).expect("the gauge is exported");
    assert!(fresh <= 3, "staleness {fresh} s while polls succeed");
    cp.kill();
    wait_until("staleness to grow", 20, || {
        let g = gauge(&envoy).unwrap_or(0);
        (g >= 4)
            .then_some(())
            .ok_or(format!("staleness stays {g} with the control plane gone"))
    });
}

fn signed_snapshot(
    distribution: &DevKey,
    issued_at: i64,
    keys: &[&DevKey],
    revoked: &[&str],
) -> String {
    let mut bloom = meshauth_wire::bloom::Bloom::with_capacity(16, 0.001, 7);
    for j in revoked {
        bloom.insert(j);
    }
    let snap = meshauth_wire::sync::Snapshot {
        epoch: "fake-epoch".into(),
        version: 5,
        issued_at,
        jwks: DevKey::jwks(keys),
        revoked_jti: bloom,
        rules: vec![],
        limits: vec![],
        issuers: vec![],
    };
    let sealed = meshauth_wire::sync::SignedSnapshot::seal(&snap, |p| distribution.sign_bytes(p));
    serde_json::to_string(&sealed).unwrap()
}

fn envoy_on_fake(fake: &FakeSync, distribution: &DevKey) -> Envoy {
    let config = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "sync": {
            "cluster": "meshauth_control_plane",
            "distribution_key": meshauth_wire::b64::encode(distribution.public()),
            "credential": "fleet-secret-for-the-fake",
            "poll_wait_ms": 1000,
        },
    });
    Envoy::with_echo(&config, Options::control_plane(fake.port))
}

fn token_for(key: &DevKey, jti: &str) -> String {
    key.sign(&meshauth_tests::tokens::claims(
        "alice",
        json!({"iss": "https://issuer.test", "aud": "api", "jti": jti}),
    ))
}

/// A validly signed but old snapshot replayed on the sync path (to a filter that just
/// started, or from an old epoch) is refused and counted; the filter stays not ready.
#[test]
fn an_old_snapshot_replayed_on_the_sync_path_is_refused() {
    let distribution = DevKey::seeded(21);
    let key = DevKey::random();
    let old = meshauth_tests::tokens::now() - 3 * 86_400;
    let fake = FakeSync::start(signed_snapshot(&distribution, old, &[&key], &[]), |_| {
        String::new()
    });
    let envoy = envoy_on_fake(&fake, &distribution);
    let token = token_for(&key, "j-1");
    assert!(
        envoy.wait_counter("meshauth_sync_snapshots_too_old", 1) >= 1,
        "{}",
        envoy.prometheus()
    );
    assert_eq!(call(&envoy, &token).status, 503);
    // The same snapshot issued now is taken: the age alone made the difference.
    *fake.snapshot.lock().unwrap() =
        signed_snapshot(&distribution, meshauth_tests::tokens::now(), &[&key], &[]);
    eventually(&envoy, &token, 200);
    // Every sync call carried the fleet credential.
    let seen = fake.seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(_, headers, _)| headers
        .iter()
        .any(|h| h == "authorization: Bearer fleet-secret-for-the-fake")));
}

/// A relay on the sync path that passes snapshots through and answers every confirm
/// question `{"revoked": false}` must not turn a revoked token's 403 into 200: only an
/// answer signed by the distribution key for this `jti` and this question's nonce
/// counts; anything else is "unconfirmed" (`on_unconfirmed: deny` by default).
#[test]
fn a_forged_confirm_answer_does_not_lift_a_revocation() {
    use meshauth_wire::sync::ConfirmAnswer;
    let distribution = DevKey::seeded(22);
    let key = DevKey::random();
    let revoked = ["j-unsigned", "j-signed", "j-other-nonce", "j-other-jti"];
    let signer = distribution.clone();
    let fake = FakeSync::start(
        signed_snapshot(
            &distribution,
            meshauth_tests::tokens::now(),
            &[&key],
            &revoked,
        ),
        move |q| {
            let jti = q["jti"].as_str().unwrap_or_default().to_string();
            let nonce = q["nonce"].as_str().unwrap_or_default().to_string();
            let sign = |jti: &str, nonce: &str| {
                let a = ConfirmAnswer {
                    jti: jti.into(),
                    nonce: nonce.into(),
                    revoked: false,
                };
                serde_json::to_string(&a.seal(|m| signer.sign_bytes(m))).unwrap()
            };
            match jti.as_str() {
                "j-unsigned" => json!({"jti": jti, "revoked": false}).to_string(),
                "j-signed" => sign(&jti, &nonce),
                "j-other-nonce" => sign(&jti, "an-earlier-question-nonce"),
                _ => sign("j-signed", &nonce),
            }
        },
    );
    let envoy = envoy_on_fake(&fake, &distribution);
    // Until the first snapshot is in, every worker answers 503.
    wait_until("a snapshot", 10, || {
        (call(&envoy, &token_for(&key, "j-unsigned")).status != 503)
            .then_some(())
            .ok_or(format!("no snapshot\n{}", envoy.log()))
    });
    std::thread::sleep(Duration::from_millis(100));
    for jti in ["j-unsigned", "j-other-nonce", "j-other-jti"] {
        let a = call(&envoy, &token_for(&key, jti));
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (403, json!("token_revoked")),
            "{jti}: {}",
            a.body
        );
    }
    // A signed "not revoked" for this very question is taken: the path works.
    eventually(&envoy, &token_for(&key, "j-signed"), 200);
    let questions: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|(p, _, _)| p.starts_with("/sync/v1/confirm"))
        .collect();
    assert!(questions.len() >= 4, "{questions:?}");
    let mut nonces = std::collections::BTreeSet::new();
    for (_, headers, body) in &questions {
        assert!(headers
            .iter()
            .any(|h| h == "authorization: Bearer fleet-secret-for-the-fake"));
        let q: Value = serde_json::from_str(body).unwrap();
        let nonce = q["nonce"].as_str().unwrap().to_string();
        assert!(
            meshauth_wire::sync::ConfirmRequest::valid_nonce(&nonce),
            "{nonce}"
        );
        nonces.insert(nonce);
    }
    assert_eq!(nonces.len(), questions.len(), "a fresh nonce per question");
}

/// A confirm answer signed by the distribution key for this very question.
fn sealed_answer(signer: &DevKey, question: &Value, revoked: bool) -> String {
    let a = meshauth_wire::sync::ConfirmAnswer {
        jti: question["jti"].as_str().unwrap_or_default().into(),
        nonce: question["nonce"].as_str().unwrap_or_default().into(),
        revoked,
    };
    serde_json::to_string(&a.seal(|m| signer.sign_bytes(m))).unwrap()
}

/// A filter on `fake` that gives up on a confirmation after 300 ms.
fn envoy_on_fake_with_short_callouts(fake: &FakeSync, distribution: &DevKey) -> Envoy {
    let config = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "sync": {
            "cluster": "meshauth_control_plane",
            "distribution_key": meshauth_wire::b64::encode(distribution.public()),
            "credential": "fleet-secret-for-the-fake",
            "poll_wait_ms": 1000,
            "callout_timeout_ms": 300,
        },
    });
    Envoy::with_echo(&config, Options::control_plane(fake.port))
}

/// A genuine signed "not revoked" that arrives after the filter's own deadline refused
/// the request (`on_unconfirmed: deny`) changes nothing: it finds no paused request to
/// resume, and it is not remembered, so the next request with the token asks again and
/// is refused again.
#[test]
fn a_confirm_answer_after_the_deadline_is_dropped() {
    let distribution = DevKey::seeded(23);
    let key = DevKey::random();
    let signer = distribution.clone();
    let fake = FakeSync::start(
        signed_snapshot(
            &distribution,
            meshauth_tests::tokens::now(),
            &[&key],
            &["j-late"],
        ),
        move |q| {
            // Past the filter's deadline (300 ms), before Envoy's backstop (1300 ms).
            std::thread::sleep(Duration::from_millis(800));
            sealed_answer(&signer, q, false)
        },
    );
    let envoy = envoy_on_fake_with_short_callouts(&fake, &distribution);
    eventually(&envoy, &token_for(&key, "j-clear"), 200);
    let late = token_for(&key, "j-late");
    for round in 0..3 {
        let a = call(&envoy, &late);
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (403, json!("token_revoked")),
            "round {round}: {}\n{}",
            a.body,
            envoy.log()
        );
        // Let the late answer land on the finished request.
        std::thread::sleep(Duration::from_millis(1_000));
    }
    let questions = fake
        .seen()
        .into_iter()
        .filter(|(p, _, _)| p.starts_with("/sync/v1/confirm"))
        .count();
    assert!(questions >= 3, "asked {questions} time(s)");
    assert_eq!(call(&envoy, &token_for(&key, "j-clear")).status, 200);
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// A confirm answer padded far past any real one (a signed answer for the question,
/// then 2 MiB of JSON whitespace) is not read, so a party on the sync path cannot make
/// the filter copy megabytes per question: the question stays unconfirmed (403 by
/// default) and the worker keeps serving.
#[test]
fn an_oversized_confirm_answer_counts_as_unconfirmed() {
    let distribution = DevKey::seeded(24);
    let key = DevKey::random();
    let signer = distribution.clone();
    let fake = FakeSync::start(
        signed_snapshot(
            &distribution,
            meshauth_tests::tokens::now(),
            &[&key],
            &["j-huge", "j-small"],
        ),
        move |q| {
            let mut answer = sealed_answer(&signer, q, false);
            if q["jti"] == "j-huge" {
                answer.push_str(&" ".repeat(2 << 20));
            }
            answer
        },
    );
    let envoy = envoy_on_fake(&fake, &distribution);
    // The same answer, unpadded, is taken: the path works.
    eventually(&envoy, &token_for(&key, "j-small"), 200);
    for round in 0..3 {
        let a = call(&envoy, &token_for(&key, "j-huge"));
        assert_eq!(
            (a.status, a.json()["error"]["code"].clone()),
            (403, json!("token_revoked")),
            "round {round}: {}\n{}",
            a.body,
            envoy.log()
        );
    }
    assert_eq!(call(&envoy, &token_for(&key, "j-clear")).status, 200);
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The attack as found: a relay between the filter and the real control plane passes
/// snapshots through and answers confirm questions `{"revoked": false}` itself. The
/// token revoked before Envoy started (so only the Bloom filter knows it) stays 403;
/// with the relay passing confirm through, the real signed answer refuses it too.
#[test]
fn a_relay_answering_confirm_itself_does_not_lift_a_revocation() {
    use meshauth_tests::relay::{Confirm, Relay};
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let victim = issue(&cp, "mallory");
    let other = issue(&cp, "alice");
    cp.cli_ok(&["revoke", "token", &victim]);
    let jti = {
        let p = victim.split('.').nth(1).unwrap();
        let c: Value = serde_json::from_slice(&meshauth_wire::b64::decode(p).unwrap()).unwrap();
        c["jti"].as_str().unwrap().to_string()
    };
    let relay = Relay::spawn(
        cp.port,
        Confirm::Answer(json!({"jti": jti, "revoked": false}).to_string()),
    )
    .unwrap();
    let config = json!({
        "issuer": cp.base_url(),
        "audiences": ["api"],
        "sync": cp.filter_sync(&distribution_key(&cp)),
    });
    let envoy = Envoy::with_echo(&config, Options::control_plane(relay.port));
    eventually(&envoy, &other, 200);
    for _ in 0..6 {
        let a = call(&envoy, &victim);
        assert_eq!(a.status, 403, "{}", a.body);
    }
    assert!(relay.confirms() >= 1, "the filter never asked");
    relay.set(Confirm::Pass);
    for _ in 0..6 {
        assert_eq!(call(&envoy, &victim).status, 403);
    }
    assert!(envoy.wait_counter("meshauth_revocation_confirmations", 2) >= 2);
    assert_eq!(call(&envoy, &other).status, 200);
}

/// A relay that answers every poll `304` would freeze a filter at its snapshot (no new
/// revocations) while it looked in sync. A `304` counts as contact only with a signed
/// head statement for the version held; a bare one is a failed poll, so staleness grows
/// and the alert fires.
#[test]
fn a_bare_304_freezing_the_filter_shows_as_staleness() {
    let (_fake, envoy) = synced_on_fake(23);
    staleness_grows(&envoy, "every poll got a bare 304");
}

/// A relay answering every poll `200` with the snapshot the filter already holds: a
/// replay that changes nothing must count as a failed poll, so staleness grows and the
/// stale-filter alert fires (it stayed at 0 while the filter was frozen).
#[test]
fn replaying_the_held_snapshot_with_200_shows_as_staleness() {
    let (fake, envoy) = synced_on_fake(29);
    fake.replay.store(true, std::sync::atomic::Ordering::SeqCst);
    staleness_grows(&envoy, "every poll replayed the held snapshot");
}

/// Envoy following a fake control plane (distribution key from `seed`) that served it
/// one snapshot, and answers later polls with a bare 304 unless told to replay.
fn synced_on_fake(seed: u8) -> (FakeSync, Envoy) {
    let distribution = DevKey::seeded(seed);
    let key = DevKey::random();
    let fake = FakeSync::start(
        signed_snapshot(&distribution, meshauth_tests::tokens::now(), &[&key], &[]),
        |_| String::new(),
    );
    let envoy = envoy_on_fake(&fake, &distribution);
    eventually(&envoy, &token_for(&key, "j-1"), 200);
    (fake, envoy)
}

/// Waits (up to 20 s) until the staleness gauge reaches 4 s and polls count as failed.
fn staleness_grows(envoy: &Envoy, while_: &str) {
    wait_until("staleness to grow", 20, || {
        let stale = envoy
            .prometheus()
            .lines()
            .find(|l| l.starts_with("meshauth_sync_staleness_seconds"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        (stale >= 4.0)
            .then_some(())
            .ok_or(format!("staleness {stale} while {while_}"))
    });
    assert!(envoy.counter("meshauth_sync_poll_failures") >= 1);
}

/// Deleting a client revokes the access tokens it already holds, at the edge too.
#[test]
fn a_deleted_clients_tokens_are_refused_at_the_edge() {
    use base64::Engine;
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let envoy = envoy_for(&cp, &distribution_key(&cp));
    let created: Value =
        serde_json::from_str(&cp.cli_ok(&["clients", "create", "svc", "--scope", "read"])).unwrap();
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let t = meshauth_tests::http::request(
        "POST",
        &cp.url("/oauth2/token"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &basic),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(t.status, 200, "{}", t.body);
    let access = t.json()["access_token"].as_str().unwrap().to_string();
    eventually(&envoy, &access, 200);
    cp.cli_ok(&["clients", "delete", &id]);
    assert_eq!(
        eventually(&envoy, &access, 403).json()["error"]["code"],
        "token_revoked"
    );
}
