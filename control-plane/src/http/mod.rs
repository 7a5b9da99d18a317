//! The HTTP API: public (JWKS, discovery, health, metrics), OAuth endpoints and the
//! authenticated admin API. Handlers only translate between HTTP and `App`.

pub mod error;
mod handlers;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::metrics::RouteLabel;
use crate::service::App;
use error::{ApiError, ErrorCode};

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .route("/admin/keys", get(handlers::list_keys))
        .route("/admin/keys/rotate", post(handlers::rotate_keys))
        .route("/admin/keys/{kid}/revoke", post(handlers::revoke_key))
        .route(
            "/admin/clients",
            post(handlers::create_client).get(handlers::list_clients),
        )
        .route("/admin/clients/{id}", delete(handlers::delete_client))
        .route(
            "/admin/clients/{id}/secret",
            post(handlers::rotate_client_secret),
        )
        .route("/admin/tokens", post(handlers::issue_token))
        .route(
            "/admin/revocations",
            post(handlers::add_revocation).get(handlers::list_revocations),
        )
        .route("/admin/limits", get(handlers::list_limits))
        .route(
            "/admin/limits/{name}",
            get(handlers::get_limit)
                .put(handlers::set_limit)
                .delete(handlers::delete_limit),
        )
        .route("/admin/audit", get(handlers::read_audit))
        .route("/admin/audit/verify", get(handlers::verify_audit))
        .route("/admin/status", get(handlers::status))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_admin));
    Router::new()
        .route("/.well-known/jwks.json", get(handlers::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(handlers::discovery),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(handlers::discovery),
        )
        .route("/oauth2/token", post(handlers::token))
        .route("/oauth2/revoke", post(handlers::revoke))
        .route("/oauth2/introspect", post(handlers::introspect))
        .merge(
            Router::new()
                .route("/sync/v1/snapshot", get(handlers::sync_snapshot))
                .route("/sync/v1/confirm", post(handlers::sync_confirm))
                .route_layer(middleware::from_fn_with_state(app.clone(), require_filter)),
        )
        // The public half of the distribution key: filters pin it in their configuration.
        .route("/sync/v1/distribution-key", get(handlers::distribution_key))
        .route("/filter/meshauth.wasm", get(handlers::filter_wasm))
        .route(
            "/filter/meshauth.wasm.sha256",
            get(handlers::filter_wasm_sha256),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .merge(admin)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The admin identity for the audit log: a prefix of the token's hash, never the token.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

async fn require_admin(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match bearer {
        Some(t) if app.admin_authorized(t) => {
            let id = format!("admin:{}", &crate::crypto::sha256_hex(t)[..12]);
            req.extensions_mut().insert(Admin(id));
            next.run(req).await
        }
        _ => {
            let mut r = ApiError::unauthorized().into_response();
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"meshauth-admin\""),
            );
            r
        }
    }
}

/// Sync calls come from filters holding the fleet credential: snapshots carry personal
/// data (revoked subjects and sessions, per-user limits), confirm answers whether a
/// `jti` is revoked, and polls enter the registry that gates key activation.
async fn require_filter(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if app.sync_authorized(bearer) {
        return next.run(req).await;
    }
    app.metrics.sync_unauthorized.inc();
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "a valid sync fleet credential is required",
    )
    .into_response();
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"meshauth-sync\""),
    );
    r
}

/// Latency and error metrics, and the correlation id on every error body.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = req.method().to_string();
    let correlation = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| crate::crypto::random_token(12), str::to_owned);
    let resp = next.run(req).await;
    app.metrics
        .latency
        .get_or_create(&RouteLabel { route, method })
        .observe(started.elapsed().as_secs_f64());
    let mut resp = match resp.extensions().get::<ErrorCode>().copied() {
        Some(ErrorCode(code)) => {
            app.metrics.error(code);
            with_correlation(resp, &correlation).await
        }
        None => resp,
    };
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn with_correlation(resp: Response, correlation: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let patched = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) if v["error"].is_object() => {
            v["error"]["correlation_id"] = correlation.into();
            v.to_string().into_bytes()
        }
        _ => bytes.to_vec(),
    };
    parts.headers.remove("content-length");
    Response::from_parts(parts, axum::body::Body::from(patched))
}
