#![allow(clippy::unwrap_used)]
//! The request checks, the policy bounds and the delegation chain, without a server.

use serde_json::json;

use super::*;

fn policy() -> ExchangePolicy {
    ExchangePolicy {
        audiences: vec!["api".into(), "https://orders.example".into()],
        scopes: vec!["read".into(), "write".into()],
        ttl_seconds: 300,
    }
}

fn request() -> ExchangeRequest<'static> {
    ExchangeRequest {
        subject_token: Some("t"),
        subject_token_type: Some(TYPE_JWT),
        ..Default::default()
    }
}

fn code(r: Refusal) -> OAuthCode {
    OAuthError::from(r).code
}

#[test]
fn the_request_needs_a_subject_token_of_a_supported_type() {
    assert_eq!(check_request(&request()), Ok("t"));
    let cases = [
        ExchangeRequest {
            subject_token: None,
            ..request()
        },
        ExchangeRequest {
            subject_token_type: None,
            ..request()
        },
        ExchangeRequest {
            subject_token_type: Some("urn:ietf:params:oauth:token-type:saml2"),
            ..request()
        },
        ExchangeRequest {
            actor_token: Some("a"),
            ..request()
        },
        ExchangeRequest {
            actor_token_type: Some(TYPE_JWT),
            ..request()
        },
        ExchangeRequest {
            requested_token_type: Some("urn:ietf:params:oauth:token-type:refresh_token"),
            ..request()
        },
    ];
    for r in cases {
        let e = check_request(&r).unwrap_err();
        assert_eq!(code(e), OAuthCode::InvalidRequest, "{r:?}");
    }
    let ok = ExchangeRequest {
        actor_token: Some("a"),
        actor_token_type: Some(TYPE_ACCESS_TOKEN),
        requested_token_type: Some(TYPE_ACCESS_TOKEN),
        ..request()
    };
    assert!(check_request(&ok).is_ok());
}

#[test]
fn audiences_and_resources_must_be_the_policys() {
    assert_eq!(targets(&request(), &policy()).unwrap(), policy().audiences);
    let r = ExchangeRequest {
        audience: Some("api"),
        resource: Some("https://orders.example"),
        ..request()
    };
    assert_eq!(targets(&r, &policy()).unwrap(), policy().audiences);
    let r = ExchangeRequest {
        audience: Some("api"),
        ..request()
    };
    assert_eq!(targets(&r, &policy()).unwrap(), ["api"]);
    for (audience, resource) in [(Some("admin"), None), (None, Some("https://evil.example"))] {
        let r = ExchangeRequest {
            audience,
            resource,
            ..request()
        };
        let e = targets(&r, &policy()).unwrap_err();
        assert_eq!(code(e), OAuthCode::InvalidTarget);
    }
}

#[test]
fn scopes_are_those_both_the_policy_and_the_subject_token_allow() {
    let subject = ["read".to_string(), "admin".into()];
    assert_eq!(granted_scopes(None, &policy(), &subject).unwrap(), ["read"]);
    assert_eq!(
        granted_scopes(Some("read read"), &policy(), &subject).unwrap(),
        ["read"]
    );
    // Beyond the policy, or beyond what the subject holds.
    for asked in ["admin", "write", "read write"] {
        let e = granted_scopes(Some(asked), &policy(), &subject).unwrap_err();
        assert_eq!(code(e), OAuthCode::InvalidScope, "{asked}");
    }
    assert!(granted_scopes(None, &policy(), &[]).unwrap().is_empty());
}

#[test]
fn delegation_chains_are_kept_to_sub_and_iss_and_bounded() {
    let v = json!({"sub": "a", "iss": "https://x", "extra": 1, "act": {"sub": "b"}});
    let a = chain(&v, 0).unwrap();
    assert_eq!(a.depth(), 2);
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"sub": "a", "iss": "https://x", "act": {"sub": "b"}})
    );
    let mut deep = json!({"sub": "z"});
    for i in 0..MAX_ACT_DEPTH {
        deep = json!({"sub": format!("s{i}"), "act": deep});
    }
    assert_eq!(chain(&deep, 0).unwrap_err(), Refusal::ChainTooDeep);
    assert_eq!(code(Refusal::ChainTooDeep), OAuthCode::InvalidGrant);
    for bad in [
        json!("a"),
        json!({"iss": "x"}),
        json!({"sub": 5}),
        json!({"sub": "a\n"}),
    ] {
        assert_eq!(
            code(chain(&bad, 0).unwrap_err()),
            OAuthCode::InvalidGrant,
            "{bad}"
        );
    }
}

#[test]
fn may_act_names_the_only_actor_allowed() {
    let actor = Actor {
        sub: "gw".into(),
        iss: Some("https://x".into()),
        act: None,
    };
    assert!(may_act_allows(&json!({"sub": "gw"}), &actor).is_ok());
    assert!(may_act_allows(&json!({"sub": "gw", "iss": "https://x"}), &actor).is_ok());
    for may in [
        json!({"sub": "other"}),
        json!({"sub": "gw", "iss": "https://y"}),
        json!({}),
    ] {
        assert_eq!(
            may_act_allows(&may, &actor),
            Err(Refusal::MayNotAct),
            "{may}"
        );
    }
}

#[test]
fn each_refusal_has_its_rfc_8693_code() {
    for (r, want) in [
        (Refusal::ClientNotAllowed, OAuthCode::UnauthorizedClient),
        (
            Refusal::Subject(TokenError::Expired),
            OAuthCode::InvalidGrant,
        ),
        (Refusal::OwnToken, OAuthCode::InvalidGrant),
        (Refusal::ExchangeDisabled, OAuthCode::InvalidGrant),
        (
            Refusal::Actor(TokenError::Signature),
            OAuthCode::InvalidGrant,
        ),
        (Refusal::Target("x".into()), OAuthCode::InvalidTarget),
        (Refusal::Scope("x".into()), OAuthCode::InvalidScope),
    ] {
        assert_eq!(code(r), want);
    }
}
