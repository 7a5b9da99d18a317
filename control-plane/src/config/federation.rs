//! `[federation]`: trusted external issuers and how their keys are fetched.

use std::time::Duration;

use serde::Deserialize;

use super::file::humantime_serde_compat;
use super::ConfigError;

/// The most issuers any configuration may allow (`max_issuers` is at most this).
pub const MAX_ISSUERS_CEILING: usize = meshauth_wire::federation::MAX_ISSUERS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Accept `http://` discovery and JWKS URLs. Anyone on the path can then swap the
    /// keys: for tests against a loopback provider only.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Trusted issuers at most.
    #[serde(default = "d_max_issuers")]
    pub max_issuers: usize,
    /// A key set is refetched no sooner than this after a fetch, whatever its
    /// `Cache-Control: max-age` says...
    #[serde(default = "d_cache_floor", with = "humantime_serde_compat")]
    pub cache_floor: Duration,
    /// ...and no later than this.
    #[serde(default = "d_cache_ceiling", with = "humantime_serde_compat")]
    pub cache_ceiling: Duration,
    /// One fetch (connect, headers and body) must end within this.
    #[serde(default = "d_fetch_timeout", with = "humantime_serde_compat")]
    pub fetch_timeout: Duration,
    /// A filter's report of an unknown `kid` fetches the issuer's keys at once, whatever
    /// their cache lifetime, but at most once per this (per issuer and replica).
    #[serde(default = "d_refetch_interval", with = "humantime_serde_compat")]
    pub refetch_on_unknown_kid_interval: Duration,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            allow_insecure_http: false,
            max_issuers: d_max_issuers(),
            cache_floor: d_cache_floor(),
            cache_ceiling: d_cache_ceiling(),
            fetch_timeout: d_fetch_timeout(),
            refetch_on_unknown_kid_interval: d_refetch_interval(),
        }
    }
}

impl FederationConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("federation: {m}")));
        if !(1..=MAX_ISSUERS_CEILING).contains(&self.max_issuers) {
            return bad(&format!("max_issuers must be 1 to {MAX_ISSUERS_CEILING}"));
        }
        if self.cache_floor < Duration::from_secs(1) || self.cache_floor > self.cache_ceiling {
            return bad("cache_floor must be at least 1s and at most cache_ceiling");
        }
        if self.cache_ceiling > Duration::from_secs(86_400) {
            return bad("cache_ceiling must be at most 24h");
        }
        if self.fetch_timeout < Duration::from_millis(100)
            || self.fetch_timeout > Duration::from_secs(60)
        {
            return bad("fetch_timeout must be 100ms to 60s");
        }
        if self.refetch_on_unknown_kid_interval < Duration::from_secs(1)
            || self.refetch_on_unknown_kid_interval > Duration::from_secs(3_600)
        {
            return bad("refetch_on_unknown_kid_interval must be 1s to 1h");
        }
        Ok(())
    }

    /// `refetch_on_unknown_kid_interval` in whole seconds (the fetch loop's clock),
    /// rounded up so a refetch never comes sooner than configured.
    pub fn refetch_interval_seconds(&self) -> i64 {
        let d = self.refetch_on_unknown_kid_interval;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }
}

fn d_max_issuers() -> usize {
    32
}
fn d_cache_floor() -> Duration {
    Duration::from_secs(60)
}
fn d_cache_ceiling() -> Duration {
    Duration::from_secs(3600)
}
fn d_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
fn d_refetch_interval() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reads_durations_and_refuses_unknown_keys() {
        let c: FederationConfig =
            toml::from_str("allow_insecure_http = true\ncache_floor = \"2m\"").unwrap_or_default();
        assert!(c.allow_insecure_http);
        assert_eq!(c.cache_floor, Duration::from_secs(120));
        assert_eq!(c.max_issuers, 32);
        assert_eq!(c.refetch_interval_seconds(), 5);
        let c: FederationConfig =
            toml::from_str("refetch_on_unknown_kid_interval = \"1500ms\"").unwrap_or_default();
        assert_eq!(c.refetch_interval_seconds(), 2, "rounded up");
        assert!(toml::from_str::<FederationConfig>("allow_http = true").is_err());
    }

    #[test]
    fn bounds_are_checked() {
        assert!(FederationConfig::default().validate().is_ok());
        assert!(!FederationConfig::default().allow_insecure_http);
        for bad in [
            FederationConfig {
                max_issuers: 0,
                ..Default::default()
            },
            FederationConfig {
                max_issuers: MAX_ISSUERS_CEILING + 1,
                ..Default::default()
            },
            FederationConfig {
                cache_floor: Duration::from_secs(7200),
                ..Default::default()
            },
            FederationConfig {
                cache_floor: Duration::ZERO,
                ..Default::default()
            },
            FederationConfig {
                cache_ceiling: Duration::from_secs(86_401),
                ..Default::default()
            },
            FederationConfig {
                fetch_timeout: Duration::from_secs(61),
                ..Default::default()
            },
            FederationConfig {
                refetch_on_unknown_kid_interval: Duration::from_millis(999),
                ..Default::default()
            },
            FederationConfig {
                refetch_on_unknown_kid_interval: Duration::from_secs(3_601),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
