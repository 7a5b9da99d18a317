//! Trusted external issuers (federation, first slice): the registry an admin edits,
//! stored as one document so its invariants (a bounded count, unique names, unique
//! `issuer` strings) hold under concurrent edits, and the fetching of their keys
//! (`fetch`), kept in memory. The filters do not see these keys yet.

pub mod breaker;
pub mod fetch;
pub mod http;
pub mod jwks;
pub mod model;
pub mod url;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use breaker::CircuitState;
pub use fetch::{FetchStatus, Fetcher};
pub use model::{Alg, IssuerSpec, KeySource, TrustedIssuer};

use crate::audit::{AuditAction, AuditDetail};
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::store::{Change, Doc, StoreResult, Table};
use model::same_issuer;
use url::UrlPolicy;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Registry {
    issuers: Vec<TrustedIssuer>,
}

const REGISTRY: Doc<Registry> = Doc::new(Table::Meta, "trusted issuers");
const REGISTRY_KEY: &str = "issuers";

#[derive(Clone)]
pub struct Issuers {
    ctx: Arc<Ctx>,
    fetcher: Arc<Fetcher>,
}

impl Issuers {
    pub fn new(ctx: Arc<Ctx>) -> Issuers {
        let fetcher = Arc::new(Fetcher::new(&ctx.settings.federation));
        Issuers { ctx, fetcher }
    }

    fn urls(&self) -> UrlPolicy {
        UrlPolicy {
            allow_http: self.ctx.settings.federation.allow_insecure_http,
        }
    }

    pub async fn list(&self) -> StoreResult<Vec<TrustedIssuer>> {
        Ok(REGISTRY
            .get(self.ctx.store(), REGISTRY_KEY)
            .await?
            .unwrap_or_default()
            .issuers)
    }

    pub async fn get(&self, name: &str) -> Result<TrustedIssuer, ServiceError> {
        self.list()
            .await?
            .into_iter()
            .find(|i| i.name() == name)
            .ok_or_else(|| ServiceError::NotFound(format!("trusted issuer {name:?}")))
    }

    /// Adds an issuer: 400 when `spec` is invalid, 409 when its name or its `issuer`
    /// is taken or the registry is full. Nothing is stored unless all holds.
    pub async fn add(&self, actor: &str, spec: IssuerSpec) -> Result<TrustedIssuer, ServiceError> {
        let own = self.ctx.settings.issuer.as_str();
        let new =
            TrustedIssuer::new(spec, &self.urls(), Some(own)).map_err(ServiceError::Invalid)?;
        let max = self.ctx.settings.federation.max_issuers;
        let up = REGISTRY
            .update(
                self.ctx.store(),
                REGISTRY_KEY,
                "the issuer registry",
                |cur| {
                    let mut reg = cur.unwrap_or_default();
                    if let Some(e) = refusal(&reg, &new, max) {
                        return Ok(Change::Keep(Some(e)));
                    }
                    reg.issuers.push(new.clone());
                    reg.issuers.sort_by(|a, b| a.name().cmp(b.name()));
                    Ok(Change::Set(reg, None))
                },
            )
            .await?;
        if let Some(e) = up.answer {
            return Err(e);
        }
        let algorithms: Vec<&str> = new.algorithms().iter().map(|a| a.as_str()).collect();
        let source = match new.source() {
            KeySource::Discovery(u) | KeySource::Jwks(u) => u.as_str(),
        };
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::IssuerAdded,
                new.name(),
                AuditDetail::IssuerAdded {
                    issuer: new.issuer(),
                    source,
                    audiences: new.audiences(),
                    algorithms: &algorithms,
                },
                self.ctx.now(),
            )
            .await?;
        Ok(new)
    }

    pub async fn delete(&self, actor: &str, name: &str) -> Result<(), ServiceError> {
        let up = REGISTRY
            .update(
                self.ctx.store(),
                REGISTRY_KEY,
                "the issuer registry",
                |cur| {
                    let mut reg = cur.unwrap_or_default();
                    let before = reg.issuers.len();
                    reg.issuers.retain(|i| i.name() != name);
                    Ok(if reg.issuers.len() == before {
                        Change::Keep(false)
                    } else {
                        Change::Set(reg, true)
                    })
                },
            )
            .await?;
        if !up.answer {
            return Err(ServiceError::NotFound(format!("trusted issuer {name:?}")));
        }
        self.fetcher.forget(name, &self.ctx.metrics);
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::IssuerDeleted,
                name,
                AuditDetail::Nothing {},
                self.ctx.now(),
            )
            .await?;
        Ok(())
    }

    /// What this replica last fetched for `name`.
    pub fn status(&self, name: &str) -> FetchStatus {
        self.fetcher.status(name)
    }

    /// The verification keys this replica holds for `name`.
    pub fn keys(&self, name: &str) -> Arc<Vec<jwks::FederatedKey>> {
        self.fetcher.keys(name)
    }

    /// One step of the fetch loop: fetches every issuer that is due.
    pub async fn fetch_due(&self) -> Result<(), ServiceError> {
        let issuers = self.list().await?;
        self.fetcher
            .step(&issuers, self.urls(), self.ctx.now(), &self.ctx.metrics)
            .await;
        Ok(())
    }
}

/// Why `new` cannot join `reg`, if it cannot.
fn refusal(reg: &Registry, new: &TrustedIssuer, max: usize) -> Option<ServiceError> {
    if let Some(same) = reg.issuers.iter().find(|i| i.name() == new.name()) {
        return Some(ServiceError::Conflict(format!(
            "trusted issuer {:?} exists; delete it first to change it",
            same.name()
        )));
    }
    if let Some(same) = reg
        .issuers
        .iter()
        .find(|i| same_issuer(i.issuer(), new.issuer()))
    {
        return Some(ServiceError::Conflict(format!(
            "issuer {:?} is already trusted as {:?}: two entries for one issuer would be ambiguous",
            new.issuer(),
            same.name()
        )));
    }
    if reg.issuers.len() >= max {
        return Some(ServiceError::Invalid(format!(
            "at most {max} trusted issuers (federation.max_issuers)"
        )));
    }
    None
}

#[cfg(test)]
mod tests;
