//! The filter's plugin configuration (JSON), validated on load into types that
//! can't hold a bad state. Every error names the field it is about.
//!
//! `raw` holds the JSON shape and assembles a [`Config`]; `routes` and `sync` validate
//! their sections.

use crate::claims::ClaimRules;
use crate::jwks::KeySet;
use crate::limits::LimitsConfig;
use crate::rules::RouteTable;
use crate::sync::SyncConfig;

mod raw;
mod routes;
mod sync;

pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
/// One limit for both halves: the control plane keeps revocations this long past `exp`.
pub(super) const MAX_SKEW_SECONDS: u32 = {
    let max = meshauth_wire::sync::MAX_CLOCK_SKEW_SECONDS;
    assert!(max > 0 && max <= u32::MAX as i64);
    max as u32
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

pub(super) fn bad(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A header the filter writes upstream with a claim's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedClaim {
    pub claim: String,
    pub header: String,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub claim_rules: ClaimRules,
    pub keys: KeySet,
    pub max_token_bytes: usize,
    pub cache_entries: usize,
    pub forward: Vec<ForwardedClaim>,
    pub forward_authorization: bool,
    pub routes: RouteTable,
    /// Live keys and revocations from the control plane; `None`: bootstrap keys only.
    pub sync: Option<std::rc::Rc<SyncConfig>>,
    /// Rate-limit defaults; the control plane's policies join them.
    pub limits: LimitsConfig,
    /// Refuse (400) paths that could route differently once normalised (`crate::path`).
    pub reject_ambiguous_paths: bool,
    /// Client headers under this prefix (any spelling) never reach the upstream.
    pub reserved_header_prefix: String,
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            bad(
                // The root (and a field whose name is empty) has no path of its own.
                if path == "." || path.is_empty() {
                    "config".into()
                } else {
                    path
                },
                e.into_inner().to_string(),
            )
        })?;
        raw.validate()
    }
}

pub(super) fn valid_header_name(h: &str) -> bool {
    meshauth_wire::headers::is_lower_name(h)
}

/// Headers the filter must never overwrite from a claim.
pub(super) const RESERVED_HEADERS: [&str; 9] = meshauth_wire::headers::NEVER_FROM_CLAIM;

pub(super) fn valid_token_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests;
