//! The one place errors become HTTP answers.
//! API errors: `{"error": {"code", "message", "correlation_id"}}` (`meshauth_wire::error`);
//! OAuth endpoints: RFC 6749 §5.2 bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{GrantError, OAuthCode, OAuthError, ServiceError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`; a 503 without one says 1.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthenticated(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    /// A request refused before a handler saw it (by axum, or a body or JSON
    /// rejection): its code follows from its status.
    pub fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_request",
        };
        Self::new(status, code, message)
    }
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Store(StoreError::NotReplicated(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not_replicated")
            }
            // Corrupt data does not heal by retrying: one answer wherever it is read.
            ServiceError::Store(StoreError::Corrupt(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ServiceError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// Marks an error answer for the middleware: its code for the metrics and the client
/// throttle, and an API error's content, so that the middleware writes the body again
/// with the request's correlation id without parsing it back.
#[derive(Debug, Clone)]
pub enum ErrorMark {
    Api { code: &'static str, message: String },
    OAuth(OAuthCode),
}

impl ErrorMark {
    pub fn code(&self) -> &'static str {
        match self {
            ErrorMark::Api { code, .. } => code,
            ErrorMark::OAuth(c) => c.as_str(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The correlation id is filled in by the middleware, which knows the request;
        // an answer that does not pass it still has a well-formed body.
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            meshauth_wire::error::body(self.code, &self.message, ""),
        )
            .into_response();
        let retry = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(v) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.extensions_mut().insert(ErrorMark::Api {
            code: self.code,
            message: self.message,
        });
        resp
    }
}

/// The RFC 6749 §5.2 body.
#[derive(Serialize)]
struct OAuthBody<'a> {
    error: &'a str,
    error_description: String,
}

#[derive(Debug)]
pub struct OAuthReply(pub OAuthError);

impl OAuthReply {
    /// The status each code answers with.
    fn status(code: OAuthCode) -> StatusCode {
        match code {
            OAuthCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthCode::TemporarilyUnavailable => StatusCode::TOO_MANY_REQUESTS,
            OAuthCode::InvalidRequest
            | OAuthCode::InvalidGrant
            | OAuthCode::InvalidScope
            | OAuthCode::UnauthorizedClient
            | OAuthCode::InvalidTarget
            | OAuthCode::UnsupportedGrantType => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let status = Self::status(code);
        let body = OAuthBody {
            error: code.as_str(),
            error_description: description_charset(&self.0.description),
        };
        let mut resp = (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"meshauth\""),
            );
        }
        resp.extensions_mut().insert(ErrorMark::OAuth(code));
        resp
    }
}

/// `error_description` may only hold %x20-21 / %x23-5B / %x5D-7E (RFC 6749 §5.2):
/// quotes and backslashes become `'` and `/`, anything else `?`. The one place OAuth
/// error text is made safe, whatever put it together.
pub fn description_charset(d: &str) -> String {
    d.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

/// What an OAuth endpoint answers with: an OAuth error, or a server-side API error
/// (a store failure is not the client's fault).
pub enum GrantReply {
    OAuth(OAuthReply),
    Api(ApiError),
}

impl From<GrantError> for GrantReply {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::OAuth(o) => GrantReply::OAuth(OAuthReply(o)),
            GrantError::Service(s) => GrantReply::Api(s.into()),
        }
    }
}

impl From<OAuthError> for GrantReply {
    fn from(e: OAuthError) -> Self {
        GrantReply::OAuth(OAuthReply(e))
    }
}

impl From<ServiceError> for GrantReply {
    fn from(e: ServiceError) -> Self {
        GrantReply::Api(e.into())
    }
}

impl From<ApiError> for GrantReply {
    fn from(e: ApiError) -> Self {
        GrantReply::Api(e)
    }
}

impl IntoResponse for GrantReply {
    fn into_response(self) -> Response {
        match self {
            GrantReply::OAuth(o) => o.into_response(),
            GrantReply::Api(a) => a.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_oauth_code_has_its_status_and_only_invalid_client_challenges() {
        for (code, status) in [
            (OAuthCode::InvalidRequest, 400),
            (OAuthCode::InvalidClient, 401),
            (OAuthCode::InvalidGrant, 400),
            (OAuthCode::InvalidScope, 400),
            (OAuthCode::UnauthorizedClient, 400),
            (OAuthCode::InvalidTarget, 400),
            (OAuthCode::UnsupportedGrantType, 400),
            (OAuthCode::TemporarilyUnavailable, 429),
        ] {
            let r = OAuthReply(OAuthError::new(code, "x")).into_response();
            assert_eq!(r.status(), status, "{code}");
            assert_eq!(
                r.headers().contains_key(header::WWW_AUTHENTICATE),
                status == 401,
                "{code}"
            );
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            assert!(matches!(r.extensions().get(), Some(ErrorMark::OAuth(c)) if *c == code));
        }
    }

    #[test]
    fn api_errors_carry_their_content_for_the_middleware() {
        let r = ApiError::from(ServiceError::Store(StoreError::Unavailable("down".into())))
            .into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let Some(ErrorMark::Api { code, message }) = r.extensions().get() else {
            panic!("no mark");
        };
        assert_eq!(*code, "store_unavailable");
        assert!(message.contains("down"), "{message}");
        let r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .retry_after(7)
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
