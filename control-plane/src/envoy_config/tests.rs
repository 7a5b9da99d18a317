use super::*;

fn learned() -> Learned {
    Learned {
        issuer: "http://127.0.0.1:8080".into(),
        jwks: json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "x", "kid": "k"}]}),
        distribution_key: "A".repeat(43),
        module_sha256: None,
    }
}

fn choices() -> Choices {
    Choices {
        listen: HostPort::parse_ip("127.0.0.1:10000").unwrap(),
        admin: HostPort::parse_ip("127.0.0.1:9901").unwrap(),
        upstream: HostPort::parse("localhost:8000").unwrap(),
        control_plane: parse_base_url("http://127.0.0.1:8081").unwrap(),
        code: Code::Remote {
            sha256: "a".repeat(64),
        },
        failure_policy: FailurePolicy::FailReload,
        credential_env: DEFAULT_CREDENTIAL_ENV.into(),
        plugin: default_plugin(),
    }
}

fn plugin_of(b: &Value) -> Value {
    let filter = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"];
    serde_json::from_str(filter["configuration"]["value"].as_str().unwrap()).unwrap()
}

#[test]
fn the_bootstrap_hardens_the_listener_and_syncs_without_an_inline_credential() {
    let b = bootstrap(&learned(), &choices()).unwrap();
    let hcm =
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(
        hcm["path_with_escaped_slashes_action"],
        "UNESCAPE_AND_REDIRECT"
    );
    assert_eq!(
        hcm["common_http_protocol_options"]["headers_with_underscores_action"],
        "REJECT_REQUEST"
    );
    let config = &hcm["http_filters"][0]["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_RELOAD");
    assert_eq!(
        config["vm_config"]["environment_variables"]["host_env_keys"],
        json!(["MESHAUTH_SYNC_CREDENTIAL"])
    );
    let remote = &config["vm_config"]["code"]["remote"];
    assert_eq!(remote["sha256"], "a".repeat(64));
    assert_eq!(
        remote["http_uri"]["uri"],
        "http://127.0.0.1:8081/filter/meshauth.wasm"
    );
    let plugin = plugin_of(&b);
    assert_eq!(plugin["issuer"], "http://127.0.0.1:8080");
    assert_eq!(plugin["bootstrap_jwks"], learned().jwks);
    assert_eq!(
        plugin["sync"],
        json!({"cluster": CONTROL_PLANE_CLUSTER, "distribution_key": "A".repeat(43),
               "credential_env": "MESHAUTH_SYNC_CREDENTIAL"})
    );
    let clusters = b["static_resources"]["clusters"].as_array().unwrap();
    assert_eq!(clusters[1]["name"], CONTROL_PLANE_CLUSTER);
    // A local module is named by path, with no sha256 to go stale.
    let mut local = choices();
    local.code = Code::Local("/opt/meshauth.wasm".into());
    let b = bootstrap(&learned(), &local).unwrap();
    let code = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"];
    assert_eq!(code, &json!({"local": {"filename": "/opt/meshauth.wasm"}}));
}

#[test]
fn the_operators_plugin_settings_are_kept_and_hostile_ones_refused() {
    let mut c = choices();
    c.plugin = json!({"routes": [{"path_prefix": "/public/", "auth": "anonymous"}],
                      "sync": {"poll_wait_ms": 5000}});
    let p = plugin_of(&bootstrap(&learned(), &c).unwrap());
    assert_eq!(p["routes"][0]["auth"], "anonymous");
    assert_eq!(p["sync"]["poll_wait_ms"], 5000);
    assert_eq!(p["sync"]["cluster"], CONTROL_PLANE_CLUSTER);
    for (plugin, why) in [
        (
            json!({"issuer": "http://0.0.0.0:8080"}),
            "not the control plane's",
        ),
        (json!({"sync": {"credential": "secret"}}), "sync.credential"),
        (json!({"sync": 5}), "sync: want an object"),
        (json!([1]), "want a JSON object"),
    ] {
        c.plugin = plugin;
        let e = bootstrap(&learned(), &c).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    c.plugin = default_plugin();
    c.credential_env = "A B".into();
    assert!(bootstrap(&learned(), &c).is_err());
}

#[test]
fn addresses_are_checked() {
    assert_eq!(
        HostPort::parse("[::1]:80").unwrap(),
        HostPort {
            host: "::1".into(),
            port: 80
        }
    );
    for bad in [
        "",
        "host",
        "host:0",
        "host:99999",
        ":80",
        "a b:80",
        "h/x:80",
    ] {
        assert!(HostPort::parse(bad).is_err(), "{bad}");
    }
    assert!(HostPort::parse_ip("localhost:80").is_err());
    assert!(parse_base_url("https://cp:8081").is_err());
    assert!(parse_base_url("http://cp:8081/x").is_err());
    assert_eq!(parse_base_url("http://cp:8081/").unwrap().port, 8081);
}

#[test]
fn learns_from_the_control_plane_and_says_what_is_missing() {
    let answers = |sha: Option<&'static str>| {
        move |path: &str| -> Result<String, String> {
            match path {
                "/.well-known/oauth-authorization-server" => {
                    Ok(r#"{"issuer":"http://cp:8080"}"#.into())
                }
                "/.well-known/jwks.json" => Ok(r#"{"keys":[{"kid":"k"}]}"#.into()),
                "/sync/v1/distribution-key" => {
                    Ok(format!(r#"{{"public_key":"{}"}}"#, "B".repeat(43)))
                }
                "/filter/meshauth.wasm.sha256" => sha.map(String::from).ok_or("404".into()),
                _ => Err("404".into()),
            }
        }
    };
    let l = learn(&answers(Some("AB".repeat(32).leak())), true).unwrap();
    assert_eq!(l.issuer, "http://cp:8080");
    assert_eq!(l.module_sha256, Some("ab".repeat(32)));
    assert_eq!(learn(&answers(None), false).unwrap().module_sha256, None);
    let e = learn(&answers(None), true).unwrap_err().to_string();
    assert!(e.contains("filter_wasm"), "{e}");
    let e = learn(&answers(Some("nope")), true).unwrap_err().to_string();
    assert!(e.contains("64 hex"), "{e}");
}
