//! Filter sync: every change appends to the durable change log, whose length
//! is the snapshot version; filters long-poll with the version they hold and get a
//! snapshot signed by the distribution key as soon as there is a newer one. Replicas
//! follow the log in the shared store, so a change made through one reaches filters
//! polling another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use meshauth_wire::bloom::Bloom;
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::{
    ConfirmAnswer, Delta, HeadStatement, Message, RevocationRule, RuleClaim, SignedConfirm,
    SignedSnapshot, Snapshot, MAX_CLOCK_SKEW_SECONDS,
};
use meshauth_wire::{b64, JwkSet};

use crate::crypto::{self, MasterKey};
use crate::error::ServiceError;
use crate::service::Revocation;
use crate::store::{Log, Store, StoreError, Table};

const DISTRIBUTION_KEY: &str = "distribution_key";
const EPOCH: &str = "epoch";

#[derive(Serialize, Deserialize)]
struct StoredDistributionKey {
    public: String,
    sealed_private: String,
}

/// A filter polls again at once after each answer and long polls last 60 s at most, so
/// one not heard from for this long is gone (or cut off).
pub const CONNECTED_SECONDS: i64 = 90;
const FORGET_SECONDS: i64 = 600;
/// About the most filters the registry holds (those seen in the last `FORGET_SECONDS`); a new
/// id beyond it is served but not recorded, so made-up ids cannot grow the store or
/// `/admin/status` without bound.
pub const MAX_FILTERS: usize = 4_096;
/// A filter further behind than this many changes gets a full snapshot.
pub const MAX_DELTA_CHANGES: u64 = 256;

fn rule(claim: RuleClaim, value: String, not_before: i64) -> RevocationRule {
    RevocationRule {
        claim,
        value,
        not_before,
    }
}

/// A filter as the control plane last saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterStatus {
    pub id: String,
    pub applied_version: u64,
    pub last_seen: i64,
}

pub struct SyncHub {
    /// Changes when the history restarts (see `restart_epoch_if_behind`); replicas
    /// re-read it whenever the change log moves.
    epoch: std::sync::RwLock<String>,
    signer: SigningKey,
    pub distribution_public: String,
    version_tx: watch::Sender<u64>,
    filters: Mutex<BTreeMap<String, FilterStatus>>,
    /// Live entries in the shared registry, as far as this replica knows.
    registered: AtomicUsize,
    /// When this replica last started a new epoch (seconds).
    last_epoch_reset: AtomicI64,
    /// The signed snapshot of one version: (version, issued_at, envelope).
    cached: Mutex<Option<(u64, i64, Arc<String>)>>,
}

/// An unchanged snapshot is signed afresh at least this often (the shared answer cache
/// and this one together: an answer is at most twice this old), so its `issued_at` stays
/// well inside the maximum age filters accept (`sync.max_snapshot_age_seconds`, at
/// least two hours).
pub const SNAPSHOT_REFRESH_SECONDS: i64 = 1_800;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn create_once(
    store: &dyn Store,
    key: &str,
    make: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(v) = store.get(Table::Meta, key).await? {
        return Ok(v);
    }
    let fresh = make();
    // Another replica may create it first; then theirs is the one.
    store
        .compare_and_swap(Table::Meta, key, None, Some(&fresh))
        .await?;
    store
        .get(Table::Meta, key)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("{key} vanished")))
}

impl SyncHub {
    pub async fn open(store: &dyn Store, master: &MasterKey) -> Result<SyncHub, ServiceError> {
        let raw = create_once(store, DISTRIBUTION_KEY, || {
            let sk = SigningKey::generate(&mut rand::rngs::OsRng);
            let public = b64::encode(sk.verifying_key().to_bytes());
            let sealed = master.seal(&sk.to_bytes(), DISTRIBUTION_KEY.as_bytes());
            serde_json::to_vec(&StoredDistributionKey {
                public,
                sealed_private: b64::encode(sealed),
            })
            .unwrap_or_default()
        })
        .await?;
        let stored: StoredDistributionKey = serde_json::from_slice(&raw)
            .map_err(|e| ServiceError::Internal(format!("distribution key: {e}")))?;
        let sealed = b64::decode(&stored.sealed_private)
            .map_err(|e| ServiceError::Internal(format!("distribution key: {e}")))?;
        let seed = master
            .open(&sealed, DISTRIBUTION_KEY.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("distribution key: {e}")))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| ServiceError::Internal("distribution key: wrong length".into()))?;
        let epoch = create_once(store, EPOCH, || crypto::random_token(12).into_bytes()).await?;
        let (len, _) = store.log_head(Log::Changes).await?;
        let (version_tx, _) = watch::channel(len);
        Ok(SyncHub {
            epoch: std::sync::RwLock::new(String::from_utf8_lossy(&epoch).to_string()),
            signer: SigningKey::from_bytes(&seed),
            distribution_public: stored.public,
            version_tx,
            filters: Mutex::new(BTreeMap::new()),
            registered: AtomicUsize::new(0),
            last_epoch_reset: AtomicI64::new(0),
            cached: Mutex::new(None),
        })
    }

    pub fn epoch(&self) -> String {
        self.epoch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn reload_epoch(&self, store: &dyn Store) -> Result<(), StoreError> {
        if let Some(e) = store.get(Table::Meta, EPOCH).await? {
            let e = String::from_utf8_lossy(&e).to_string();
            let mut cur = self.epoch.write().unwrap_or_else(|p| p.into_inner());
            if *cur != e {
                *cur = e;
                *lock(&self.cached) = None;
            }
        }
        Ok(())
    }

    /// A filter holds `version` of the current epoch, past the durable change log: the
    /// store was restored from a backup (or lost acknowledged writes), and the versions
    /// that follow would repeat numbers the filter already holds with other content.
    /// Starts a new epoch (every filter takes a full snapshot of it) and returns true.
    pub async fn restart_epoch_if_behind(
        &self,
        store: &dyn Store,
        epoch: &str,
        version: u64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (len, _) = store.log_head(Log::Changes).await?;
        if version <= len || epoch != self.epoch() {
            return Ok(false);
        }
        // One reset a minute per replica: a filter that keeps claiming a version from
        // the future (broken, or a holder of the credential misusing it) cannot make
        // every filter fetch a full snapshot over and over.
        let last = self.last_epoch_reset.load(Ordering::Relaxed);
        if now - last < 60
            || self
                .last_epoch_reset
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(false);
        }
        let fresh = crypto::random_token(12);
        // Only from the epoch the filter named: concurrent detections start one epoch.
        store
            .compare_and_swap(
                Table::Meta,
                EPOCH,
                Some(epoch.as_bytes()),
                Some(fresh.as_bytes()),
            )
            .await?;
        self.reload_epoch(store).await?;
        tracing::warn!(
            held = version,
            head = len,
            "a filter holds a version past the change log (store restored from a backup?); started a new sync epoch"
        );
        // Moves every replica's version (and epoch) and wakes their long polls.
        self.changed(store, "epoch", now, None).await?;
        Ok(true)
    }

    pub fn version(&self) -> u64 {
        *self.version_tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Records that state the filters see has changed, durably, and wakes long polls.
    /// `detail` (a revocation) lets a filter that is close behind get a delta.
    pub async fn changed(
        &self,
        store: &dyn Store,
        what: &str,
        at: i64,
        detail: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        loop {
            let (len, _) = store.log_head(Log::Changes).await?;
            let entry = json!({"at": at, "what": what, "detail": detail}).to_string();
            if store
                .append(
                    Log::Changes,
                    len,
                    entry.as_bytes(),
                    (len + 1).to_string().as_bytes(),
                )
                .await?
            {
                self.observe(len + 1);
                return Ok(());
            }
        }
    }

    /// Moves the local version forward (never back) and wakes long polls.
    pub fn observe(&self, version: u64) {
        self.version_tx.send_if_modified(|v| {
            if version > *v {
                *v = version;
                true
            } else {
                false
            }
        });
    }

    /// Follows the shared change log, for changes made through other replicas. The log
    /// is the truth; a pub/sub nudge says when to read it, and a slow timer covers a
    /// nudge lost with a connection. Without a nudge channel (the embedded store is one
    /// process) or while it is down, the log head is read every 20 ms.
    pub async fn follow(&self, store: &dyn Store) {
        use futures_util::StreamExt;
        let mut nudges = None;
        let mut retry_at = tokio::time::Instant::now();
        loop {
            if nudges.is_none() && tokio::time::Instant::now() >= retry_at {
                nudges = store.change_nudges().await;
                retry_at = tokio::time::Instant::now() + Duration::from_secs(5);
            }
            match store.log_head(Log::Changes).await {
                Ok((len, _)) => {
                    if len != self.version() {
                        if let Err(e) = self.reload_epoch(store).await {
                            tracing::warn!(error = %e, "could not re-read the sync epoch");
                        }
                    }
                    self.observe(len)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change log unreachable; filters keep their snapshot")
                }
            }
            match nudges.as_mut() {
                Some(stream) => {
                    tokio::select! {
                        next = stream.next() => if next.is_none() { nudges = None },
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Records a filter's poll. Filters may poll any replica, so the registry lives in
    /// the store; a filter is written when its version changes or every 10 s at most.
    /// `Ok(false)`: a new id while the registry is full; not recorded.
    pub async fn saw_filter(
        &self,
        store: &dyn Store,
        id: &str,
        applied: u64,
        now: i64,
    ) -> Result<bool, StoreError> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(true);
        }
        let known = lock(&self.filters).contains_key(id);
        if !known && store.get(Table::Filters, id).await?.is_none() {
            // A new id. The count is the last listing's (every key-schedule step lists
            // and prunes) plus the ids added here since, so a flood costs no listing.
            if self.registered.load(Ordering::Relaxed) >= MAX_FILTERS {
                return Ok(false);
            }
            self.registered.fetch_add(1, Ordering::Relaxed);
        }
        let status = FilterStatus {
            id: id.to_string(),
            applied_version: applied,
            last_seen: now,
        };
        {
            let mut f = lock(&self.filters);
            if f.len() >= MAX_FILTERS {
                f.retain(|_, s| now - s.last_seen < FORGET_SECONDS);
            }
            let fresh = f
                .get(id)
                .is_some_and(|p| p.applied_version == applied && now - p.last_seen < 10);
            if fresh {
                return Ok(true);
            }
            f.insert(id.to_string(), status.clone());
        }
        let bytes = serde_json::to_vec(&status).unwrap_or_default();
        store.put(Table::Filters, id, &bytes).await?;
        Ok(true)
    }

    /// The signed statement a `304` carries: the head of this epoch is still `version`.
    pub fn seal_head(&self, version: u64, now: i64) -> String {
        HeadStatement {
            epoch: self.epoch(),
            version,
            issued_at: now,
        }
        .seal(|input| self.signer.sign(input).to_bytes())
    }

    /// The signed answer to a filter's confirm question.
    pub fn seal_confirm(&self, answer: &ConfirmAnswer) -> SignedConfirm {
        answer.seal(|input| self.signer.sign(input).to_bytes())
    }

    /// Every filter seen in the last ten minutes, on any replica; older ones are dropped.
    pub async fn filters(
        &self,
        store: &dyn Store,
        now: i64,
    ) -> Result<Vec<FilterStatus>, StoreError> {
        let mut out = Vec::new();
        for (id, raw) in store.list(Table::Filters).await? {
            match serde_json::from_slice::<FilterStatus>(&raw) {
                Ok(f) if now - f.last_seen < FORGET_SECONDS => out.push(f),
                _ => {
                    store
                        .compare_and_swap(Table::Filters, &id, Some(&raw), None)
                        .await?;
                }
            }
        }
        self.registered.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// Filters that polled recently enough to count as connected.
    pub async fn connected_filters(
        &self,
        store: &dyn Store,
        now: i64,
    ) -> Result<Vec<FilterStatus>, StoreError> {
        let mut all = self.filters(store, now).await?;
        all.retain(|f| now - f.last_seen < CONNECTED_SECONDS);
        Ok(all)
    }

    /// A signed delta from `base` for a filter close behind, when every change since was
    /// a revocation; `None` means "send the full snapshot".
    pub async fn delta(
        &self,
        store: &dyn Store,
        base: u64,
        now: i64,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let head = self.version();
        if base == 0 || head <= base || head - base > MAX_DELTA_CHANGES {
            return Ok(None);
        }
        let entries = store.read_log(Log::Changes, base, head - base).await?;
        if entries.len() as u64 != head - base {
            return Ok(None); // compacted away: the full snapshot
        }
        let mut revoked_jti = Vec::new();
        let mut rules = Vec::new();
        for raw in &entries {
            #[derive(Deserialize)]
            struct Entry {
                what: String,
                #[serde(default)]
                detail: Option<Revocation>,
            }
            let Ok(Entry {
                what,
                detail: Some(r),
            }) = serde_json::from_slice::<Entry>(raw)
            else {
                return Ok(None);
            };
            if what != "revocations" {
                return Ok(None);
            }
            match r {
                Revocation::Jti { jti, exp } if exp + MAX_CLOCK_SKEW_SECONDS > now => {
                    revoked_jti.push(jti)
                }
                Revocation::Jti { .. } => {}
                Revocation::Sub { value, not_before } => {
                    rules.push(rule(RuleClaim::Sub, value, not_before))
                }
                Revocation::Sid { value, not_before } => {
                    rules.push(rule(RuleClaim::Sid, value, not_before))
                }
                Revocation::ClientId { value, not_before } => {
                    rules.push(rule(RuleClaim::ClientId, value, not_before))
                }
            }
        }
        let version = base + entries.len() as u64;
        let delta = Delta {
            epoch: self.epoch(),
            base_version: base,
            version,
            issued_at: now,
            revoked_jti,
            rules,
        };
        let sealed = SignedSnapshot::seal_message(&Message::Delta(delta), |payload| {
            self.signer.sign(payload).to_bytes()
        });
        Ok(Some((
            version,
            serde_json::to_string(&sealed).unwrap_or_default(),
        )))
    }

    /// The signed snapshot for `version`, built once per version.
    pub fn snapshot(
        &self,
        version: u64,
        jwks: JwkSet,
        revocations: &[Revocation],
        limits: Vec<LimitPolicy>,
        now: i64,
        rule_horizon: i64,
    ) -> Arc<String> {
        if let Some((v, issued, s)) = lock(&self.cached).as_ref() {
            if *v == version && now - *issued < SNAPSHOT_REFRESH_SECONDS {
                return s.clone();
            }
        }
        let live: Vec<&str> = revocations
            .iter()
            .filter_map(|r| match r {
                // Kept past `exp` by the largest skew a filter may allow.
                Revocation::Jti { jti, exp } if *exp + MAX_CLOCK_SKEW_SECONDS > now => {
                    Some(jti.as_str())
                }
                _ => None,
            })
            .collect();
        let mut bloom = Bloom::with_capacity(live.len().max(16), 0.001, rand::random());
        for j in &live {
            bloom.insert(j);
        }
        // A rule older than every token that could still be valid has nothing left to do.
        let rules = revocations
            .iter()
            .filter_map(|r| {
                let (claim, value, nb) = match r {
                    Revocation::Sub { value, not_before } => (RuleClaim::Sub, value, *not_before),
                    Revocation::Sid { value, not_before } => (RuleClaim::Sid, value, *not_before),
                    Revocation::ClientId { value, not_before } => {
                        (RuleClaim::ClientId, value, *not_before)
                    }
                    Revocation::Jti { .. } => return None,
                };
                (nb > now - rule_horizon).then(|| RevocationRule {
                    claim,
                    value: value.clone(),
                    not_before: nb,
                })
            })
            .collect();
        let snap = Snapshot {
            epoch: self.epoch(),
            version,
            issued_at: now,
            jwks,
            revoked_jti: bloom,
            rules,
            limits,
        };
        let sealed = SignedSnapshot::seal(&snap, |payload| self.signer.sign(payload).to_bytes());
        let text = Arc::new(serde_json::to_string(&sealed).unwrap_or_default());
        *lock(&self.cached) = Some((version, now, text.clone()));
        text
    }
}
