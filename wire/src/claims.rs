//! Access-token claims as the control plane writes them (RFC 9068).
//! The filter reads tokens from any issuer, so it parses claims leniently by type
//! (see the filter's `claims` module); this struct is what meshauth itself emits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// On a token minted by token exchange (RFC 8693): the external subject it was
    /// exchanged for. Revoking that subject (a `sub` rule scoped to its issuer) revokes
    /// this token too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<ExternalSubject>,
}

/// The `ext` claim: the trusted external issuer's `iss` and the subject it named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalSubject {
    pub iss: String,
    pub sub: String,
}

/// The claim name of [`ExternalSubject`].
pub const EXT_CLAIM: &str = "ext";
