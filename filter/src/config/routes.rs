//! Routes and their policies (`routes[i]`, `default_route`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{bad, valid_token_text, ConfigError};
use crate::rules::{PathMatch, Policy, Requirements, Route, ScopeRule};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
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
    #[serde(default)]
    issuers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum AuthMode {
    Anonymous,
    #[default]
    Token,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    auth: AuthMode,
    #[serde(default)]
    scopes_all: Option<Vec<String>>,
    #[serde(default)]
    scopes_any: Option<Vec<String>>,
    #[serde(default)]
    claims: BTreeMap<String, Vec<String>>,
    /// Trusted issuers' names (`meshauth issuers list`), `self` for the control plane.
    #[serde(default)]
    issuers: Option<Vec<String>>,
}

impl RawPolicy {
    pub(super) fn validate(self, field: &str) -> Result<Policy, ConfigError> {
        let RawPolicy {
            auth,
            scopes_all,
            scopes_any,
            claims,
            issuers,
        } = self;
        if auth == AuthMode::Anonymous {
            if scopes_all.is_some() || scopes_any.is_some() || !claims.is_empty() {
                return Err(bad(
                    field,
                    "an anonymous route cannot require scopes or claims",
                ));
            }
            if issuers.is_some() {
                return Err(bad(field, "an anonymous route cannot require issuers"));
            }
            return Ok(Policy::Anonymous);
        }
        if let Some(list) = &issuers {
            let at = format!("{field}.issuers");
            if list.is_empty() {
                return Err(bad(at, "list at least one issuer (omit it to admit any)"));
            }
            if let Some(n) = list.iter().find(|n| {
                n.as_str() != meshauth_wire::federation::SELF_ISSUER
                    && !meshauth_wire::federation::valid_issuer_name(n)
            }) {
                return Err(bad(
                    at,
                    format!("{n:?} is not a trusted issuer's name (lower-case letters, digits, '-', '_') or \"self\""),
                ));
            }
            if list
                .iter()
                .enumerate()
                .any(|(i, n)| list.iter().take(i).any(|m| m == n))
            {
                return Err(bad(at, "an issuer is listed twice"));
            }
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
            issuers,
        }))
    }
}

/// The route table's entries, in order; each error names `routes[i]`.
pub(super) fn validate(raw: Vec<RawRoute>) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
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
            issuers: r.issuers,
        };
        routes.push(Route {
            name,
            path,
            methods,
            ignore_case,
            policy: policy.validate(&field)?,
        });
    }
    Ok(routes)
}
