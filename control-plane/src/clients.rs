//! Registered OAuth clients: their records, secrets (kept as SHA-256, checked in
//! constant time) and the validation of what they may be given.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditDetail};
use crate::crypto::{self, ct_eq};
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::store::{Change, Doc, StoreResult, Table};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub secret_sha256: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    /// May exchange trusted issuers' tokens for mesh tokens (RFC 8693). Off unless set
    /// when the client is created.
    #[serde(default)]
    pub token_exchange: bool,
}

pub const CLIENTS: Doc<ClientRecord> = Doc::new(Table::Clients, "client");

pub fn split_scope(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

pub fn validate_scopes(scopes: &[String]) -> Result<(), ServiceError> {
    if scopes.len() > 64 {
        return Err(ServiceError::Invalid("at most 64 scopes".into()));
    }
    match scopes.iter().find(|s| !valid_scope_token(s)) {
        Some(s) => Err(ServiceError::Invalid(format!(
            "{s:?} is not a valid scope (RFC 6749 §3.3)"
        ))),
        None => Ok(()),
    }
}

pub fn validate_name(what: &str, v: &str) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_control()) {
        return Err(ServiceError::Invalid(format!(
            "{what} must be 1-256 printable characters"
        )));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Clients {
    ctx: Arc<Ctx>,
}

impl Clients {
    pub fn new(ctx: Arc<Ctx>) -> Clients {
        Clients { ctx }
    }

    pub async fn create(
        &self,
        actor: &str,
        name: &str,
        scopes: Vec<String>,
        token_exchange: bool,
    ) -> Result<(ClientRecord, String), ServiceError> {
        validate_name("name", name)?;
        validate_scopes(&scopes)?;
        let secret = crypto::random_token(32);
        let rec = ClientRecord {
            client_id: format!("c-{}", crypto::random_token(12)),
            name: name.to_string(),
            secret_sha256: crypto::sha256_hex(&secret),
            scopes,
            created_at: self.ctx.now(),
            token_exchange,
        };
        if !CLIENTS
            .insert_new(self.ctx.store(), &rec.client_id, &rec)
            .await?
        {
            return Err(ServiceError::Conflict(
                "client id collision; try again".into(),
            ));
        }
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::ClientCreated,
                &rec.client_id,
                AuditDetail::ClientCreated {
                    name,
                    scopes: &rec.scopes,
                    token_exchange,
                },
                rec.created_at,
            )
            .await?;
        Ok((rec, secret))
    }

    pub async fn get(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        CLIENTS.get(self.ctx.store(), client_id).await
    }

    pub async fn list(&self) -> StoreResult<Vec<ClientRecord>> {
        CLIENTS.list(self.ctx.store()).await
    }

    /// Removes the record (its tokens are revoked first, by `Revocations::delete_client`).
    pub async fn remove(&self, actor: &str, client_id: &str) -> Result<(), ServiceError> {
        let found = CLIENTS.delete(self.ctx.store(), client_id).await?;
        self.audit_change(actor, AuditAction::ClientDeleted, client_id, found)
            .await
    }

    pub async fn rotate_secret(
        &self,
        actor: &str,
        client_id: &str,
    ) -> Result<String, ServiceError> {
        let secret = crypto::random_token(32);
        let up = CLIENTS
            .update(self.ctx.store(), client_id, "the client", |cur| {
                Ok(match cur {
                    Some(mut rec) => {
                        rec.secret_sha256 = crypto::sha256_hex(&secret);
                        Change::Set(rec, true)
                    }
                    None => Change::Keep(false),
                })
            })
            .await?;
        self.audit_change(
            actor,
            AuditAction::ClientSecretRotated,
            client_id,
            up.answer,
        )
        .await?;
        Ok(secret)
    }

    /// Allows or disallows an existing client to exchange trusted issuers' tokens
    /// (RFC 8693); 404 when there is no such client.
    pub async fn set_token_exchange(
        &self,
        actor: &str,
        client_id: &str,
        token_exchange: bool,
    ) -> Result<ClientRecord, ServiceError> {
        let up = CLIENTS
            .update(self.ctx.store(), client_id, "the client", |cur| {
                Ok(match cur {
                    Some(mut rec) => {
                        rec.token_exchange = token_exchange;
                        Change::Set(rec.clone(), Some(rec))
                    }
                    None => Change::Keep(None),
                })
            })
            .await?;
        let rec = up
            .answer
            .ok_or_else(|| ServiceError::NotFound(format!("client {client_id}")))?;
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::ClientUpdated,
                client_id,
                AuditDetail::ClientUpdated { token_exchange },
                self.ctx.now(),
            )
            .await?;
        Ok(rec)
    }

    /// Audits a change to an existing client; `found` false: there was none (404).
    async fn audit_change(
        &self,
        actor: &str,
        action: AuditAction,
        client_id: &str,
        found: bool,
    ) -> Result<(), ServiceError> {
        if !found {
            return Err(ServiceError::NotFound(format!("client {client_id}")));
        }
        self.ctx
            .audit
            .record(
                actor,
                action,
                client_id,
                AuditDetail::Nothing {},
                self.ctx.now(),
            )
            .await?;
        Ok(())
    }

    /// Checks a client's secret in constant time. Unknown clients take the same path.
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<ClientRecord>, ServiceError> {
        let rec = self.get(client_id).await?;
        let presented = crypto::sha256_hex(secret);
        let stored = rec
            .as_ref()
            .map_or_else(|| "0".repeat(64), |r| r.secret_sha256.clone());
        let ok = ct_eq(presented.as_bytes(), stored.as_bytes());
        Ok(rec.filter(|_| ok))
    }
}
