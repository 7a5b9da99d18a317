use super::*;
use std::time::Duration;

/// The Redis target and replica acks of a Redis store, as the tests compare them.
fn redis_of(s: &Settings) -> Option<(crate::store::redis::RedisTarget, u32)> {
    match &s.store {
        StoreTarget::Redis {
            target,
            replica_acks,
            ..
        } => Some((target.clone(), *replica_acks)),
        StoreTarget::Embedded { .. } => None,
    }
}

fn env_with<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// A config file holding `toml`, in a directory that lives as long as the guard.
fn config_file(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, toml).unwrap();
    (dir, f)
}

#[test]
fn master_key_is_required() {
    let err = Settings::load(None, &env_with(&[])).err().unwrap();
    assert!(err.to_string().starts_with("no master key"));
}

#[test]
fn defaults_and_env() {
    let key = "ab".repeat(32);
    let hash = "cd".repeat(32);
    let s = Settings::load(
        None,
        &env_with(&[
            ("MESHAUTH_MASTER_KEY", &key),
            ("MESHAUTH_ADMIN_TOKEN_SHA256", &hash),
        ]),
    )
    .unwrap();
    assert_eq!(s.issuer, "http://127.0.0.1:8080");
    assert_eq!(s.admin_token_hashes.len(), 1);
    assert_eq!(s.tokens.access_ttl, Duration::from_secs(600));
}

#[test]
fn sync_credentials_from_file_and_env_two_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let hashes = dir.path().join("sync.sha256");
    let key = "ab".repeat(32);
    let (a, b, c) = ("01".repeat(32), "02".repeat(32), "03".repeat(32));
    std::fs::write(&hashes, format!("{b}\n")).unwrap();
    std::fs::write(
        &f,
        format!(
            "sync_credential_sha256 = [\"{a}\"]\nsync_credential_sha256_file = \"{}\"\n",
            hashes.display()
        ),
    )
    .unwrap();
    let s = Settings::load(Some(&f), &env_with(&[("MESHAUTH_MASTER_KEY", &key)])).unwrap();
    assert_eq!(s.sync_credential_hashes.len(), 2);
    assert!(!s.sync_allow_anonymous);
    let err = Settings::load(
        Some(&f),
        &env_with(&[
            ("MESHAUTH_MASTER_KEY", &key),
            ("MESHAUTH_SYNC_CREDENTIAL_SHA256", &c),
        ]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("at most two"), "{err}");
    let err = Settings::load(
        None,
        &env_with(&[
            ("MESHAUTH_MASTER_KEY", &key),
            ("MESHAUTH_SYNC_CREDENTIAL_SHA256", "xyz"),
        ]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("sync_credential_sha256"), "{err}");
    let s = Settings::load(None, &env_with(&[("MESHAUTH_MASTER_KEY", &key)])).unwrap();
    assert!(s.sync_credential_hashes.is_empty() && !s.sync_allow_anonymous);
}

#[test]
fn file_errors_are_clear() {
    let (_dir, f) = config_file("listen = 5\n");
    let key = "ab".repeat(32);
    let err = Settings::load(Some(&f), &env_with(&[("MESHAUTH_MASTER_KEY", &key)]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("listen") && err.contains("invalid type"),
        "{err}"
    );
    std::fs::write(
        &f,
        "[keys]\nrotation_interval = \"1m\"\njwks_max_age = \"5m\"\n",
    )
    .unwrap();
    let err = Settings::load(Some(&f), &env_with(&[("MESHAUTH_MASTER_KEY", &key)]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("rotation_interval must exceed"), "{err}");
    std::fs::write(&f, "[tokens]\naccess_ttl = \"ten minutes\"\n").unwrap();
    let err = Settings::load(Some(&f), &env_with(&[("MESHAUTH_MASTER_KEY", &key)]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("access_ttl"), "{err}");
}

#[test]
fn redis_targets_from_file_and_env() {
    use crate::store::redis::RedisTarget;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let key = "ab".repeat(32);
    let load = |toml: &str, extra: &[(&str, &str)]| {
        std::fs::write(&f, toml).unwrap();
        let mut pairs = vec![("MESHAUTH_MASTER_KEY", key.as_str())];
        pairs.extend_from_slice(extra);
        let env = env_with(&pairs);
        #[allow(clippy::let_and_return)] // the borrow of `pairs` must end first
        let loaded = Settings::load(Some(&f), &env).map(|s| redis_of(&s));
        loaded
    };
    let r = load("[store]\nkind = \"redis\"\nurl = \"redis://h:1\"\n", &[]).unwrap();
    assert!(matches!(r, Some((RedisTarget::Url(ref u), 0)) if u == "redis://h:1"));
    // The chart: settings in the file, where and the passwords from the environment.
    let r = load(
        "[store]\nkind = \"redis\"\nnamespace = \"ns\"\nreplica_acks = 2\n",
        &[
            ("MESHAUTH_REDIS_SENTINELS", "s1:26379, s2:26379"),
            ("MESHAUTH_REDIS_MASTER_NAME", "mymaster"),
            ("MESHAUTH_REDIS_PASSWORD", "pw"),
        ],
    )
    .unwrap();
    let Some((
        RedisTarget::Sentinel {
            sentinels,
            master_name,
            password,
            sentinel_password,
        },
        2,
    )) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(sentinels, vec!["s1:26379", "s2:26379"]);
    assert_eq!(master_name, "mymaster");
    assert_eq!(password.as_deref(), Some("pw"));
    assert_eq!(sentinel_password, None);
    // Sentinel defaults to one replica ack; passwords never show in Debug.
    let r = load(
        "[store]\nkind = \"redis\"\nsentinels = [\"a:1\"]\nmaster_name = \"m\"\n",
        &[("MESHAUTH_REDIS_PASSWORD", "secret-pw")],
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.1, 1);
    assert!(!format!("{:?}", r.0).contains("secret-pw"));
    for (toml, why) in [
        ("[store]\nkind = \"redis\"\n", "needs either url"),
        ("[store]\nkind = \"redis\"\nurl = \"redis://h\"\nsentinels = [\"a:1\"]\nmaster_name = \"m\"\n", "needs either url"),
        ("[store]\nkind = \"redis\"\nsentinels = [\"a\"]\nmaster_name = \"m\"\n", "not host:port"),
        ("[store]\nkind = \"redis\"\nsentinels = [\"a:1\"]\n", "needs either url"),
    ] {
        let err = load(toml, &[]).err().unwrap().to_string();
        assert!(err.contains(why), "{toml}: {err}");
    }
}

#[test]
fn redis_password_from_env_joins_a_url_escaped() {
    use crate::store::redis::RedisTarget;
    use redis::IntoConnectionInfo;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let key = "ab".repeat(32);
    // Characters that end the userinfo, the path or the URL if pasted raw.
    let password = "p@ss/w#rd%:x ?&";
    for url in ["redis://h:1/2", "redis://olduser:old@h:1"] {
        std::fs::write(&f, "[store]\nkind = \"redis\"\n").unwrap();
        let pairs = [
            ("MESHAUTH_MASTER_KEY", key.as_str()),
            ("MESHAUTH_REDIS_URL", url),
            ("MESHAUTH_REDIS_PASSWORD", password),
        ];
        let env = env_with(&pairs);
        let Some((RedisTarget::Url(got), 0)) = redis_of(&Settings::load(Some(&f), &env).unwrap())
        else {
            panic!("not a url target")
        };
        let info = got.as_str().into_connection_info().unwrap();
        assert_eq!(info.redis.password.as_deref(), Some(password), "{url}");
        assert_eq!(info.addr.to_string(), "h:1", "{url}");
    }
    let pairs = [
        ("MESHAUTH_MASTER_KEY", key.as_str()),
        ("MESHAUTH_REDIS_URL", "redis://h:1/2"),
    ];
    let env = env_with(&pairs);
    let Some((RedisTarget::Url(got), 0)) = redis_of(&Settings::load(Some(&f), &env).unwrap())
    else {
        panic!("not a url target")
    };
    assert_eq!(got, "redis://h:1/2", "no password, the URL as given");
}

#[test]
fn separate_listeners_from_file_and_env() {
    let (_dir, f) = config_file("admin_listen = \"127.0.0.1:9001\"\n");
    let key = "ab".repeat(32);
    let s = Settings::load(
        Some(&f),
        &env_with(&[
            ("MESHAUTH_MASTER_KEY", &key),
            ("MESHAUTH_SYNC_LISTEN", "0.0.0.0:9002"),
            ("MESHAUTH_METRICS_LISTEN", ""),
        ]),
    )
    .unwrap();
    assert_eq!(s.admin_listen.as_deref(), Some("127.0.0.1:9001"));
    assert_eq!(s.sync_listen.as_deref(), Some("0.0.0.0:9002"));
    assert_eq!(s.metrics_listen, None, "empty means not separate");
    let s = Settings::load(
        Some(&f),
        &env_with(&[
            ("MESHAUTH_MASTER_KEY", &key),
            ("MESHAUTH_ADMIN_LISTEN", "0.0.0.0:9003"),
        ]),
    )
    .unwrap();
    assert_eq!(s.admin_listen.as_deref(), Some("0.0.0.0:9003"), "env wins");
}

#[test]
fn distribution_key_file_is_read_and_checked() {
    let master = "ab".repeat(32);
    let pairs = [("MESHAUTH_MASTER_KEY", master.as_str())];
    let env = env_with(&pairs);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("distribution-key");
    let load = |content: &str| {
        std::fs::write(&key, content).unwrap();
        let (_d, f) = config_file(&format!("distribution_key_file = {:?}", key));
        Settings::load(Some(&f), &env)
    };
    let seed = [9u8; 32];
    let s = load(&format!("{}\n", meshauth_wire::b64::encode(seed))).unwrap();
    assert_eq!(s.distribution_key, Some(seed));
    assert_eq!(
        load(&hex::encode(seed)).unwrap().distribution_key,
        Some(seed)
    );
    for bad in ["", "short", &"zz".repeat(32), &hex::encode([1u8; 31])] {
        let e = load(bad).err().unwrap().to_string();
        assert!(
            e.contains("distribution_key_file") && e.contains("32 bytes"),
            "{e}"
        );
        assert!(
            bad.len() < 8 || !e.contains(bad),
            "the key is not echoed: {e}"
        );
    }
    assert_eq!(Settings::load(None, &env).unwrap().distribution_key, None);
}
