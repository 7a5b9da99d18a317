//! The `sync` section: how the filter reaches the control plane.

use serde::Deserialize;

use super::{bad, ConfigError};
use crate::sync::{BeforeFirst, OnUnconfirmed, SyncConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    distribution_key: String,
    #[serde(default = "default_poll_wait")]
    poll_wait_ms: u64,
    #[serde(default = "default_callout_timeout")]
    callout_timeout_ms: u64,
    #[serde(default = "default_tick")]
    tick_ms: u64,
    #[serde(default)]
    on_unconfirmed: RawOnUnconfirmed,
    #[serde(default)]
    before_first_snapshot: RawBeforeFirst,
    /// The fleet credential sent as `Authorization: Bearer` on every sync call, or the
    /// name of the environment variable that holds it (Envoy passes it to the VM via
    /// `vm_config.environment_variables`).
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    credential_env: Option<String>,
    /// A snapshot issued longer ago than this is refused, so an old one replayed on the
    /// sync path cannot roll a filter back.
    #[serde(default = "default_max_snapshot_age")]
    max_snapshot_age_seconds: u64,
}

fn default_max_snapshot_age() -> u64 {
    crate::sync::DEFAULT_MAX_SNAPSHOT_AGE_SECONDS
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawOnUnconfirmed {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawBeforeFirst {
    #[default]
    Deny,
    Bootstrap,
}

fn default_poll_wait() -> u64 {
    25_000
}
fn default_callout_timeout() -> u64 {
    2_000
}
fn default_tick() -> u64 {
    20
}

impl RawSync {
    pub(super) fn validate(self) -> Result<SyncConfig, ConfigError> {
        if self.cluster.is_empty() {
            return Err(bad(
                "sync.cluster",
                "must name the Envoy cluster of the control plane",
            ));
        }
        let key =
            meshauth_wire::b64::decode_array::<32>(&self.distribution_key).ok_or_else(|| {
                bad(
                    "sync.distribution_key",
                    "must be 32 bytes of base64url (meshauth status shows it)",
                )
            })?;
        let distribution_key = crate::ed25519::PreparedKey::new(key)
            .map_err(|e| bad("sync.distribution_key", e.to_string()))?;
        if !(1_000..=60_000).contains(&self.poll_wait_ms) {
            return Err(bad("sync.poll_wait_ms", "must be between 1000 and 60000"));
        }
        if !(100..=30_000).contains(&self.callout_timeout_ms) {
            return Err(bad(
                "sync.callout_timeout_ms",
                "must be between 100 and 30000",
            ));
        }
        if !(10..=1_000).contains(&self.tick_ms) {
            return Err(bad("sync.tick_ms", "must be between 10 and 1000"));
        }
        let authority = self.authority.unwrap_or_else(|| self.cluster.clone());
        let credential = match (self.credential, self.credential_env) {
            (Some(_), Some(_)) => {
                return Err(bad("sync", "set credential or credential_env, not both"));
            }
            (Some(c), None) => Some(("sync.credential", c)),
            (None, Some(name)) => match std::env::var(&name) {
                Ok(c) => Some(("sync.credential_env", c)),
                Err(_) => {
                    return Err(bad(
                        "sync.credential_env",
                        format!(
                            "environment variable {name:?} is not set in the VM (list it in vm_config.environment_variables)"
                        ),
                    ))
                }
            },
            (None, None) => None,
        };
        let authorization = match credential {
            Some((field, c)) => {
                if c.is_empty() || c.len() > 1024 || !c.bytes().all(|b| b.is_ascii_graphic()) {
                    // Never echo the value: it is a secret.
                    return Err(bad(
                        field,
                        "must be 1-1024 printable ASCII characters without spaces",
                    ));
                }
                Some(crate::sync::Bearer::new(&c))
            }
            None => None,
        };
        let min_age = crate::sync::MIN_MAX_SNAPSHOT_AGE_SECONDS;
        if !(min_age..=30 * 86_400).contains(&self.max_snapshot_age_seconds) {
            return Err(bad(
                "sync.max_snapshot_age_seconds",
                format!("must be between {min_age} and 2592000"),
            ));
        }
        Ok(SyncConfig {
            authorization,
            max_snapshot_age_seconds: i64::try_from(self.max_snapshot_age_seconds)
                .unwrap_or(i64::MAX),
            cluster: self.cluster,
            authority,
            distribution_key,
            poll_wait_ms: self.poll_wait_ms,
            callout_timeout_ms: self.callout_timeout_ms,
            tick_ms: self.tick_ms,
            on_unconfirmed: match self.on_unconfirmed {
                RawOnUnconfirmed::Deny => OnUnconfirmed::Deny,
                RawOnUnconfirmed::Allow => OnUnconfirmed::Allow,
            },
            before_first: match self.before_first_snapshot {
                RawBeforeFirst::Deny => BeforeFirst::Deny,
                RawBeforeFirst::Bootstrap => BeforeFirst::Bootstrap,
            },
        })
    }
}
