//! The configuration as JSON gives it, and its assembly into a [`Config`].

use meshauth_wire::JwkSet;
use serde::Deserialize;

use super::routes::{self, RawPolicy, RawRoute};
use super::sync::RawSync;
use super::{
    bad, valid_header_name, valid_token_text, Config, ConfigError, ForwardedClaim,
    DEFAULT_CACHE_ENTRIES, DEFAULT_MAX_TOKEN_BYTES, MAX_SKEW_SECONDS, RESERVED_HEADERS,
};
use crate::claims::ClaimRules;
use crate::jwks::KeySet;
use crate::limits::{LimitsConfig, MAX_CAPACITY};
use crate::rules::RouteTable;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u32,
    #[serde(default)]
    bootstrap_jwks: JwkSet,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_cache_entries")]
    verified_cache_entries: usize,
    #[serde(default)]
    forward_claims: Vec<RawForward>,
    #[serde(default = "default_true")]
    forward_authorization: bool,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_route: RawPolicy,
    #[serde(default)]
    sync: Option<RawSync>,
    #[serde(default)]
    rate_limits: RawLimits,
    #[serde(default = "default_true")]
    reject_ambiguous_paths: bool,
    #[serde(default = "default_reserved_prefix")]
    reserved_header_prefix: String,
}

fn default_reserved_prefix() -> String {
    meshauth_wire::headers::RESERVED_PREFIX.into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_limit_capacity")]
    capacity: u32,
    #[serde(default)]
    headers_on_allow: bool,
    #[serde(default)]
    policies: Vec<meshauth_wire::limits::LimitPolicy>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            capacity: default_limit_capacity(),
            headers_on_allow: false,
            policies: Vec::new(),
        }
    }
}

fn default_limit_capacity() -> u32 {
    crate::limits::DEFAULT_CAPACITY
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    claim: String,
    header: String,
}

fn default_realm() -> String {
    "meshauth".into()
}
fn default_skew() -> u32 {
    30
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_cache_entries() -> usize {
    DEFAULT_CACHE_ENTRIES
}
fn default_true() -> bool {
    true
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        if !valid_token_text(&self.realm) {
            return Err(bad("realm", "must be printable ASCII without quotes"));
        }
        if self.issuer.as_deref().is_some_and(str::is_empty) {
            return Err(bad("issuer", "must not be empty"));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(bad("audiences", "must not contain an empty string"));
        }
        if self.clock_skew_seconds > MAX_SKEW_SECONDS {
            return Err(bad(
                "clock_skew_seconds",
                format!("must be at most {MAX_SKEW_SECONDS}"),
            ));
        }
        if !(256..=64 * 1024).contains(&self.max_token_bytes) {
            return Err(bad("max_token_bytes", "must be between 256 and 65536"));
        }
        if self.verified_cache_entries > 1_000_000 {
            return Err(bad("verified_cache_entries", "must be at most 1000000"));
        }
        let keys = KeySet::from_jwks(&self.bootstrap_jwks)
            .map_err(|e| bad("bootstrap_jwks", e.to_string()))?;
        let mut forward = Vec::with_capacity(self.forward_claims.len());
        for (i, f) in self.forward_claims.into_iter().enumerate() {
            let field = format!("forward_claims[{i}]");
            if !valid_token_text(&f.claim) {
                return Err(bad(format!("{field}.claim"), "must be a claim name"));
            }
            if !valid_header_name(&f.header) || RESERVED_HEADERS.contains(&f.header.as_str()) {
                return Err(bad(
                    format!("{field}.header"),
                    format!(
                        "{:?} is not a lower-case header name the filter may set",
                        f.header
                    ),
                ));
            }
            if forward
                .iter()
                .any(|x: &ForwardedClaim| x.header == f.header)
            {
                return Err(bad(
                    format!("{field}.header"),
                    format!("{:?} is used twice", f.header),
                ));
            }
            forward.push(ForwardedClaim {
                claim: f.claim,
                header: f.header,
            });
        }
        let routes = routes::validate(self.routes)?;
        let sync = match self.sync {
            None => None,
            Some(r) => Some(std::rc::Rc::new(r.validate()?)),
        };
        let l = self.rate_limits;
        if !(1..=MAX_CAPACITY).contains(&l.capacity) {
            return Err(bad(
                "rate_limits.capacity",
                format!("must be between 1 and {MAX_CAPACITY}"),
            ));
        }
        meshauth_wire::limits::validate_all(&l.policies)
            .map_err(|e| bad(format!("rate_limits.policies{}", e.field), e.problem))?;
        if !self.reserved_header_prefix.is_empty()
            && !valid_header_name(&self.reserved_header_prefix)
        {
            return Err(bad(
                "reserved_header_prefix",
                "must be a lower-case header name prefix, or empty",
            ));
        }
        Ok(Config {
            reject_ambiguous_paths: self.reject_ambiguous_paths,
            reserved_header_prefix: self.reserved_header_prefix,
            sync,
            limits: LimitsConfig {
                capacity: l.capacity,
                headers_on_allow: l.headers_on_allow,
                policies: l.policies,
                placement_key: [0; 16],
            },
            realm: self.realm,
            claim_rules: ClaimRules {
                issuer: self.issuer,
                audiences: self.audiences,
                skew_seconds: i64::from(self.clock_skew_seconds),
                max_lifetime: None,
            },
            keys,
            max_token_bytes: self.max_token_bytes,
            cache_entries: self.verified_cache_entries,
            forward,
            forward_authorization: self.forward_authorization,
            routes: RouteTable {
                routes,
                default: self.default_route.validate("default_route")?,
            },
        })
    }
}
