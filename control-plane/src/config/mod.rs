//! `meshauth serve` configuration: a TOML file plus environment variables for the
//! secrets, validated at start-up with one clear message per problem.

use std::path::{Path, PathBuf};

use crate::crypto::MasterKey;

mod federation;
mod file;
mod store;
#[cfg(test)]
mod tests;

pub use federation::{FederationConfig, MAX_ISSUERS_CEILING};
pub use file::{FileConfig, KeyConfig, ServerLimits, TokenConfig};
pub use store::{StoreConfig, StoreTarget};

/// A validated configuration with its secrets loaded.
pub struct Settings {
    pub listen: String,
    pub admin_listen: Option<String>,
    pub sync_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub issuer: String,
    pub default_audiences: Vec<String>,
    pub store: StoreTarget,
    pub master_key: MasterKey,
    /// The distribution key's seed from `distribution_key_file`; None: the one in the
    /// store (made at the first start).
    pub distribution_key: Option<[u8; 32]>,
    pub admin_token_hashes: Vec<[u8; 32]>,
    /// Hashes of the fleet credentials; empty refuses every sync call unless
    /// `sync_allow_anonymous`.
    pub sync_credential_hashes: Vec<[u8; 32]>,
    pub sync_allow_anonymous: bool,
    pub tokens: TokenConfig,
    pub keys: KeyConfig,
    pub filter_wasm: Option<PathBuf>,
    pub server: ServerLimits,
    pub federation: FederationConfig,
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
        let store = store::resolve(file.store, env)?;
        let master_text = match (env("MESHAUTH_MASTER_KEY"), &file.master_key_file) {
            (Some(k), _) => k,
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| ConfigError::File(f.display().to_string(), e.to_string()))?,
            (None, None) => return Err(ConfigError::NoMasterKey),
        };
        let master_key = MasterKey::parse(&master_text)
            .map_err(|e| ConfigError::Invalid(format!("master key: {e}")))?;
        let distribution_key = match &file.distribution_key_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| ConfigError::File(f.display().to_string(), e.to_string()))?;
                Some(crate::crypto::parse_key32(&text).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "distribution_key_file {}: want 32 bytes, hex or base64url",
                        f.display()
                    ))
                })?)
            }
            None => None,
        };
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
        file.federation.validate()?;
        Ok(Settings {
            listen,
            admin_listen,
            sync_listen,
            metrics_listen,
            issuer,
            default_audiences: file.default_audiences,
            store,
            master_key,
            distribution_key,
            admin_token_hashes,
            sync_credential_hashes,
            sync_allow_anonymous: file.sync_allow_anonymous,
            tokens: file.tokens,
            keys: file.keys,
            filter_wasm: env("MESHAUTH_FILTER_WASM")
                .map(PathBuf::from)
                .or(file.filter_wasm),
            server: file.server,
            federation: file.federation,
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
}
