//! The HTTP API: public (JWKS, discovery, health, metrics), OAuth endpoints, the
//! authenticated admin API and the filters' sync channel. Handlers only translate
//! between HTTP and `App`; [`router`] builds what a listener serves.

mod admin;
mod answers;
pub mod error;
pub mod extract;
pub mod form;
pub mod guard;
mod issuers;
mod middleware;
mod oauth;
mod public;
mod sync;
mod throttle;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};

use crate::api::route;
use crate::app::App;
use error::ApiError;

/// The `PUT /admin/limits/{name}` body parser, for the fuzz targets.
pub use admin::policy_named;
use meshauth_wire::sync::{CONFIRM_PATH, DISTRIBUTION_KEY_PATH, SNAPSHOT_PATH, UNKNOWN_KID_PATH};

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

/// The routes of the listener `listen`: everything not moved to a separate listener
/// (`admin_listen`, `sync_listen`, `metrics_listen`).
pub fn router(app: Arc<App>) -> Router {
    let s = &app.settings();
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
    let s = &app.settings();
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
        .route(route::KEYS, get(admin::list_keys))
        .route(route::KEYS_ROTATE, post(admin::rotate_keys))
        .route(route::KEY_REVOKE, post(admin::revoke_key))
        .route(
            route::CLIENTS,
            post(admin::create_client).get(admin::list_clients),
        )
        .route(
            route::CLIENT,
            delete(admin::delete_client).patch(admin::update_client),
        )
        .route(route::CLIENT_SECRET, post(admin::rotate_client_secret))
        .route(route::TOKENS, post(admin::issue_token))
        .route(
            route::REVOCATIONS,
            post(admin::add_revocation).get(admin::list_revocations),
        )
        .route(route::LIMITS, get(admin::list_limits))
        .route(
            route::LIMIT,
            get(admin::get_limit)
                .put(admin::set_limit)
                .delete(admin::delete_limit),
        )
        .route(route::AUDIT, get(admin::read_audit))
        .route(route::AUDIT_VERIFY, get(admin::verify_audit))
        .route(route::AUDIT_HEAD, get(admin::audit_head))
        .route(route::STATUS, get(admin::status))
        .route(route::ISSUERS, post(issuers::add).get(issuers::list))
        .route(route::ISSUER, get(issuers::get).delete(issuers::delete))
        .route_layer(from_fn_with_state(app.clone(), middleware::require_admin))
}

/// What the filters call: the sync channel and the module Istio's agent fetches.
fn sync_routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route(SNAPSHOT_PATH, get(sync::snapshot))
        .route(CONFIRM_PATH, post(sync::confirm))
        .route(UNKNOWN_KID_PATH, post(sync::unknown_kid))
        .route_layer(from_fn_with_state(app.clone(), middleware::require_filter))
        // Public (after the layer): the distribution key's public half, which filters
        // pin, and the module.
        .route(DISTRIBUTION_KEY_PATH, get(sync::distribution_key))
        .route("/filter/meshauth.wasm", get(public::filter_wasm))
        .route(
            "/filter/meshauth.wasm.sha256",
            get(public::filter_wasm_sha256),
        )
}

fn metrics_routes() -> Router<Arc<App>> {
    Router::new().route("/metrics", get(public::metrics))
}

fn public_routes(app: &Arc<App>) -> Router<Arc<App>> {
    let oauth = Router::new()
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/oauth2/introspect", post(oauth::introspect))
        .route_layer(from_fn_with_state(
            app.clone(),
            middleware::throttle_clients,
        ));
    Router::new()
        .route("/.well-known/jwks.json", get(public::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(public::discovery),
        )
        .merge(oauth)
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
}

/// The layers every listener's routes get. Each route group is served by one listener
/// only, so each listener's guards see all of that group's traffic.
fn finish(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    let guards = Arc::new(guard::Guards::new(&app.settings().server));
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(from_fn_with_state(app.clone(), middleware::read_body))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(Extension(guards))
        .layer(Extension(Arc::new(answers::SyncAnswers::default())))
        .layer(from_fn_with_state(app.clone(), middleware::observe))
        .with_state(app)
}
