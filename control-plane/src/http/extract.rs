//! What handlers take from a request: bearer tokens, JSON bodies with errors in the
//! API's shape, OAuth form parameters and the client they authenticate.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, GrantReply, OAuthReply};
use super::form::{basic_credentials, Params};
use crate::app::App;
use crate::clients::ClientRecord;
use crate::error::OAuthError;

/// The credentials of an `Authorization` value in `scheme`, which is matched without
/// regard to case (RFC 9110 §11.1).
pub fn auth_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth_scheme(v, scheme))
}

/// The bearer token of a request: the one parser for admin, sync and introspection
/// callers.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    authorization(headers, "Bearer").map(str::trim)
}

/// The admin identity for the audit log: a prefix of the token's hash, never the token.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl Admin {
    /// The admin a request's bearer token authenticates, if any.
    pub fn of(app: &App, headers: &HeaderMap) -> Option<Admin> {
        let token = bearer(headers).filter(|t| app.admin_authorized(t))?;
        Some(Admin(format!(
            "admin:{}",
            &crate::crypto::sha256_hex(token)[..12]
        )))
    }
}

/// JSON bodies with errors in the API's shape (status from the rejection, 422 as 400).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::rejected(status, r.body_text())
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// The form parameters of an OAuth request; malformed ones are an OAuth error.
pub struct OAuthForm(pub Params);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let declared = content_type(req.headers()).map(str::to_owned);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Params::parse(declared.as_deref(), &body)
            .map(OAuthForm)
            .map_err(|e| OAuthReply(e).into_response())
    }
}

/// The client credential a request presents (Basic or form), for the failure throttle:
/// the id with the secret, so failures with wrong secrets never count against the
/// right one (client ids are not secret; a neighbour could otherwise lock a client out
/// by failing with its id). Nothing is checked here. Linear in the body, like
/// `Params::parse`.
pub fn claimed_client(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let (id, secret) = match authorization(headers, "Basic") {
        Some(b) => basic_credentials(b)?,
        None => {
            let p = Params::parse(content_type(headers), body).ok()?;
            let id = p.get("client_id")?.to_owned();
            (id, p.get("client_secret").unwrap_or_default().to_owned())
        }
    };
    // The id's length first, so no other (id, secret) pair gives the same bytes.
    Some(format!("{}:{id}{secret}", id.len()))
}

/// client_secret_basic or client_secret_post; `None` when the request carries neither.
pub async fn client(
    app: &App,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Option<ClientRecord>, GrantReply> {
    let basic = authorization(headers, "Basic");
    let (id, secret) = match (basic, p.get("client_id"), p.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request("use one client authentication method").into())
        }
        (Some(b), _, None) => basic_credentials(b).ok_or_else(OAuthError::invalid_client)?,
        (None, Some(i), Some(s)) => (i.to_string(), s.to_string()),
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(OAuthError::invalid_client().into())
        }
        (None, None, None) => return Ok(None),
    };
    match app.authenticate_client(&id, &secret).await? {
        Some(c) => Ok(Some(c)),
        None => Err(OAuthError::invalid_client().into()),
    }
}

/// The authenticated client a request must name.
pub async fn required_client(
    app: &App,
    headers: &HeaderMap,
    p: &Params,
) -> Result<ClientRecord, GrantReply> {
    Ok(client(app, headers, p)
        .await?
        .ok_or_else(OAuthError::invalid_client)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn schemes_match_without_regard_to_case_and_need_a_space() {
        assert_eq!(auth_scheme("bEaReR abc", "Bearer"), Some("abc"));
        assert_eq!(auth_scheme("Bearerabc", "Bearer"), None);
        assert_eq!(auth_scheme("Basic abc", "Bearer"), None);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
    }
}
