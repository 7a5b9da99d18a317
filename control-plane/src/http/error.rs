//! The one place errors become HTTP answers.
//! API errors: `{"error": {"code", "message", "correlation_id"}}`;
//! OAuth endpoints: RFC 6749 §5.2 bodies.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{GrantError, OAuthError, ServiceError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid admin bearer token is required",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::Store(crate::store::StoreError::NotReplicated(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not_replicated")
            }
            // Corrupt data does not heal by retrying: one answer wherever it is read.
            ServiceError::Store(crate::store::StoreError::Corrupt(_)) => {
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The correlation id is filled in by the middleware, which knows the request.
        let body = meshauth_wire::error::body(self.code, &self.message, "");
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// Marks an error answer for the middleware (metrics, correlation id).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[derive(Debug)]
pub struct OAuthReply(pub OAuthError);

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let status = if self.0.code == crate::error::OAuthCode::InvalidClient {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut resp = (
            status,
            axum::Json(json!({"error": self.0.code.as_str(), "error_description": description_charset(&self.0.description)})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"meshauth\""),
            );
        }
        resp.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        resp.extensions_mut()
            .insert(ErrorCode(self.0.code.as_str()));
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

impl IntoResponse for GrantReply {
    fn into_response(self) -> Response {
        match self {
            GrantReply::OAuth(o) => o.into_response(),
            GrantReply::Api(a) => a.into_response(),
        }
    }
}
