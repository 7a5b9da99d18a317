use super::*;
use crate::rules::{Policy, Requirements};

fn err(json: &str) -> String {
    Config::from_json(json.as_bytes()).unwrap_err().to_string()
}

#[test]
fn minimal_config_fails_closed() {
    let c = Config::from_json(b"{}").unwrap();
    assert!(c.keys.is_empty());
    assert_eq!(c.routes.default, Policy::Token(Requirements::default()));
    assert!(c.forward_authorization);
}

#[test]
fn rate_limits_are_validated_with_their_path() {
    let c = Config::from_json(
        br#"{"rate_limits":{"capacity":1024,"headers_on_allow":true,"policies":[
            {"name":"p","key":["claim:sub"],"rate":5,"burst":5}]}}"#,
    )
    .unwrap();
    assert_eq!(c.limits.capacity, 1024);
    assert!(c.limits.headers_on_allow);
    assert_eq!(c.limits.policies.len(), 1);
    assert_eq!(Config::from_json(b"{}").unwrap().limits.capacity, 65_536);
    let e = err(r#"{"rate_limits":{"capacity":0}}"#);
    assert!(e.starts_with("rate_limits.capacity:"), "{e}");
    let e =
        err(r#"{"rate_limits":{"policies":[{"name":"p","key":["route"],"rate":1,"burst":0}]}}"#);
    assert!(e.starts_with("rate_limits.policies[0].burst:"), "{e}");
    let e = err(r#"{"rate_limits":{"policies":[{"name":"p","key":["ip"],"rate":1,"burst":1}]}}"#);
    assert!(e.contains("unknown key part"), "{e}");
    let e = err(r#"{"rate_limits":{"size":3}}"#);
    assert!(e.contains("unknown field"), "{e}");
    // Found by the fuzz tests: a field with an empty name still gets a path.
    let e = err(r#"{"":1}"#);
    assert!(e.starts_with("config: unknown field"), "{e}");
}

#[test]
fn the_fleet_credential_comes_from_the_config_or_the_environment() {
    let key = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let with = |extra: &str| {
        Config::from_json(
            format!(r#"{{"sync":{{"cluster":"cp","distribution_key":"{key}"{extra}}}}}"#)
                .as_bytes(),
        )
    };
    let c = with(r#","credential":"s3cret-fleet""#).unwrap();
    let sync = c.sync.unwrap();
    assert_eq!(
        sync.authorization.as_ref().unwrap().header_value(),
        "Bearer s3cret-fleet"
    );
    assert_eq!(sync.max_snapshot_age_seconds, 86_400);
    assert!(
        !format!("{sync:?}").contains("s3cret"),
        "never in Debug output"
    );
    assert!(with("").unwrap().sync.unwrap().authorization.is_none());
    std::env::set_var("MESHAUTH_TEST_FLEET_CREDENTIAL", "from-env");
    let c = with(r#","credential_env":"MESHAUTH_TEST_FLEET_CREDENTIAL""#).unwrap();
    assert_eq!(
        c.sync
            .unwrap()
            .authorization
            .as_ref()
            .unwrap()
            .header_value(),
        "Bearer from-env"
    );
    let e = with(r#","credential_env":"MESHAUTH_TEST_NOT_SET_ANYWHERE""#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("sync.credential_env:"), "{e}");
    let e = with(r#","credential":"a","credential_env":"B""#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not both"), "{e}");
    let e = with(r#","credential":"has space""#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("sync.credential:") && !e.contains("has space"),
        "{e}"
    );
    let e = with(r#","max_snapshot_age_seconds":60"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("sync.max_snapshot_age_seconds:"), "{e}");
}

#[test]
fn errors_name_the_field() {
    assert!(err(r#"{"issuer": 5}"#).starts_with("issuer: invalid type"));
    assert!(err(r#"{"bogus": 1}"#).contains("unknown field `bogus`"));
    assert!(
        err(r#"{"routes":[{"path_prefix":"/a","scope_all":["x"]}]}"#)
            .starts_with("routes[0].scope_all: unknown field")
    );
    assert!(err(r#"{"routes":[{"path_prefix":"/a","auth":"maybe"}]}"#)
        .contains("unknown variant `maybe`"));
    assert_eq!(
        err(r#"{"routes":[{"auth":"token"}]}"#),
        "routes[0]: set exactly one of path_exact and path_prefix"
    );
    assert_eq!(
        err(r#"{"routes":[{"path_prefix":"a"}]}"#),
        "routes[0]: paths start with '/'"
    );
    assert_eq!(
        err(r#"{"routes":[{"path_prefix":"/a","auth":"anonymous","scopes_all":["x"]}]}"#),
        "routes[0]: an anonymous route cannot require scopes or claims"
    );
    assert_eq!(
        err(r#"{"routes":[{"path_prefix":"/a","auth":"anonymous","issuers":["idp"]}]}"#),
        "routes[0]: an anonymous route cannot require issuers"
    );
    for (issuers, says) in [
        ("[]", "list at least one issuer"),
        (r#"["IdP"]"#, "is not a trusted issuer's name"),
        (
            r#"["https://idp.example"]"#,
            "is not a trusted issuer's name",
        ),
        (r#"["idp","idp"]"#, "listed twice"),
    ] {
        let e = err(&format!(
            r#"{{"routes":[{{"path_prefix":"/a","issuers":{issuers}}}]}}"#
        ));
        assert!(
            e.starts_with("routes[0].issuers: ") && e.contains(says),
            "{e}"
        );
    }
    assert!(err(r#"{"default_route":{"issuers":[]}}"#).starts_with("default_route.issuers"));
    assert_eq!(
        err(r#"{"routes":[{"path_prefix":"/a","scopes_all":[]}]}"#),
        "routes[0].scopes_all: must list at least one scope"
    );
    assert_eq!(
        err(r#"{"routes":[{"path_prefix":"/a","methods":[]}]}"#),
        "routes[0].methods: omit it to match any method, or list at least one"
    );
    assert_eq!(
        err(r#"{"clock_skew_seconds": 3600}"#),
        "clock_skew_seconds: must be at most 600"
    );
    assert!(
        err(r#"{"forward_claims":[{"claim":"sub","header":"Authorization"}]}"#)
            .starts_with("forward_claims[0].header")
    );
    assert!(err(
        r#"{"forward_claims":[{"claim":"sub","header":"x-a"},{"claim":"iss","header":"x-a"}]}"#
    )
    .contains("used twice"));
    assert!(
        err(r#"{"bootstrap_jwks":{"keys":[{"kty":"RSA","crv":"x","x":"y","kid":"k"}]}}"#)
            .starts_with("bootstrap_jwks: keys[0]: kty")
    );
    assert!(err("not json").starts_with("config:"));
    assert!(
        err(r#"{"sync": {"cluster": "cp", "distribution_key": "short"}}"#)
            .starts_with("sync.distribution_key")
    );
    let key = meshauth_wire::b64::encode(
        ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .to_bytes(),
    );
    assert!(err(&format!(
        r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}", "tick_ms": 1}}}}"#
    ))
    .starts_with("sync.tick_ms"));
    assert!(err(&format!(
        r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}", "on_unconfirmed": "maybe"}}}}"#
    ))
    .contains("unknown variant"));
    let ok = Config::from_json(
        format!(r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}"}}}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(ok.sync.unwrap().authority, "cp");
}

#[test]
fn full_config_loads() {
    let c = Config::from_json(br#"{
        "issuer": "https://issuer", "audiences": ["api"], "clock_skew_seconds": 5,
        "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
        "forward_authorization": false,
        "routes": [
            {"name": "pub", "path_prefix": "/public/", "auth": "anonymous"},
            {"path_prefix": "/admin/", "methods": ["get", "post"], "scopes_any": ["admin"], "claims": {"tenant": ["a"]}},
            {"path_prefix": "/partners/", "issuers": ["self", "idp"]}
        ],
        "default_route": {"auth": "token"}
    }"#).unwrap();
    assert_eq!(c.claim_rules.skew_seconds, 5);
    assert_eq!(
        c.routes.routes[1].methods.as_deref(),
        Some(&["GET".to_string(), "POST".to_string()][..])
    );
    assert_eq!(c.routes.routes[1].name, "route-1");
    assert!(matches!(&c.routes.routes[2].policy,
        crate::rules::Policy::Token(r) if r.issuers == Some(vec!["self".into(), "idp".into()])));
    assert!(!c.forward_authorization);
}
