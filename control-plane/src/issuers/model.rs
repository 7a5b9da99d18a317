//! A trusted issuer, validated once: `TrustedIssuer::new` is the only way to make one
//! (the store's copy is checked again when read), so every holder may rely on its
//! bounds. `IssuerSpec` is the form an admin writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::url::{FetchUrl, UrlPolicy};
pub use meshauth_wire::federation::Alg;
use meshauth_wire::federation::{
    valid_issuer_name, FederatedIssuer, DEFAULT_CLIENT_CLAIM, SELF_ISSUER,
};
pub use meshauth_wire::federation::{
    DEFAULT_TOKEN_LIFETIME_SECONDS, MAX_AUDIENCES, MAX_CLAIM_PATH_DEPTH, MAX_CLAIM_PATH_LEN,
    MAX_CLAIM_VALUES, MAX_FORWARDED, MAX_ISSUER_LEN, MAX_REQUIRED_CLAIMS, MAX_SKEW_SECONDS,
    MAX_TOKEN_LIFETIME_SECONDS, MAX_VALUE_LEN, MIN_TOKEN_LIFETIME_SECONDS,
};
use meshauth_wire::limits::valid_policy_name;

pub const DEFAULT_SKEW_SECONDS: u64 = 60;
/// Where an OpenID provider publishes its metadata (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";
/// Claims checked by their own settings (`issuer`, `audiences`, the skew), never as
/// required claims.
const CHECKED_ELSEWHERE: [&str; 5] = ["iss", "aud", "exp", "nbf", "iat"];

pub use super::spec::{ExchangePolicy, IssuerSpec, DEFAULT_EXCHANGE_TTL, MAX_EXCHANGE_TTL};

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OpenID discovery: its `jwks_uri` is fetched, its `issuer` must be ours.
    Discovery(FetchUrl),
    Jwks(FetchUrl),
}

/// A dotted path into a token's claims (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    pub fn parse(field: &str, s: &str) -> Result<ClaimPath, String> {
        let bad = || {
            format!("{field}: {s:?} is not a claim path (dot-separated names of visible ASCII, at most {MAX_CLAIM_PATH_DEPTH} deep and {MAX_CLAIM_PATH_LEN} long)")
        };
        if s.is_empty() || s.len() > MAX_CLAIM_PATH_LEN {
            return Err(bad());
        }
        let parts: Vec<String> = s.split('.').map(str::to_owned).collect();
        let part_ok = |p: &String| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        if parts.len() > MAX_CLAIM_PATH_DEPTH || !parts.iter().all(part_ok) {
            return Err(bad());
        }
        Ok(ClaimPath(parts))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

/// A validated trusted issuer. Fields are private: see the accessors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "IssuerSpec", into = "IssuerSpec")]
pub struct TrustedIssuer {
    name: String,
    issuer: String,
    source: KeySource,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    typ: Option<String>,
    required_claims: BTreeMap<String, Vec<String>>,
    clock_skew_seconds: u64,
    scope_claim: ClaimPath,
    forward_claims: Vec<(ClaimPath, String)>,
    id_claim: Option<String>,
    id_optional: bool,
    client_claim: Option<String>,
    max_token_lifetime_seconds: u64,
    exchange: Option<ExchangePolicy>,
}

/// A stored record is checked again, structurally: http URLs are let through here
/// (they were allowed when written) and refused by the fetcher unless allowed now.
impl TryFrom<IssuerSpec> for TrustedIssuer {
    type Error = String;
    fn try_from(spec: IssuerSpec) -> Result<Self, String> {
        TrustedIssuer::new(spec, &UrlPolicy { allow_http: true }, None)
    }
}

impl From<TrustedIssuer> for IssuerSpec {
    fn from(t: TrustedIssuer) -> Self {
        t.spec()
    }
}

pub(super) fn visible(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// `a` and `b` name the same issuer to a careless reader: equal but for one trailing `/`.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

impl TrustedIssuer {
    /// Checks every field of `spec`; `own_issuer` is the control plane's, which no
    /// trusted issuer may claim. Errors name the field.
    pub fn new(
        spec: IssuerSpec,
        urls: &UrlPolicy,
        own_issuer: Option<&str>,
    ) -> Result<TrustedIssuer, String> {
        if !valid_policy_name(&spec.name) {
            return Err(format!(
                "name: {:?} must be 1-64 lower-case letters, digits, '-' or '_'",
                spec.name
            ));
        }
        if !valid_issuer_name(&spec.name) {
            return Err(format!(
                "name: {SELF_ISSUER:?} is reserved: route rules use it for the control plane's own tokens"
            ));
        }
        let (source, derived) = match (&spec.discovery, &spec.jwks_uri) {
            (Some(d), None) => {
                let url = urls.check("discovery", d)?;
                let derived = url
                    .as_str()
                    .strip_suffix(DISCOVERY_SUFFIX)
                    .map(str::to_owned);
                (KeySource::Discovery(url), derived)
            }
            (None, Some(j)) => (KeySource::Jwks(urls.check("jwks_uri", j)?), None),
            _ => return Err("give either discovery or jwks_uri (one of them)".into()),
        };
        let issuer = match (spec.issuer, derived) {
            (Some(i), _) => i,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(format!(
                    "issuer: required unless discovery ends in {DISCOVERY_SUFFIX}"
                ))
            }
        };
        if !visible(&issuer, MAX_ISSUER_LEN) {
            return Err(format!(
                "issuer: must be 1-{MAX_ISSUER_LEN} visible ASCII characters"
            ));
        }
        if own_issuer.is_some_and(|own| same_issuer(own, &issuer)) {
            return Err(format!(
                "issuer: {issuer:?} is this control plane's own issuer"
            ));
        }
        let audiences = spec.audiences;
        if audiences.is_empty() || audiences.len() > MAX_AUDIENCES {
            return Err(format!("audiences: list 1 to {MAX_AUDIENCES}"));
        }
        if let Some(a) = audiences.iter().find(|a| !visible(a, MAX_VALUE_LEN)) {
            return Err(format!(
                "audiences: {a:?} must be 1-{MAX_VALUE_LEN} visible ASCII characters"
            ));
        }
        if has_duplicate(&audiences) {
            return Err("audiences: listed twice".into());
        }
        let mut algorithms = Vec::new();
        for a in &spec.algorithms {
            let alg = Alg::parse(a).ok_or_else(|| {
                format!(
                    "algorithms: {a:?} is not one of {}",
                    Alg::ALL.map(Alg::as_str).join(", ")
                )
            })?;
            if algorithms.contains(&alg) {
                return Err(format!("algorithms: {a} listed twice"));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err("algorithms: list at least one".into());
        }
        if let Some(t) = &spec.typ {
            if !visible(t, 64) || t.contains(['"', '\\']) {
                return Err(format!("typ: {t:?} is not a media type name"));
            }
        }
        if spec.required_claims.len() > MAX_REQUIRED_CLAIMS {
            return Err(format!("required_claims: at most {MAX_REQUIRED_CLAIMS}"));
        }
        for (claim, values) in &spec.required_claims {
            let field = format!("required_claims.{claim}");
            if !visible(claim, 64) || claim.contains(['"', '\\']) {
                return Err(format!("{field}: not a claim name"));
            }
            if CHECKED_ELSEWHERE.contains(&claim.as_str()) {
                return Err(format!(
                    "{field}: checked by issuer, audiences and clock_skew_seconds"
                ));
            }
            if values.is_empty() || values.len() > MAX_CLAIM_VALUES {
                return Err(format!("{field}: list 1 to {MAX_CLAIM_VALUES} values"));
            }
            if values
                .iter()
                .any(|v| v.is_empty() || v.len() > MAX_VALUE_LEN || v.chars().any(char::is_control))
            {
                return Err(format!(
                    "{field}: each value 1-{MAX_VALUE_LEN} printable characters"
                ));
            }
        }
        if spec.clock_skew_seconds > MAX_SKEW_SECONDS {
            return Err(format!("clock_skew_seconds: at most {MAX_SKEW_SECONDS}"));
        }
        let scope_claim = ClaimPath::parse("scope_claim", &spec.scope_claim)?;
        if spec.forward_claims.len() > MAX_FORWARDED {
            return Err(format!("forward_claims: at most {MAX_FORWARDED}"));
        }
        let mut forward_claims: Vec<(ClaimPath, String)> = Vec::new();
        for (claim, header) in spec.forward_claims {
            let path = ClaimPath::parse(&format!("forward_claims.{claim}"), &claim)?;
            if !meshauth_wire::federation::valid_issuer_header(&header) {
                return Err(format!(
                    "forward_claims.{claim}: {header:?} must be a lower-case header name under {:?} (which filters remove from every incoming request), at most 64 characters, without '_', not a sync or framing header",
                    meshauth_wire::headers::RESERVED_PREFIX
                ));
            }
            if forward_claims.iter().any(|(_, h)| *h == header) {
                return Err(format!(
                    "forward_claims.{claim}: header {header:?} is already used"
                ));
            }
            forward_claims.push((path, header));
        }
        // "jti" spelled out is the default: stored as absent, one spelling per meaning.
        let id_claim = spec.id_claim.filter(|c| c != "jti");
        if let Some(c) = &id_claim {
            if !meshauth_wire::federation::valid_id_claim(c) {
                return Err(format!(
                    "id_claim: {c:?} must be one claim name (1-64 visible ASCII, no '.'), not iss, aud, exp, nbf, iat or sub"
                ));
            }
        }
        // Likewise "client_id", the default.
        let client_claim = spec.client_claim.filter(|c| c != DEFAULT_CLIENT_CLAIM);
        if let Some(c) = &client_claim {
            if !meshauth_wire::federation::valid_client_claim(c) {
                return Err(format!(
                    "client_claim: {c:?} must be one claim name (1-64 visible ASCII, no '.'), not iss, aud, exp, nbf, iat or sub"
                ));
            }
        }
        let lifetime = spec.max_token_lifetime_seconds;
        if !(MIN_TOKEN_LIFETIME_SECONDS..=MAX_TOKEN_LIFETIME_SECONDS).contains(&lifetime) {
            return Err(format!(
                "max_token_lifetime_seconds: {lifetime} is not between {MIN_TOKEN_LIFETIME_SECONDS} and {MAX_TOKEN_LIFETIME_SECONDS} (a week)"
            ));
        }
        if let Some(p) = &spec.exchange {
            p.check()?;
        }
        Ok(TrustedIssuer {
            name: spec.name,
            issuer,
            source,
            audiences,
            algorithms,
            typ: spec.typ,
            required_claims: spec.required_claims,
            clock_skew_seconds: spec.clock_skew_seconds,
            scope_claim,
            forward_claims,
            id_claim,
            id_optional: spec.id_optional,
            client_claim,
            max_token_lifetime_seconds: lifetime,
            exchange: spec.exchange,
        })
    }

    /// The form it was written in (`issuer` always spelled out).
    pub fn spec(&self) -> IssuerSpec {
        let (discovery, jwks_uri) = match &self.source {
            KeySource::Discovery(u) => (Some(u.as_str().to_owned()), None),
            KeySource::Jwks(u) => (None, Some(u.as_str().to_owned())),
        };
        IssuerSpec {
            name: self.name.clone(),
            issuer: Some(self.issuer.clone()),
            discovery,
            jwks_uri,
            audiences: self.audiences.clone(),
            algorithms: self.algorithms.iter().map(|a| a.as_str().into()).collect(),
            typ: self.typ.clone(),
            required_claims: self.required_claims.clone(),
            clock_skew_seconds: self.clock_skew_seconds,
            scope_claim: self.scope_claim.dotted(),
            forward_claims: self
                .forward_claims
                .iter()
                .map(|(p, h)| (p.dotted(), h.clone()))
                .collect(),
            id_claim: self.id_claim.clone(),
            id_optional: self.id_optional,
            client_claim: self.client_claim.clone(),
            max_token_lifetime_seconds: self.max_token_lifetime_seconds,
            exchange: self.exchange.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn source(&self) -> &KeySource {
        &self.source
    }
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }
    pub fn algorithms(&self) -> &[Alg] {
        &self.algorithms
    }
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    pub fn required_claims(&self) -> &BTreeMap<String, Vec<String>> {
        &self.required_claims
    }
    pub fn clock_skew_seconds(&self) -> u64 {
        self.clock_skew_seconds
    }
    pub fn scope_claim(&self) -> &ClaimPath {
        &self.scope_claim
    }
    pub fn forward_claims(&self) -> &[(ClaimPath, String)] {
        &self.forward_claims
    }
    /// The claim identifying its tokens for revocation by id.
    pub fn id_claim(&self) -> &str {
        self.id_claim.as_deref().unwrap_or("jti")
    }
    /// Whether its tokens may lack their id claim.
    pub fn id_optional(&self) -> bool {
        self.id_optional
    }
    /// The claim naming the client its tokens were issued to, for client rules.
    pub fn client_claim(&self) -> &str {
        self.client_claim.as_deref().unwrap_or(DEFAULT_CLIENT_CLAIM)
    }
    pub fn exchange(&self) -> Option<&ExchangePolicy> {
        self.exchange.as_ref()
    }
    /// The longest its tokens may live (`exp - iat`), within the wire bounds.
    pub fn max_token_lifetime_seconds(&self) -> u64 {
        self.max_token_lifetime_seconds
    }

    /// Its rules and keys as filters read them.
    pub fn to_wire(&self, keys: Vec<meshauth_wire::federation::FederatedKey>) -> FederatedIssuer {
        let spec = self.spec();
        FederatedIssuer {
            name: Some(self.name.clone()),
            issuer: self.issuer.clone(),
            audiences: spec.audiences,
            algorithms: self.algorithms.clone(),
            typ: spec.typ,
            required_claims: spec.required_claims,
            clock_skew_seconds: spec.clock_skew_seconds,
            scope_claim: spec.scope_claim,
            forward_claims: spec.forward_claims,
            id_claim: spec.id_claim,
            id_optional: spec.id_optional,
            client_claim: spec.client_claim,
            max_token_lifetime_seconds: self.max_token_lifetime_seconds,
            keys,
        }
    }
}

pub(super) fn has_duplicate(items: &[String]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    !items.iter().all(|i| seen.insert(i))
}
