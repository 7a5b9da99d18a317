//! Federated issuers as the control plane pushes them to filters: each trusted
//! issuer's rules and its last good verification keys, inside the signed snapshot.
//! The control plane validates what an admin writes and what a provider serves; the
//! bounds here are what a filter accepts at all, checked again when a snapshot is
//! opened, so a bug on one side cannot grow the other's memory or reach a verifier with
//! a key of the wrong shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::b64;

/// The most trusted issuers any configuration may allow.
pub const MAX_ISSUERS: usize = 256;
/// Usable keys per issuer at most.
pub const MAX_KEYS: usize = 16;
pub const MAX_ISSUER_LEN: usize = 512;
pub const MAX_AUDIENCES: usize = 16;
pub const MAX_REQUIRED_CLAIMS: usize = 16;
pub const MAX_CLAIM_VALUES: usize = 16;
pub const MAX_VALUE_LEN: usize = 256;
pub const MAX_FORWARDED: usize = 16;
pub const MAX_SKEW_SECONDS: u64 = 300;
pub const MAX_CLAIM_PATH_LEN: usize = 128;
pub const MAX_CLAIM_PATH_DEPTH: usize = 4;
pub const MAX_KID_LEN: usize = 128;
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 8192;
/// Bytes of an RSA public exponent at most (64 bits).
pub const MAX_RSA_E_BYTES: usize = 8;
/// The bounds and the default of an issuer's longest token life (`exp - iat`), in
/// seconds: filters refuse a token of it that lives longer, so the control plane can
/// keep a revocation of its tokens exactly that long.
pub const MIN_TOKEN_LIFETIME_SECONDS: u64 = 60;
pub const MAX_TOKEN_LIFETIME_SECONDS: u64 = 604_800;
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: u64 = 86_400;

/// The default (for serde): what an issuer of an older control plane, sent without
/// the setting, is held to.
pub fn default_token_lifetime() -> u64 {
    DEFAULT_TOKEN_LIFETIME_SECONDS
}

fn is_default_token_lifetime(s: &u64) -> bool {
    *s == DEFAULT_TOKEN_LIFETIME_SECONDS
}

/// A JOSE signature algorithm a federated issuer may use (RFC 7518, RFC 8037):
/// asymmetric only, so `none` and `HS*` can never be listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JWK `kty` a key for this algorithm has.
    pub fn kty(self) -> &'static str {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => "RSA",
            Alg::ES256 | Alg::ES384 => "EC",
            Alg::EdDSA => "OKP",
        }
    }
}

/// A verification key of a federated issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedKey {
    pub kid: String,
    /// The algorithms of the issuer's list this key may verify.
    pub algorithms: Vec<Alg>,
    pub material: KeyMaterial,
}

/// The public parts, as base64url (the JWK's own spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty", deny_unknown_fields)]
pub enum KeyMaterial {
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
    #[serde(rename = "EC")]
    Ec { crv: String, x: String, y: String },
    #[serde(rename = "OKP")]
    Okp { crv: String, x: String },
}

impl KeyMaterial {
    pub fn kty(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Okp { .. } => "OKP",
        }
    }

    /// The key an algorithm needs has this shape: the type, and for EC the curve.
    pub fn serves(&self, alg: Alg) -> bool {
        match (self, alg) {
            (KeyMaterial::Ec { crv, .. }, Alg::ES256) => crv == "P-256",
            (KeyMaterial::Ec { crv, .. }, Alg::ES384) => crv == "P-384",
            (KeyMaterial::Okp { crv, .. }, Alg::EdDSA) => crv == "Ed25519",
            (KeyMaterial::Rsa { .. }, a) => a.kty() == "RSA",
            _ => false,
        }
    }
}

/// One trusted issuer as filters see it: its rules and its last good keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedIssuer {
    /// The name it was registered under (`meshauth issuers add NAME`), which route
    /// rules use to require it. Absent from control planes before it was sent: such an
    /// issuer satisfies no route that requires one by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// A token's `aud` must name one of these.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// The JOSE `typ` its tokens must carry; none: any or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Claim name → the values it may have (one of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required_claims: BTreeMap<String, Vec<String>>,
    pub clock_skew_seconds: u64,
    /// A dotted path to the claim carrying the scopes routes check (an array of
    /// strings or one space-separated string).
    pub scope_claim: String,
    /// Claim (a dotted path) → the header it is forwarded upstream in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forward_claims: BTreeMap<String, String>,
    /// The claim identifying a token for revocation by id when not `jti` (Entra ID:
    /// `uti`). Absent: `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_claim: Option<String>,
    /// Admit tokens without that claim (Auth0 and Google tokens carry none); they can
    /// then be revoked by subject or session only. Absent: refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub id_optional: bool,
    /// The claim naming the client a token was issued to, which issuer-scoped client
    /// revocations match (Auth0, Keycloak, Google, Entra v2: `azp`; Okta: `cid`).
    /// Absent: `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_claim: Option<String>,
    /// The longest a token of it may live (`exp - iat`); a token without `iat` or
    /// living longer is refused. Absent: the default, and omitted at it, so filters
    /// older than the setting still open the snapshot.
    #[serde(
        default = "default_token_lifetime",
        skip_serializing_if = "is_default_token_lifetime"
    )]
    pub max_token_lifetime_seconds: u64,
    /// Its last good keys; never empty (an issuer whose keys were never fetched is
    /// left out of the snapshot).
    pub keys: Vec<FederatedKey>,
}

/// The name a route rule gives the control plane's own issuer; no trusted issuer may
/// be registered under it.
pub const SELF_ISSUER: &str = "self";

/// A trusted issuer's name: 1-64 lower-case letters, digits, `-`, `_`, not `self`.
pub fn valid_issuer_name(s: &str) -> bool {
    crate::limits::valid_policy_name(s) && s != SELF_ISSUER
}

pub(crate) fn visible(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// A dotted path of visible ASCII names (`realm_access.roles`).
pub fn valid_claim_path(s: &str) -> bool {
    s.len() <= MAX_CLAIM_PATH_LEN
        && s.split('.').count() <= MAX_CLAIM_PATH_DEPTH
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
        })
}

fn bit_len(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        Some(i) => (n.len() - i - 1) * 8 + (8 - n[i].leading_zeros() as usize),
        None => 0,
    }
}

impl FederatedKey {
    /// Checks the key's shape: a kid, algorithms its material serves, and material of
    /// the sizes the verifiers accept.
    pub fn validate(&self, issuer_algs: &[Alg]) -> Result<(), String> {
        let kid = &self.kid;
        if !visible(kid, MAX_KID_LEN) {
            return Err(format!(
                "kid must be 1-{MAX_KID_LEN} visible ASCII characters"
            ));
        }
        if self.algorithms.is_empty() || self.algorithms.len() > Alg::ALL.len() {
            return Err(format!("key {kid:?}: no algorithms"));
        }
        if let Some(a) = self
            .algorithms
            .iter()
            .find(|a| !self.material.serves(**a) || !issuer_algs.contains(a))
        {
            return Err(format!(
                "key {kid:?}: {} is not the issuer's or not this key's",
                a.as_str()
            ));
        }
        let decoded = |s: &str| b64::decode(s).map_err(|_| format!("key {kid:?}: not base64url"));
        match &self.material {
            KeyMaterial::Rsa { n, e } => {
                let (n, e) = (decoded(n)?, decoded(e)?);
                let bits = bit_len(&n);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || n[0] == 0 {
                    return Err(format!("key {kid:?}: RSA modulus of {bits} bits"));
                }
                if e.is_empty()
                    || e.len() > MAX_RSA_E_BYTES
                    || bit_len(&e) < 2
                    || e[e.len() - 1] & 1 == 0
                {
                    return Err(format!("key {kid:?}: RSA exponent"));
                }
            }
            KeyMaterial::Ec { crv, x, y } => {
                let len = match crv.as_str() {
                    "P-256" => 32,
                    "P-384" => 48,
                    _ => return Err(format!("key {kid:?}: EC curve {crv:?}")),
                };
                if decoded(x)?.len() != len || decoded(y)?.len() != len {
                    return Err(format!("key {kid:?}: {crv} coordinates"));
                }
            }
            KeyMaterial::Okp { crv, x } => {
                if crv != "Ed25519" || decoded(x)?.len() != 32 {
                    return Err(format!("key {kid:?}: OKP key"));
                }
            }
        }
        Ok(())
    }
}

fn has_duplicate<'a>(items: impl IntoIterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    !items.into_iter().all(|i| seen.insert(i))
}

/// Whether a trusted issuer may forward a claim in header `h`: under
/// `x-meshauth-`, which filters (with the default `reserved_header_prefix`) remove from
/// every incoming request whether or not they know the issuer yet (a header outside it
/// could be sent by a client while its issuer is not in the filter's snapshot), not one
/// of the sync headers, and without `_` (CGI-style upstreams read `a_b` and `a-b` as
/// one header: two issuers' headers, or an issuer's and the filter's, must not fold
/// into one).
pub fn valid_issuer_header(h: &str) -> bool {
    use crate::headers::{HEAD, RESERVED_PREFIX, VERSION};
    h.len() <= 64
        && h.len() > RESERVED_PREFIX.len()
        && h.starts_with(RESERVED_PREFIX)
        && !h.contains('_')
        && crate::headers::may_carry_claim(h)
        && h != VERSION
        && h != HEAD
}

/// Whether `name` may identify tokens (`id_claim`): a plain claim name, not one of the
/// claims checked by their own rules.
pub fn valid_id_claim(name: &str) -> bool {
    visible(name, 64)
        && !name.contains('.')
        && !["iss", "aud", "exp", "nbf", "iat", "sub"].contains(&name)
}

/// The claim a client rule matches when an issuer names none (RFC 9068 §2.2).
pub const DEFAULT_CLIENT_CLAIM: &str = "client_id";

/// Whether `name` may name the client of tokens (`client_claim`): a plain claim name,
/// as for `id_claim` (never `sub`: client rules would then revoke subjects).
pub fn valid_client_claim(name: &str) -> bool {
    valid_id_claim(name)
}

/// A claim's value(s) as strings, as required claims and forwarded headers read them
/// (in the filter and in the control plane's exchange): a string, the scalars of an
/// array, or a number or boolean written out. Objects and null give nothing.
pub fn claim_values(value: Option<&serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Whether a JOSE header's `typ` is `want`, as RFC 7515 §4.1.9 compares media types:
/// case-insensitively, with an `application/` prefix allowed. No `typ` is no match.
pub fn typ_matches(typ: Option<&str>, want: &str) -> bool {
    let typ = typ.unwrap_or_default();
    let bare = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .and_then(|_| typ.get(12..))
        .unwrap_or(typ);
    bare.eq_ignore_ascii_case(want)
}

impl FederatedIssuer {
    /// The claim identifying its tokens for revocation by id.
    pub fn id_claim(&self) -> &str {
        self.id_claim.as_deref().unwrap_or("jti")
    }

    /// The claim naming the client its tokens were issued to, for client rules.
    pub fn client_claim(&self) -> &str {
        self.client_claim.as_deref().unwrap_or(DEFAULT_CLIENT_CLAIM)
    }

    /// The bounds a filter holds the control plane to. Errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        let iss = &self.issuer;
        if !visible(iss, MAX_ISSUER_LEN) {
            return Err(format!("issuer must be 1-{MAX_ISSUER_LEN} visible ASCII"));
        }
        let at = |what: &str| format!("issuer {iss:?}: {what}");
        if self.name.as_deref().is_some_and(|n| !valid_issuer_name(n)) {
            return Err(at("name"));
        }
        if self.audiences.is_empty()
            || self.audiences.len() > MAX_AUDIENCES
            || !self.audiences.iter().all(|a| visible(a, MAX_VALUE_LEN))
            || has_duplicate(self.audiences.iter().map(String::as_str))
        {
            return Err(at("audiences"));
        }
        if self.algorithms.is_empty() || has_duplicate(self.algorithms.iter().map(|a| a.as_str())) {
            return Err(at("algorithms"));
        }
        if self.typ.as_deref().is_some_and(|t| !visible(t, 64)) {
            return Err(at("typ"));
        }
        if self.required_claims.len() > MAX_REQUIRED_CLAIMS
            || self.required_claims.iter().any(|(k, v)| {
                !visible(k, 64)
                    || v.is_empty()
                    || v.len() > MAX_CLAIM_VALUES
                    || v.iter().any(|x| x.is_empty() || x.len() > MAX_VALUE_LEN)
            })
        {
            return Err(at("required_claims"));
        }
        if self.clock_skew_seconds > MAX_SKEW_SECONDS {
            return Err(at("clock_skew_seconds"));
        }
        if !valid_claim_path(&self.scope_claim) {
            return Err(at("scope_claim"));
        }
        if self.forward_claims.len() > MAX_FORWARDED
            || self
                .forward_claims
                .iter()
                .any(|(claim, header)| !valid_claim_path(claim) || !valid_issuer_header(header))
            || has_duplicate(self.forward_claims.values().map(String::as_str))
        {
            return Err(at("forward_claims"));
        }
        if self.id_claim.as_deref().is_some_and(|c| !valid_id_claim(c)) {
            return Err(at("id_claim"));
        }
        if self
            .client_claim
            .as_deref()
            .is_some_and(|c| !valid_client_claim(c))
        {
            return Err(at("client_claim"));
        }
        if !(MIN_TOKEN_LIFETIME_SECONDS..=MAX_TOKEN_LIFETIME_SECONDS)
            .contains(&self.max_token_lifetime_seconds)
        {
            return Err(at("max_token_lifetime_seconds"));
        }
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS {
            return Err(at(&format!("keys: 1 to {MAX_KEYS}")));
        }
        if has_duplicate(self.keys.iter().map(|k| k.kid.as_str())) {
            return Err(at("a kid names two keys"));
        }
        for k in &self.keys {
            k.validate(&self.algorithms).map_err(|e| at(&e))?;
        }
        Ok(())
    }
}

/// Every issuer of a snapshot: each valid, at most `MAX_ISSUERS`, no `iss` twice (a
/// token must have exactly one set of rules).
pub fn validate_all(issuers: &[FederatedIssuer]) -> Result<(), String> {
    if issuers.len() > MAX_ISSUERS {
        return Err(format!("more than {MAX_ISSUERS} issuers"));
    }
    if has_duplicate(issuers.iter().map(|i| i.issuer.as_str()))
        || has_duplicate(issuers.iter().filter_map(|i| i.name.as_deref()))
    {
        return Err("an issuer is listed twice".into());
    }
    // One issuer per header: the upstream knows who asserted what it reads.
    if has_duplicate(
        issuers
            .iter()
            .flat_map(|i| i.forward_claims.values().map(String::as_str)),
    ) {
        return Err("two issuers forward claims in one header".into());
    }
    issuers.iter().try_for_each(FederatedIssuer::validate)
}

#[cfg(test)]
pub(crate) mod tests;
