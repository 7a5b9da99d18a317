//! Filter sync: every change appends to the durable change log, whose length
//! is the snapshot version; filters long-poll with the version they hold and get a
//! snapshot signed by the distribution key as soon as there is a newer one. Replicas
//! follow the log in the shared store, so a change made through one reaches filters
//! polling another.

mod changelog;
mod filters;
pub mod longpoll;
mod outage;
mod snapshot;

pub use changelog::{Change, ChangeEntry};
pub use filters::{FilterStatus, CONNECTED_SECONDS, MAX_FILTERS};
pub use longpoll::{PollNoted, MAX_WAIT};
pub use snapshot::Contents;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use meshauth_wire::b64;
use meshauth_wire::sync::{ConfirmAnswer, HeadStatement, SignedConfirm};

use crate::crypto::{self, MasterKey};
use crate::error::ServiceError;
use crate::store::{typed, Log, Store, StoreError, StoreResult, Table};

const DISTRIBUTION_KEY: &str = "distribution_key";
const EPOCH: &str = "epoch";

#[derive(Serialize, Deserialize)]
struct StoredDistributionKey {
    public: String,
    sealed_private: String,
}

/// A filter further behind than this many changes gets a full snapshot.
pub const MAX_DELTA_CHANGES: u64 = 256;

pub struct SyncHub {
    /// Changes when the history restarts (see `restart_epoch_if_behind`); replicas
    /// re-read it whenever the change log moves.
    epoch: std::sync::RwLock<String>,
    signer: SigningKey,
    pub distribution_public: String,
    version_tx: watch::Sender<u64>,
    /// Set at shutdown: parked polls are answered at once and no new one parks.
    closing: watch::Sender<bool>,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn create_once(
    store: &dyn Store,
    key: &str,
    make: impl FnOnce() -> StoreResult<Vec<u8>>,
) -> StoreResult<Vec<u8>> {
    if let Some(v) = store.get(Table::Meta, key).await? {
        return Ok(v);
    }
    let fresh = make()?;
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
    /// `configured`: the seed of `distribution_key_file`, which the filters were given
    /// the public half of before the first start; it signs, and the store's record
    /// follows it. None: the key in the store, made at the first start.
    pub async fn open(
        store: &dyn Store,
        master: &MasterKey,
        configured: Option<[u8; 32]>,
    ) -> Result<SyncHub, ServiceError> {
        const WHAT: &str = "distribution key";
        let record = |sk: &SigningKey| {
            let sealed = master.seal(&sk.to_bytes(), DISTRIBUTION_KEY.as_bytes());
            typed::encode(
                WHAT,
                &StoredDistributionKey {
                    public: b64::encode(sk.verifying_key().to_bytes()),
                    sealed_private: b64::encode(sealed),
                },
            )
        };
        let raw = create_once(store, DISTRIBUTION_KEY, || {
            let sk = configured
                .map(|seed| SigningKey::from_bytes(&seed))
                .unwrap_or_else(|| SigningKey::generate(&mut rand::rngs::OsRng));
            record(&sk)
        })
        .await?;
        let stored: StoredDistributionKey = typed::decode(WHAT, &raw)?;
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{WHAT}: {e}"));
        let sealed = b64::decode(&stored.sealed_private).map_err(|e| corrupt(&e))?;
        // Unsealing fails under another master key as on altered bytes; checked even when
        // a configured key signs, so a wrong master key stops the start here, not at the
        // first token signed.
        let seed = master
            .open(&sealed, DISTRIBUTION_KEY.as_bytes())
            .map_err(|e| corrupt(&e))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| corrupt(&"wrong length"))?;
        // Told apart by their public halves: no comparison of secrets.
        let configured = configured.map(|file| {
            let sk = SigningKey::from_bytes(&file);
            (file, b64::encode(sk.verifying_key().to_bytes()), sk)
        });
        let (seed, public) = match configured {
            // Both halves are 32 bytes in base64url: the public one (what the filters
            // pin, what `meshauth status` shows) put in the file would replace the key
            // for good with one whose seed is public.
            Some((file, _, _)) if b64::encode(file) == stored.public => {
                return Err(ServiceError::Invalid(
                    "distribution_key_file holds the distribution key's public half (what the filters pin), not its private half: nothing was changed".into(),
                ))
            }
            Some((file, public, sk)) if public != stored.public => {
                // The file is what the filters were configured with; the stored key
                // (made before there was a file, or another file's) goes.
                tracing::warn!(
                    stored = %stored.public,
                    configured = %public,
                    "distribution_key_file holds another key than the store: it replaces it; filters pinning the old public key refuse snapshots until given the new one"
                );
                store
                    .compare_and_swap(
                        Table::Meta,
                        DISTRIBUTION_KEY,
                        Some(&raw),
                        Some(&record(&sk)?),
                    )
                    .await?;
                (file, public)
            }
            _ => (seed, stored.public),
        };
        let epoch = create_once(store, EPOCH, || Ok(crypto::random_token(12).into_bytes())).await?;
        let (len, _) = store.log_head(Log::Changes).await?;
        let (version_tx, _) = watch::channel(len);
        Ok(SyncHub {
            epoch: std::sync::RwLock::new(String::from_utf8_lossy(&epoch).to_string()),
            signer: SigningKey::from_bytes(&seed),
            distribution_public: public,
            version_tx,
            closing: watch::channel(false).0,
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
        self.changed(store, Change::Epoch, now).await?;
        Ok(true)
    }

    pub fn version(&self) -> u64 {
        *self.version_tx.borrow()
    }

    /// Ends every parked long poll now and keeps new ones from parking: at shutdown,
    /// so filters get their answer and re-poll (another replica, or this one restarted)
    /// instead of holding the process open until their waits run out.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
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
        let mut outage = outage::Outage::default();
        loop {
            if nudges.is_none() && tokio::time::Instant::now() >= retry_at {
                nudges = store.change_nudges().await;
                retry_at = tokio::time::Instant::now() + Duration::from_secs(5);
            }
            match store.log_head(Log::Changes).await {
                Ok((len, _)) => {
                    if let Some(r) = outage.ended(std::time::Instant::now()) {
                        tracing::info!(
                            down_ms = r.down.as_millis() as u64,
                            failures = r.failures,
                            "change log reachable again"
                        );
                    }
                    if len != self.version() {
                        if let Err(e) = self.reload_epoch(store).await {
                            tracing::warn!(error = %e, "could not re-read the sync epoch");
                        }
                    }
                    self.observe(len)
                }
                Err(e) => {
                    if let Some(r) = outage.failed(std::time::Instant::now()) {
                        tracing::warn!(error = %e, down_ms = r.down.as_millis() as u64, failures = r.failures, "change log unreachable; filters keep their snapshot");
                    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn a_configured_distribution_key_signs_and_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("d.redb")).unwrap();
        let master = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let made = SyncHub::open(&store, &master, None).await.unwrap();
        let seed = [7u8; 32];
        let public = b64::encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
        assert_ne!(made.distribution_public, public);
        // The file's key wins over the one the first start made, and signs.
        let hub = SyncHub::open(&store, &master, Some(seed)).await.unwrap();
        assert_eq!(hub.distribution_public, public);
        let answer = ConfirmAnswer {
            jti: "j".into(),
            nonce: "n".into(),
            revoked: false,
        };
        let signed = serde_json::to_vec(&hub.seal_confirm(&answer)).unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&seed_public(&seed)).unwrap();
        let verify = |m: &[u8], sig: &[u8; 64]| {
            vk.verify_strict(m, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        };
        assert_eq!(ConfirmAnswer::open(&signed, "j", "n", verify), Some(false));
        // The store follows it: a later start without the file keeps signing with it.
        let again = SyncHub::open(&store, &master, None).await.unwrap();
        assert_eq!(again.distribution_public, public);
        // Another master key cannot open the store: refused at the start, key file or not.
        let other = MasterKey::parse(&"cd".repeat(32)).unwrap();
        assert!(SyncHub::open(&store, &other, Some(seed)).await.is_err());
        // The public half in the file (the stored key's) is refused, and changes nothing.
        let e = SyncHub::open(&store, &master, Some(seed_public(&seed)))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("public half"), "{e}");
        let kept = SyncHub::open(&store, &master, None).await.unwrap();
        assert_eq!(kept.distribution_public, public);
        // On an empty store the configured key is the first one.
        let dir2 = tempfile::tempdir().unwrap();
        let fresh = EmbeddedStore::open(&dir2.path().join("d.redb")).unwrap();
        let first = SyncHub::open(&fresh, &master, Some(seed)).await.unwrap();
        assert_eq!(first.distribution_public, public);
    }

    fn seed_public(seed: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(seed).verifying_key().to_bytes()
    }
}
