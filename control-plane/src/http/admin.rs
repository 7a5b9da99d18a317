//! The admin API (`crate::api` types it): keys, clients, tokens, revocations, rate
//! limits, the audit log and status. Every route is behind the admin bearer token.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use crate::api::{
    AuditHead, AuditList, AuditQuery, AuditVerify, ClientChange, ClientList, ClientSecret,
    ClientView, CreatedClient, IssueToken, KeyList, KeyView, LimitList, NewClient, NewRevocation,
    RevocationKind, RevocationList, Status, SyncStatus, VerifyQuery,
};
use crate::app::App;
use crate::audit::Anchor;
use crate::clients::validate_name;
use crate::ctx::secs;
use crate::error::ServiceError;
use crate::issuers::TrustedIssuer;
use crate::keys::{KeyState, Keyring};
use crate::revocation::{Revocation, RuleIssuer};
use meshauth_wire::federation::MAX_TOKEN_LIFETIME_SECONDS;
use meshauth_wire::federation::SELF_ISSUER;
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::RuleClaim;

type ApiResult<T> = Result<T, ApiError>;

/// Answers that carry a secret are never cached.
fn no_store(status: StatusCode, body: impl serde::Serialize) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn key_list(ring: &Keyring) -> Json<KeyList> {
    Json(KeyList {
        keys: ring.keys.iter().map(KeyView::from).collect(),
        rotation_requested: ring.rotation_requested,
    })
}

pub async fn list_keys(State(app): State<Arc<App>>) -> ApiResult<Json<KeyList>> {
    app.reload_keys().await?;
    Ok(key_list(&app.keyring()))
}

pub async fn rotate_keys(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
) -> ApiResult<Json<KeyList>> {
    app.rotate_keys(&a.0).await?;
    Ok(key_list(&app.keyring()))
}

pub async fn revoke_key(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(kid): Path<String>,
) -> ApiResult<Json<KeyList>> {
    app.revoke_key(&a.0, &kid).await?;
    Ok(key_list(&app.keyring()))
}

pub async fn create_client(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(body): ApiJson<NewClient>,
) -> ApiResult<Response> {
    let (rec, client_secret) = app
        .create_client(&a.0, &body.name, body.scopes, body.token_exchange)
        .await?;
    let created = CreatedClient {
        client: ClientView::from(&rec),
        client_secret,
    };
    Ok(no_store(StatusCode::CREATED, created))
}

pub async fn list_clients(State(app): State<Arc<App>>) -> ApiResult<Json<ClientList>> {
    let clients = app.list_clients().await?;
    Ok(Json(ClientList {
        clients: clients.iter().map(ClientView::from).collect(),
    }))
}

pub async fn delete_client(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.delete_client(&a.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_client(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ClientChange>,
) -> ApiResult<Json<ClientView>> {
    let rec = app
        .set_client_token_exchange(&a.0, &id, body.token_exchange)
        .await?;
    Ok(Json(ClientView::from(&rec)))
}

pub async fn rotate_client_secret(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(client_id): Path<String>,
) -> ApiResult<Response> {
    let client_secret = app.rotate_client_secret(&a.0, &client_id).await?;
    Ok(no_store(
        StatusCode::OK,
        ClientSecret {
            client_id,
            client_secret,
        },
    ))
}

pub async fn issue_token(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(body): ApiJson<IssueToken>,
) -> ApiResult<Response> {
    let scope = body.scope.map(|s| s.into_list()).unwrap_or_default();
    let ttl = body
        .ttl
        .map(|t| t.seconds())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let resp = app
        .oauth()
        .issue_for_subject(&a.0, &body.sub, &scope, body.aud, ttl)
        .await?;
    Ok(no_store(StatusCode::OK, resp))
}

pub async fn add_revocation(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(b): ApiJson<NewRevocation>,
) -> ApiResult<StatusCode> {
    let scoped = b.issuer.as_deref().is_some_and(|i| i != SELF_ISSUER);
    if scoped && b.kind == RevocationKind::Token {
        return Err(ApiError::bad_request(
            "issuer: a token is always this control plane's; revoke another issuer's token by its jti (kind jti with issuer)",
        ));
    }
    let claim = match b.kind {
        RevocationKind::Token => {
            if !app.oauth().revoke_token(&a.0, &b.value, None).await? {
                return Err(ApiError::not_found(
                    "token (no live access or refresh token of this control plane: mistyped, expired or spent?) not found",
                ));
            }
            return Ok(StatusCode::NO_CONTENT);
        }
        RevocationKind::Jti => None,
        RevocationKind::Sub => Some(RuleClaim::Sub),
        RevocationKind::Sid => Some(RuleClaim::Sid),
        RevocationKind::ClientId => Some(RuleClaim::ClientId),
    };
    validate_name("value", &b.value)?;
    let issuer = match b.issuer.as_deref() {
        Some(name) if scoped => Some(trusted_issuer(&app, name).await?),
        _ => None,
    };
    let now = app.now();
    match claim {
        Some(c) => {
            let to = issuer.map(|i| RuleIssuer {
                name: i.name().to_string(),
                iss: i.issuer().to_string(),
            });
            let rule = Revocation::rule_from_now(c, b.value, now).scoped_to(to);
            app.revocations().revoke_rule(&a.0, rule).await?
        }
        None => {
            // A jti names one token whoever issued it (the key stays unscoped). A
            // provider's token may live as long as any issuer may be allowed (an
            // issuer's lifetime can be raised later, re-admitting longer tokens), not
            // only as long as ours: kept that long unless `exp` says less.
            let max_ttl = match &issuer {
                Some(_) => i64::try_from(MAX_TOKEN_LIFETIME_SECONDS).unwrap_or(i64::MAX),
                None => secs(app.settings().tokens.max_access_ttl),
            };
            let r = Revocation::jti_until(b.value, b.exp, now, max_ttl)?;
            app.revocations().revoke(&a.0, r, "admin").await?
        }
    };
    Ok(StatusCode::NO_CONTENT)
}

/// The trusted issuer a revocation names: an unknown name is refused (a rule for no
/// issuer would silently revoke nothing).
async fn trusted_issuer(app: &App, name: &str) -> ApiResult<TrustedIssuer> {
    match app.issuers().get(name).await {
        Ok(i) => Ok(i),
        Err(ServiceError::NotFound(_)) => Err(ApiError::bad_request(format!(
            "issuer: {:?} is not a trusted issuer (meshauth issuers list); leave it out for the control plane's own tokens",
            name.chars().take(64).collect::<String>()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The revocations still in force (expired ones are pruned on the next schedule step).
pub async fn list_revocations(State(app): State<Arc<App>>) -> ApiResult<Json<RevocationList>> {
    Ok(Json(RevocationList {
        revocations: app.live_revocations().await?,
    }))
}

pub async fn list_limits(State(app): State<Arc<App>>) -> ApiResult<Json<LimitList>> {
    Ok(Json(LimitList {
        limits: app.limits().await?,
    }))
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
        .ok_or_else(|| ApiError::not_found(format!("rate-limit policy {name:?} not found")))
}

/// The policy a `PUT` body describes: its `name` may be left out, or must be the
/// path's. Errors name the field (`overrides.alice.rate: …`).
pub fn policy_named(name: &str, mut body: Value) -> ApiResult<LimitPolicy> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    match fields.get("name") {
        None => {
            fields.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "name: must be {name:?}, as in the path"
            )))
        }
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        })
    })
}

/// `PUT /admin/limits/{name}`: 201 when the policy is new, 200 when it replaced one.
pub async fn set_limit(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let policy = policy_named(&name, body)?;
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

pub async fn read_audit(
    State(app): State<Arc<App>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let entries = match (q.from, q.last) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "from or last, not both: from reads on from an entry, last the newest entries",
            ))
        }
        (_, Some(last)) => app.audit().read_last(last.min(1000)).await?,
        (from, None) => {
            app.audit()
                .read(from.unwrap_or(0), q.limit.min(1000))
                .await?
        }
    };
    Ok(Json(AuditList { entries }))
}

pub async fn verify_audit(
    State(app): State<Arc<App>>,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<Json<AuditVerify>> {
    let anchor = q
        .anchor
        .map(|a| a.parse::<Anchor>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(Json(app.audit().verify(anchor.as_ref()).await?.into()))
}

/// The last audit entry's `SEQ:HASH`, to record as an anchor (no chain walk; 409 when
/// the stored head does not vouch for it).
pub async fn audit_head(State(app): State<Arc<App>>) -> ApiResult<Json<AuditHead>> {
    let head = app.audit().head().await?.map_err(|p| {
        ApiError::new(
            StatusCode::CONFLICT,
            "audit_broken",
            format!("no anchor to record: {p}; run audit verify"),
        )
    })?;
    Ok(Json(AuditHead { head }))
}

pub async fn status(State(app): State<Arc<App>>) -> ApiResult<Json<Status>> {
    app.reload_keys().await?;
    let ring = app.keyring();
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        issuer: app.settings().issuer.clone(),
        store: app.store().kind().to_string(),
        replica: app.replica_id().to_string(),
        keys: ring
            .keys
            .iter()
            .filter(|k| k.state != KeyState::Retired)
            .map(KeyView::from)
            .collect(),
        sync: SyncStatus {
            epoch: app.sync().epoch(),
            version: app.sync().version(),
            distribution_key: app.sync().distribution_public.clone(),
        },
        filters: app.sync().filters(app.store().as_ref(), app.now()).await?,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_policy_takes_its_name_from_the_path() {
        let policy = r#"{"key": ["route"], "rate": 5, "burst": 5"#;
        assert_eq!(
            policy_named("api", body(&format!("{policy}}}")))
                .unwrap()
                .name,
            "api"
        );
        let named = body(&format!(r#"{policy}, "name": "other"}}"#));
        assert!(policy_named("api", named).is_err());
        let bad = body(r#"{"key": ["nope"], "rate": 5, "burst": 5}"#);
        let e = policy_named("api", bad).unwrap_err();
        assert!(
            e.message.starts_with("key[0]: unknown key part"),
            "{}",
            e.message
        );
        assert!(policy_named("api", body("[1]")).is_err());
    }
}
