//! What filters call: the long poll for signed snapshots and deltas, the confirmation
//! of a Bloom hit, and the distribution key they pin. The protocol's rules are in
//! `crate::sync::longpoll`; here they meet the caps and the shared answer cache.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::answers::SyncAnswers;
use super::error::ApiError;
use super::extract::ApiJson;
use super::guard::{Guards, Source};
use crate::app::App;
use crate::error::ServiceError;
use crate::metrics::AnswerLabel;
use crate::sync::longpoll::{self, Reply};
use meshauth_wire::headers::{HEAD, VERSION};
use meshauth_wire::sync::{
    ConfirmAnswer, ConfirmRequest, PollQuery, SignedConfirm, UnknownKidAnswer, UnknownKidReport,
};

fn with_version(mut resp: Response, version: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        resp.headers_mut().insert(VERSION, v);
    }
    resp
}

fn signed_json(version: u64, body: Bytes) -> Response {
    with_version(
        ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        version,
    )
}

/// Long poll: answers at once with a signed snapshot when the control plane is ahead of
/// `version` (or on another epoch), else when a change arrives, else 304 after `wait_ms`.
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Source(source): Source,
    Extension(guards): Extension<Arc<Guards>>,
    Extension(answers): Extension<Arc<SyncAnswers>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = PollQuery::parse(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(f) = &q.filter {
        // The id is stored in the registry and shown by `meshauth status`: a name like
        // any other (at most 256 printable characters), not 10 KB of whatever.
        crate::clients::validate_name("filter", f)?;
    }
    let sync = app.sync();
    let filter = q
        .filter
        .as_deref()
        .map(|f| (f, q.applied.unwrap_or(q.version)));
    let epoch = q.epoch.as_deref();
    let noted = sync
        .note_poll(app.store().as_ref(), filter, epoch, q.version, app.now())
        .await?;
    if noted.registry_full {
        app.metrics().sync_registry_full.inc();
    }
    if noted.epoch_reset {
        app.metrics().sync_epoch_resets.inc();
    }
    let same_epoch = sync.same_epoch(epoch);
    if sync.nothing_newer(epoch, q.version) && q.wait_ms > 0 {
        // Each parked poll holds a connection and a task: capped in total and per source.
        let Some(_parked) = guards.long_polls.try_acquire(source) else {
            app.metrics().long_polls_refused.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_long_polls",
                "too many long polls are parked; poll again later",
            ));
        };
        sync.wait_past(q.version, Duration::from_millis(q.wait_ms))
            .await;
    }
    let head = sync.version();
    let base = match longpoll::reply(&q, same_epoch, head) {
        Reply::NotModified(version) => {
            let mut resp = with_version(StatusCode::NOT_MODIFIED.into_response(), version);
            if let Ok(v) = HeaderValue::from_str(&sync.seal_head(version, app.now())) {
                resp.headers_mut().insert(HEAD, v);
            }
            return Ok(resp);
        }
        Reply::DeltaOrSnapshot { base } => Some(base),
        Reply::Snapshot => None,
    };
    // Every poller woken by a change asks for the same answer: build it once.
    let key = longpoll::answer_key(&sync.epoch(), app.now());
    if let Some(base) = base {
        let delta = answers
            .deltas
            .get_or_build(&key, base, head, || async {
                built(&app, "delta");
                let d = sync.delta(app.store().as_ref(), base, app.now()).await?;
                Ok::<_, ServiceError>(d.map(|(v, body)| (v, Bytes::from(body))))
            })
            .await?;
        if let Some((version, body)) = delta {
            return Ok(signed_json(version, body));
        }
    }
    let snapshot = answers
        .snapshots
        .get_or_build(&key, 0, head, || async {
            built(&app, "snapshot");
            let (version, body) = app.snapshot().await?;
            Ok::<_, ServiceError>(Some((version, Bytes::from(body.as_str().to_owned()))))
        })
        .await?;
    let (version, body) =
        snapshot.ok_or_else(|| ServiceError::Internal("no snapshot was built".into()))?;
    Ok(signed_json(version, body))
}

fn built(app: &App, kind: &'static str) {
    app.metrics()
        .sync_answers_built
        .get_or_create(&AnswerLabel { kind })
        .inc();
}

/// A filter confirms a Bloom hit before it refuses a token. The answer is signed by the
/// distribution key over the `jti` and the filter's nonce, so nothing on the path can
/// turn "revoked" into "not revoked".
pub async fn confirm(
    State(app): State<Arc<App>>,
    ApiJson(c): ApiJson<ConfirmRequest>,
) -> Result<Json<SignedConfirm>, ApiError> {
    crate::clients::validate_name("jti", &c.jti)?;
    if !ConfirmRequest::valid_nonce(&c.nonce) {
        return Err(ApiError::bad_request(
            "nonce must be 16-128 characters of the base64url alphabet",
        ));
    }
    let revoked = app.jti_revoked(&c.jti).await?;
    Ok(Json(app.sync().seal_confirm(&ConfirmAnswer {
        jti: c.jti,
        nonce: c.nonce,
        revoked,
    })))
}

/// A filter saw a token of a trusted issuer with a `kid` its pushed keys lack: fetch
/// that issuer's keys now (at most once per `refetch_on_unknown_kid_interval`). `202`
/// with what was done; a report out of bounds is `400` and changes nothing.
pub async fn unknown_kid(
    State(app): State<Arc<App>>,
    ApiJson(report): ApiJson<UnknownKidReport>,
) -> Result<Response, ApiError> {
    report
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let outcome = app.issuers().unknown_kid(&report);
    Ok((StatusCode::ACCEPTED, Json(UnknownKidAnswer { outcome })).into_response())
}

/// The distribution key's public half, which filters pin, and the epoch it signs.
#[derive(Serialize)]
pub struct DistributionKey {
    public_key: String,
    epoch: String,
}

pub async fn distribution_key(State(app): State<Arc<App>>) -> Json<DistributionKey> {
    Json(DistributionKey {
        public_key: app.sync().distribution_public.clone(),
        epoch: app.sync().epoch(),
    })
}
