//! The keyring in the store: one document changed by compare-and-swap, the schedule
//! step that drives `Keyring::tick`, and this replica's cache of it (the JWKS answer
//! and unsealed signers).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;

use meshauth_wire::{b64, Jwk};

use crate::audit::{AuditAction, AuditDetail};
use crate::config::Settings;
use crate::ctx::{secs, Ctx};
use crate::error::ServiceError;
use crate::store::{Change as Write, Doc, StoreError, Table};
use crate::sync::Change;

use super::lifecycle::{FilterGate, KeyEvent, KeyRecord, Keyring, LifecyclePolicy};

/// The lifecycle's timing, from the token TTLs, clock skew and JWKS max-age.
pub fn policy(s: &Settings) -> LifecyclePolicy {
    let skew = secs(s.keys.clock_skew);
    LifecyclePolicy {
        rotation_interval: secs(s.keys.rotation_interval),
        prepublish: secs(s.keys.jwks_max_age) + skew,
        retention: secs(s.tokens.max_access_ttl.max(s.tokens.client_credentials_ttl)) + skew,
    }
}

const KEYRING: &str = "keyring";
const RING: Doc<Keyring> = Doc::new(Table::Meta, "keyring");

struct KeyCache {
    ring: Keyring,
    raw: Option<Vec<u8>>,
    jwks_body: Arc<String>,
    jwks_etag: Arc<String>,
    signers: HashMap<String, Arc<SigningKey>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

pub struct KeyService {
    ctx: Arc<Ctx>,
    cache: RwLock<KeyCache>,
}

impl KeyService {
    pub fn new(ctx: Arc<Ctx>) -> KeyService {
        KeyService {
            ctx,
            cache: RwLock::new(KeyCache {
                ring: Keyring::default(),
                raw: None,
                jwks_body: Arc::new("{\"keys\":[]}".into()),
                jwks_etag: Arc::new(String::new()),
                signers: HashMap::new(),
            }),
        }
    }

    fn new_key_record(&self, now: i64) -> KeyRecord {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = sk.verifying_key().to_bytes();
        let kid = Jwk::from_ed25519(&public).thumbprint();
        let sealed = self
            .ctx
            .settings
            .master_key
            .seal(&sk.to_bytes(), kid.as_bytes());
        KeyRecord::fresh(kid, b64::encode(public), b64::encode(sealed), now)
    }

    /// Reloads the keyring from the store if it changed (another replica may have
    /// rotated) and refreshes the JWKS answer.
    pub async fn reload(&self) -> Result<Keyring, ServiceError> {
        let raw = self.ctx.store().get(Table::Meta, KEYRING).await?;
        if read(&self.cache).raw == raw {
            return Ok(read(&self.cache).ring.clone());
        }
        let ring = match &raw {
            Some(r) => RING.decode(r)?,
            None => Keyring::default(),
        };
        self.install(ring.clone(), raw)?;
        Ok(ring)
    }

    fn install(&self, ring: Keyring, raw: Option<Vec<u8>>) -> Result<(), ServiceError> {
        let body = crate::store::typed::encode_text("jwks", &ring.jwks())?;
        let etag = format!("\"{}\"", &crate::crypto::sha256_hex(&body)[..32]);
        let mut cache = write(&self.cache);
        cache
            .signers
            .retain(|kid, _| ring.published().any(|k| &k.kid == kid));
        cache.ring = ring;
        cache.raw = raw;
        cache.jwks_body = Arc::new(body);
        cache.jwks_etag = Arc::new(etag);
        Ok(())
    }

    /// Applies `change` to the keyring with compare-and-swap; audits the events. `None`
    /// from `change` means nothing to do. Bookkeeping without events (a flag, a noted
    /// version) is stored, but neither logged as a change for filters nor audited.
    async fn update<F>(
        &self,
        actor: &str,
        mut change: F,
    ) -> Result<Option<Vec<KeyEvent>>, ServiceError>
    where
        F: FnMut(&mut Keyring, i64) -> Option<Vec<KeyEvent>>,
    {
        let now = self.ctx.now();
        let up = RING
            .update(self.ctx.store(), KEYRING, "the keyring", |cur| {
                let mut ring = cur.unwrap_or_default();
                Ok(match change(&mut ring, now) {
                    None => Write::Keep(None),
                    Some(events) => Write::Set(ring, Some(events)),
                })
            })
            .await?;
        let ring = up.value.unwrap_or_default();
        self.install(ring, up.raw)?;
        let Some(events) = up.answer else {
            return Ok(None);
        };
        if !up.written {
            return Ok(Some(events));
        }
        if !events.is_empty() {
            self.ctx
                .sync
                .changed(self.ctx.store(), Change::Keys, now)
                .await?;
        }
        for e in &events {
            let (action, kid) = match e {
                KeyEvent::Published(k) => (AuditAction::KeyPublished, k),
                KeyEvent::Activated(k) => (AuditAction::KeyActivated, k),
                KeyEvent::Deactivated(k) => (AuditAction::KeyDeactivated, k),
                KeyEvent::Retired(k) => (AuditAction::KeyRetired, k),
                KeyEvent::Revoked(k) => (AuditAction::KeyRevoked, k),
                KeyEvent::ActivatedPastLaggingFilters(k) => {
                    (AuditAction::KeyActivatedPastLaggingFilters, k)
                }
            };
            if matches!(e, KeyEvent::Activated(_)) {
                self.ctx.metrics.rotations.inc();
            }
            if matches!(e, KeyEvent::ActivatedPastLaggingFilters(_)) {
                self.ctx.metrics.forced_activations.inc();
                tracing::warn!(kid = %kid, "key activated although a connected filter has not applied it");
            }
            self.ctx
                .audit
                .record(actor, action, kid, AuditDetail::Nothing {}, now)
                .await?;
        }
        Ok(Some(events))
    }

    /// The schedule step, on the replica holding the rotation lease.
    pub async fn tick(&self) -> Result<(), ServiceError> {
        let policy = policy(&self.ctx.settings);
        let gate = self.filter_gate().await?;
        self.update("scheduler", |ring, now| {
            Some(ring.tick(now, &policy, &gate, &mut |t| self.new_key_record(t)))
        })
        .await?;
        Ok(())
    }

    /// What the connected filters (on any replica) have applied, for the key schedule.
    async fn filter_gate(&self) -> Result<FilterGate, ServiceError> {
        let (head, _) = self
            .ctx
            .store()
            .log_head(crate::store::Log::Changes)
            .await?;
        let min_applied = self
            .ctx
            .sync
            .connected_filters(self.ctx.store(), self.ctx.now())
            .await?
            .iter()
            .map(|f| f.applied_version)
            .min();
        Ok(FilterGate {
            head,
            min_applied,
            max_wait: secs(self.ctx.settings.keys.max_activation_wait),
        })
    }

    /// Forces a rotation: publishes a `next` key if there is none; it signs as soon
    /// as it has been published for one JWKS max-age (at once if it already has).
    pub async fn rotate(&self, actor: &str) -> Result<Keyring, ServiceError> {
        let policy = policy(&self.ctx.settings);
        let gate = self.filter_gate().await?;
        self.update(actor, |ring, now| {
            ring.rotation_requested = true;
            Some(ring.tick(now, &policy, &gate, &mut |t| self.new_key_record(t)))
        })
        .await?;
        self.reload().await
    }

    pub async fn revoke(&self, actor: &str, kid: &str) -> Result<Keyring, ServiceError> {
        let found = self
            .update(actor, |ring, now| {
                ring.revoke(kid, now, &mut |t| self.new_key_record(t))
            })
            .await?;
        if found.is_none() {
            return Err(ServiceError::NotFound(format!("key {kid}")));
        }
        self.reload().await
    }

    pub fn keyring(&self) -> Keyring {
        read(&self.cache).ring.clone()
    }

    /// The JWKS answer and its ETag.
    pub fn jwks(&self) -> (Arc<String>, Arc<String>) {
        let c = read(&self.cache);
        (c.jwks_body.clone(), c.jwks_etag.clone())
    }

    /// The raw public key of a published key.
    pub fn published_key(&self, kid: &str) -> Option<[u8; 32]> {
        let c = read(&self.cache);
        let k = c.ring.published().find(|k| k.kid == kid)?;
        b64::decode_array::<32>(&k.public)
    }

    /// The current key, unsealed once and then cached.
    pub fn signer(&self) -> Result<(String, Arc<SigningKey>), ServiceError> {
        let (kid, sealed) = {
            let c = read(&self.cache);
            let cur = c
                .ring
                .current()
                .ok_or_else(|| ServiceError::Internal("no current signing key".into()))?;
            if let Some(sk) = c.signers.get(&cur.kid) {
                return Ok((cur.kid.clone(), sk.clone()));
            }
            (cur.kid.clone(), cur.sealed_private.clone())
        };
        let corrupt =
            |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("sealed key {kid}: {e}"));
        let sealed = b64::decode(&sealed).map_err(|e| corrupt(&e))?;
        let seed = self
            .ctx
            .settings
            .master_key
            .open(&sealed, kid.as_bytes())
            .map_err(|e| corrupt(&e))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| corrupt(&"wrong length"))?;
        let sk = Arc::new(SigningKey::from_bytes(&seed));
        write(&self.cache).signers.insert(kid.clone(), sk.clone());
        Ok((kid, sk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_prepublishes_for_a_jwks_max_age_and_retains_for_a_token_lifetime() {
        let key = "ab".repeat(32);
        let env = |k: &str| (k == "MESHAUTH_MASTER_KEY").then(|| key.clone());
        let p = policy(&Settings::load(None, &env).unwrap());
        assert_eq!((p.prepublish, p.retention), (330, 3630));
    }
}
