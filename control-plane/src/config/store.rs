//! Where the data lives: the file's `[store]` with the environment's overrides (the
//! chart passes Redis addresses and passwords as Secrets), resolved to one
//! `StoreTarget`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::store::redis::RedisTarget;

use super::ConfigError;

/// The store `meshauth serve` opens.
#[derive(Debug, Clone)]
pub enum StoreTarget {
    /// One file on local disk, for a single replica.
    Embedded { path: PathBuf },
    /// A shared Redis (or Sentinel set); every key under `namespace`.
    Redis {
        target: RedisTarget,
        namespace: String,
        /// Replicas that must hold each write before it is acknowledged (Redis `WAIT`).
        replica_acks: u32,
    },
}

fn default_namespace() -> String {
    "meshauth".into()
}

/// The file's store, overridden by the environment: `MESHAUTH_REDIS_SENTINELS`,
/// `MESHAUTH_REDIS_URL` or `MESHAUTH_DATA_FILE` say where; the file's other Redis
/// settings still apply.
pub(super) fn resolve(
    file: StoreConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreTarget, ConfigError> {
    let sentinels = env("MESHAUTH_REDIS_SENTINELS").filter(|s| !s.is_empty());
    let (file_namespace, file_acks) = match &file {
        StoreConfig::Redis {
            namespace,
            replica_acks,
            ..
        } => (namespace.clone(), *replica_acks),
        StoreConfig::Embedded { .. } => (default_namespace(), None),
    };
    let namespace = env("MESHAUTH_REDIS_NAMESPACE").unwrap_or(file_namespace);
    let config = match (env("MESHAUTH_REDIS_URL"), env("MESHAUTH_DATA_FILE")) {
        _ if sentinels.is_some() => StoreConfig::Redis {
            url: None,
            sentinels: sentinels
                .iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            master_name: env("MESHAUTH_REDIS_MASTER_NAME"),
            namespace,
            replica_acks: file_acks,
        },
        (Some(url), _) => StoreConfig::Redis {
            url: Some(url),
            sentinels: Vec::new(),
            master_name: None,
            namespace,
            replica_acks: file_acks,
        },
        (None, Some(path)) => StoreConfig::Embedded {
            path: PathBuf::from(path),
        },
        (None, None) => file,
    };
    Ok(match config.redis_target(env)? {
        Some((target, replica_acks)) => StoreTarget::Redis {
            target,
            namespace: match config {
                StoreConfig::Redis { namespace, .. } => namespace,
                StoreConfig::Embedded { .. } => default_namespace(),
            },
            replica_acks,
        },
        None => match config {
            StoreConfig::Embedded { path } => StoreTarget::Embedded { path },
            // `redis_target` answers every Redis configuration or refuses it.
            StoreConfig::Redis { .. } => {
                return Err(ConfigError::Invalid("store: redis without a target".into()))
            }
        },
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    Embedded {
        path: PathBuf,
    },
    Redis {
        /// A single Redis (or a proxy in front of one): `redis://host:6379`.
        #[serde(default)]
        url: Option<String>,
        /// Sentinel instead: `host:port` of each sentinel, and the master's name.
        #[serde(default)]
        sentinels: Vec<String>,
        #[serde(default)]
        master_name: Option<String>,
        #[serde(default = "default_namespace")]
        namespace: String,
        /// Replicas that must hold each write before it is acknowledged (Redis `WAIT`);
        /// default 1 with Sentinel (a failover loses nothing acknowledged), 0 otherwise.
        #[serde(default)]
        replica_acks: Option<u32>,
    },
}

impl StoreConfig {
    /// Where Redis lives, checked: exactly one of `url` and `sentinels` + `master_name`.
    /// Passwords come from the environment (`MESHAUTH_REDIS_PASSWORD`,
    /// `MESHAUTH_REDIS_SENTINEL_PASSWORD`), never from the file; with `url`,
    /// `MESHAUTH_REDIS_PASSWORD` replaces any password in the URL.
    fn redis_target(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(crate::store::redis::RedisTarget, u32)>, ConfigError> {
        use crate::store::redis::RedisTarget;
        let StoreConfig::Redis {
            url,
            sentinels,
            master_name,
            replica_acks,
            ..
        } = self
        else {
            return Ok(None);
        };
        match (url, sentinels.is_empty(), master_name) {
            (Some(url), true, None) => {
                let url = match env("MESHAUTH_REDIS_PASSWORD").filter(|p| !p.is_empty()) {
                    Some(password) => url_with_password(url, &password)?,
                    None => url.clone(),
                };
                Ok(Some((RedisTarget::Url(url), replica_acks.unwrap_or(0))))
            }
            (None, false, Some(name)) if !name.is_empty() => {
                if let Some(bad) = sentinels.iter().find(|s| {
                    s.rsplit_once(':')
                        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                }) {
                    return Err(ConfigError::Invalid(format!(
                        "store.sentinels: {bad:?} is not host:port"
                    )));
                }
                Ok(Some((
                    RedisTarget::Sentinel {
                        sentinels: sentinels.clone(),
                        master_name: name.clone(),
                        password: env("MESHAUTH_REDIS_PASSWORD").filter(|p| !p.is_empty()),
                        sentinel_password: env("MESHAUTH_REDIS_SENTINEL_PASSWORD")
                            .filter(|p| !p.is_empty()),
                    },
                    replica_acks.unwrap_or(1),
                )))
            }
            _ => Err(ConfigError::Invalid(
                "store: kind = \"redis\" needs either url, or sentinels and master_name".into(),
            )),
        }
    }
}

/// `url` with `password` as its password, percent-encoded so that `@ / # % :` and any
/// other byte survive (the Redis client decodes it); a user name in the URL is kept.
fn url_with_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::Invalid("store.url: not a redis:// or rediss:// URL".into());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "redis" && scheme != "rediss" {
        return Err(bad());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or(""), host),
        None => ("", authority),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}{tail}"))
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {
            path: PathBuf::from("meshauth-data/meshauth.redb"),
        }
    }
}
