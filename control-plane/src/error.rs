//! Service errors, mapped to HTTP answers once (in `http::error`).

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Unavailable, not replicated, or corrupt: see `StoreError`.
    #[error(transparent)]
    Store(StoreError),
    /// An invariant of this process does not hold (no signing key yet).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            // Losing every compare-and-swap is the caller's to retry, like any conflict.
            StoreError::Contended(_) => ServiceError::Conflict(e.to_string()),
            e => ServiceError::Store(e),
        }
    }
}

/// The RFC 6749 §5.2 error codes this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidRequest,
    /// Client authentication failed: the one code answered with 401.
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    /// An authenticated client that may not use this grant (RFC 6749 §5.2).
    UnauthorizedClient,
    /// An `audience` or `resource` the token may not be issued for (RFC 8693 §2.2.2).
    InvalidTarget,
    UnsupportedGrantType,
    /// The caller's source is throttled (after too many failed authentications).
    TemporarilyUnavailable,
}

impl OAuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::InvalidGrant => "invalid_grant",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::UnauthorizedClient => "unauthorized_client",
            OAuthCode::InvalidTarget => "invalid_target",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for OAuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 6749 §5.2 errors of the OAuth endpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: OAuthCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: OAuthCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidRequest, d)
    }
    pub fn invalid_client() -> Self {
        Self::new(OAuthCode::InvalidClient, "client authentication failed")
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(OAuthCode::InvalidScope, d)
    }
}

/// A store failure inside an OAuth flow is a server problem, not the client's.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for GrantError {
    fn from(e: StoreError) -> Self {
        GrantError::Service(e.into())
    }
}
