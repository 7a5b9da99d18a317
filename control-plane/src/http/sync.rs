//! What filters call: the long poll for signed snapshots and deltas, the confirmation
//! of a Bloom hit, and the distribution key they pin. The protocol's rules are in
//! `crate::longpoll`; here they meet the store, the signer and the caps.

use std::sync::Arc;

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
use crate::error::ServiceError;
use crate::longpoll::{self, PollQuery, PollRules, Reply};
use crate::metrics::AnswerLabel;
use crate::service::{now, App};
use meshauth_wire::headers::{HEAD, VERSION};
use meshauth_wire::sync::{ConfirmAnswer, ConfirmRequest, SignedConfirm};

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

/// Records the polling filter for `meshauth status` and the key-activation gate.
async fn record_filter(app: &App, q: &PollQuery) {
    let Some(f) = &q.filter else { return };
    match app
        .sync
        .saw_filter(app.store.as_ref(), f, q.applied_version(), now())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            app.metrics.sync_registry_full.inc();
        }
        // The poll itself still works; the filter is recorded on its next one.
        Err(e) => tracing::warn!(error = %e, "could not record a filter's version"),
    }
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
        crate::service::validate_name("filter", f)?;
    }
    record_filter(&app, &q).await;
    if let Some(epoch) = q.claims_ahead(app.sync.version()) {
        if app
            .sync
            .restart_epoch_if_behind(app.store.as_ref(), epoch, q.version, now())
            .await
            .map_err(ServiceError::from)?
        {
            app.metrics.sync_epoch_resets.inc();
        }
    }
    let epoch = app.sync.epoch();
    let mut rx = app.sync.subscribe();
    let held = *rx.borrow_and_update();
    if let Some(wait) = q.park(&epoch, held) {
        // Each parked poll holds a connection and a task: capped in total and per source.
        let Some(_parked) = guards.long_polls.try_acquire(source) else {
            app.metrics.long_polls_refused.inc();
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_long_polls",
                "too many long polls are parked; poll again later",
            ));
        };
        longpoll::wait_past(&mut rx, q.version, wait).await;
    }
    let head = app.sync.version();
    let base = match q.reply(&epoch, head) {
        Reply::NotModified(version) => {
            let mut resp = with_version(StatusCode::NOT_MODIFIED.into_response(), version);
            if let Ok(v) = HeaderValue::from_str(&app.sync.seal_head(version, now())) {
                resp.headers_mut().insert(HEAD, v);
            }
            return Ok(resp);
        }
        Reply::DeltaOrSnapshot { base } => Some(base),
        Reply::Snapshot => None,
    };
    // Every poller woken by a change asks for the same answer: build it once.
    let key = longpoll::answer_key(&app.sync.epoch(), now());
    if let Some(base) = base {
        let delta = answers
            .deltas
            .get_or_build(&key, base, head, || async {
                built(&app, "delta");
                let d = app
                    .sync
                    .delta(app.store.as_ref(), base, now())
                    .await
                    .map_err(ServiceError::from)?;
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
    app.metrics
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
    crate::service::validate_name("jti", &c.jti)?;
    if !ConfirmRequest::valid_nonce(&c.nonce) {
        return Err(ApiError::bad_request(
            "nonce must be 16-128 characters of the base64url alphabet",
        ));
    }
    let revoked = app.jti_revoked(&c.jti).await?;
    Ok(Json(app.sync.seal_confirm(&ConfirmAnswer {
        jti: c.jti,
        nonce: c.nonce,
        revoked,
    })))
}

/// The distribution key's public half, which filters pin, and the epoch it signs.
#[derive(Serialize)]
pub struct DistributionKey {
    public_key: String,
    epoch: String,
}

pub async fn distribution_key(State(app): State<Arc<App>>) -> Json<DistributionKey> {
    Json(DistributionKey {
        public_key: app.sync.distribution_public.clone(),
        epoch: app.sync.epoch(),
    })
}
