//! The composition root: builds the services over one store and one clock, and is the
//! facade the HTTP layer and the scheduler call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto;
use crate::error::ServiceError;
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::store::Store;

pub(crate) struct KeyCache {
    pub(crate) ring: Keyring,
    pub(crate) raw: Option<Vec<u8>>,
    pub(crate) jwks_body: Arc<String>,
    pub(crate) jwks_etag: Arc<String>,
    pub(crate) signers: HashMap<String, Arc<ed25519_dalek::SigningKey>>,
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub audit: Audit,
    pub metrics: Metrics,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keys: RwLock<KeyCache>,
    /// Identifies this replica in leases.
    pub replica_id: String,
    /// The filter module and its sha256 (hex), when configured.
    pub filter_wasm: Option<(Arc<Vec<u8>>, String)>,
    pub sync: crate::sync::SyncHub,
    /// Per-client token buckets for RFC 7009 calls (tokens, last refill).
    pub(crate) revoke_budget: std::sync::Mutex<HashMap<String, (f64, std::time::Instant)>>,
    /// When expired sessions were last pruned and the change log compacted.
    pub(crate) last_prune: std::sync::atomic::AtomicI64,
    /// MACs refresh tokens, so one proves its session after its record is gone.
    pub(crate) refresh_key: [u8; 32],
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
        let filter_wasm = match &settings.filter_wasm {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    ServiceError::Invalid(format!("filter_wasm {}: {e}", path.display()))
                })?;
                if !bytes.starts_with(b"\0asm") {
                    return Err(ServiceError::Invalid(format!(
                        "filter_wasm {}: not a WebAssembly module",
                        path.display()
                    )));
                }
                let sha = crypto::sha256_hex(&bytes);
                Some((Arc::new(bytes), sha))
            }
            None => None,
        };
        let sync = crate::sync::SyncHub::open(store.as_ref(), &settings.master_key).await?;
        let refresh_key = settings.master_key.derive("meshauth refresh token v1");
        let app = Arc::new(App {
            filter_wasm,
            sync,
            audit: Audit::new(
                store.clone(),
                settings.master_key.derive(crate::audit::AUDIT_KEY_LABEL),
            ),
            store,
            settings,
            metrics: Metrics::new(),
            clock,
            keys: RwLock::new(KeyCache {
                ring: Keyring::default(),
                raw: None,
                jwks_body: Arc::new("{\"keys\":[]}".into()),
                jwks_etag: Arc::new(String::new()),
                signers: HashMap::new(),
            }),
            replica_id: crypto::random_token(9),
            revoke_budget: std::sync::Mutex::new(HashMap::new()),
            last_prune: std::sync::atomic::AtomicI64::new(0),
            refresh_key,
        });
        app.key_tick().await?;
        Ok(app)
    }

    /// The time by this control plane's clock (seconds since the epoch).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn sync(&self) -> &crate::sync::SyncHub {
        &self.sync
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The filter module and its sha256 (hex), when configured.
    pub fn filter_wasm(&self) -> Option<(Arc<Vec<u8>>, String)> {
        self.filter_wasm.clone()
    }
}
