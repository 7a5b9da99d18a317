//! `IssuerSpec`: a trusted issuer as an admin writes it (`POST /admin/issuers`), and its
//! token-exchange policy. `model::TrustedIssuer::new` checks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{has_duplicate, visible, DEFAULT_SKEW_SECONDS, MAX_AUDIENCES, MAX_VALUE_LEN};

/// What an admin writes (`POST /admin/issuers`): checked by `TrustedIssuer::new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    pub name: String,
    /// The exact `iss` of its tokens; with `discovery`, may be left out when the URL
    /// ends in `/.well-known/openid-configuration` (the issuer is what precedes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    /// The JOSE `typ` its tokens must carry; none: any or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Claim name → the values it may have (one of them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required_claims: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// Where its tokens carry the scopes routes check (`scope`, `scp`, `permissions`,
    /// `realm_access.roles`): a dotted path into the claims.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Claim (a dotted path) → the header it is forwarded upstream in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forward_claims: BTreeMap<String, String>,
    /// The claim identifying a token for revocation by id when not `jti` (Entra ID:
    /// `uti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_claim: Option<String>,
    /// Admit tokens without that claim (Auth0, Google): revocable by subject or session
    /// only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub id_optional: bool,
    /// The claim naming the client a token was issued to, which client rules scoped to
    /// this issuer match (Auth0, Keycloak, Google, Entra v2: `azp`; Okta: `cid`); none:
    /// `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_claim: Option<String>,
    /// The longest its tokens may live (`exp - iat`, seconds): filters and token
    /// exchange refuse one without `iat` or living longer, and revocations of its
    /// tokens are kept that long.
    #[serde(default = "meshauth_wire::federation::default_token_lifetime")]
    pub max_token_lifetime_seconds: u64,
    /// Token exchange (RFC 8693) of its tokens at the control plane; none: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ExchangePolicy>,
}

/// The default and the longest life of a token issued by exchange.
pub const DEFAULT_EXCHANGE_TTL: u64 = 300;
pub const MAX_EXCHANGE_TTL: u64 = 900;

/// What an exchange of one issuer's token may yield: the bounds an exchanged (mesh)
/// token is issued within.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangePolicy {
    /// The `aud` values an exchanged token may carry (asked for by `audience` or
    /// `resource`); when neither is asked for, all of them.
    pub audiences: Vec<String>,
    /// The scopes it may carry, of those the subject token carries.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Its lifetime, never past the subject token's `exp`.
    #[serde(default = "default_exchange_ttl")]
    pub ttl_seconds: u64,
}

fn default_exchange_ttl() -> u64 {
    DEFAULT_EXCHANGE_TTL
}

impl ExchangePolicy {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.audiences.is_empty() || self.audiences.len() > MAX_AUDIENCES {
            return Err(format!("exchange.audiences: list 1 to {MAX_AUDIENCES}"));
        }
        if let Some(a) = self.audiences.iter().find(|a| !visible(a, MAX_VALUE_LEN)) {
            return Err(format!(
                "exchange.audiences: {a:?} must be 1-{MAX_VALUE_LEN} visible ASCII characters"
            ));
        }
        if has_duplicate(&self.audiences) || has_duplicate(&self.scopes) {
            return Err("exchange: an audience or a scope is listed twice".into());
        }
        crate::clients::validate_scopes(&self.scopes)
            .map_err(|e| format!("exchange.scopes: {e}"))?;
        if !(1..=MAX_EXCHANGE_TTL).contains(&self.ttl_seconds) {
            return Err(format!("exchange.ttl_seconds: 1 to {MAX_EXCHANGE_TTL}"));
        }
        Ok(())
    }
}

fn default_skew() -> u64 {
    DEFAULT_SKEW_SECONDS
}
fn default_scope_claim() -> String {
    "scope".into()
}
