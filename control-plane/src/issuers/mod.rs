//! Trusted external issuers (federation, first slice): the registry an admin edits,
//! stored as one document so its invariants (a bounded count, unique names, unique
//! `issuer` strings) hold under concurrent edits, and the fetching of their keys
//! (`fetch`). Each issuer's last good keys are held in the store too, shared by the
//! replicas, and travel to the filters in every snapshot with the issuer's rules; a
//! change of the registry or of a held key set is a change filters are told of.

pub mod breaker;
pub mod fetch;
pub mod http;
pub mod jwks;
pub mod model;
pub mod refetch;
mod registry;
pub mod spec;
pub mod url;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use breaker::CircuitState;
pub use fetch::{FetchStatus, Fetcher};
pub use model::{Alg, IssuerSpec, KeySource, TrustedIssuer};

use crate::audit::{AuditAction, AuditDetail};
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::revocation::Horizons;
use crate::store::{Change, Doc, StoreResult, Table};
use crate::sync::Change as SyncChange;
use jwks::FederatedKey;
use meshauth_wire::federation::FederatedIssuer;
use meshauth_wire::sync::{UnknownKidOutcome, UnknownKidReport};
use registry::{refusal, Registry};
use url::UrlPolicy;

const REGISTRY: Doc<Registry> = Doc::new(Table::Meta, "trusted issuers");
const REGISTRY_KEY: &str = "issuers";

/// Each issuer's last good keys, by name. Held in the store rather than only in a
/// replica's memory, so a replica that restarted or cannot reach the provider still
/// sends them: filters are never handed an empty set over a non-empty one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct HeldKeys {
    issuers: BTreeMap<String, Held>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    /// The `iss` they were fetched for: an entry deleted and added again under the
    /// same name for another issuer never inherits them.
    issuer: String,
    keys: Vec<FederatedKey>,
}

const HELD: Doc<HeldKeys> = Doc::new(Table::Meta, "federated keys");
const HELD_KEY: &str = "issuer keys";

#[derive(Clone)]
pub struct Issuers {
    ctx: Arc<Ctx>,
    fetcher: Arc<Fetcher>,
    /// Wakes the fetch loop before its next tick (a report-triggered fetch).
    wake: Arc<tokio::sync::Notify>,
}

impl Issuers {
    pub fn new(ctx: Arc<Ctx>) -> Issuers {
        let fetcher = Arc::new(Fetcher::new(&ctx.settings.federation));
        Issuers {
            ctx,
            fetcher,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// A filter's report of an unknown `kid` (already validated): a fetch of that
    /// issuer now, or when the refetch interval allows; the fetch loop holds and pushes
    /// what it brings as after any fetch.
    pub fn unknown_kid(&self, report: &UnknownKidReport) -> UnknownKidOutcome {
        let outcome = self
            .fetcher
            .unknown_kid(&report.issuer, &report.kid, self.ctx.now());
        self.ctx
            .metrics
            .federation_kid_reports
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        if outcome == UnknownKidOutcome::Triggered {
            self.wake.notify_one();
        }
        outcome
    }

    /// Resolves when a report asks for a fetch before the loop's next tick.
    pub async fn woken(&self) {
        self.wake.notified().await;
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
        HELD.update(
            self.ctx.store(),
            HELD_KEY,
            "the held federated keys",
            |cur| {
                let mut held = cur.unwrap_or_default();
                Ok(match held.issuers.remove(name) {
                    Some(_) => Change::Set(held, ()),
                    None => Change::Keep(()),
                })
            },
        )
        .await?;
        self.ctx
            .sync
            .changed(self.ctx.store(), SyncChange::Issuers, self.ctx.now())
            .await?;
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

    /// One step of the fetch loop: fetches every issuer that is due, then holds the key
    /// sets that changed in the store and tells the filters.
    pub async fn fetch_due(&self) -> Result<(), ServiceError> {
        let issuers = self.list().await?;
        let now = self.ctx.now();
        self.fetcher
            .step(&issuers, self.urls(), now, &self.ctx.metrics)
            .await;
        let held = HELD
            .get(self.ctx.store(), HELD_KEY)
            .await?
            .unwrap_or_default();
        let fresh: Vec<(String, Held)> = issuers
            .iter()
            .filter_map(|i| {
                let keys = self.fetcher.keys(i.name());
                // Nothing fetched yet (a restart, a provider down): what is held stays.
                if keys.is_empty() {
                    return None;
                }
                let new = Held {
                    issuer: i.issuer().to_string(),
                    keys: keys.to_vec(),
                };
                (held.issuers.get(i.name()) != Some(&new)).then(|| (i.name().to_string(), new))
            })
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = issuers.iter().map(|i| i.name().to_string()).collect();
        let up = HELD
            .update(
                self.ctx.store(),
                HELD_KEY,
                "the held federated keys",
                |cur| {
                    let mut held = cur.unwrap_or_default();
                    // Issuers deleted meanwhile are not brought back.
                    held.issuers.retain(|n, _| names.contains(n));
                    for (name, new) in &fresh {
                        held.issuers.insert(name.clone(), new.clone());
                    }
                    Ok(Change::Set(held, ()))
                },
            )
            .await?;
        if up.written {
            self.ctx
                .sync
                .changed(self.ctx.store(), SyncChange::Issuers, now)
                .await?;
        }
        Ok(())
    }

    /// The trusted issuer whose `iss` is exactly `iss`, with the keys held for it in
    /// the store (the last good set: nothing is fetched here, so a request cannot make
    /// the control plane call a provider). `None` when no issuer has that `iss`.
    pub async fn trusted(
        &self,
        iss: &str,
    ) -> StoreResult<Option<(TrustedIssuer, Vec<FederatedKey>)>> {
        let Some(issuer) = self.list().await?.into_iter().find(|i| i.issuer() == iss) else {
            return Ok(None);
        };
        let keys = HELD
            .get(self.ctx.store(), HELD_KEY)
            .await?
            .unwrap_or_default()
            .issuers
            .remove(issuer.name())
            .filter(|h| h.issuer == issuer.issuer())
            .map(|h| h.keys)
            .unwrap_or_default();
        Ok(Some((issuer, keys)))
    }

    /// How long revocations are kept (`Horizons`).
    pub async fn horizons(&self) -> StoreResult<Horizons> {
        let s = &self.ctx.settings;
        Ok(Horizons::new(s.revocation_horizon(), s.revocation_skew()))
    }

    /// What filters get: each registered issuer with held keys, its rules and keys. An
    /// issuer whose keys were never fetched is left out (it admits nothing yet); one the
    /// wire bounds would refuse is left out with a warning, since a filter refuses a
    /// whole snapshot that breaks them.
    pub async fn federated(&self) -> StoreResult<Vec<FederatedIssuer>> {
        let held = HELD
            .get(self.ctx.store(), HELD_KEY)
            .await?
            .unwrap_or_default();
        Ok(self
            .list()
            .await?
            .iter()
            .filter_map(|i| {
                let h = held.issuers.get(i.name())?;
                if h.issuer != i.issuer() || h.keys.is_empty() {
                    return None;
                }
                let f = i.to_wire(h.keys.clone());
                match f.validate() {
                    Ok(()) => Some(f),
                    Err(e) => {
                        tracing::warn!(issuer = i.name(), error = %e, "trusted issuer left out of snapshots");
                        None
                    }
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
