//! The OAuth endpoints: token (RFC 6749), revocation (RFC 7009) and introspection
//! (RFC 7662). Each parses its form, authenticates its caller and calls one service.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, GrantReply};
use super::extract::{self, Admin, OAuthForm};
use crate::app::App;
use crate::error::{GrantError, OAuthCode, OAuthError};
use crate::oauth::{ExchangeRequest, TOKEN_EXCHANGE};

/// Token and introspection answers are never cached (RFC 6749 §5.1).
fn no_store(body: impl Serialize) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response()
}

pub async fn token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    OAuthForm(p): OAuthForm,
) -> Result<Response, GrantReply> {
    let client = extract::client(&app, &headers, &p).await?;
    let resp = match p.get("grant_type") {
        Some("client_credentials") => {
            let client = client.ok_or_else(OAuthError::invalid_client)?;
            app.oauth()
                .client_credentials(&client, p.get("scope"))
                .await?
        }
        Some("refresh_token") => {
            let rt = p.required("refresh_token")?;
            app.oauth().refresh(rt, client.as_ref()).await?
        }
        Some(TOKEN_EXCHANGE) => {
            let client = client.ok_or_else(OAuthError::invalid_client)?;
            let req = ExchangeRequest {
                subject_token: p.get("subject_token"),
                subject_token_type: p.get("subject_token_type"),
                actor_token: p.get("actor_token"),
                actor_token_type: p.get("actor_token_type"),
                requested_token_type: p.get("requested_token_type"),
                audience: p.get("audience"),
                resource: p.get("resource"),
                scope: p.get("scope"),
            };
            // Taken before, given back unless refused: exchanges in flight together
            // cannot all pass a budget that has one left.
            if let Err(wait) = app.oauth().take_exchange_budget(&client.client_id) {
                return Err(rate_limited(
                    wait,
                    "too many refused token exchanges from this client",
                ));
            }
            let out = app.oauth().token_exchange(&client, req).await;
            if !matches!(out, Err(GrantError::OAuth(_))) {
                app.oauth().exchange_not_refused(&client.client_id);
            }
            out?
        }
        Some(other) => {
            return Err(OAuthError::new(
                OAuthCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported"),
            )
            .into())
        }
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
    };
    Ok(no_store(resp))
}

/// 429 with `Retry-After`: a client's budget of costly calls is spent.
fn rate_limited(wait: u64, what: &str) -> GrantReply {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{what}; retry in {wait} s"),
    )
    .retry_after(wait)
    .into()
}

/// RFC 7009. Callers authenticate as a client; the answer is 200 whether or not the
/// token was known.
pub async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    OAuthForm(p): OAuthForm,
) -> Result<Response, GrantReply> {
    let client = extract::required_client(&app, &headers, &p).await?;
    if let Err(wait) = app.oauth().take_revocation_budget(&client.client_id) {
        return Err(rate_limited(
            wait,
            "too many revocation calls from this client",
        ));
    }
    let t = p.required("token")?;
    app.oauth()
        .revoke_token(&client.client_id, t, Some(&client.client_id))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// RFC 7662, for authenticated clients or an admin bearer token.
pub async fn introspect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    OAuthForm(p): OAuthForm,
) -> Result<Response, GrantReply> {
    if Admin::of(&app, &headers).is_none() {
        extract::required_client(&app, &headers, &p).await?;
    }
    let t = p.required("token")?;
    Ok(no_store(app.oauth().introspect(t).await?))
}
