//! Keys, rules and cover of revocations; the keys that reach exchanged tokens.

use super::*;

fn sub(nb: i64) -> Revocation {
    Revocation::Sub {
        value: "alice".into(),
        not_before: nb,
        issuer: None,
    }
}

fn idp() -> Option<RuleIssuer> {
    Some(RuleIssuer {
        name: "idp".into(),
        iss: "https://idp.example/".into(),
    })
}

fn claims(sub: &str, ext: Option<(&str, &str)>) -> AccessClaims {
    AccessClaims {
        iss: "https://cp.example".into(),
        sub: sub.into(),
        aud: vec![],
        exp: 100,
        iat: 1,
        nbf: 1,
        jti: "j".into(),
        scope: String::new(),
        client_id: "c".into(),
        sid: None,
        ext: ext.map(|(iss, sub)| meshauth_wire::claims::ExternalSubject::subject(iss, sub)),
        act: None,
    }
}

/// The same subject revoked for our tokens and for an external issuer's: two keys,
/// two rules, each reaching only its own tokens (an exchanged token, by `ext`).
#[test]
fn a_scoped_rule_has_a_key_of_its_own_and_reaches_exchanged_tokens() {
    let own = sub(5);
    let scoped = sub(5).scoped_to(idp());
    assert_ne!(own.key(), scoped.key());
    assert_eq!(scoped.key(), "sub@https://idp.example/ alice");
    // No unscoped value can spell a scoped key.
    assert!(!scoped.key().starts_with("sub:"));
    let rule = scoped.filter_rule().unwrap();
    assert_eq!(rule.issuer.as_deref(), Some("https://idp.example/"));
    assert_eq!(own.filter_rule().unwrap().issuer, None);
    assert!(!keys_for(&claims("alice", None)).contains(&scoped.key()));
    assert!(keys_for(&claims("alice", None)).contains(&own.key()));
    let exchanged = claims("m1", Some(("https://idp.example/", "alice")));
    assert!(keys_for(&exchanged).contains(&scoped.key()));
    assert!(!keys_for(&exchanged).contains(&own.key()));
    let elsewhere = claims("m1", Some(("https://other.example/", "alice")));
    assert!(!keys_for(&elsewhere).contains(&scoped.key()));
    // A jti stays a jti; stored rules without an issuer read as before.
    let j = Revocation::Jti {
        jti: "j".into(),
        exp: 1,
    };
    assert_eq!(j.clone().scoped_to(idp()), j);
    let old: Revocation =
        serde_json::from_str(r#"{"kind":"sub","value":"alice","not_before":5}"#).unwrap();
    assert_eq!(old, own);
    assert!(!serde_json::to_string(&own).unwrap().contains("issuer"));
}

/// A token exchanged for a provider's token carries that token's session, client and
/// id in `ext`: a session or client rule scoped to the provider, or a revocation of
/// that id, made after the exchange reaches it; the same values of another issuer, or
/// unscoped, do not.
#[test]
fn scoped_session_client_and_id_revocations_reach_exchanged_tokens() {
    let mut exchanged = claims("m1", Some(("https://idp.example/", "alice")));
    let ext = exchanged.ext.as_mut().unwrap();
    ext.sid = Some("s1".into());
    ext.client = Some("app".into());
    ext.jti = Some("t1".into());
    let keys = keys_for(&exchanged);
    let rule = |claim, value: &str| {
        Revocation::rule_from_now(claim, value.into(), 1)
            .scoped_to(idp())
            .key()
    };
    assert!(keys.contains(&rule(RuleClaim::Sid, "s1")), "{keys:?}");
    assert!(keys.contains(&rule(RuleClaim::ClientId, "app")), "{keys:?}");
    assert!(keys.contains(&"jti:t1".to_string()), "{keys:?}");
    // Unscoped rules on those values are the control plane's own sessions and clients.
    assert!(!keys.contains(&key(Kind::Sid, "s1")));
    assert!(!keys.contains(&key(Kind::ClientId, "app")));
    let other = Some(RuleIssuer {
        name: "other".into(),
        iss: "https://other.example/".into(),
    });
    let elsewhere = Revocation::rule_from_now(RuleClaim::Sid, "s1".into(), 1).scoped_to(other);
    assert!(!keys.contains(&elsewhere.key()));
    // A token exchanged before they were recorded: its subject only, as before.
    let old = keys_for(&claims("m1", Some(("https://idp.example/", "alice"))));
    assert_eq!(old.len(), 4, "{old:?}");
    let names = ExternalNames {
        sub: Some("alice"),
        sid: None,
        client: Some("app"),
    };
    assert_eq!(
        scoped_keys_for("https://idp.example/", names),
        [
            "sub@https://idp.example/ alice",
            "client_id@https://idp.example/ app"
        ]
    );
}

#[test]
fn a_jti_is_kept_no_later_than_a_token_can_live() {
    let r = Revocation::jti_until("j".into(), None, 100, 60).ok();
    assert_eq!(
        r,
        Some(Revocation::Jti {
            jti: "j".into(),
            exp: 160
        })
    );
    assert!(Revocation::jti_until("j".into(), Some(160), 100, 60).is_ok());
    for bad in [-1, 161, i64::MAX] {
        assert!(Revocation::jti_until("j".into(), Some(bad), 100, 60).is_err());
    }
}

#[test]
fn keys_rules_and_cover() {
    let j = Revocation::Jti {
        jti: "j1".into(),
        exp: 100,
    };
    assert_eq!(j.key(), "jti:j1");
    assert_eq!(sub(5).key(), "sub:alice");
    assert_eq!(
        Revocation::ClientId {
            value: "c".into(),
            not_before: 1,
            issuer: None,
        }
        .key(),
        "client_id:c"
    );
    assert!(j.filter_rule().is_none());
    assert_eq!(
        Revocation::rule_from_now(RuleClaim::Sub, "alice".into(), 4),
        sub(5)
    );
    for claim in [RuleClaim::Sub, RuleClaim::Sid, RuleClaim::ClientId] {
        let r = Revocation::rule_from_now(claim, "v".into(), 9);
        assert_eq!(
            r.filter_rule().map(|f| (f.claim, f.not_before)),
            Some((claim, 10))
        );
    }
    let r = sub(5).filter_rule().unwrap();
    assert_eq!(
        (r.claim, r.value.as_str(), r.not_before),
        (RuleClaim::Sub, "alice", 5)
    );
    assert!(sub(6).covers(&sub(5)) && !sub(5).covers(&sub(6)));
    assert!(!sub(6).covers(&j));
    assert!(sub(5).revokes_issued_at(4) && !sub(5).revokes_issued_at(5));
    assert!(j.revokes_issued_at(i64::MAX));
    assert!(j.is_live(100, 0, 0) && !j.is_live(101, 0, 0) && j.is_live(101, 1, 0));
    assert!(sub(5).is_live(15, 0, 10) && !sub(5).is_live(16, 0, 10));
    assert_eq!(j.live_jti(100 + MAX_CLOCK_SKEW_SECONDS - 1), Some("j1"));
    assert_eq!(j.live_jti(100 + MAX_CLOCK_SKEW_SECONDS), None);
}
