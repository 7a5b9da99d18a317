//! The HTTP API: public (JWKS, discovery, health, metrics), OAuth endpoints and the
//! authenticated admin API. Handlers only translate between HTTP and `App`.

mod answers;
pub mod error;
pub mod guard;
mod handlers;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};

use crate::metrics::RouteLabel;
use crate::service::App;
use error::{ApiError, ErrorCode};
use meshauth_wire::headers::REQUEST_ID;
use meshauth_wire::sync::{CONFIRM_PATH, DISTRIBUTION_KEY_PATH, SNAPSHOT_PATH};

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

/// The routes of the listener `listen`: everything not moved to a separate listener
/// (`admin_listen`, `sync_listen`, `metrics_listen`).
pub fn router(app: Arc<App>) -> Router {
    let s = app.settings();
    let mut routes = public_routes(&app);
    if s.sync_listen.is_none() {
        routes = routes.merge(sync_routes(&app));
    }
    if s.metrics_listen.is_none() {
        routes = routes.merge(metrics_routes());
    }
    if s.admin_listen.is_none() {
        routes = routes.merge(admin_routes(&app));
    }
    finish(routes, app)
}

/// Each separate listener's address and routes, besides `listen`'s.
pub fn separate_routers(app: &Arc<App>) -> Vec<(String, Router)> {
    let s = app.settings();
    [
        (s.admin_listen.clone(), admin_routes(app)),
        (s.sync_listen.clone(), sync_routes(app)),
        (s.metrics_listen.clone(), metrics_routes()),
    ]
    .into_iter()
    .filter_map(|(listen, routes)| Some((listen?, finish(routes, app.clone()))))
    .collect()
}

fn admin_routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
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
        .route("/admin/audit/head", get(handlers::audit_head))
        .route("/admin/status", get(handlers::status))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_admin))
}

/// What the filters call: the sync channel and the module Istio's agent fetches.
fn sync_routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route(SNAPSHOT_PATH, get(handlers::sync_snapshot))
        .route(CONFIRM_PATH, post(handlers::sync_confirm))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_filter))
        // Public (after the layer): the distribution key's public half, which filters
        // pin, and the module.
        .route(DISTRIBUTION_KEY_PATH, get(handlers::distribution_key))
        .route("/filter/meshauth.wasm", get(handlers::filter_wasm))
        .route(
            "/filter/meshauth.wasm.sha256",
            get(handlers::filter_wasm_sha256),
        )
}

fn metrics_routes() -> Router<Arc<App>> {
    Router::new().route("/metrics", get(handlers::metrics))
}

fn public_routes(app: &Arc<App>) -> Router<Arc<App>> {
    let oauth = Router::new()
        .route("/oauth2/token", post(handlers::token))
        .route("/oauth2/revoke", post(handlers::revoke))
        .route("/oauth2/introspect", post(handlers::introspect))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            throttle_clients,
        ));
    Router::new()
        .route("/.well-known/jwks.json", get(handlers::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(handlers::discovery),
        )
        .merge(oauth)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(handlers::readyz))
}

/// The layers every listener's routes get. Each route group is served by one listener
/// only, so each listener's guards see all of that group's traffic.
fn finish(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    let guards = Arc::new(guard::Guards::new(&app.settings().server));
    routes
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(app.clone(), read_body))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(Extension(guards))
        .layer(Extension(Arc::new(answers::SyncAnswers::default())))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The credentials of an `Authorization` value in `scheme`, which is matched without
/// regard to case (RFC 9110 §11.1).
pub(crate) fn auth_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The admin identity for the audit log: a prefix of the token's hash, never the token.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

async fn require_admin(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<guard::Guards>>,
    mut req: Request,
    next: Next,
) -> Response {
    let source = guard::source(req.extensions());
    let claimed = bearer(&req).unwrap_or_default().as_bytes().to_vec();
    if let Some(refused) = guards.refuse(app.metrics(), "admin", source, &claimed) {
        return refused;
    }
    let bearer = bearer(&req);
    match bearer {
        Some(t) if app.admin_authorized(t) => {
            guards.succeeded("admin", source, &claimed);
            // Path segments are ids and names (at most 256 bytes, percent-encoded at
            // most three times that): longer ones never reach the store.
            if req.uri().path().split('/').any(|seg| seg.len() > 3 * 256) {
                return ApiError::bad_request("a path segment is longer than 256 bytes")
                    .into_response();
            }
            let id = format!("admin:{}", &crate::crypto::sha256_hex(t)[..12]);
            req.extensions_mut().insert(Admin(id));
            next.run(req).await
        }
        _ => {
            guards.failed(app.metrics(), "admin", source, &claimed);
            challenge(ApiError::unauthorized(), "Bearer realm=\"meshauth-admin\"")
        }
    }
}

/// Sync calls come from filters holding the fleet credential: snapshots carry personal
/// data (revoked subjects and sessions, per-user limits), confirm answers whether a
/// `jti` is revoked, and polls enter the registry that gates key activation.
async fn require_filter(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<guard::Guards>>,
    req: Request,
    next: Next,
) -> Response {
    // Failed credentials are throttled per source like client and admin ones, so a weak
    // credential cannot be guessed online at full speed.
    let source = guard::source(req.extensions());
    let bearer = bearer(&req);
    let claimed = bearer.unwrap_or_default().as_bytes().to_vec();
    if let Some(refused) = guards.refuse(app.metrics(), "sync", source, &claimed) {
        return refused;
    }
    if app.sync_authorized(bearer) {
        guards.succeeded("sync", source, &claimed);
        return next.run(req).await;
    }
    app.metrics().sync_unauthorized.inc();
    guards.failed(app.metrics(), "sync", source, &claimed);
    challenge(
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid sync fleet credential is required",
        ),
        "Bearer realm=\"meshauth-sync\"",
    )
}

/// The bearer token of a request (scheme matched without regard to case).
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth_scheme(v, "Bearer"))
        .map(str::trim)
}

/// A 401 with its `WWW-Authenticate` challenge.
fn challenge(error: ApiError, www_authenticate: &'static str) -> Response {
    let mut r = error.into_response();
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static(www_authenticate),
    );
    r
}

/// Slows client authentication by source and presented credential (client id and
/// secret): a source, or a credential from it, over its failure budget gets 429 before
/// it is checked; an `invalid_client` answer counts a failure, a success marks the
/// credential as known there.
async fn throttle_clients(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<guard::Guards>>,
    req: Request,
    next: Next,
) -> Response {
    let source = guard::source(req.extensions());
    // `read_body` has read the body whole unless it declared more than `MAX_BODY`,
    // which is refused here as the handler would; within `read_body`'s deadline.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let claimed = handlers::claimed_client(&parts.headers, &bytes).unwrap_or_default();
    if let Some(refused) = guards.refuse(app.metrics(), "client", source, claimed.as_bytes()) {
        return refused;
    }
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if resp
        .extensions()
        .get::<ErrorCode>()
        .is_some_and(|c| c.0 == "invalid_client")
    {
        guards.failed(app.metrics(), "client", source, claimed.as_bytes());
    } else if resp.status().is_success() && !claimed.is_empty() {
        guards.succeeded("client", source, claimed.as_bytes());
    }
    resp
}

fn too_slow(app: &App) -> Response {
    app.metrics().read_timeouts.inc();
    let mut r = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
    )
    .into_response();
    r.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    r
}

/// Reads the whole body (at most `MAX_BODY`) within `body_read_timeout`, so a client
/// that trickles its body cannot hold a handler: 408 when it is too slow.
async fn read_body(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response()
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = app.settings().server.body_read_timeout;
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        // The handler's body limit refuses it after reading what it allows (answering
        // before that would reset a client that is still sending); that read is timed.
        return match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => too_slow(&app),
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => return too_slow(&app),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Latency and error metrics, and the correlation id on every error body.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = method_label(req.method()).to_string();
    let correlation = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| crate::crypto::random_token(12), str::to_owned);
    let resp = plain_rejection_as_api_error(next.run(req).await).await;
    app.metrics()
        .latency
        .get_or_create(&RouteLabel { route, method })
        .observe(started.elapsed().as_secs_f64());
    let mut resp = match resp.extensions().get::<ErrorCode>().copied() {
        Some(ErrorCode(code)) => {
            app.metrics().error(code);
            with_correlation(resp, &correlation).await
        }
        None => resp,
    };
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// A fixed set of method labels: any other method (hyper accepts any token) is "other",
/// so made-up methods cannot grow the metrics without bound. Routes are labelled by
/// their template (or "unmatched"), never by the path sent.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// axum answers a bad query or path, an unknown method or a body over the limit itself,
/// in plain text (or empty) and without an error code: give those the one error shape.
/// JSON answers (every error of ours, the OAuth throttle) are left as they are.
async fn plain_rejection_as_api_error(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json || resp.extensions().get::<ErrorCode>().is_some() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_string(),
        t => t.to_string(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_request",
    };
    let mut r = ApiError::new(status, code, message).into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        r.headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    r
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
