//! `/admin/issuers`: the trusted issuers (`crate::issuers`), behind the admin bearer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::ApiError;
use super::extract::{Admin, ApiJson};
use crate::api::{IssuerList, IssuerSpec, IssuerView};
use crate::app::App;
use crate::issuers::TrustedIssuer;

fn view(app: &App, i: &TrustedIssuer) -> IssuerView {
    IssuerView {
        spec: i.spec(),
        fetch: app.issuers().status(i.name()),
    }
}

/// 201 with the issuer as stored; 400 invalid, 409 its name or issuer taken.
pub async fn add(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    ApiJson(spec): ApiJson<IssuerSpec>,
) -> Result<Response, ApiError> {
    let added = app.issuers().add(&a.0, spec).await?;
    Ok((StatusCode::CREATED, Json(view(&app, &added))).into_response())
}

pub async fn list(State(app): State<Arc<App>>) -> Result<Json<IssuerList>, ApiError> {
    let issuers = app.issuers().list().await?;
    Ok(Json(IssuerList {
        issuers: issuers.iter().map(|i| view(&app, i)).collect(),
    }))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<IssuerView>, ApiError> {
    let i = app.issuers().get(&name).await?;
    Ok(Json(view(&app, &i)))
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(a): Extension<Admin>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.issuers().delete(&a.0, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
