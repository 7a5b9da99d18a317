//! The layers around the handlers: admin and sync authentication, the per-source
//! throttle of client authentication, the body read deadline, and the metrics and
//! correlation id of every answer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::error::{ApiError, ErrorMark};
use super::extract::{bearer, claimed_client, Admin};
use super::guard::{self, Checked, Guards};
use super::MAX_BODY;
use crate::app::App;
use crate::error::OAuthCode;
use crate::metrics::RouteLabel;
use meshauth_wire::headers::REQUEST_ID;

pub async fn require_admin(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<Guards>>,
    mut req: Request,
    next: Next,
) -> Response {
    let source = guard::source(req.extensions());
    let claimed = bearer(req.headers()).unwrap_or_default().as_bytes();
    let admin = match guards.check(app.metrics(), "admin", source, claimed, || {
        Admin::of(&app, req.headers())
    }) {
        Checked::Passed(admin) => admin,
        Checked::Refused(refused) => return refused,
        Checked::Failed => {
            return challenge(
                ApiError::unauthenticated("a valid admin bearer token is required"),
                "Bearer realm=\"meshauth-admin\"",
            )
        }
    };
    // Path segments are ids and names (at most 256 bytes, percent-encoded at most
    // three times that): longer ones never reach the store.
    if req.uri().path().split('/').any(|seg| seg.len() > 3 * 256) {
        return ApiError::bad_request("a path segment is longer than 256 bytes").into_response();
    }
    req.extensions_mut().insert(admin);
    next.run(req).await
}

/// Sync calls come from filters holding the fleet credential: snapshots carry personal
/// data (revoked subjects and sessions, per-user limits), confirm answers whether a
/// `jti` is revoked, and polls enter the registry that gates key activation.
pub async fn require_filter(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<Guards>>,
    req: Request,
    next: Next,
) -> Response {
    // Failed credentials are throttled per source like client and admin ones, so a weak
    // credential cannot be guessed online at full speed.
    let source = guard::source(req.extensions());
    let bearer = bearer(req.headers());
    let claimed = bearer.unwrap_or_default().as_bytes();
    match guards.check(app.metrics(), "sync", source, claimed, || {
        app.sync_authorized(bearer).then_some(())
    }) {
        Checked::Passed(()) => next.run(req).await,
        Checked::Refused(refused) => refused,
        Checked::Failed => {
            app.metrics().sync_unauthorized.inc();
            challenge(
                ApiError::unauthenticated("a valid sync fleet credential is required"),
                "Bearer realm=\"meshauth-sync\"",
            )
        }
    }
}

/// A 401 with its `WWW-Authenticate` challenge.
fn challenge(error: ApiError, www_authenticate: &'static str) -> Response {
    let mut r = error.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(www_authenticate),
    );
    r
}

/// Slows client authentication by source and presented credential (client id and
/// secret): a source, or a credential from it, over its failure budget gets 429 before
/// it is checked; an `invalid_client` answer counts a failure, a success marks the
/// credential as known there.
pub async fn throttle_clients(
    State(app): State<Arc<App>>,
    Extension(guards): Extension<Arc<Guards>>,
    req: Request,
    next: Next,
) -> Response {
    let source = guard::source(req.extensions());
    // `read_body` has read the body whole unless it declared more than `MAX_BODY`,
    // which is refused here as the handler would; within `read_body`'s deadline.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return too_large();
    };
    let claimed = claimed_client(&parts.headers, &bytes).unwrap_or_default();
    if let Some(refused) = guards.refuse(app.metrics(), "client", source, claimed.as_bytes()) {
        return refused;
    }
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if matches!(
        resp.extensions().get::<ErrorMark>(),
        Some(ErrorMark::OAuth(OAuthCode::InvalidClient))
    ) {
        guards.failed(app.metrics(), "client", source, claimed.as_bytes());
    } else if resp.status().is_success() && !claimed.is_empty() {
        guards.succeeded("client", source, claimed.as_bytes());
    }
    resp
}

fn too_large() -> Response {
    ApiError::rejected(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("bodies are limited to {MAX_BODY} bytes"),
    )
    .into_response()
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
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The largest declared body read (and dropped) before a 413, see `read_body`.
const MAX_DRAINED: u64 = 1 << 20;

async fn drain(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// Reads the whole body (at most `MAX_BODY`) within `body_read_timeout`, so a client
/// that trickles its body cannot hold a handler: 408 when it is too slow.
pub async fn read_body(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = app.settings().server.body_read_timeout;
    if let Some(n) = declared.filter(|n| *n > MAX_BODY as u64) {
        // Closing a socket with unread bytes makes the kernel reset the connection, and
        // the reset can reach the client before the 413 does. So a body up to
        // `MAX_DRAINED` is read and dropped (timed, never kept) before the answer; a
        // larger one is refused at once. A client awaiting `100 Continue` has sent
        // nothing yet: reading would ask it for the body, so it is answered at once.
        let mut r = too_large();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let awaits_continue = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if n <= MAX_DRAINED && !awaits_continue {
            let drained = tokio::time::timeout(limit, drain(req.into_body())).await;
            if drained.is_err() {
                return too_slow(&app);
            }
        }
        return r;
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

/// Latency and error metrics, and the correlation id on every answer (and in every
/// API error body).
pub async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
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
    let mut resp = plain_rejection_as_api_error(next.run(req).await).await;
    app.metrics()
        .latency
        .get_or_create(&RouteLabel { route, method })
        .observe(started.elapsed().as_secs_f64());
    if let Some(mark) = resp.extensions().get::<ErrorMark>().cloned() {
        app.metrics().error(mark.code());
        if let ErrorMark::Api { code, message } = mark {
            let (mut parts, _) = resp.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let body = meshauth_wire::error::body(code, &message, &correlation);
            resp = Response::from_parts(parts, axum::body::Body::from(body));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// axum answers a bad query or path, an unknown method or a body over the limit itself,
/// in plain text (or empty) and without an error code: give those the one error shape.
/// JSON answers (every error of ours) are left as they are.
async fn plain_rejection_as_api_error(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json || resp.extensions().get::<ErrorMark>().is_some() {
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
    let mut r = ApiError::rejected(status, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        r.headers_mut().insert(header::ALLOW, allow.clone());
    }
    r
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
