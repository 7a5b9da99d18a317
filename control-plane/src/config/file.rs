//! The configuration file as written: what `meshauth serve --config` reads, with the
//! defaults of everything left out.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::store::StoreConfig;

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
    /// The distribution key's private half (32 bytes, hex or base64url; `meshauth init`
    /// writes it): the filters can pin its public half before the first start.
    #[serde(default)]
    pub distribution_key_file: Option<PathBuf>,
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
    /// Trusted external issuers: how many, how their keys are fetched.
    #[serde(default)]
    pub federation: super::FederationConfig,
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
pub(super) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
