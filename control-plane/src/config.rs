//! `meshauth serve` configuration: a TOML file plus environment variables for the
//! secrets, validated at start-up with one clear message per problem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::MasterKey;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// When set, `/admin/*` is served only on this address, not on `listen` (so a
    /// network policy can keep it apart from the public OAuth/JWKS port).
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// When set, `/sync/v1/*` and `/filter/*` (what the filters fetch) only here.
    #[serde(default)]
    pub sync_listen: Option<String>,
    /// When set, `/metrics` only here.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// The `iss` of every token and the base of the discovery documents.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default = "default_audiences")]
    pub default_audiences: Vec<String>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// SHA-256 (hex) of each admin bearer token.
    #[serde(default)]
    pub admin_token_sha256: Vec<String>,
    /// A file with more such hashes, one a line (e.g. a mounted Kubernetes Secret).
    #[serde(default)]
    pub admin_token_sha256_file: Option<PathBuf>,
    /// SHA-256 (hex) of the fleet credential filters present on `/sync/v1/*`; two at
    /// most, so a new one can be rolled out before the old one is dropped.
    #[serde(default)]
    pub sync_credential_sha256: Vec<String>,
    /// A file with more such hashes, one a line.
    #[serde(default)]
    pub sync_credential_sha256_file: Option<PathBuf>,
    /// Serve `/sync/v1/*` without a credential. Insecure (anyone reaching the control
    /// plane reads revocations and limits and registers filters); for tests only.
    #[serde(default)]
    pub sync_allow_anonymous: bool,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub keys: KeyConfig,
    /// The filter's `.wasm`, served at `/filter/meshauth.wasm` (for Istio's WasmPlugin).
    #[serde(default)]
    pub filter_wasm: Option<PathBuf>,
    /// Read timeouts and caps on connections, long polls and failed authentication.
    #[serde(default)]
    pub server: ServerLimits,
}

/// Protection of the HTTP server against slow, many and failing clients. A "source" is
/// a peer IP address (behind a proxy that is the proxy's address).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// A request's headers must arrive within this; else the connection is closed.
    #[serde(default = "d_read_timeout", with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this; else 408.
    #[serde(default = "d_read_timeout", with = "humantime_serde_compat")]
    pub body_read_timeout: Duration,
    /// The largest request head (request line and headers), in bytes; larger is 431.
    #[serde(default = "d_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Open connections at most, and from one source at most; more are closed at once.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    #[serde(default = "d_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Sync long polls parked at once, and from one source; more are answered 503.
    #[serde(default = "d_max_long_polls")]
    pub max_long_polls: usize,
    #[serde(default = "d_max_long_polls_per_source")]
    pub max_long_polls_per_source: usize,
    /// Failed authentications one credential (client id and secret, bearer) may make from
    /// a source in a burst, and a source four times that (`SOURCE_BURST_FACTOR`); one
    /// more is allowed every `auth_failure_interval`; past that, 429 with Retry-After.
    #[serde(default = "d_auth_failure_burst")]
    pub auth_failure_burst: u32,
    #[serde(default = "d_auth_failure_interval", with = "humantime_serde_compat")]
    pub auth_failure_interval: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: d_read_timeout(),
            body_read_timeout: d_read_timeout(),
            max_header_bytes: d_max_header_bytes(),
            max_connections: d_max_connections(),
            max_connections_per_source: d_max_connections_per_source(),
            max_long_polls: d_max_long_polls(),
            max_long_polls_per_source: d_max_long_polls_per_source(),
            auth_failure_burst: d_auth_failure_burst(),
            auth_failure_interval: d_auth_failure_interval(),
        }
    }
}

fn d_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_max_header_bytes() -> usize {
    16 * 1024
}
fn d_max_connections() -> usize {
    4096
}
fn d_max_connections_per_source() -> usize {
    256
}
fn d_max_long_polls() -> usize {
    2048
}
fn d_max_long_polls_per_source() -> usize {
    64
}
fn d_auth_failure_burst() -> u32 {
    20
}
fn d_auth_failure_interval() -> Duration {
    Duration::from_secs(3)
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
    pub fn redis_target(
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "d_access", with = "humantime_serde_compat")]
    pub access_ttl: Duration,
    #[serde(default = "d_m2m", with = "humantime_serde_compat")]
    pub client_credentials_ttl: Duration,
    #[serde(default = "d_refresh", with = "humantime_serde_compat")]
    pub refresh_ttl: Duration,
    /// The longest access-token TTL an admin may ask for.
    #[serde(default = "d_max", with = "humantime_serde_compat")]
    pub max_access_ttl: Duration,
    /// For this long after a refresh token is used, using it again gives the same
    /// answer instead of counting as reuse, so a client whose answer was lost (or that
    /// got a 503 for an unreplicated write) can retry. `0s` turns it off.
    #[serde(default = "d_retry_grace", with = "humantime_serde_compat")]
    pub refresh_retry_grace: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            access_ttl: d_access(),
            client_credentials_ttl: d_m2m(),
            refresh_ttl: d_refresh(),
            max_access_ttl: d_max(),
            refresh_retry_grace: d_retry_grace(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default = "d_rotation", with = "humantime_serde_compat")]
    pub rotation_interval: Duration,
    #[serde(default = "d_jwks_max_age", with = "humantime_serde_compat")]
    pub jwks_max_age: Duration,
    #[serde(default = "d_skew", with = "humantime_serde_compat")]
    pub clock_skew: Duration,
    /// How often each replica checks the schedule and reloads the keyring.
    #[serde(default = "d_tick", with = "humantime_serde_compat")]
    pub check_interval: Duration,
    /// How long past its pre-publication a new key waits for connected filters to
    /// apply it before it signs anyway (`meshauth_key_activations_forced_total`).
    #[serde(default = "d_activation_wait", with = "humantime_serde_compat")]
    pub max_activation_wait: Duration,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            rotation_interval: d_rotation(),
            jwks_max_age: d_jwks_max_age(),
            clock_skew: d_skew(),
            check_interval: d_tick(),
            max_activation_wait: d_activation_wait(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_audiences() -> Vec<String> {
    vec!["api".into()]
}
fn default_namespace() -> String {
    "meshauth".into()
}
fn d_access() -> Duration {
    Duration::from_secs(600)
}
fn d_m2m() -> Duration {
    Duration::from_secs(1800)
}
fn d_refresh() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn d_retry_grace() -> Duration {
    Duration::from_secs(10)
}
fn d_max() -> Duration {
    Duration::from_secs(3600)
}
fn d_rotation() -> Duration {
    Duration::from_secs(86_400)
}
fn d_jwks_max_age() -> Duration {
    Duration::from_secs(300)
}
fn d_skew() -> Duration {
    Duration::from_secs(30)
}
fn d_activation_wait() -> Duration {
    Duration::from_secs(300)
}
fn d_tick() -> Duration {
    Duration::from_secs(5)
}

/// Durations as humantime strings ("10m", "14d").
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated configuration with its secrets loaded.
pub struct Settings {
    pub listen: String,
    pub admin_listen: Option<String>,
    pub sync_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub issuer: String,
    pub default_audiences: Vec<String>,
    pub store: StoreConfig,
    /// For `kind = "redis"`: where it is (with passwords) and the replica acks per write.
    pub redis: Option<(crate::store::redis::RedisTarget, u32)>,
    pub master_key: MasterKey,
    pub admin_token_hashes: Vec<[u8; 32]>,
    /// Hashes of the fleet credentials; empty refuses every sync call unless
    /// `sync_allow_anonymous`.
    pub sync_credential_hashes: Vec<[u8; 32]>,
    pub sync_allow_anonymous: bool,
    pub tokens: TokenConfig,
    pub keys: KeyConfig,
    pub filter_wasm: Option<PathBuf>,
    pub server: ServerLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: {1}")]
    File(String, String),
    #[error("no master key: set MESHAUTH_MASTER_KEY or master_key_file (32 random bytes, hex or base64url; e.g. `openssl rand -hex 32`)")]
    NoMasterKey,
    #[error("{0}")]
    Invalid(String),
}

/// Hex SHA-256 hashes from the file's list, a file (one a line) and a comma-separated
/// environment variable.
fn hashes(
    what: &str,
    mut text: Vec<String>,
    file: Option<&Path>,
    env_value: Option<String>,
) -> Result<Vec<[u8; 32]>, ConfigError> {
    if let Some(f) = file {
        let content = std::fs::read_to_string(f)
            .map_err(|e| ConfigError::File(f.display().to_string(), e.to_string()))?;
        text.extend(content.split_whitespace().map(str::to_owned));
    }
    if let Some(h) = env_value {
        text.extend(
            h.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    let mut out: Vec<[u8; 32]> = Vec::new();
    for h in text {
        let bytes = hex::decode(&h)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ConfigError::Invalid(format!("{what}: each entry must be 64 hex digits"))
            })?;
        if !out.contains(&bytes) {
            out.push(bytes);
        }
    }
    Ok(out)
}

impl Settings {
    /// Loads `path` (or defaults) and the secrets from the environment.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let file: FileConfig = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::File(p.display().to_string(), e.to_string()))?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError::File(p.display().to_string(), e.to_string()))?
            }
            None => toml::from_str("").map_err(|e| ConfigError::Invalid(e.to_string()))?,
        };
        let listen = env("MESHAUTH_LISTEN").unwrap_or(file.listen);
        // An empty variable means "not separate" (the chart may pass one through).
        let separate =
            |var: &str, file: Option<String>| env(var).or(file).filter(|a| !a.trim().is_empty());
        let admin_listen = separate("MESHAUTH_ADMIN_LISTEN", file.admin_listen);
        let sync_listen = separate("MESHAUTH_SYNC_LISTEN", file.sync_listen);
        let metrics_listen = separate("MESHAUTH_METRICS_LISTEN", file.metrics_listen);
        let sentinels = env("MESHAUTH_REDIS_SENTINELS").filter(|s| !s.is_empty());
        // Where Redis is may come from the environment (the chart's Secrets); the file's
        // other Redis settings still apply.
        let (file_namespace, file_acks) = match &file.store {
            StoreConfig::Redis {
                namespace,
                replica_acks,
                ..
            } => (namespace.clone(), *replica_acks),
            StoreConfig::Embedded { .. } => (default_namespace(), None),
        };
        let namespace = env("MESHAUTH_REDIS_NAMESPACE").unwrap_or(file_namespace);
        let store = match (env("MESHAUTH_REDIS_URL"), env("MESHAUTH_DATA_FILE")) {
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
            (None, None) => file.store,
        };
        let master_text = match (env("MESHAUTH_MASTER_KEY"), &file.master_key_file) {
            (Some(k), _) => k,
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| ConfigError::File(f.display().to_string(), e.to_string()))?,
            (None, None) => return Err(ConfigError::NoMasterKey),
        };
        let master_key = MasterKey::parse(&master_text)
            .map_err(|e| ConfigError::Invalid(format!("master key: {e}")))?;
        let admin_token_hashes = hashes(
            "admin_token_sha256",
            file.admin_token_sha256,
            file.admin_token_sha256_file.as_deref(),
            env("MESHAUTH_ADMIN_TOKEN_SHA256"),
        )?;
        let sync_credential_hashes = hashes(
            "sync_credential_sha256",
            file.sync_credential_sha256,
            file.sync_credential_sha256_file.as_deref(),
            env("MESHAUTH_SYNC_CREDENTIAL_SHA256"),
        )?;
        if sync_credential_hashes.len() > 2 {
            return Err(ConfigError::Invalid(
                "sync_credential_sha256: at most two credentials are valid at once (the current one and the next)".into(),
            ));
        }
        let issuer = env("MESHAUTH_ISSUER")
            .or(file.issuer)
            .unwrap_or_else(|| format!("http://{listen}"));
        if issuer.is_empty() || issuer.ends_with('/') {
            return Err(ConfigError::Invalid(
                "issuer: must be a URL without a trailing slash".into(),
            ));
        }
        let t = &file.tokens;
        if t.access_ttl.is_zero() || t.client_credentials_ttl.is_zero() || t.refresh_ttl.is_zero() {
            return Err(ConfigError::Invalid("tokens: TTLs must be positive".into()));
        }
        if t.access_ttl > t.max_access_ttl || t.client_credentials_ttl > t.max_access_ttl {
            return Err(ConfigError::Invalid(
                "tokens: access_ttl and client_credentials_ttl must not exceed max_access_ttl"
                    .into(),
            ));
        }
        let k = &file.keys;
        if k.rotation_interval <= k.jwks_max_age + k.clock_skew {
            return Err(ConfigError::Invalid(
                "keys: rotation_interval must exceed jwks_max_age + clock_skew".into(),
            ));
        }
        if k.check_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "keys: check_interval must be positive".into(),
            ));
        }
        if file.default_audiences.is_empty() {
            return Err(ConfigError::Invalid(
                "default_audiences: list at least one".into(),
            ));
        }
        let l = &file.server;
        if l.header_read_timeout.is_zero()
            || l.body_read_timeout.is_zero()
            || l.auth_failure_interval.is_zero()
        {
            return Err(ConfigError::Invalid(
                "server: timeouts and auth_failure_interval must be positive".into(),
            ));
        }
        if l.max_header_bytes < 8192
            || l.max_connections == 0
            || l.max_connections_per_source == 0
            || l.max_long_polls == 0
            || l.max_long_polls_per_source == 0
            || l.auth_failure_burst == 0
        {
            return Err(ConfigError::Invalid(
                "server: max_header_bytes must be at least 8192 and every cap positive".into(),
            ));
        }
        let redis = store.redis_target(env)?;
        Ok(Settings {
            listen,
            admin_listen,
            sync_listen,
            metrics_listen,
            issuer,
            default_audiences: file.default_audiences,
            redis,
            store,
            master_key,
            admin_token_hashes,
            sync_credential_hashes,
            sync_allow_anonymous: file.sync_allow_anonymous,
            tokens: file.tokens,
            keys: file.keys,
            filter_wasm: env("MESHAUTH_FILTER_WASM")
                .map(PathBuf::from)
                .or(file.filter_wasm),
            server: file.server,
        })
    }

    /// How long past `exp` a revoked `jti` is kept and sent to filters: a filter admits
    /// a token until `exp` plus its own skew, which may be up to
    /// `MAX_CLOCK_SKEW_SECONDS` whatever the control plane's `clock_skew` says.
    pub fn revocation_skew(&self) -> i64 {
        i64::try_from(self.keys.clock_skew.as_secs())
            .unwrap_or(0)
            .max(meshauth_wire::sync::MAX_CLOCK_SKEW_SECONDS)
    }

    /// How long a subject/session/client rule is kept past its `not_before`: the longest
    /// token lifetime plus `revocation_skew`.
    pub fn revocation_horizon(&self) -> i64 {
        let ttl = self
            .tokens
            .max_access_ttl
            .max(self.tokens.client_credentials_ttl)
            .as_secs();
        i64::try_from(ttl).unwrap_or(i64::MAX / 4) + self.revocation_skew()
    }

    pub fn lifecycle(&self) -> crate::keys::LifecyclePolicy {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        let skew = secs(self.keys.clock_skew);
        crate::keys::LifecyclePolicy {
            rotation_interval: secs(self.keys.rotation_interval),
            prepublish: secs(self.keys.jwks_max_age) + skew,
            retention: secs(
                self.tokens
                    .max_access_ttl
                    .max(self.tokens.client_credentials_ttl),
            ) + skew,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
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
        let p = s.lifecycle();
        assert_eq!((p.prepublish, p.retention), (330, 3630));
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
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = 5\n").unwrap();
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
            let loaded = Settings::load(Some(&f), &env).map(|s| s.redis);
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
            let Some((RedisTarget::Url(got), 0)) = Settings::load(Some(&f), &env).unwrap().redis
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
        let Some((RedisTarget::Url(got), 0)) = Settings::load(Some(&f), &env).unwrap().redis else {
            panic!("not a url target")
        };
        assert_eq!(got, "redis://h:1/2", "no password, the URL as given");
    }

    #[test]
    fn separate_listeners_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "admin_listen = \"127.0.0.1:9001\"\n").unwrap();
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
}
