//! The filter's plugin configuration (JSON), validated on load into types that
//! can't hold a bad state. Every error names the field it is about.

use std::collections::BTreeMap;

use meshauth_wire::JwkSet;
use serde::Deserialize;

use crate::claims::ClaimRules;
use crate::jwks::KeySet;
use crate::limits::{LimitsConfig, MAX_CAPACITY};
use crate::rules::{PathMatch, Policy, Requirements, Route, RouteTable, ScopeRule};
use crate::sync::{BeforeFirst, OnUnconfirmed, SyncConfig};

pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
/// One limit for both halves: the control plane keeps revocations this long past `exp`.
const MAX_SKEW_SECONDS: u32 = {
    let max = meshauth_wire::sync::MAX_CLOCK_SKEW_SECONDS;
    assert!(max > 0 && max <= u32::MAX as i64);
    max as u32
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
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
    "x-meshauth-".into()
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
struct RawSync {
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
enum RawOnUnconfirmed {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawBeforeFirst {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    claim: String,
    header: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    path_exact: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    /// Default: on.
    #[serde(default)]
    ignore_case: Option<bool>,
    #[serde(default)]
    auth: AuthMode,
    #[serde(default)]
    scopes_all: Option<Vec<String>>,
    #[serde(default)]
    scopes_any: Option<Vec<String>>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AuthMode {
    Anonymous,
    #[default]
    Token,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    auth: AuthMode,
    #[serde(default)]
    scopes_all: Option<Vec<String>>,
    #[serde(default)]
    scopes_any: Option<Vec<String>>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
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

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Headers the filter must never overwrite from a claim.
const RESERVED_HEADERS: [&str; 9] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "x-request-id",
];

fn valid_token_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl RawPolicy {
    fn validate(self, field: &str) -> Result<Policy, ConfigError> {
        let RawPolicy {
            auth,
            scopes_all,
            scopes_any,
            claims,
        } = self;
        if auth == AuthMode::Anonymous {
            if scopes_all.is_some() || scopes_any.is_some() || !claims.is_empty() {
                return Err(bad(
                    field,
                    "an anonymous route cannot require scopes or claims",
                ));
            }
            return Ok(Policy::Anonymous);
        }
        let scope_list = |name: &str, list: Vec<String>| -> Result<Vec<String>, ConfigError> {
            if list.is_empty() {
                return Err(bad(
                    format!("{field}.{name}"),
                    "must list at least one scope",
                ));
            }
            if let Some(s) = list.iter().find(|s| !valid_token_text(s)) {
                return Err(bad(
                    format!("{field}.{name}"),
                    format!("{s:?} is not a valid scope"),
                ));
            }
            Ok(list)
        };
        let scopes = match (scopes_all, scopes_any) {
            (Some(_), Some(_)) => {
                return Err(bad(field, "set scopes_all or scopes_any, not both"));
            }
            (Some(all), None) => Some(ScopeRule::All(scope_list("scopes_all", all)?)),
            (None, Some(any)) => Some(ScopeRule::Any(scope_list("scopes_any", any)?)),
            (None, None) => None,
        };
        let mut required = Vec::with_capacity(claims.len());
        for (claim, values) in claims {
            if !valid_token_text(&claim) {
                return Err(bad(
                    format!("{field}.claims"),
                    format!("{claim:?} is not a valid claim name"),
                ));
            }
            if values.is_empty() {
                return Err(bad(
                    format!("{field}.claims.{claim}"),
                    "must list at least one value",
                ));
            }
            required.push((claim, values));
        }
        Ok(Policy::Token(Requirements {
            scopes,
            claims: required,
        }))
    }
}

impl RawSync {
    fn validate(self) -> Result<SyncConfig, ConfigError> {
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

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
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
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            let (path, ignore_case) = match (r.path_exact, r.path_prefix) {
                (Some(p), None) => (PathMatch::Exact(p), r.ignore_case.unwrap_or(true)),
                (None, Some(p)) => (PathMatch::Prefix(p), r.ignore_case.unwrap_or(true)),
                _ => return Err(bad(&field, "set exactly one of path_exact and path_prefix")),
            };
            let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &path;
            if !p.starts_with('/') {
                return Err(bad(&field, "paths start with '/'"));
            }
            let methods = match r.methods {
                Some(ms) if ms.is_empty() => {
                    return Err(bad(
                        format!("{field}.methods"),
                        "omit it to match any method, or list at least one",
                    ));
                }
                Some(ms) => {
                    if let Some(m) = ms
                        .iter()
                        .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
                    {
                        return Err(bad(
                            format!("{field}.methods"),
                            format!("{m:?} is not an HTTP method"),
                        ));
                    }
                    Some(ms.into_iter().map(|m| m.to_ascii_uppercase()).collect())
                }
                None => None,
            };
            let name = r.name.unwrap_or_else(|| format!("route-{i}"));
            let policy = RawPolicy {
                auth: r.auth,
                scopes_all: r.scopes_all,
                scopes_any: r.scopes_any,
                claims: r.claims,
            };
            routes.push(Route {
                name,
                path,
                methods,
                ignore_case,
                policy: policy.validate(&field)?,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_fails_closed() {
        let c = Config::from_json(b"{}").unwrap();
        assert!(c.keys.is_empty());
        assert_eq!(c.routes.default, Policy::Token(Requirements::default()));
        assert!(c.forward_authorization);
    }

    #[test]
    fn rate_limits_are_validated_with_their_path() {
        let c = Config::from_json(
            br#"{"rate_limits":{"capacity":1024,"headers_on_allow":true,"policies":[
                {"name":"p","key":["claim:sub"],"rate":5,"burst":5}]}}"#,
        )
        .unwrap();
        assert_eq!(c.limits.capacity, 1024);
        assert!(c.limits.headers_on_allow);
        assert_eq!(c.limits.policies.len(), 1);
        assert_eq!(Config::from_json(b"{}").unwrap().limits.capacity, 65_536);
        let e = err(r#"{"rate_limits":{"capacity":0}}"#);
        assert!(e.starts_with("rate_limits.capacity:"), "{e}");
        let e = err(
            r#"{"rate_limits":{"policies":[{"name":"p","key":["route"],"rate":1,"burst":0}]}}"#,
        );
        assert!(e.starts_with("rate_limits.policies[0].burst:"), "{e}");
        let e =
            err(r#"{"rate_limits":{"policies":[{"name":"p","key":["ip"],"rate":1,"burst":1}]}}"#);
        assert!(e.contains("unknown key part"), "{e}");
        let e = err(r#"{"rate_limits":{"size":3}}"#);
        assert!(e.contains("unknown field"), "{e}");
        // Found by the fuzz tests: a field with an empty name still gets a path.
        let e = err(r#"{"":1}"#);
        assert!(e.starts_with("config: unknown field"), "{e}");
    }

    #[test]
    fn the_fleet_credential_comes_from_the_config_or_the_environment() {
        let key = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let with = |extra: &str| {
            Config::from_json(
                format!(r#"{{"sync":{{"cluster":"cp","distribution_key":"{key}"{extra}}}}}"#)
                    .as_bytes(),
            )
        };
        let c = with(r#","credential":"s3cret-fleet""#).unwrap();
        let sync = c.sync.unwrap();
        assert_eq!(
            sync.authorization.as_ref().unwrap().header_value(),
            "Bearer s3cret-fleet"
        );
        assert_eq!(sync.max_snapshot_age_seconds, 86_400);
        assert!(
            !format!("{sync:?}").contains("s3cret"),
            "never in Debug output"
        );
        assert!(with("").unwrap().sync.unwrap().authorization.is_none());
        std::env::set_var("MESHAUTH_TEST_FLEET_CREDENTIAL", "from-env");
        let c = with(r#","credential_env":"MESHAUTH_TEST_FLEET_CREDENTIAL""#).unwrap();
        assert_eq!(
            c.sync
                .unwrap()
                .authorization
                .as_ref()
                .unwrap()
                .header_value(),
            "Bearer from-env"
        );
        let e = with(r#","credential_env":"MESHAUTH_TEST_NOT_SET_ANYWHERE""#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sync.credential_env:"), "{e}");
        let e = with(r#","credential":"a","credential_env":"B""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = with(r#","credential":"has space""#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sync.credential:") && !e.contains("has space"),
            "{e}"
        );
        let e = with(r#","max_snapshot_age_seconds":60"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sync.max_snapshot_age_seconds:"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"issuer": 5}"#).starts_with("issuer: invalid type"));
        assert!(err(r#"{"bogus": 1}"#).contains("unknown field `bogus`"));
        assert!(
            err(r#"{"routes":[{"path_prefix":"/a","scope_all":["x"]}]}"#)
                .starts_with("routes[0].scope_all: unknown field")
        );
        assert!(err(r#"{"routes":[{"path_prefix":"/a","auth":"maybe"}]}"#)
            .contains("unknown variant `maybe`"));
        assert_eq!(
            err(r#"{"routes":[{"auth":"token"}]}"#),
            "routes[0]: set exactly one of path_exact and path_prefix"
        );
        assert_eq!(
            err(r#"{"routes":[{"path_prefix":"a"}]}"#),
            "routes[0]: paths start with '/'"
        );
        assert_eq!(
            err(r#"{"routes":[{"path_prefix":"/a","auth":"anonymous","scopes_all":["x"]}]}"#),
            "routes[0]: an anonymous route cannot require scopes or claims"
        );
        assert_eq!(
            err(r#"{"routes":[{"path_prefix":"/a","scopes_all":[]}]}"#),
            "routes[0].scopes_all: must list at least one scope"
        );
        assert_eq!(
            err(r#"{"routes":[{"path_prefix":"/a","methods":[]}]}"#),
            "routes[0].methods: omit it to match any method, or list at least one"
        );
        assert_eq!(
            err(r#"{"clock_skew_seconds": 3600}"#),
            "clock_skew_seconds: must be at most 600"
        );
        assert!(
            err(r#"{"forward_claims":[{"claim":"sub","header":"Authorization"}]}"#)
                .starts_with("forward_claims[0].header")
        );
        assert!(err(
            r#"{"forward_claims":[{"claim":"sub","header":"x-a"},{"claim":"iss","header":"x-a"}]}"#
        )
        .contains("used twice"));
        assert!(
            err(r#"{"bootstrap_jwks":{"keys":[{"kty":"RSA","crv":"x","x":"y","kid":"k"}]}}"#)
                .starts_with("bootstrap_jwks: keys[0]: kty")
        );
        assert!(err("not json").starts_with("config:"));
        assert!(
            err(r#"{"sync": {"cluster": "cp", "distribution_key": "short"}}"#)
                .starts_with("sync.distribution_key")
        );
        let key = meshauth_wire::b64::encode(
            ed25519_dalek::SigningKey::from_bytes(&[1; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert!(err(&format!(
            r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}", "tick_ms": 1}}}}"#
        ))
        .starts_with("sync.tick_ms"));
        assert!(err(&format!(r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}", "on_unconfirmed": "maybe"}}}}"#)).contains("unknown variant"));
        let ok = Config::from_json(
            format!(r#"{{"sync": {{"cluster": "cp", "distribution_key": "{key}"}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.sync.unwrap().authority, "cp");
    }

    #[test]
    fn full_config_loads() {
        let c = Config::from_json(br#"{
            "issuer": "https://issuer", "audiences": ["api"], "clock_skew_seconds": 5,
            "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
            "forward_authorization": false,
            "routes": [
                {"name": "pub", "path_prefix": "/public/", "auth": "anonymous"},
                {"path_prefix": "/admin/", "methods": ["get", "post"], "scopes_any": ["admin"], "claims": {"tenant": ["a"]}}
            ],
            "default_route": {"auth": "token"}
        }"#).unwrap();
        assert_eq!(c.claim_rules.skew_seconds, 5);
        assert_eq!(
            c.routes.routes[1].methods.as_deref(),
            Some(&["GET".to_string(), "POST".to_string()][..])
        );
        assert_eq!(c.routes.routes[1].name, "route-1");
        assert!(!c.forward_authorization);
    }
}
