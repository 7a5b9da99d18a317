use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::answers::SyncAnswers;
use super::error::{ApiError, GrantReply};
use super::guard::{Guards, Source};
use super::Admin;
use crate::error::{OAuthError, ServiceError};
use crate::keys::KeyRecord;
use crate::metrics::AnswerLabel;
use crate::service::{App, ClientRecord, Revocation};
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::{ConfirmAnswer, ConfirmRequest, PollQuery, RuleClaim, SignedConfirm};

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
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_request",
        };
        ApiError::new(status, code, r.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ---- public ----

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
pub async fn discovery(State(app): State<Arc<App>>) -> Json<Value> {
    let iss = &app.settings().issuer;
    Json(json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
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

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let ring = app.keyring();
    let now = app.now();
    for state in ["next", "current", "previous"] {
        let age = ring
            .published()
            .filter(|k| {
                serde_json::to_value(k.state)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s == state))
                    .unwrap_or(false)
            })
            .map(|k| now - k.created_at)
            .min()
            .unwrap_or(0);
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
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this control plane serves no filter module (set filter_wasm)",
    )
}

/// The filter module, for Istio's `WasmPlugin` (`url` + `sha256`).
pub async fn filter_wasm(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
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

pub async fn filter_wasm_sha256(State(app): State<Arc<App>>) -> ApiResult<String> {
    let (_, sha) = app.filter_wasm().ok_or_else(no_wasm)?;
    Ok(format!("{sha}\n"))
}

// ---- filter sync ----

fn with_version(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        resp.headers_mut()
            .insert(meshauth_wire::headers::VERSION, v);
    }
    resp
}

/// Long poll: answers at once with a signed snapshot when the control plane is ahead of
/// `version` (or on another epoch), else when a change arrives, else 304 after `wait_ms`.
pub async fn sync_snapshot(
    State(app): State<Arc<App>>,
    Source(source): Source,
    Extension(guards): Extension<Arc<Guards>>,
    Extension(answers): Extension<Arc<SyncAnswers>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let q = PollQuery::parse(query.as_deref().unwrap_or_default())
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if let Some(f) = &q.filter {
        // The id is stored in the registry and shown by `meshauth status`: a name like
        // any other (at most 256 printable characters), not 10 KB of whatever.
        crate::service::validate_name("filter", f)?;
    }
    let sync = app.sync();
    let filter = q
        .filter
        .as_deref()
        .map(|f| (f, q.applied.unwrap_or(q.version)));
    let noted = sync
        .note_poll(
            app.store().as_ref(),
            filter,
            q.epoch.as_deref(),
            q.version,
            app.now(),
        )
        .await
        .map_err(ServiceError::from)?;
    if noted.registry_full {
        app.metrics().sync_registry_full.inc();
    }
    if noted.epoch_reset {
        app.metrics().sync_epoch_resets.inc();
    }
    let same_epoch = sync.same_epoch(q.epoch.as_deref());
    if sync.nothing_newer(q.epoch.as_deref(), q.version) && q.wait_ms > 0 {
        // Each parked poll holds a connection and a task: capped in total and per source.
        let Some(_parked) = guards.long_polls.try_acquire(source) else {
            app.metrics().long_polls_refused.inc();
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_long_polls",
                "too many long polls are parked; poll again later",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        };
        sync.wait_past(q.version, std::time::Duration::from_millis(q.wait_ms))
            .await;
    }
    let current = app.sync().version();
    if same_epoch && current <= q.version && q.version != 0 {
        let mut resp = with_version(StatusCode::NOT_MODIFIED.into_response(), current);
        if let Ok(v) = HeaderValue::from_str(&app.sync().seal_head(current, app.now())) {
            resp.headers_mut()
                .insert(meshauth_wire::sync::HEAD_HEADER, v);
        }
        return Ok(resp);
    }
    // Every poller woken by a change asks for the same answer: build it once. The key
    // carries the hour too, so an answer is re-signed at least every hour and its
    // `issued_at` stays inside the filters' maximum snapshot age.
    let head = app.sync().version();
    let key = format!(
        "{}@{}",
        app.sync().epoch(),
        app.now().div_euclid(crate::sync::SNAPSHOT_REFRESH_SECONDS)
    );
    if same_epoch && q.deltas {
        let delta = answers
            .deltas
            .get_or_build(&key, q.version, head, || async {
                app.metrics()
                    .sync_answers_built
                    .get_or_create(&AnswerLabel { kind: "delta" })
                    .inc();
                let d = app
                    .sync()
                    .delta(app.store().as_ref(), q.version, app.now())
                    .await
                    .map_err(ServiceError::from)?;
                Ok::<_, ServiceError>(d.map(|(v, body)| (v, Bytes::from(body))))
            })
            .await?;
        if let Some((version, body)) = delta {
            return Ok(with_version(
                ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                version,
            ));
        }
    }
    let snapshot = answers
        .snapshots
        .get_or_build(&key, 0, head, || async {
            app.metrics()
                .sync_answers_built
                .get_or_create(&AnswerLabel { kind: "snapshot" })
                .inc();
            let (version, body) = app.snapshot().await?;
            Ok::<_, ServiceError>(Some((version, Bytes::from(body.as_str().to_owned()))))
        })
        .await?;
    let (version, body) =
        snapshot.ok_or_else(|| ServiceError::Internal("no snapshot was built".into()))?;
    Ok(with_version(
        ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        version,
    ))
}

/// A filter confirms a Bloom hit before it refuses a token. The answer is signed by the
/// distribution key over the `jti` and the filter's nonce, so nothing on the path can
/// turn "revoked" into "not revoked".
pub async fn sync_confirm(
    State(app): State<Arc<App>>,
    ApiJson(c): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<SignedConfirm>> {
    crate::service::validate_name("jti", &c.jti)?;
    if !ConfirmRequest::valid_nonce(&c.nonce) {
        return Err(ServiceError::Invalid(
            "nonce must be 16-128 characters of the base64url alphabet".into(),
        )
        .into());
    }
    let revoked = app.jti_revoked(&c.jti).await?;
    Ok(Json(app.sync().seal_confirm(&ConfirmAnswer {
        jti: c.jti,
        nonce: c.nonce,
        revoked,
    })))
}

pub async fn distribution_key(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"public_key": app.sync().distribution_public, "epoch": app.sync().epoch()}))
}

// ---- OAuth ----

/// At most this many form parameters: the OAuth endpoints use a handful, and the cap
/// is checked before anything is decoded.
pub const MAX_PARAMS: usize = 32;
/// Client ids and secrets longer than this are refused before the store is touched.
pub const MAX_CLIENT_CREDENTIAL: usize = 256;
/// Any other parameter (a token, a scope) longer than this is refused.
pub const MAX_PARAM_VALUE: usize = 8 * 1024;

/// Form parameters; each may appear once (RFC 6749 §3.2). Linear in the body: the
/// count is capped before decoding and repeats are found with a set, so a body of many
/// short keys costs no more than any other body of its size. The body must be declared
/// a form (RFC 6749 §4.4.2, RFC 7009 §2.1, RFC 7662 §2.1): a `text/plain` POST is one a
/// browser sends cross-site without asking first.
fn form(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, OAuthError> {
    let declared_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !declared_form {
        return Err(OAuthError::invalid_request(
            "content-type must be application/x-www-form-urlencoded",
        ));
    }
    let count = body.split(|b| *b == b'&').filter(|p| !p.is_empty()).count();
    if count > MAX_PARAMS {
        return Err(OAuthError::invalid_request(format!(
            "at most {MAX_PARAMS} parameters are accepted"
        )));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::invalid_request("body must be application/x-www-form-urlencoded")
    })?;
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    for (k, v) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is repeated",
                shorten(k)
            )));
        }
        let cap = match k.as_str() {
            "client_id" | "client_secret" => MAX_CLIENT_CREDENTIAL,
            _ => MAX_PARAM_VALUE,
        };
        if k.len() > 64 || v.len() > cap {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is too long",
                shorten(k)
            )));
        }
    }
    Ok(pairs)
}

/// A client-supplied name cut short for an error message.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(32).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// A parameter's value; an empty one counts as absent (RFC 6749 §3.2).
fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Percent-decoding of one part of a Basic credential (RFC 6749 §2.3.1: each part is
/// form-urlencoded). Unlike a form parser it keeps every byte: `&`, `=` and `;` are
/// data here, so `secret&junk` stays `secret&junk`.
fn form_decode_part(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `Authorization: Basic` per RFC 6749 §2.3.1: base64 of `id:secret`, split at the
/// first `:`, each part form-urlencoded. Anything malformed or over-long is `None`.
fn basic_credentials(b: &str) -> Option<(String, String)> {
    // Base64 of two capped, percent-encoded parts: anything longer is refused undecoded.
    if b.len() > 4 * (6 * MAX_CLIENT_CREDENTIAL + 1) / 3 + 4 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (i, s) = text.split_once(':')?;
    let (id, secret) = (form_decode_part(i)?, form_decode_part(s)?);
    if id.is_empty() || id.len() > MAX_CLIENT_CREDENTIAL || secret.len() > MAX_CLIENT_CREDENTIAL {
        return None;
    }
    Some((id, secret))
}

/// The client credential a request presents (Basic or form), for the failure throttle:
/// the id with the secret, so failures with wrong secrets never count against the
/// right one (client ids are not secret; a neighbour could otherwise lock a client out
/// by failing with its id). Nothing is checked here. Linear in the body, like `form`.
pub(super) fn claimed_client(headers: &HeaderMap, body: &Bytes) -> Option<String> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::auth_scheme(v, "Basic"));
    let (id, secret) = match basic {
        Some(b) => basic_credentials(b)?,
        None => {
            let p = form(headers, body).ok()?;
            let id = param(&p, "client_id")?.to_owned();
            (
                id,
                param(&p, "client_secret").unwrap_or_default().to_owned(),
            )
        }
    };
    // The id's length first, so no other (id, secret) pair gives the same bytes.
    Some(format!("{}:{id}{secret}", id.len()))
}

/// client_secret_basic or client_secret_post; `None` when the request carries neither.
async fn client_auth(
    app: &App,
    headers: &HeaderMap,
    p: &[(String, String)],
) -> Result<Option<ClientRecord>, GrantReply> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::auth_scheme(v, "Basic"));
    let (id, secret) = match (basic, param(p, "client_id"), param(p, "client_secret")) {
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

fn no_store(v: Value) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(v),
    )
        .into_response()
}

pub async fn token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GrantReply> {
    let p = form(&headers, &body)?;
    let client = client_auth(&app, &headers, &p).await?;
    let resp = match param(&p, "grant_type") {
        Some("client_credentials") => {
            let client = client.ok_or_else(OAuthError::invalid_client)?;
            app.client_credentials(&client, param(&p, "scope")).await?
        }
        Some("refresh_token") => {
            let rt = param(&p, "refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            app.refresh(rt, client.as_ref()).await?
        }
        Some(other) => {
            return Err(OAuthError::new(
                crate::error::OAuthCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported"),
            )
            .into())
        }
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
    };
    Ok(no_store(serde_json::to_value(resp).unwrap_or_default()))
}

/// RFC 7009. Callers authenticate as a client; the answer is 200 whether or not the
/// token was known.
pub async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GrantReply> {
    let p = form(&headers, &body)?;
    let client = client_auth(&app, &headers, &p)
        .await?
        .ok_or_else(OAuthError::invalid_client)?;
    if let Err(wait) = app.take_revocation_budget(&client.client_id) {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many revocation calls from this client; retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    let t = param(&p, "token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    app.revoke_token(&client.client_id, t, Some(&client.client_id))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// RFC 7662, for authenticated clients or an admin bearer token.
pub async fn introspect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GrantReply> {
    let p = form(&headers, &body)?;
    let admin = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::auth_scheme(v, "Bearer"))
        .is_some_and(|t| app.admin_authorized(t.trim()));
    if !admin {
        client_auth(&app, &headers, &p)
            .await?
            .ok_or_else(OAuthError::invalid_client)?;
    }
    let t = param(&p, "token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok(no_store(app.introspect(t).await?))
}

// ---- admin ----

fn key_view(k: &KeyRecord) -> Value {
    json!({
        "kid": k.kid, "state": k.state, "created_at": k.created_at, "activated_at": k.activated_at,
        "deactivated_at": k.deactivated_at, "retired_at": k.retired_at, "revoked": k.revoked,
    })
}

fn keys_view(app: &App) -> Value {
    let ring = app.keyring();
    json!({"keys": ring.keys.iter().map(key_view).collect::<Vec<_>>(), "rotation_requested": ring.rotation_requested})
}

pub async fn list_keys(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    app.reload_keys().await?;
    Ok(Json(keys_view(&app)))
}

pub async fn rotate_keys(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
) -> ApiResult<Json<Value>> {
    app.rotate_keys(&a.0).await?;
    Ok(Json(keys_view(&app)))
}

pub async fn revoke_key(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(kid): Path<String>,
) -> ApiResult<Json<Value>> {
    app.revoke_key(&a.0, &kid).await?;
    Ok(Json(keys_view(&app)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

fn client_view(c: &ClientRecord) -> Value {
    json!({"client_id": c.client_id, "name": c.name, "scopes": c.scopes, "created_at": c.created_at})
}

pub async fn create_client(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(body): ApiJson<NewClient>,
) -> ApiResult<Response> {
    let (rec, secret) = app.create_client(&a.0, &body.name, body.scopes).await?;
    let mut v = client_view(&rec);
    v["client_secret"] = secret.into();
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(v),
    )
        .into_response())
}

pub async fn list_clients(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let clients = app.list_clients().await?;
    Ok(Json(
        json!({"clients": clients.iter().map(client_view).collect::<Vec<_>>()}),
    ))
}

pub async fn delete_client(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.delete_client(&a.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_client_secret(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let secret = app.rotate_client_secret(&a.0, &id).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"client_id": id, "client_secret": secret})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Scope {
    List(Vec<String>),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    sub: String,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    aud: Option<Vec<String>>,
    #[serde(default)]
    ttl: Option<Ttl>,
}

pub async fn issue_token(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(body): ApiJson<IssueToken>,
) -> ApiResult<Response> {
    let scope: Vec<String> = match body.scope {
        Some(Scope::List(l)) => l,
        Some(Scope::Text(t)) => t
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let ttl = match body.ttl {
        Some(Ttl::Seconds(s)) => Some(s),
        Some(Ttl::Text(t)) => Some(
            humantime::parse_duration(&t)
                .map_err(|e| ApiError::bad_request(format!("ttl: {e}")))?
                .as_secs() as i64,
        ),
        None => None,
    };
    let resp = app
        .issue_for_subject(&a.0, &body.sub, &scope, body.aud, ttl)
        .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(resp)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// `token` (a JWT or refresh token), `jti`, `sub`, `sid` or `client_id`.
    kind: String,
    value: String,
    /// For `jti`: when the token expires (the entry is kept until then).
    #[serde(default)]
    exp: Option<i64>,
}

pub async fn add_revocation(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(b): ApiJson<NewRevocation>,
) -> ApiResult<StatusCode> {
    crate::service::validate_name("value", &b.value).or_else(|e| {
        if b.kind == "token" {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    let now = app.now();
    let rule_from_now = |kind, value| Revocation::rule_from_now(kind, value, now);
    let r = match b.kind.as_str() {
        "token" => {
            if !app.revoke_token(&a.0, &b.value, None).await? {
                return Err(ServiceError::NotFound(
                    "token (no live access or refresh token of this control plane: mistyped, expired or spent?)"
                        .into(),
                )
                .into());
            }
            return Ok(StatusCode::NO_CONTENT);
        }
        "jti" => {
            let max_ttl = app.settings().tokens.max_access_ttl.as_secs() as i64;
            let exp = b.exp.unwrap_or(now + max_ttl);
            // No token of ours lives past now + its longest TTL; a larger `exp` would only
            // keep the entry (and overflow `exp + skew`).
            if !(0..=now.saturating_add(max_ttl)).contains(&exp) {
                return Err(ServiceError::Invalid(format!(
                    "exp must be a time between 0 and now + the longest access-token TTL ({max_ttl} s)"
                ))
                .into());
            }
            let r = Revocation::Jti { jti: b.value, exp };
            app.revoke(&a.0, r, "admin").await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        "sub" => rule_from_now(RuleClaim::Sub, b.value),
        "sid" => rule_from_now(RuleClaim::Sid, b.value),
        "client_id" => rule_from_now(RuleClaim::ClientId, b.value),
        other => {
            return Err(ApiError::bad_request(format!(
                "kind {other:?}: expected token, jti, sub, sid or client_id"
            )))
        }
    };
    app.revoke_rule(&a.0, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The revocations still in force (expired ones are pruned on the next schedule step).
pub async fn list_revocations(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"revocations": app.live_revocations().await?})))
}

// ---- rate limits ----

pub async fn list_limits(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"limits": app.limits().await?})))
}

pub async fn get_limit(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> ApiResult<Json<LimitPolicy>> {
    app.limits()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .map(Json)
        .ok_or_else(|| ServiceError::NotFound(format!("rate-limit policy {name:?}")).into())
}

/// `PUT /admin/limits/{name}`: the body is the policy; its `name` may be left out.
pub async fn set_limit(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(name): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<Response> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    match fields.get("name") {
        None => {
            fields.insert("name".into(), Value::String(name.clone()));
        }
        Some(Value::String(n)) if *n == name => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "name: must be {name:?}, as in the path"
            )))
        }
    }
    let policy: LimitPolicy = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        })
    })?;
    let created = app.set_limit(&a.0, policy.clone()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(policy)).into_response())
}

pub async fn delete_limit(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    app.delete_limit(&a.0, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

pub async fn read_audit(
    State(app): State<Arc<App>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let entries = app
        .audit()
        .read(q.from, q.limit.min(1000))
        .await
        .map_err(crate::error::ServiceError::from)?;
    Ok(Json(json!({"entries": entries})))
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    /// `SEQ:HASH` recorded outside the store: the chain must reach it unchanged.
    anchor: Option<String>,
}

pub async fn verify_audit(
    State(app): State<Arc<App>>,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<Json<Value>> {
    let anchor = q
        .anchor
        .map(|a| a.parse::<crate::audit::Anchor>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let report = app
        .audit()
        .verify(anchor.as_ref())
        .await
        .map_err(crate::error::ServiceError::from)?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// The last audit entry's `SEQ:HASH`, to record as an anchor (no chain walk; 409 when
/// the stored head does not vouch for it).
pub async fn audit_head(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let head = app
        .audit()
        .head()
        .await
        .map_err(crate::error::ServiceError::from)?
        .map_err(|p| {
            ApiError::new(
                StatusCode::CONFLICT,
                "audit_broken",
                format!("no anchor to record: {p}; run audit verify"),
            )
        })?;
    Ok(Json(json!({"head": head})))
}

pub async fn status(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    app.reload_keys().await?;
    let ring = app.keyring();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "issuer": app.settings().issuer,
        "store": app.store().kind(),
        "replica": app.replica_id(),
        "keys": ring.keys.iter().filter(|k| k.state != crate::keys::KeyState::Retired).map(key_view).collect::<Vec<_>>(),
        "sync": {"epoch": app.sync().epoch(), "version": app.sync().version(), "distribution_key": app.sync().distribution_public},
        "filters": app.sync().filters(app.store().as_ref(), app.now()).await.map_err(ServiceError::from)?,
    })))
}
