use super::*;
use meshauth_devkey::DevKey;
use meshauth_wire::{b64, Jwk};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "iss": "https://issuer", "sub": "alice", "aud": "api", "exp": NOW + 600,
        "iat": NOW - 10, "nbf": NOW - 10, "jti": "j1", "scope": "read", "client_id": "c1"
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// An `Authorization` value: a token signed by the configured key with `claims(extra)`.
fn bearer(extra: serde_json::Value) -> String {
    format!("Bearer {}", DevKey::seeded(1).sign(&claims(extra)))
}

fn engine() -> Engine {
    let jwks = serde_json::json!({"keys": [Jwk::from_ed25519(&DevKey::seeded(1).public())]});
    let config = serde_json::json!({
        "issuer": "https://issuer",
        "audiences": ["api"],
        "bootstrap_jwks": jwks,
        "forward_claims": [{"claim": "sub", "header": "x-sub"}],
        "routes": [
            {"path_prefix": "/public/", "auth": "anonymous"},
            {"path_prefix": "/admin/", "scopes_all": ["admin"]}
        ]
    });
    Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

fn run(e: &mut Engine, path: &str, auth: Option<&str>) -> Outcome {
    e.check(
        &Request {
            method: "GET",
            path,
            authorization: auth,
            repeated_authorization: false,
        },
        NOW,
    )
}

fn denial(e: &mut Engine, token: &str) -> Denial {
    match run(e, "/x", Some(&format!("Bearer {token}"))).verdict {
        Verdict::Deny(d) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn valid_token_is_allowed_then_cached() {
    let mut e = engine();
    let t = bearer(serde_json::json!({}));
    let first = run(&mut e, "/x", Some(&t));
    assert!(
        matches!(first.verdict, Verdict::Allow(ref v) if v.claims.values("sub") == ["alice"] && v.headers == [("x-sub".to_string(), "alice".to_string())])
    );
    assert_eq!(first.cache, CacheUse::Miss);
    assert_eq!(run(&mut e, "/x", Some(&t)).cache, CacheUse::Hit);
}

#[test]
fn cache_hit_still_checks_expiry_and_rules() {
    let mut e = engine();
    let t = bearer(serde_json::json!({"exp": NOW + 5}));
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    // A hit on a route that needs a scope the token lacks is still refused.
    let admin = run(&mut e, "/admin/x", Some(&t));
    assert_eq!(admin.cache, CacheUse::Hit);
    assert!(matches!(
        admin.verdict,
        Verdict::Deny(Denial::InsufficientScope { .. })
    ));
    // And once the token expires the cached entry is no use.
    let later = e.check(
        &Request {
            method: "GET",
            path: "/x",
            authorization: Some(&t),
            repeated_authorization: false,
        },
        NOW + 5 + 31,
    );
    assert_eq!(later.verdict, Verdict::Deny(Denial::Expired));
}

#[test]
fn two_authorization_headers_are_refused() {
    let mut e = engine();
    let t = bearer(serde_json::json!({}));
    let out = e.check(
        &Request {
            method: "GET",
            path: "/x",
            authorization: Some(&t),
            repeated_authorization: true,
        },
        NOW,
    );
    assert_eq!(
        out.verdict,
        Verdict::Deny(Denial::Malformed("more than one Authorization header"))
    );
}

#[test]
fn refusals() {
    let mut e = engine();
    let sk = DevKey::seeded(1);
    assert_eq!(
        denial(
            &mut e,
            &sk.sign(&claims(serde_json::json!({"exp": NOW - 31})))
        ),
        Denial::Expired
    );
    assert_eq!(
        denial(
            &mut e,
            &sk.sign(&claims(serde_json::json!({"nbf": NOW + 100})))
        ),
        Denial::NotYetValid
    );
    assert_eq!(
        denial(
            &mut e,
            &sk.sign(&claims(serde_json::json!({"iss": "other"})))
        ),
        Denial::BadIssuer {
            got: Some("other".into())
        }
    );
    assert_eq!(
        denial(
            &mut e,
            &sk.sign(&claims(serde_json::json!({"aud": ["x", "y"]})))
        ),
        Denial::BadAudience
    );
    assert_eq!(
        denial(
            &mut e,
            &sk.sign(&claims(serde_json::json!({"exp": "soon"})))
        ),
        Denial::BadClaim("exp")
    );
    assert_eq!(
        denial(
            &mut e,
            &DevKey::seeded(2).sign(&claims(serde_json::json!({})))
        ),
        Denial::UnknownKey
    );
    // Signed by key 2 but naming key 1.
    let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": sk.kid()}).to_string();
    assert_eq!(
        denial(
            &mut e,
            &DevKey::seeded(2).sign_raw(&header, &claims(serde_json::json!({})).to_string())
        ),
        Denial::BadSignature
    );
    let none = format!(
        "{}.{}.",
        b64::encode(r#"{"alg":"none","kid":"k"}"#),
        b64::encode("{}")
    );
    assert!(matches!(
        denial(&mut e, &none),
        Denial::BadAlgorithm | Denial::Malformed(_)
    ));
    let hs = sk.sign_raw(
        &serde_json::json!({"alg": "HS256", "kid": sk.kid()}).to_string(),
        "{}",
    );
    assert_eq!(denial(&mut e, &hs), Denial::BadAlgorithm);
    assert_eq!(denial(&mut e, &"a".repeat(70_000)), Denial::TooLarge);
    assert!(matches!(denial(&mut e, "garbage"), Denial::Malformed(_)));
    assert_eq!(
        run(&mut e, "/x", None).verdict,
        Verdict::Deny(Denial::MissingToken)
    );
    assert_eq!(
        run(&mut e, "/x", Some("Basic dXNlcjpwYXNz")).verdict,
        Verdict::Deny(Denial::MissingToken)
    );
}

#[test]
fn a_letter_folding_to_ascii_cannot_move_a_path_to_another_route() {
    let mut e = engine();
    let auth = Some(bearer(serde_json::json!({"scope": "read"})));
    // Folded, `/admın/users` is `/admin/users`: an upstream that folds case would serve
    // the admin route to a token without the admin scope.
    for p in [
        "/adm%C4%B1n/users",
        "/admın/users",
        "/%E2%84%AA/../x",
        // Dotted İ: Java's equalsIgnoreCase compares simple lower cases, `i` for it.
        "/adm%C4%B0n/users",
        "/admİn/users",
    ] {
        let v = run(&mut e, p, auth.as_deref()).verdict;
        assert!(matches!(v, Verdict::Deny(Denial::BadPath(_))), "{p}: {v:?}");
    }
    // The same letters where folding changes no route (Turkish words) still pass.
    let v = run(&mut e, "/kullan%C4%B1c%C4%B1/1", auth.as_deref()).verdict;
    assert!(matches!(v, Verdict::Allow(_)), "{v:?}");
    let v = run(&mut e, "/public/%C4%B1", None).verdict;
    assert_eq!(v, Verdict::Anonymous);
}

#[test]
fn anonymous_route_needs_no_token() {
    let mut e = engine();
    assert_eq!(run(&mut e, "/public/a", None).verdict, Verdict::Anonymous);
}

#[test]
fn replacing_keys_drops_cached_verifications() {
    let mut e = engine();
    let t = bearer(serde_json::json!({}));
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    e.set_keys(KeySet::default());
    assert_eq!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Deny(Denial::UnknownKey)
    );
}

#[test]
fn hand_built_tokens_verify_like_jsonwebtokens() {
    // Every other test signs with `jsonwebtoken` (an independent implementation); this
    // one builds the header by hand, with the `Ed25519` alg of RFC 9864.
    let sk = DevKey::seeded(1);
    let mut e = engine();
    for alg in ["EdDSA", "Ed25519"] {
        let header = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": sk.kid()});
        let token = sk.sign_raw(
            &header.to_string(),
            &claims(serde_json::json!({})).to_string(),
        );
        assert!(
            matches!(
                run(&mut e, "/x", Some(&format!("Bearer {token}"))).verdict,
                Verdict::Allow(_)
            ),
            "{alg}"
        );
    }
}

#[test]
fn rfc8037_appendix_a4_signature_verifies() {
    // RFC 8037 A.4: "Example of Ed25519 Signing" with the A.1/A.2 key.
    // The verifier takes raw key bytes; reading them from a JWK is wire's to test.
    let public = b64::decode_array::<32>("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
    let key = crate::ed25519::PreparedKey::new(public).unwrap();
    let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let sig = b64::decode_array::<64>(
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
    )
    .unwrap();
    assert!(key.verify(input.as_bytes(), &sig));
    assert!(!key.verify(
        b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmg",
        &sig
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_change_to_a_valid_token_is_refused(pos in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let token = DevKey::seeded(1).sign(&claims(serde_json::json!({})));
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let Ok(changed) = String::from_utf8(bytes) else { return Ok(()); };
        let mut e = engine();
        // Prime the cache with the genuine token: a changed copy must not ride on it.
        let genuine = format!("Bearer {token}");
        prop_assert!(matches!(run(&mut e, "/x", Some(&genuine)).verdict, Verdict::Allow(_)));
        let out = run(&mut e, "/x", Some(&format!("Bearer {changed}")));
        prop_assert!(matches!(out.verdict, Verdict::Deny(_)), "accepted {}", changed);
    }
}

/// An engine that follows the control plane's snapshots, with one `sync` option set.
fn synced_engine_with(option: &str, value: &str) -> Engine {
    let dist = meshauth_wire::b64::encode(DevKey::seeded(9).public());
    let mut config = serde_json::json!({
        "issuer": "https://issuer",
        "sync": {"cluster": "cp", "distribution_key": dist},
    });
    config["sync"][option] = value.into();
    Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

fn synced_engine(before_first: &str) -> Engine {
    synced_engine_with("before_first_snapshot", before_first)
}

fn snapshot(
    version: u64,
    jtis: &[&str],
    rules: Vec<meshauth_wire::sync::RevocationRule>,
) -> meshauth_wire::sync::Snapshot {
    let mut bloom = meshauth_wire::bloom::Bloom::with_capacity(16, 0.001, 1);
    for j in jtis {
        bloom.insert(j);
    }
    meshauth_wire::sync::Snapshot {
        epoch: "e1".into(),
        version,
        issued_at: NOW,
        jwks: meshauth_wire::JwkSet {
            keys: vec![Jwk::from_ed25519(&DevKey::seeded(1).public())],
        },
        revoked_jti: bloom,
        rules,
        limits: vec![],
        issuers: vec![],
    }
}

#[test]
fn a_snapshot_of_another_epoch_must_be_issued_later() {
    let mut e = synced_engine("deny");
    let mut held = snapshot(50, &["j1"], vec![]);
    held.epoch = "new-epoch".into();
    e.apply_snapshot(held).unwrap();
    // An old epoch's snapshot (from before a restore), replayed: refused, j1 stays revoked.
    let mut old = snapshot(3, &[], vec![]);
    old.epoch = "old-epoch".into();
    old.issued_at = NOW - 3600;
    assert!(e.apply_snapshot(old).is_err());
    assert_eq!(e.applied(), Some(("new-epoch", 50)));
    // A genuinely newer epoch (a restore after this one) is taken.
    let mut newer = snapshot(1, &[], vec![]);
    newer.epoch = "newer-epoch".into();
    newer.issued_at = NOW + 10;
    assert_eq!(e.apply_snapshot(newer), Ok(true));
}

#[test]
fn before_the_first_snapshot_it_fails_closed_then_follows_snapshots() {
    let mut e = synced_engine("deny");
    let t = bearer(serde_json::json!({}));
    assert_eq!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Deny(Denial::NotReady)
    );
    assert_eq!(e.apply_snapshot(snapshot(5, &[], vec![])), Ok(true));
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        e.apply_snapshot(snapshot(4, &["j1"], vec![])),
        Ok(false),
        "older versions are ignored"
    );
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(e.applied(), Some(("e1", 5)));
    // With bootstrap allowed, the configured keys work before any snapshot.
    let e = synced_engine("bootstrap");
    assert!(e.ready);
}

#[test]
fn revocations_in_a_snapshot_apply_even_to_cached_tokens() {
    let mut e = synced_engine("deny");
    e.apply_snapshot(snapshot(1, &[], vec![])).unwrap();
    let t = bearer(serde_json::json!({"jti": "j1"}));
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    // Bloom hit: confirm first.
    e.apply_snapshot(snapshot(2, &["j1"], vec![])).unwrap();
    let out = run(&mut e, "/x", Some(&t));
    assert_eq!(
        out.cache,
        CacheUse::Hit,
        "the key set did not change, so the cache stays"
    );
    let Verdict::Confirm { jti, verified } = out.verdict else {
        panic!("expected a confirmation")
    };
    assert_eq!(jti, "j1");
    assert_eq!(
        e.settle("j1", Some(true), &verified, NOW),
        Err(Denial::Revoked)
    );
    assert_eq!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Deny(Denial::Revoked)
    );
    // A subject rule needs no confirmation.
    let rule = meshauth_wire::sync::RevocationRule {
        claim: meshauth_wire::sync::RuleClaim::Sub,
        value: "alice".into(),
        not_before: NOW,
        issuer: None,
    };
    e.apply_snapshot(snapshot(3, &[], vec![rule])).unwrap();
    let t2 = bearer(serde_json::json!({"jti": "j2"}));
    assert_eq!(
        run(&mut e, "/x", Some(&t2)).verdict,
        Verdict::Deny(Denial::Revoked)
    );
}

#[test]
fn a_bloom_hit_settles_on_the_signed_answer_else_on_the_configuration() {
    for (setting, unconfirmed) in [("deny", Err(Denial::Revoked)), ("allow", Ok(()))] {
        let mut e = synced_engine_with("on_unconfirmed", setting);
        let v = |jti: &str| verified(claims(serde_json::json!({"jti": jti})));
        assert_eq!(
            e.settle("j1", None, &v("j1"), NOW),
            unconfirmed,
            "{setting}"
        );
        // A signed answer decides whatever the setting.
        assert_eq!(
            e.settle("j1", Some(true), &v("j1"), NOW),
            Err(Denial::Revoked)
        );
        assert_eq!(e.settle("j2", Some(false), &v("j2"), NOW), Ok(()));
    }
}

fn verified(claims: serde_json::Value) -> Verified {
    Verified {
        claims: crate::claims::Claims::parse(claims.to_string().as_bytes()).unwrap(),
        headers: Vec::new(),
        issuer_name: None,
        federated: false,
    }
}

/// A token minted by exchange has two ids, its own and `ext.jti`; when both are Bloom
/// hits only one is asked. A "not revoked" answer for it does not clear the other: it
/// counts as unconfirmed (refused by default) until asked on a later request.
#[test]
fn a_clear_answer_for_one_id_does_not_clear_the_other() {
    for (setting, second) in [("deny", Err(Denial::Revoked)), ("allow", Ok(()))] {
        let mut e = synced_engine_with("on_unconfirmed", setting);
        e.apply_snapshot(snapshot(2, &["m1", "p1"], vec![]))
            .unwrap();
        let ext = serde_json::json!({"iss": "https://idp.test", "sub": "alice", "jti": "p1"});
        let v = verified(claims(serde_json::json!({"jti": "m1", "ext": ext})));
        assert_eq!(e.settle("m1", Some(false), &v, NOW), second, "{setting}");
        // Once the other is asked and clear too: admitted.
        assert_eq!(e.settle("p1", Some(false), &v, NOW), Ok(()), "{setting}");
        // Revoked at the provider: refused, whichever id is answered.
        let mut e = synced_engine_with("on_unconfirmed", setting);
        e.apply_snapshot(snapshot(2, &["m1", "p1"], vec![]))
            .unwrap();
        assert_eq!(e.settle("p1", Some(true), &v, NOW), Err(Denial::Revoked));
    }
}

/// Shared data as one map, for the limiter.
#[derive(Default)]
struct Table(std::cell::RefCell<std::collections::HashMap<u32, crate::limits::Slot>>);

impl crate::limits::Slots for Table {
    fn read(&self, index: u32) -> (Option<crate::limits::Slot>, Option<u32>) {
        (self.0.borrow().get(&index).copied(), None)
    }
    fn write(
        &self,
        index: u32,
        slot: crate::limits::Slot,
        _cas: Option<u32>,
    ) -> Result<(), crate::limits::Conflict> {
        self.0.borrow_mut().insert(index, slot);
        Ok(())
    }
}

struct NoFacts;

impl crate::limits::Facts for NoFacts {
    fn header(&self, _: &str) -> Option<String> {
        None
    }
    fn client_address(&self) -> Option<String> {
        None
    }
}

#[test]
fn snapshot_limits_join_and_replace_the_configured_ones() {
    let dist = meshauth_wire::b64::encode(DevKey::seeded(9).public());
    let config = serde_json::json!({
        "issuer": "https://issuer",
        "sync": {"cluster": "cp", "distribution_key": dist},
        "routes": [{"name": "api", "path_prefix": "/api"}],
        "rate_limits": {"policies": [
            {"name": "per-route", "key": ["route"], "rate": 1, "window_seconds": 60, "burst": 2}
        ]}
    });
    let mut e = Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    assert!(e.limits_enabled());
    let mut snap = snapshot(1, &[], vec![]);
    snap.limits = serde_json::from_value(serde_json::json!([
        {"name": "per-route", "key": ["route"], "rate": 1, "window_seconds": 60, "burst": 3},
        {"name": "per-user", "key": ["claim:sub"], "rate": 1, "window_seconds": 60, "burst": 5}
    ]))
    .unwrap();
    e.apply_snapshot(snap).unwrap();
    assert_eq!(
        e.limiter().policy_names().collect::<Vec<_>>(),
        vec!["per-route", "per-user"]
    );
    let t = bearer(serde_json::json!({}));
    let table = Table::default();
    let mut admitted = 0;
    for _ in 0..10 {
        let req = Request {
            method: "GET",
            path: "/api/x?q=1",
            authorization: Some(&t),
            repeated_authorization: false,
        };
        let out = e.check(&req, NOW);
        let Verdict::Allow(v) = out.verdict else {
            panic!("{:?}", out.verdict)
        };
        let now_ns = u64::try_from(NOW).unwrap() * 1_000_000_000;
        if let LimitOutcome::Admitted(_) =
            e.limit(&table, &req, out.route, Some(&v), &NoFacts, now_ns)
        {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 3,
        "the pushed burst of 3 replaced the configured 2"
    );
    // A later snapshot without limits brings the configured default back.
    e.apply_snapshot(snapshot(2, &[], vec![])).unwrap();
    assert_eq!(
        e.limiter().policy_names().collect::<Vec<_>>(),
        vec!["per-route"]
    );
}

#[test]
fn deltas_apply_on_the_version_they_start_from() {
    let mut e = synced_engine("deny");
    let delta = |base: u64, version: u64, jtis: &[&str]| meshauth_wire::sync::Delta {
        epoch: "e1".into(),
        base_version: base,
        version,
        issued_at: NOW,
        revoked_jti: jtis.iter().map(|j| j.to_string()).collect(),
        rules: vec![meshauth_wire::sync::RevocationRule {
            claim: meshauth_wire::sync::RuleClaim::Sub,
            value: "mallory".into(),
            not_before: NOW,
            issuer: None,
        }],
    };
    assert!(e.apply_delta(delta(0, 1, &[])).is_err(), "no snapshot yet");
    e.apply_snapshot(snapshot(5, &[], vec![])).unwrap();
    let t = bearer(serde_json::json!({"jti": "j9"}));
    assert!(matches!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Allow(_)
    ));
    assert!(e.apply_delta(delta(6, 8, &["j9"])).is_err(), "a gap");
    assert_eq!(e.apply_delta(delta(5, 7, &["j9"])), Ok(true));
    // Exact: revoked at once, no confirmation round trip, even from the cache.
    assert_eq!(
        run(&mut e, "/x", Some(&t)).verdict,
        Verdict::Deny(Denial::Revoked)
    );
    let m = bearer(serde_json::json!({"sub": "mallory", "jti": "m1"}));
    assert_eq!(
        run(&mut e, "/x", Some(&m)).verdict,
        Verdict::Deny(Denial::Revoked)
    );
    assert_eq!(
        e.apply_delta(delta(5, 7, &[])),
        Ok(false),
        "already applied"
    );
    assert_eq!(e.applied(), Some(("e1", 7)));
    let other_epoch = meshauth_wire::sync::Delta {
        epoch: "e2".into(),
        ..delta(7, 8, &[])
    };
    assert!(e.apply_delta(other_epoch).is_err());
}

/// A forwarded claim no header can carry: refused, not forwarded without the identity.
#[test]
fn a_forwarded_claim_unfit_for_a_header_is_refused() {
    let mut e = engine();
    for sub in ["alice\r\nx-sub: root", "alice\u{0}", "a\u{7f}"] {
        let t = DevKey::seeded(1).sign(&claims(serde_json::json!({"sub": sub})));
        assert_eq!(denial(&mut e, &t), Denial::BadClaim("forwarded"), "{sub:?}");
    }
    // A claim that is not forwarded may hold anything.
    let t = DevKey::seeded(1).sign(&claims(serde_json::json!({"note": "a\r\nb"})));
    assert!(matches!(
        run(&mut e, "/x", Some(&format!("Bearer {t}"))).verdict,
        Verdict::Allow(_)
    ));
}

/// A trusted external issuer's RS256 token is admitted through the engine with its
/// issuer's audience and scope claim; the control plane's own issuer stays EdDSA-only;
/// a subject rule reaches only the tokens of its issuer (none: our own); and a
/// snapshot that drops the issuer drops its cached verifications.
#[test]
fn federated_tokens_through_the_engine() {
    use crate::federated::tests as fed;
    use meshauth_wire::federation::Alg;
    let mut e = engine();
    let mut idp = fed::issuer(vec![fed::rsa_public("r1", vec![Alg::RS256])]);
    idp.audiences = vec!["fed-api".into()];
    idp.forward_claims = [
        ("sub", "x-meshauth-idp-sub"),
        ("realm_access.roles", "x-meshauth-idp-roles"),
    ]
    .map(|(c, h)| (c.to_string(), h.to_string()))
    .into();
    let rule = meshauth_wire::sync::RevocationRule {
        claim: meshauth_wire::sync::RuleClaim::Sub,
        value: "alice".into(),
        not_before: NOW,
        issuer: None,
    };
    let mut snap = snapshot(1, &[], vec![rule.clone()]);
    snap.issuers = vec![idp.clone()];
    e.apply_snapshot(snap).unwrap();
    let fed_claims = |roles: serde_json::Value, aud: &str| {
        serde_json::json!({"iss": "https://idp.test", "aud": aud, "sub": "alice", "jti": "f1",
            "exp": NOW + 60, "iat": NOW - 10, "realm_access": {"roles": roles}})
    };
    let admin = fed::rs256("r1", &fed_claims(serde_json::json!(["admin"]), "fed-api"));
    let out = run(&mut e, "/admin/x", Some(&format!("Bearer {admin}")));
    assert!(
        matches!(out.verdict, Verdict::Allow(ref v) if v.federated && v.issuer_name.as_deref() == Some("idp")),
        "{out:?}"
    );
    // The issuer's forwarded claims, not the configuration's (`x-sub`); every header
    // either may set is one a client's copy of is removed.
    let Verdict::Allow(v) = out.verdict else {
        unreachable!()
    };
    let set = |h: &str, v: &str| (h.to_string(), v.to_string());
    assert_eq!(
        v.headers,
        [
            set("x-meshauth-idp-roles", "admin"),
            set("x-meshauth-idp-sub", "alice")
        ]
    );
    assert_eq!(
        e.forwarded_headers(),
        ["x-sub", "x-meshauth-idp-roles", "x-meshauth-idp-sub"]
    );
    let reader = fed::rs256("r1", &fed_claims(serde_json::json!(["read"]), "fed-api"));
    assert!(matches!(
        run(&mut e, "/admin/x", Some(&format!("Bearer {reader}"))).verdict,
        Verdict::Deny(Denial::InsufficientScope { .. })
    ));
    // The issuer's audience, not the filter's own.
    let own_aud = fed::rs256("r1", &fed_claims(serde_json::json!(["admin"]), "api"));
    assert_eq!(denial(&mut e, &own_aud), Denial::BadAudience);
    // Our own "alice" is revoked by the rule, the provider's is not.
    assert_eq!(
        run(&mut e, "/x", Some(&bearer(serde_json::json!({})))).verdict,
        Verdict::Deny(Denial::Revoked)
    );
    // An RS256 token claiming the control plane's issuer is refused.
    let forged = fed::rs256("r1", &claims(serde_json::json!({})));
    assert_eq!(denial(&mut e, &forged), Denial::BadAlgorithm);
    // The same rule scoped to the provider: the provider's "alice" is revoked (cached
    // verification or not), our own is not.
    let scoped = meshauth_wire::sync::RevocationRule {
        issuer: Some("https://idp.test".into()),
        ..rule
    };
    let mut snap = snapshot(2, &[], vec![scoped]);
    snap.issuers = vec![idp];
    e.apply_snapshot(snap).unwrap();
    assert_eq!(denial(&mut e, &admin), Denial::Revoked);
    assert!(matches!(
        run(&mut e, "/x", Some(&bearer(serde_json::json!({})))).verdict,
        Verdict::Allow(_)
    ));
    // The issuer is dropped: its cached token no longer passes.
    e.apply_snapshot(snapshot(3, &[], vec![])).unwrap();
    assert_eq!(denial(&mut e, &admin), Denial::BadAlgorithm);
}

/// A trusted issuer's token with a kid its pushed keys lack is refused and queued for a
/// report, once per issuer per second however many come; a token claiming an issuer
/// the snapshot does not trust reports nothing, nor does a known kid that fails.
#[test]
fn an_unknown_kid_of_a_trusted_issuer_is_reported_once_a_second() {
    use crate::federated::tests as fed;
    use meshauth_wire::federation::Alg;
    use meshauth_wire::sync::UnknownKidReport;
    let mut e = engine();
    let mut idp = fed::issuer(vec![fed::rsa_public("r1", vec![Alg::RS256])]);
    idp.audiences = vec!["fed-api".into()];
    let mut snap = snapshot(1, &[], vec![]);
    snap.issuers = vec![idp];
    e.apply_snapshot(snap).unwrap();
    let payload = |iss: &str| {
        serde_json::json!({"iss": iss, "aud": "fed-api", "sub": "a", "jti": "f1",
            "exp": NOW + 60, "iat": NOW - 10})
    };
    for i in 0..100 {
        let t = fed::rs256(&format!("rotated-{i}"), &payload("https://idp.test"));
        assert_eq!(denial(&mut e, &t), Denial::UnknownKey);
    }
    assert_eq!(
        e.take_kid_reports(),
        vec![UnknownKidReport::new("https://idp.test", "rotated-0").unwrap()]
    );
    let untrusted = fed::rs256("rotated-x", &payload("https://evil.test"));
    assert_ne!(denial(&mut e, &untrusted), Denial::UnknownKey);
    let mut bad_sig = fed::rs256("r1", &payload("https://idp.test")).into_bytes();
    let n = bad_sig.len() - 3;
    bad_sig[n] = if bad_sig[n] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        denial(&mut e, std::str::from_utf8(&bad_sig).unwrap()),
        Denial::BadSignature
    );
    assert!(e.take_kid_reports().is_empty());
    // The issuer leaves the snapshot: nothing of it is reported any more.
    e.apply_snapshot(snapshot(2, &[], vec![])).unwrap();
    let t = fed::rs256("rotated-y", &payload("https://idp.test"));
    assert_ne!(denial(&mut e, &t), Denial::UnknownKey);
    assert!(e.take_kid_reports().is_empty());
}

/// A provider whose key set keeps changing (a key added and dropped, the order
/// shuffled) changes the snapshot's issuers at each fetch: that drops the cached
/// verifications of federated tokens, never those of the control plane's own tokens,
/// or one provider could flush every filter's whole cache once a minute.
#[test]
fn a_federated_key_change_keeps_own_verifications_cached() {
    use crate::federated::tests as fed;
    use meshauth_wire::federation::Alg;
    let idp = |kids: &[&str]| {
        fed::issuer(
            kids.iter()
                .map(|k| fed::rsa_public(k, vec![Alg::RS256]))
                .collect(),
        )
    };
    let mut e = engine();
    let mut snap = snapshot(1, &[], vec![]);
    snap.issuers = vec![idp(&["r1"])];
    e.apply_snapshot(snap).unwrap();
    let own = bearer(serde_json::json!({}));
    let provider = format!(
        "Bearer {}",
        fed::rs256(
            "r1",
            &serde_json::json!({"iss": "https://idp.test", "aud": "api", "sub": "u",
                "jti": "f1", "exp": NOW + 60, "iat": NOW - 10}),
        )
    );
    for t in [&own, &provider] {
        let out = run(&mut e, "/x", Some(t));
        assert!(matches!(out.verdict, Verdict::Allow(_)), "{out:?}");
        assert_eq!(out.cache, CacheUse::Miss);
    }
    let mut snap = snapshot(2, &[], vec![]);
    snap.issuers = vec![idp(&["r2", "r1"])];
    e.apply_snapshot(snap).unwrap();
    assert_eq!(run(&mut e, "/x", Some(&own)).cache, CacheUse::Hit);
    let out = run(&mut e, "/x", Some(&provider));
    assert!(matches!(out.verdict, Verdict::Allow(_)), "{out:?}");
    assert_eq!(out.cache, CacheUse::Miss);
}

/// An issuer's forwarded header is set only when it is under the filter's reserved
/// prefix (removed from every request, so a client cannot send it while the issuer is
/// not yet, or no longer, in the snapshot) and not one of the filter's own headers (one
/// asserting party per header). The wire refuses such snapshots; this holds even if one
/// got through.
#[test]
fn an_issuer_never_sets_the_filters_own_headers_or_unreserved_ones() {
    use crate::federated::tests as fed;
    use meshauth_wire::federation::Alg;
    let with_prefix = |prefix: &str| {
        let jwks = serde_json::json!({"keys": [Jwk::from_ed25519(&DevKey::seeded(1).public())]});
        let config = serde_json::json!({
            "issuer": "https://issuer",
            "audiences": ["api"],
            "bootstrap_jwks": jwks,
            "reserved_header_prefix": prefix,
            "forward_claims": [
                {"claim": "sub", "header": "x-meshauth-sub"},
                {"claim": "scope", "header": "x-meshauth-the_scope"}
            ],
        });
        Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap())
    };
    let mut idp = fed::issuer(vec![fed::rsa_public("r1", vec![Alg::RS256])]);
    idp.audiences = vec!["fed-api".into()];
    idp.forward_claims = [
        ("sub", "x-meshauth-sub"),
        ("email", "x-meshauth-email"),
        ("name", "x-user"),
        // The filter's own x-meshauth-the_scope to a CGI-style upstream.
        ("scope", "x-meshauth-the-scope"),
    ]
    .map(|(c, h)| (c.to_string(), h.to_string()))
    .into();
    let token = fed::rs256(
        "r1",
        &serde_json::json!({"iss": "https://idp.test", "aud": "fed-api", "sub": "mallory",
            "email": "m@x", "name": "admin", "scope": "read", "jti": "f1", "exp": NOW + 60, "iat": NOW - 10}),
    );
    let headers = |e: &mut Engine| match run(e, "/x", Some(&format!("Bearer {token}"))).verdict {
        Verdict::Allow(v) => v.headers.clone(),
        other => panic!("{other:?}"),
    };
    let set = |h: &str, v: &str| (h.to_string(), v.to_string());
    let mut e = with_prefix("x-meshauth-");
    let mut snap = snapshot(1, &[], vec![]);
    snap.issuers = vec![idp.clone()];
    e.apply_snapshot(snap.clone()).unwrap();
    assert_eq!(headers(&mut e), [set("x-meshauth-email", "m@x")]);
    assert_eq!(
        e.forwarded_headers(),
        ["x-meshauth-sub", "x-meshauth-the_scope", "x-meshauth-email"]
    );
    // Nothing reserved: no issuer header is safe from a client's copy, none is set.
    let mut e = with_prefix("");
    e.apply_snapshot(snap).unwrap();
    assert_eq!(headers(&mut e), []);
}
