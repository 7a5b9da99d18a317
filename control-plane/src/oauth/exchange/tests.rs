#![allow(clippy::unwrap_used)]
//! The request checks, the policy bounds and the delegation chain, without a server.

use serde_json::json;

use super::*;
use crate::error::{OAuthCode, OAuthError};
use crate::issuers::model::ExchangePolicy;

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

fn all_scopes() -> Vec<String> {
    vec!["read".into(), "write".into(), "admin".into()]
}

#[test]
fn scopes_are_those_both_the_policy_and_the_subject_token_allow() {
    let subject = ["read".to_string(), "admin".into()];
    let client = all_scopes();
    assert_eq!(
        granted_scopes(None, &policy(), &subject, &client).unwrap(),
        ["read"]
    );
    assert_eq!(
        granted_scopes(Some("read read"), &policy(), &subject, &client).unwrap(),
        ["read"]
    );
    // Beyond the policy, or beyond what the subject holds.
    for asked in ["admin", "write", "read write"] {
        let e = granted_scopes(Some(asked), &policy(), &subject, &client).unwrap_err();
        assert_eq!(code(e), OAuthCode::InvalidScope, "{asked}");
    }
    assert!(granted_scopes(None, &policy(), &[], &client)
        .unwrap()
        .is_empty());
}

/// The asking client's own scopes bound an exchange too: a client granted `read` only
/// gets no `write` by exchanging a token that carries it, asked for or not.
#[test]
fn an_exchange_never_gives_a_client_a_scope_it_was_not_granted() {
    let subject = all_scopes();
    let read_only = ["read".to_string()];
    assert_eq!(
        granted_scopes(None, &policy(), &subject, &read_only).unwrap(),
        ["read"]
    );
    for asked in ["write", "read write"] {
        let e = granted_scopes(Some(asked), &policy(), &subject, &read_only).unwrap_err();
        assert_eq!(code(e), OAuthCode::InvalidScope, "{asked}");
    }
    assert!(granted_scopes(None, &policy(), &subject, &[])
        .unwrap()
        .is_empty());
    assert!(granted_scopes(Some("read"), &policy(), &subject, &[]).is_err());
}

/// An actor token names the client asking, or nobody: another client's mesh token, or
/// a provider token issued to another client (or naming none), is refused.
#[test]
fn an_actor_token_must_be_the_asking_clients() {
    assert_eq!(actor_is_client(Some("gw"), "gw"), Ok(()));
    for other in [Some("svc"), Some("GW"), Some("gw "), Some(""), None] {
        assert_eq!(
            actor_is_client(other, "gw"),
            Err(Refusal::ActorNotClient),
            "{other:?}"
        );
    }
    assert_eq!(code(Refusal::ActorNotClient), OAuthCode::InvalidGrant);
    assert!(Refusal::ActorNotClient
        .to_string()
        .contains("not issued to this client"));
}

fn verified(client_claim: Option<&str>, claims: serde_json::Value) -> Verified {
    let mut spec = json!({"name": "idp", "issuer": "https://idp.example/",
        "jwks_uri": "https://idp.example/jwks", "audiences": ["api"], "algorithms": ["RS256"],
        "id_claim": "uti"});
    if let Some(c) = client_claim {
        spec["client_claim"] = json!(c);
    }
    Verified {
        issuer: serde_json::from_value(spec).unwrap(),
        claims: serde_json::from_value(claims).unwrap(),
    }
}

/// The mesh token records the subject token's session, client (the issuer's client
/// claim) and id (its id claim), so rules made after the exchange reach it; values no
/// rule can name are left out.
#[test]
fn the_ext_claim_records_what_later_rules_may_name() {
    let v = verified(
        Some("azp"),
        json!({"sub": "alice", "sid": "s1", "azp": "app", "client_id": "not-it", "uti": "u1", "jti": "not-it"}),
    );
    let ext = external_subject(&v, "alice".into());
    assert_eq!(
        serde_json::to_value(&ext).unwrap(),
        json!({"iss": "https://idp.example/", "sub": "alice", "sid": "s1", "client": "app", "jti": "u1"})
    );
    let long = "x".repeat(257);
    let v = verified(
        None,
        json!({"sub": "alice", "sid": long, "client_id": 5, "uti": "a\nb"}),
    );
    let ext = external_subject(&v, "alice".into());
    assert_eq!((ext.sid, ext.client, ext.jti), (None, None, None));
    let v = verified(None, json!({"sub": "alice", "client_id": "app"}));
    assert_eq!(
        external_subject(&v, "alice".into()).client.as_deref(),
        Some("app")
    );
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
    let x = "https://x";
    assert!(may_act_allows(&json!({"sub": "gw"}), &actor, x).is_ok());
    assert!(may_act_allows(&json!({"sub": "gw", "iss": "https://x"}), &actor, x).is_ok());
    assert!(may_act_allows(
        &json!({"sub": "gw", "iss": "https://x"}),
        &actor,
        "https://y"
    )
    .is_ok());
    for may in [
        json!({"sub": "other"}),
        json!({"sub": "gw", "iss": "https://y"}),
        json!({}),
    ] {
        assert_eq!(
            may_act_allows(&may, &actor, x),
            Err(Refusal::MayNotAct),
            "{may}"
        );
    }
}

/// A `may_act` without `iss` names a subject of the subject token's issuer: an actor
/// of the same `sub` at another issuer (the mesh's own client "gw", another provider's
/// user "gw") is someone else.
#[test]
fn may_act_without_iss_means_the_subject_tokens_issuer() {
    let may = json!({"sub": "gw"});
    let at = |iss: Option<&str>| Actor {
        sub: "gw".into(),
        iss: iss.map(str::to_owned),
        act: None,
    };
    let idp = "https://idp.example/";
    assert!(may_act_allows(&may, &at(Some(idp)), idp).is_ok());
    for iss in [
        Some("https://cp.example"),
        Some("https://idp.example"),
        None,
    ] {
        assert_eq!(
            may_act_allows(&may, &at(iss), idp),
            Err(Refusal::MayNotAct),
            "{iss:?}"
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
        (Refusal::ActorNotClient, OAuthCode::InvalidGrant),
        (Refusal::Target("x".into()), OAuthCode::InvalidTarget),
        (Refusal::Scope("x".into()), OAuthCode::InvalidScope),
    ] {
        assert_eq!(code(r), want);
    }
}
