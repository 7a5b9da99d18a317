//! Rate-limit policies (docs/filter.md, "Rate limits"), defined once: the filter reads them from its plugin
//! configuration (static defaults) and from sync snapshots; the control plane stores
//! them, validates them on its admin API and pushes them. Both halves validate with
//! [`LimitPolicy::validate`], so a policy one accepts the other accepts too.
//!
//! A policy admits `rate` requests per `window_seconds` per key, with bursts of up to
//! `burst`; the key is built from the parts listed in `key`, joined with `|`. Overrides
//! give chosen key values (one user, one client) a quota of their own.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_RATE: u32 = 1_000_000;
pub const MAX_BURST: u32 = 1_000_000;
pub const MAX_WINDOW_SECONDS: u32 = 86_400;
pub const MAX_KEY_PARTS: usize = 4;
pub const MAX_OVERRIDES: usize = 10_000;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_VALUE_LEN: usize = 256;

/// Separator between the values of a composite key, as override keys spell them.
pub const KEY_SEPARATOR: char = '|';

/// One part of a bucket key. On the wire: `claim:NAME`, `header:NAME`,
/// `client_address` or `route`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyPart {
    /// A claim of the verified token (`sub`, `client_id`, …); empty on anonymous routes.
    Claim(String),
    /// A request header, lower-case name; empty when absent.
    Header(String),
    /// The downstream address without its port.
    ClientAddress,
    /// The name of the filter route the request matched (`default` for none).
    Route,
}

impl TryFrom<String> for KeyPart {
    type Error = String;

    fn try_from(s: String) -> Result<KeyPart, String> {
        match s.split_once(':') {
            Some(("claim", name)) if valid_token_text(name) => Ok(KeyPart::Claim(name.into())),
            Some(("header", name)) if valid_header_name(name) => {
                Ok(KeyPart::Header(name.into()))
            }
            None if s == "client_address" => Ok(KeyPart::ClientAddress),
            None if s == "route" => Ok(KeyPart::Route),
            _ => Err(format!(
                "unknown key part {s:?}: use claim:NAME, header:NAME (lower case), client_address or route"
            )),
        }
    }
}

impl From<KeyPart> for String {
    fn from(p: KeyPart) -> String {
        p.to_string()
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Claim(c) => write!(f, "claim:{c}"),
            KeyPart::Header(h) => write!(f, "header:{h}"),
            KeyPart::ClientAddress => f.write_str("client_address"),
            KeyPart::Route => f.write_str("route"),
        }
    }
}

/// How many requests a bucket admits: `rate` per `window_seconds`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub rate: u32,
    #[serde(default = "one")]
    pub window_seconds: u32,
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// Which requests a policy applies to; empty matches every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Upper-case methods; absent matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    pub name: String,
    pub key: Vec<KeyPart>,
    pub rate: u32,
    #[serde(default = "one")]
    pub window_seconds: u32,
    pub burst: u32,
    #[serde(default, rename = "match", skip_serializing_if = "is_default")]
    pub matches: LimitMatch,
    /// Key value (parts joined with `|`) → its own quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Quota>,
}

fn is_default(m: &LimitMatch) -> bool {
    *m == LimitMatch::default()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LimitError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> LimitError {
    LimitError {
        field: field.into(),
        problem: problem.into(),
    }
}

pub fn valid_policy_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_token_text(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_NAME_LEN
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Quota {
    pub fn validate(&self, field: &str) -> Result<(), LimitError> {
        if !(1..=MAX_RATE).contains(&self.rate) {
            return Err(bad(
                format!("{field}rate"),
                format!("must be an integer from 1 to {MAX_RATE}"),
            ));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(bad(
                format!("{field}window_seconds"),
                format!("must be an integer from 1 to {MAX_WINDOW_SECONDS}"),
            ));
        }
        if !(1..=MAX_BURST).contains(&self.burst) {
            return Err(bad(
                format!("{field}burst"),
                format!("must be an integer from 1 to {MAX_BURST}"),
            ));
        }
        Ok(())
    }
}

impl LimitMatch {
    /// Whether a request (path without its query) falls under the policy.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        // ASCII case and a trailing slash ignored, as route paths do by default: `/API/x`
        // must not escape a limit on `/api/` at an upstream that ignores case.
        let path_ok = match (&self.path_exact, &self.path_prefix) {
            (Some(p), _) => crate::path_match::exact(path, p, true),
            (None, Some(p)) => crate::path_match::prefix(path, p, true),
            (None, None) => true,
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

impl LimitPolicy {
    pub fn validate(&self) -> Result<(), LimitError> {
        if !valid_policy_name(&self.name) {
            return Err(bad(
                "name",
                format!("must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_'"),
            ));
        }
        if self.key.is_empty() || self.key.len() > MAX_KEY_PARTS {
            return Err(bad(
                "key",
                format!("must list 1 to {MAX_KEY_PARTS} key parts"),
            ));
        }
        self.quota().validate("")?;
        let m = &self.matches;
        if m.path_exact.is_some() && m.path_prefix.is_some() {
            return Err(bad("match", "set path_exact or path_prefix, not both"));
        }
        for (field, p) in [
            ("match.path_exact", &m.path_exact),
            ("match.path_prefix", &m.path_prefix),
        ] {
            if let Some(p) = p {
                if !p.starts_with('/') || p.len() > MAX_VALUE_LEN {
                    return Err(bad(field, "must start with '/' (at most 256 bytes)"));
                }
            }
        }
        if let Some(methods) = &m.methods {
            if methods.is_empty()
                || methods
                    .iter()
                    .any(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(bad(
                    "match.methods",
                    "must list upper-case methods such as GET",
                ));
            }
        }
        if self.overrides.len() > MAX_OVERRIDES {
            return Err(bad(
                "overrides",
                format!("at most {MAX_OVERRIDES} overrides"),
            ));
        }
        for (value, quota) in &self.overrides {
            if value.is_empty() || value.len() > MAX_VALUE_LEN {
                return Err(bad(
                    "overrides",
                    format!("an override key must be 1 to {MAX_VALUE_LEN} bytes"),
                ));
            }
            quota.validate(&format!("overrides.{value}."))?;
        }
        Ok(())
    }

    pub fn quota(&self) -> Quota {
        Quota {
            rate: self.rate,
            window_seconds: self.window_seconds,
            burst: self.burst,
        }
    }

    /// The quota of one key value: its override, or the policy's.
    pub fn quota_for(&self, key_value: &str) -> Quota {
        self.overrides
            .get(key_value)
            .copied()
            .unwrap_or_else(|| self.quota())
    }
}

/// Checks a list of policies: each valid, names unique.
pub fn validate_all(policies: &[LimitPolicy]) -> Result<(), LimitError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in policies.iter().enumerate() {
        p.validate()
            .map_err(|e| bad(format!("[{i}].{}", e.field), e.problem))?;
        if !names.insert(p.name.as_str()) {
            return Err(bad(
                format!("[{i}].name"),
                format!("{:?} is listed twice", p.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<LimitPolicy, String> {
        let p: LimitPolicy = serde_json::from_str(json).map_err(|e| e.to_string())?;
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }

    #[test]
    fn parses_and_round_trips() {
        let p = policy(
            r#"{"name":"per-user","key":["claim:sub","header:x-tenant"],"rate":100,"window_seconds":60,"burst":20,
                "match":{"path_prefix":"/api","methods":["GET"]},"overrides":{"alice|t1":{"rate":1000,"burst":50}}}"#,
        )
        .unwrap();
        assert_eq!(
            p.key,
            vec![
                KeyPart::Claim("sub".into()),
                KeyPart::Header("x-tenant".into())
            ]
        );
        assert_eq!(p.quota_for("alice|t1").rate, 1000);
        assert_eq!(p.quota_for("alice|t1").window_seconds, 1);
        assert_eq!(p.quota_for("bob|t1").rate, 100);
        let back: LimitPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(p.matches.matches("get", "/api/x"));
        assert!(!p.matches.matches("POST", "/api/x"));
        assert!(!p.matches.matches("GET", "/other"));
        assert!(
            p.matches.matches("GET", "/API/x"),
            "prefixes ignore ASCII case"
        );
    }

    #[test]
    fn refuses_bad_policies_with_the_field() {
        let cases = [
            (
                r#"{"name":"a","key":["cookie:x"],"rate":1,"burst":1}"#,
                "unknown key part",
            ),
            (
                r#"{"name":"a","key":["header:X-Up"],"rate":1,"burst":1}"#,
                "unknown key part",
            ),
            (
                r#"{"name":"a","key":[],"rate":1,"burst":1}"#,
                "key: must list",
            ),
            (
                r#"{"name":"A b","key":["route"],"rate":1,"burst":1}"#,
                "name:",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":0,"burst":1}"#,
                "rate: must be",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":-1,"burst":1}"#,
                "invalid value",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1.5,"burst":1}"#,
                "invalid type",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":2000000}"#,
                "burst: must be",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":1,"window_seconds":0}"#,
                "window_seconds",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":1,"color":"red"}"#,
                "unknown field",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":1,"match":{"path_prefix":"api"}}"#,
                "match.path_prefix",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":1,"match":{"methods":["get"]}}"#,
                "match.methods",
            ),
            (
                r#"{"name":"a","key":["route"],"rate":1,"burst":1,"overrides":{"x":{"rate":0,"burst":1}}}"#,
                "overrides.x.rate",
            ),
        ];
        for (json, expected) in cases {
            let err = policy(json).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let twice: Vec<LimitPolicy> = serde_json::from_str(
            r#"[{"name":"a","key":["route"],"rate":1,"burst":1},{"name":"a","key":["route"],"rate":2,"burst":1}]"#,
        )
        .unwrap();
        assert!(validate_all(&twice)
            .unwrap_err()
            .to_string()
            .contains("[1].name"));
    }
}
