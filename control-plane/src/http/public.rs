//! What anyone may read: the JWKS, the RFC 8414 metadata, health, the metrics and the
//! filter module.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use crate::app::App;
use crate::keys::{KeyState, Keyring};
use crate::oauth::TOKEN_EXCHANGE;

pub async fn jwks(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (body, etag) = app.jwks();
    let max_age = app.settings().keys.jwks_max_age.as_secs();
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if etag_matches(&headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `If-None-Match` with the weak comparison (RFC 9110 §13.1.2): a list of entity tags,
/// `W/` prefixes ignored, or `*`.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// RFC 8414 metadata: only what exists. There is no authorization endpoint, so no
/// response type, and no ID tokens (this is not an OpenID Provider, so no
/// `openid-configuration` is served either).
#[derive(Serialize)]
pub struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    grant_types_supported: [&'static str; 3],
    response_types_supported: [&'static str; 0],
    token_endpoint_auth_methods_supported: [&'static str; 2],
    revocation_endpoint_auth_methods_supported: [&'static str; 2],
    introspection_endpoint_auth_methods_supported: [&'static str; 2],
}

impl Discovery {
    fn of(iss: &str) -> Discovery {
        const CLIENT_AUTH: [&str; 2] = ["client_secret_basic", "client_secret_post"];
        Discovery {
            issuer: iss.to_string(),
            jwks_uri: format!("{iss}/.well-known/jwks.json"),
            token_endpoint: format!("{iss}/oauth2/token"),
            revocation_endpoint: format!("{iss}/oauth2/revoke"),
            introspection_endpoint: format!("{iss}/oauth2/introspect"),
            grant_types_supported: ["client_credentials", "refresh_token", TOKEN_EXCHANGE],
            response_types_supported: [],
            token_endpoint_auth_methods_supported: CLIENT_AUTH,
            revocation_endpoint_auth_methods_supported: CLIENT_AUTH,
            introspection_endpoint_auth_methods_supported: CLIENT_AUTH,
        }
    }
}

pub async fn discovery(State(app): State<Arc<App>>) -> Json<Discovery> {
    Json(Discovery::of(&app.settings().issuer))
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// Per published state, its label and the age of its newest key (0: none).
fn key_ages(ring: &Keyring, now: i64) -> [(&'static str, i64); 3] {
    [
        (KeyState::Next, "next"),
        (KeyState::Current, "current"),
        (KeyState::Previous, "previous"),
    ]
    .map(|(state, label)| {
        let age = ring
            .published()
            .filter(|k| k.state == state)
            .map(|k| now - k.created_at)
            .min()
            .unwrap_or(0);
        (label, age)
    })
}

/// The gauges read at scrape time: key ages, connected filters and their lag.
async fn refresh_gauges(app: &App) {
    let now = app.now();
    for (state, age) in key_ages(&app.keyring(), now) {
        app.metrics()
            .key_age
            .get_or_create(&crate::metrics::StateLabel {
                state: state.into(),
            })
            .set(age);
    }
    let current = app.sync().version();
    let recent = app
        .sync()
        .connected_filters(app.store().as_ref(), now)
        .await
        .unwrap_or_default();
    app.metrics().filters_connected.set(recent.len() as i64);
    let lag = recent
        .iter()
        .map(|f| current.saturating_sub(f.applied_version))
        .max()
        .unwrap_or(0);
    app.metrics()
        .filter_max_lag
        .set(i64::try_from(lag).unwrap_or(i64::MAX));
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    refresh_gauges(&app).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics().encode(),
    )
        .into_response()
}

fn no_wasm() -> ApiError {
    ApiError::not_found("this control plane serves no filter module (set filter_wasm)")
}

/// The filter module, for Istio's `WasmPlugin` (`url` + `sha256`).
pub async fn filter_wasm(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (bytes, sha) = app.filter_wasm().ok_or_else(no_wasm)?;
    let etag = format!("\"{sha}\"");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/wasm"),
            ),
            (header::ETAG, etag_value),
        ],
        bytes.to_vec(),
    )
        .into_response())
}

pub async fn filter_wasm_sha256(State(app): State<Arc<App>>) -> Result<String, ApiError> {
    let (_, sha) = app.filter_wasm().ok_or_else(no_wasm)?;
    Ok(format!("{sha}\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::KeyRecord;

    fn key(kid: &str, state: KeyState, created_at: i64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            public: String::new(),
            sealed_private: String::new(),
            state,
            created_at,
            activated_at: None,
            deactivated_at: None,
            retired_at: None,
            revoked: false,
            published_version: None,
        }
    }

    #[test]
    fn each_state_reports_its_newest_published_key() {
        let ring = Keyring {
            keys: vec![
                key("a", KeyState::Previous, 100),
                key("b", KeyState::Previous, 400),
                key("c", KeyState::Current, 500),
                key("d", KeyState::Retired, 900),
            ],
            ..Keyring::default()
        };
        assert_eq!(
            key_ages(&ring, 1_000),
            [("next", 0), ("current", 500), ("previous", 600)]
        );
    }

    #[test]
    fn if_none_match_is_a_weak_list() {
        let mut h = HeaderMap::new();
        assert!(!etag_matches(&h, "\"x\""));
        h.insert(header::IF_NONE_MATCH, "\"a\", W/\"x\"".parse().unwrap());
        assert!(etag_matches(&h, "\"x\""));
        assert!(!etag_matches(&h, "\"y\""));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(etag_matches(&h, "\"y\""));
    }
}
