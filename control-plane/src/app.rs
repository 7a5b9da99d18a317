//! The composition root: builds the services over one store and one clock, and is the
//! facade the HTTP layer and the scheduler call. Nothing here decides: every method
//! hands over to the service that owns the concern.

use std::sync::Arc;

use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::AccessClaims;

use crate::audit::{Audit, AUDIT_KEY_LABEL};
use crate::clients::{ClientRecord, Clients};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto;
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::issuers::Issuers;
use crate::keys::{KeyService, Keyring};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::oauth::OAuth;
use crate::revocation::Revocation;
use crate::revocations::Revocations;
use crate::schedule::Schedule;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::sync::SyncHub;
use crate::tokens::{AccessGrant, Tokens};

/// The filter module and its sha256 (hex).
type FilterWasm = (Arc<Vec<u8>>, String);

pub struct App {
    ctx: Arc<Ctx>,
    keys: Arc<KeyService>,
    tokens: Tokens,
    clients: Clients,
    sessions: Sessions,
    revocations: Revocations,
    limits: Limits,
    issuers: Issuers,
    oauth: OAuth,
    schedule: Schedule,
    /// Identifies this replica in leases.
    replica_id: String,
    /// The filter module and its sha256 (hex), when configured.
    filter_wasm: Option<FilterWasm>,
}

/// Reads the filter module to serve, refusing anything that is not WebAssembly.
fn load_filter_wasm(settings: &Settings) -> Result<Option<FilterWasm>, ServiceError> {
    let Some(path) = &settings.filter_wasm else {
        return Ok(None);
    };
    let bytes = std::fs::read(path)
        .map_err(|e| ServiceError::Invalid(format!("filter_wasm {}: {e}", path.display())))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(ServiceError::Invalid(format!(
            "filter_wasm {}: not a WebAssembly module",
            path.display()
        )));
    }
    let sha = crypto::sha256_hex(&bytes);
    Ok(Some((Arc::new(bytes), sha)))
}

impl App {
    /// A control plane on the system clock.
    pub async fn new(store: Arc<dyn Store>, settings: Settings) -> Result<Arc<App>, ServiceError> {
        App::with_clock(store, settings, Arc::new(SystemClock)).await
    }

    /// A control plane on `clock`: tests pass a `FixedClock` and move it.
    pub async fn with_clock(
        store: Arc<dyn Store>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<App>, ServiceError> {
        let filter_wasm = load_filter_wasm(&settings)?;
        let sync = SyncHub::open(
            store.as_ref(),
            &settings.master_key,
            settings.distribution_key,
        )
        .await?;
        let audit = Audit::new(store.clone(), settings.master_key.derive(AUDIT_KEY_LABEL));
        let ctx = Arc::new(Ctx {
            store,
            clock,
            settings,
            audit,
            metrics: Metrics::new(),
            sync,
        });
        let keys = Arc::new(KeyService::new(ctx.clone()));
        let tokens = Tokens::new(ctx.clone(), keys.clone());
        let clients = Clients::new(ctx.clone());
        let sessions = Sessions::new(ctx.clone());
        let revocations = Revocations::new(ctx.clone(), sessions.clone(), clients.clone());
        let replica_id = crypto::random_token(9);
        let issuers = Issuers::new(ctx.clone());
        let app = Arc::new(App {
            oauth: OAuth::new(
                ctx.clone(),
                tokens.clone(),
                sessions.clone(),
                revocations.clone(),
                issuers.clone(),
            ),
            schedule: Schedule::new(
                ctx.clone(),
                keys.clone(),
                revocations.clone(),
                sessions.clone(),
                issuers.clone(),
                replica_id.clone(),
            ),
            limits: Limits::new(ctx.clone()),
            issuers,
            keys,
            tokens,
            clients,
            sessions,
            revocations,
            replica_id,
            filter_wasm,
            ctx,
        });
        app.key_tick().await?;
        Ok(app)
    }

    // Shared parts, read by the HTTP layer.

    /// The time by this control plane's clock (seconds since the epoch).
    pub fn now(&self) -> i64 {
        self.ctx.now()
    }

    pub fn settings(&self) -> &Settings {
        &self.ctx.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    pub fn audit(&self) -> &Audit {
        &self.ctx.audit
    }

    pub fn sync(&self) -> &SyncHub {
        &self.ctx.sync
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The filter module and its sha256 (hex), when configured.
    pub fn filter_wasm(&self) -> Option<FilterWasm> {
        self.filter_wasm.clone()
    }

    // Schedule.

    /// The scheduled step: runs on every replica, acts on the one holding the lease.
    pub async fn key_tick(&self) -> Result<(), ServiceError> {
        self.schedule.step().await
    }

    pub async fn prune_sessions(&self, now: i64) -> Result<usize, ServiceError> {
        Ok(self.sessions.prune(now).await?)
    }

    /// Drops change-log entries more than `keep` behind the head; how many were dropped.
    pub async fn compact_changes(&self, keep: u64) -> Result<u64, ServiceError> {
        Ok(SyncHub::compact(self.ctx.store(), keep).await?)
    }

    // Keys and tokens.

    pub async fn reload_keys(&self) -> Result<Keyring, ServiceError> {
        self.keys.reload().await
    }

    pub async fn rotate_keys(&self, actor: &str) -> Result<Keyring, ServiceError> {
        self.keys.rotate(actor).await
    }

    pub async fn revoke_key(&self, actor: &str, kid: &str) -> Result<Keyring, ServiceError> {
        self.keys.revoke(actor, kid).await
    }

    pub fn keyring(&self) -> Keyring {
        self.keys.keyring()
    }

    pub fn jwks(&self) -> (Arc<String>, Arc<String>) {
        self.keys.jwks()
    }

    pub fn mint_access(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        aud: Vec<String>,
        ttl: i64,
        sid: Option<String>,
    ) -> Result<(String, AccessClaims), ServiceError> {
        self.tokens.mint_access(AccessGrant {
            sub,
            client_id,
            scope,
            aud,
            ttl,
            sid,
            ext: None,
            act: None,
        })
    }

    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        self.tokens.verify_access(token)
    }

    // Clients and credentials.

    pub async fn create_client(
        &self,
        actor: &str,
        name: &str,
        scopes: Vec<String>,
        token_exchange: bool,
    ) -> Result<(ClientRecord, String), ServiceError> {
        self.clients
            .create(actor, name, scopes, token_exchange)
            .await
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, ServiceError> {
        Ok(self.clients.list().await?)
    }

    pub async fn delete_client(&self, actor: &str, client_id: &str) -> Result<(), ServiceError> {
        self.revocations.delete_client(actor, client_id).await
    }

    pub async fn set_client_token_exchange(
        &self,
        actor: &str,
        client_id: &str,
        token_exchange: bool,
    ) -> Result<ClientRecord, ServiceError> {
        self.clients
            .set_token_exchange(actor, client_id, token_exchange)
            .await
    }

    pub async fn rotate_client_secret(
        &self,
        actor: &str,
        client_id: &str,
    ) -> Result<String, ServiceError> {
        self.clients.rotate_secret(actor, client_id).await
    }

    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<ClientRecord>, ServiceError> {
        self.clients.authenticate(client_id, secret).await
    }

    /// Whether a sync call's bearer is a configured fleet credential.
    pub fn sync_authorized(&self, bearer: Option<&str>) -> bool {
        let s = &self.ctx.settings;
        crate::access::sync_bearer_ok(&s.sync_credential_hashes, s.sync_allow_anonymous, bearer)
    }

    pub fn admin_authorized(&self, bearer: &str) -> bool {
        crate::access::matches_any(&self.ctx.settings.admin_token_hashes, bearer)
    }

    // OAuth and revocations: their services answer the handlers directly.

    pub fn oauth(&self) -> &OAuth {
        &self.oauth
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    pub async fn live_revocations(&self) -> Result<Vec<Revocation>, ServiceError> {
        let horizons = self.issuers.horizons().await?;
        Ok(self.revocations.live(&horizons).await?)
    }

    /// Whether a `jti` is revoked, for filters confirming a Bloom hit.
    pub async fn jti_revoked(&self, jti: &str) -> Result<bool, ServiceError> {
        Ok(self.revocations.jti_revoked(jti).await?)
    }

    // Rate limits.

    pub async fn limits(&self) -> Result<Vec<LimitPolicy>, ServiceError> {
        Ok(self.limits.all().await?)
    }

    pub async fn set_limit(&self, actor: &str, policy: LimitPolicy) -> Result<bool, ServiceError> {
        self.limits.set(actor, policy).await
    }

    pub async fn delete_limit(&self, actor: &str, name: &str) -> Result<(), ServiceError> {
        self.limits.delete(actor, name).await
    }

    // Trusted issuers: their service answers the handlers directly.

    pub fn issuers(&self) -> &Issuers {
        &self.issuers
    }

    /// One step of the federated key fetch loop.
    pub async fn fetch_issuer_keys(&self) -> Result<(), ServiceError> {
        self.issuers.fetch_due().await
    }

    // Sync.

    /// The signed snapshot of what filters enforce, at the current version.
    pub async fn snapshot(&self) -> Result<(u64, Arc<String>), ServiceError> {
        let sync = &self.ctx.sync;
        let version = sync.version();
        let ring = self.keys.reload().await?;
        let revocations = self.revocations.all().await?;
        let contents = crate::sync::Contents {
            jwks: ring.jwks(),
            revocations: &revocations,
            limits: self.limits.all().await?,
            issuers: self.issuers.federated().await?,
        };
        let horizons = self.issuers.horizons().await?;
        let text = sync.snapshot(version, contents, self.ctx.now(), &horizons)?;
        Ok((version, text))
    }
}
