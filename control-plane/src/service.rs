//! The control plane's services over the store: keys, tokens, clients, refresh
//! families, revocations and the audit log. HTTP handlers are thin over these.

use std::ops::Not;
use std::sync::{Arc, RwLock};

use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use meshauth_wire::{b64, AccessClaims, Jwk};

use crate::crypto::{self, ct_eq};
use crate::error::{GrantError, OAuthError, ServiceError};
use crate::keys::{KeyEvent, KeyRecord, KeyState, Keyring};
use crate::store::Table;

/// The system time; the HTTP layer's until it reads `App::now`. Domain code uses the
/// injected clock.
pub fn now() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

pub use crate::app::App;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Store(crate::store::StoreError::Corrupt(format!("{what}: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub secret_sha256: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

/// A refresh token, stored under the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub sid: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub expires_at: i64,
    pub used: bool,
    /// When it was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
    /// The answer to its use, sealed under the master key (bound to this record's key),
    /// for a retry within the grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// The tokens a refresh issued, kept sealed in the spent record.
#[derive(Serialize, Deserialize)]
struct SealedAnswer {
    access_token: String,
    refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub sid: String,
    pub sub: String,
    pub client_id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A revocation: of one token by `jti` until it expires, or every token of a
/// subject, session or client issued before `not_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    Jti { jti: String, exp: i64 },
    Sub { value: String, not_before: i64 },
    Sid { value: String, not_before: i64 },
    ClientId { value: String, not_before: i64 },
}

/// Whether `existing` already revokes everything `new` would: then `new` is a repeat.
fn covers(existing: &Revocation, new: &Revocation) -> bool {
    match (existing, new) {
        (Revocation::Jti { exp: a, .. }, Revocation::Jti { exp: b, .. }) => a >= b,
        // A revoked session mints nothing new, so its first rule covers every later one.
        (Revocation::Sid { .. }, Revocation::Sid { .. }) => true,
        (Revocation::Sub { not_before: a, .. }, Revocation::Sub { not_before: b, .. })
        | (
            Revocation::ClientId { not_before: a, .. },
            Revocation::ClientId { not_before: b, .. },
        ) => a >= b,
        _ => false,
    }
}

impl Revocation {
    pub fn key(&self) -> String {
        match self {
            Revocation::Jti { jti, .. } => format!("jti:{jti}"),
            Revocation::Sub { value, .. } => format!("sub:{value}"),
            Revocation::Sid { value, .. } => format!("sid:{value}"),
            Revocation::ClientId { value, .. } => format!("client_id:{value}"),
        }
    }
}

/// An issued token set, as the token endpoint answers (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Refresh tokens are `rt1.<sid>.<nonce>.<mac>`; the store keeps them by SHA-256.
const REFRESH_PREFIX: &str = "rt1";

/// RFC 7009 calls a client may burst, and how many per second it regains.
const REVOKE_BURST: f64 = 20.0;
const REVOKE_PER_SECOND: f64 = 2.0;
/// Change-log entries kept behind the head: a filter further behind than
/// `sync::MAX_DELTA_CHANGES` gets a full snapshot anyway, so older ones are never read.
pub const CHANGES_KEPT: u64 = 4 * crate::sync::MAX_DELTA_CHANGES;

pub const ADMIN_ACTOR: &str = "admin";
const KEYRING: &str = "keyring";

fn split_scope(scope: &str) -> Vec<String> {
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

/// The fleet-credential check: with hashes configured, the bearer must match one
/// (`allow_anonymous` is then ignored); with none, only `allow_anonymous` lets calls in.
fn sync_bearer_ok(hashes: &[[u8; 32]], allow_anonymous: bool, bearer: Option<&str>) -> bool {
    if hashes.is_empty() {
        return allow_anonymous;
    }
    let Some(bearer) = bearer else {
        return false;
    };
    let presented = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        bearer.as_bytes(),
    ));
    // Every hash is compared, so timing shows nothing about which one matched.
    let mut ok = false;
    for h in hashes {
        ok |= ct_eq(presented.as_slice(), h);
    }
    ok
}

impl App {
    // ---- keys ----

    fn new_key_record(&self, now: i64) -> KeyRecord {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = sk.verifying_key().to_bytes();
        let kid = Jwk::from_ed25519(&public).thumbprint();
        let sealed = self
            .settings
            .master_key
            .seal(&sk.to_bytes(), kid.as_bytes());
        KeyRecord {
            kid,
            public: b64::encode(public),
            sealed_private: b64::encode(sealed),
            state: KeyState::Next,
            created_at: now,
            activated_at: None,
            deactivated_at: None,
            retired_at: None,
            revoked: false,
            published_version: None,
        }
    }

    /// Reloads the keyring from the store if it changed (another replica may have
    /// rotated) and refreshes the JWKS answer.
    pub async fn reload_keys(&self) -> Result<Keyring, ServiceError> {
        let raw = self.store.get(Table::Meta, KEYRING).await?;
        if read(&self.keys).raw == raw {
            return Ok(read(&self.keys).ring.clone());
        }
        let ring: Keyring = match &raw {
            Some(r) => serde_json::from_slice(r).map_err(|e| corrupt("keyring", e))?,
            None => Keyring::default(),
        };
        self.install_keyring(ring.clone(), raw);
        Ok(ring)
    }

    fn install_keyring(&self, ring: Keyring, raw: Option<Vec<u8>>) {
        let body = serde_json::to_string(&ring.jwks()).unwrap_or_else(|_| "{\"keys\":[]}".into());
        let etag = format!("\"{}\"", &crypto::sha256_hex(&body)[..32]);
        let mut cache = write(&self.keys);
        cache
            .signers
            .retain(|kid, _| ring.published().any(|k| &k.kid == kid));
        cache.ring = ring;
        cache.raw = raw;
        cache.jwks_body = Arc::new(body);
        cache.jwks_etag = Arc::new(etag);
    }

    /// Applies `change` to the keyring with compare-and-swap, retrying on conflicts;
    /// audits the events. `None` from `change` means nothing to do.
    async fn update_keyring<F>(
        &self,
        actor: &str,
        mut change: F,
    ) -> Result<Option<Vec<KeyEvent>>, ServiceError>
    where
        F: FnMut(&mut Keyring, i64) -> Option<Vec<KeyEvent>>,
    {
        for _ in 0..16 {
            let raw = self.store.get(Table::Meta, KEYRING).await?;
            let mut ring: Keyring = match &raw {
                Some(r) => serde_json::from_slice(r).map_err(|e| corrupt("keyring", e))?,
                None => Keyring::default(),
            };
            let now = self.now();
            let Some(events) = change(&mut ring, now) else {
                self.install_keyring(ring, raw);
                return Ok(None);
            };
            let new_raw =
                serde_json::to_vec(&ring).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if events.is_empty() && raw.as_deref() == Some(new_raw.as_slice()) {
                self.install_keyring(ring, raw);
                return Ok(Some(events));
            }
            // Bookkeeping without events (a flag, a noted version) is stored, but neither
            // logged as a change for filters nor audited.
            if self
                .store
                .compare_and_swap(Table::Meta, KEYRING, raw.as_deref(), Some(&new_raw))
                .await?
            {
                self.install_keyring(ring, Some(new_raw));
                if !events.is_empty() {
                    self.sync
                        .changed(self.store.as_ref(), "keys", now, None)
                        .await?;
                }
                for e in &events {
                    let (action, kid) = match e {
                        KeyEvent::Published(k) => ("key.published", k),
                        KeyEvent::Activated(k) => ("key.activated", k),
                        KeyEvent::Deactivated(k) => ("key.deactivated", k),
                        KeyEvent::Retired(k) => ("key.retired", k),
                        KeyEvent::Revoked(k) => ("key.revoked", k),
                        KeyEvent::ActivatedPastLaggingFilters(k) => {
                            ("key.activated_past_lagging_filters", k)
                        }
                    };
                    if matches!(e, KeyEvent::Activated(_)) {
                        self.metrics.rotations.inc();
                    }
                    if matches!(e, KeyEvent::ActivatedPastLaggingFilters(_)) {
                        self.metrics.forced_activations.inc();
                        tracing::warn!(kid = %kid, "key activated although a connected filter has not applied it");
                    }
                    self.audit
                        .record(actor, action, kid, json!({}), now)
                        .await?;
                }
                return Ok(Some(events));
            }
        }
        Err(ServiceError::Conflict(
            "the keyring is being changed concurrently; try again".into(),
        ))
    }

    /// The scheduled step: runs on every replica, acts on the one holding the lease.
    pub async fn key_tick(&self) -> Result<(), ServiceError> {
        let ttl = self.settings.keys.check_interval.as_millis() as u64 * 3;
        if !self.store.lease("rotation", &self.replica_id, ttl).await? {
            self.reload_keys().await?;
            return Ok(());
        }
        let policy = self.settings.lifecycle();
        let gate = self.filter_gate().await?;
        self.update_keyring("scheduler", |ring, now| {
            let events = ring.tick(now, &policy, &gate, &mut |t| self.new_key_record(t));
            Some(events)
        })
        .await?;
        self.prune_revocations(self.now(), self.settings.revocation_horizon())
            .await?;
        // Sessions and the change log are read whole: once a minute is enough.
        let now = self.now();
        let last = self.last_prune.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 60 {
            self.last_prune
                .store(now, std::sync::atomic::Ordering::Relaxed);
            self.prune_sessions(now).await?;
            self.compact_changes(CHANGES_KEPT).await?;
        }
        Ok(())
    }

    /// Expired refresh tokens, spent ones once the retry grace is over, and expired
    /// sessions leave the store: a session holds one live refresh token, whatever the
    /// number of refreshes.
    pub async fn prune_sessions(&self, now: i64) -> Result<usize, ServiceError> {
        let skew = i64::try_from(self.settings.keys.clock_skew.as_secs()).unwrap_or(0);
        let refresh_ttl = i64::try_from(self.settings.tokens.refresh_ttl.as_secs()).unwrap_or(0);
        let grace = i64::try_from(self.settings.tokens.refresh_retry_grace.as_secs()).unwrap_or(0);
        let mut pruned = 0;
        for (key, raw) in self.store.list(Table::RefreshTokens).await? {
            let Ok(r) = serde_json::from_slice::<RefreshRecord>(&raw) else {
                continue;
            };
            // A spent token's record is only needed for a retry within the grace: after
            // that, its MAC proves its session, and presenting it is reuse all the same.
            let spent_long_ago = r.used_at.is_some_and(|at| at + grace + 60 < now);
            if (r.expires_at + skew < now || spent_long_ago)
                && self
                    .store
                    .compare_and_swap(Table::RefreshTokens, &key, Some(&raw), None)
                    .await?
            {
                pruned += 1;
            }
        }
        // Every refresh token of a session expires with the session's first one.
        for (key, raw) in self.store.list(Table::Families).await? {
            let Ok(f) = serde_json::from_slice::<FamilyRecord>(&raw) else {
                continue;
            };
            if f.created_at + refresh_ttl + skew < now
                && self
                    .store
                    .compare_and_swap(Table::Families, &key, Some(&raw), None)
                    .await?
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Drops change-log entries more than `keep` behind the head (the version stays);
    /// how many were dropped.
    pub async fn compact_changes(&self, keep: u64) -> Result<u64, ServiceError> {
        let (head, _) = self.store.log_head(crate::store::Log::Changes).await?;
        if head <= keep {
            return Ok(0);
        }
        Ok(self
            .store
            .trim_log(crate::store::Log::Changes, head - keep)
            .await?)
    }

    /// Takes one RFC 7009 call from `client_id`'s budget; `Err(seconds)` to wait when
    /// it is spent. In memory, per replica: a bound on churn, not an exact quota.
    pub fn take_revocation_budget(&self, client_id: &str) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut b = self.revoke_budget.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() > 10_000 {
            // Forget the buckets that have refilled: they are equal to new ones.
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * REVOKE_PER_SECOND < REVOKE_BURST
            });
        }
        let (tokens, at) = b
            .entry(client_id.to_string())
            .or_insert((REVOKE_BURST, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * REVOKE_PER_SECOND).min(REVOKE_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / REVOKE_PER_SECOND).ceil().max(1.0) as u64)
        }
    }

    /// What the connected filters (on any replica) have applied, for the key schedule.
    async fn filter_gate(&self) -> Result<crate::keys::FilterGate, ServiceError> {
        let (head, _) = self.store.log_head(crate::store::Log::Changes).await?;
        let min_applied = self
            .sync
            .connected_filters(self.store.as_ref(), self.now())
            .await?
            .iter()
            .map(|f| f.applied_version)
            .min();
        Ok(crate::keys::FilterGate {
            head,
            min_applied,
            max_wait: i64::try_from(self.settings.keys.max_activation_wait.as_secs())
                .unwrap_or(i64::MAX / 4),
        })
    }

    /// Revocations that can no longer match a valid token leave the store: a `jti` once its
    /// token has expired (plus the largest skew any filter may allow), a rule once every
    /// token it could cover has.
    async fn prune_revocations(&self, now: i64, horizon: i64) -> Result<usize, ServiceError> {
        let skew = self.settings.revocation_skew();
        let mut pruned = 0;
        for (key, raw) in self.store.list(Table::Revocations).await? {
            let Ok(r) = serde_json::from_slice::<Revocation>(&raw) else {
                continue;
            };
            let dead = match r {
                Revocation::Jti { exp, .. } => exp.saturating_add(skew) < now,
                Revocation::Sub { not_before, .. }
                | Revocation::Sid { not_before, .. }
                | Revocation::ClientId { not_before, .. } => not_before + horizon < now,
            };
            // Only if unchanged since read: a concurrent re-revocation wins.
            if dead
                && self
                    .store
                    .compare_and_swap(Table::Revocations, &key, Some(&raw), None)
                    .await?
            {
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Forces a rotation: publishes a `next` key if there is none; it signs as soon
    /// as it has been published for one JWKS max-age (at once if it already has).
    pub async fn rotate_keys(&self, actor: &str) -> Result<Keyring, ServiceError> {
        let policy = self.settings.lifecycle();
        let gate = self.filter_gate().await?;
        self.update_keyring(actor, |ring, now| {
            ring.rotation_requested = true;
            Some(ring.tick(now, &policy, &gate, &mut |t| self.new_key_record(t)))
        })
        .await?;
        self.reload_keys().await
    }

    pub async fn revoke_key(&self, actor: &str, kid: &str) -> Result<Keyring, ServiceError> {
        let found = self
            .update_keyring(actor, |ring, now| {
                ring.revoke(kid, now, &mut |t| self.new_key_record(t))
            })
            .await?;
        if found.is_none() {
            return Err(ServiceError::NotFound(format!("key {kid}")));
        }
        self.reload_keys().await
    }

    pub fn keyring(&self) -> Keyring {
        read(&self.keys).ring.clone()
    }

    pub fn jwks(&self) -> (Arc<String>, Arc<String>) {
        let c = read(&self.keys);
        (c.jwks_body.clone(), c.jwks_etag.clone())
    }

    fn signer(&self) -> Result<(String, Arc<SigningKey>), ServiceError> {
        let (kid, sealed) = {
            let c = read(&self.keys);
            let cur = c
                .ring
                .current()
                .ok_or_else(|| ServiceError::Internal("no current signing key".into()))?;
            if let Some(sk) = c.signers.get(&cur.kid) {
                return Ok((cur.kid.clone(), sk.clone()));
            }
            (cur.kid.clone(), cur.sealed_private.clone())
        };
        let sealed = b64::decode(&sealed).map_err(|e| corrupt("sealed key", e))?;
        let seed = self
            .settings
            .master_key
            .open(&sealed, kid.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("key {kid}: {e}")))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| corrupt("sealed key", "wrong length"))?;
        let sk = Arc::new(SigningKey::from_bytes(&seed));
        write(&self.keys).signers.insert(kid.clone(), sk.clone());
        Ok((kid, sk))
    }

    // ---- tokens ----

    pub fn mint_access(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        aud: Vec<String>,
        ttl: i64,
        sid: Option<String>,
    ) -> Result<(String, AccessClaims), ServiceError> {
        let (kid, sk) = self.signer()?;
        let now = self.now();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: sub.to_string(),
            aud,
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: crypto::random_token(16),
            scope: scope.to_string(),
            client_id: client_id.to_string(),
            sid,
        };
        let header = json!({"alg": meshauth_wire::ALG_EDDSA, "typ": meshauth_wire::TYP_ACCESS_TOKEN, "kid": kid});
        let payload =
            serde_json::to_vec(&claims).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let input = format!(
            "{}.{}",
            b64::encode(header.to_string()),
            b64::encode(payload)
        );
        let sig = sk.sign(input.as_bytes());
        Ok((format!("{input}.{}", b64::encode(sig.to_bytes())), claims))
    }

    /// Verifies one of our access tokens (signature by a published key, expiry).
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64::decode(h).ok()?).ok()?;
        if header["alg"] != meshauth_wire::ALG_EDDSA && header["alg"] != meshauth_wire::ALG_ED25519
        {
            return None;
        }
        let kid = header["kid"].as_str()?;
        let public = {
            let c = read(&self.keys);
            let k = c.ring.published().find(|k| k.kid == kid)?;
            b64::decode_array::<32>(&k.public)?
        };
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).ok()?;
        let sig = ed25519_dalek::Signature::from_bytes(&b64::decode_array::<64>(s)?);
        vk.verify(format!("{h}.{p}").as_bytes(), &sig).ok()?;
        let claims: AccessClaims = serde_json::from_slice(&b64::decode(p).ok()?).ok()?;
        (claims.exp > self.now()).then_some(claims)
    }

    // ---- clients ----

    pub async fn create_client(
        &self,
        actor: &str,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<(ClientRecord, String), ServiceError> {
        validate_name("name", name)?;
        validate_scopes(&scopes)?;
        let secret = crypto::random_token(32);
        let rec = ClientRecord {
            client_id: format!("c-{}", crypto::random_token(12)),
            name: name.to_string(),
            secret_sha256: crypto::sha256_hex(&secret),
            scopes,
            created_at: self.now(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| ServiceError::Internal(e.to_string()))?;
        if !self
            .store
            .compare_and_swap(Table::Clients, &rec.client_id, None, Some(&bytes))
            .await?
        {
            return Err(ServiceError::Conflict(
                "client id collision; try again".into(),
            ));
        }
        self.audit
            .record(
                actor,
                "client.created",
                &rec.client_id,
                json!({"name": name, "scopes": rec.scopes}),
                rec.created_at,
            )
            .await?;
        Ok((rec, secret))
    }

    pub async fn get_client(&self, client_id: &str) -> Result<Option<ClientRecord>, ServiceError> {
        match self.store.get(Table::Clients, client_id).await? {
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).map_err(|e| corrupt("client", e))?,
            )),
            None => Ok(None),
        }
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, ServiceError> {
        let all = self.store.list(Table::Clients).await?;
        all.iter()
            .map(|(_, b)| serde_json::from_slice(b).map_err(|e| corrupt("client", e)))
            .collect()
    }

    /// Deletes a client and revokes what it holds: its sessions and, by a `client_id`
    /// rule, the access tokens already issued to it.
    pub async fn delete_client(&self, actor: &str, client_id: &str) -> Result<(), ServiceError> {
        if self.get_client(client_id).await?.is_none() {
            return Err(ServiceError::NotFound(format!("client {client_id}")));
        }
        // Revoke first, delete last: if a step fails, the client is still there and a retry
        // finishes the job (revocations are idempotent); deleted first, its tokens could
        // outlive a failure with nothing left to name them by.
        let now = self.now();
        let v = client_id.to_string();
        self.revoke_sessions(&move |f: &FamilyRecord| f.client_id == v, now)
            .await?;
        self.revoke(
            actor,
            Revocation::ClientId {
                value: client_id.to_string(),
                not_before: now + 1,
            },
            "client deleted",
        )
        .await?;
        if !self.store.delete(Table::Clients, client_id).await? {
            return Err(ServiceError::NotFound(format!("client {client_id}")));
        }
        self.audit
            .record(actor, "client.deleted", client_id, json!({}), now)
            .await?;
        Ok(())
    }

    pub async fn rotate_client_secret(
        &self,
        actor: &str,
        client_id: &str,
    ) -> Result<String, ServiceError> {
        for _ in 0..8 {
            let raw = self
                .store
                .get(Table::Clients, client_id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("client {client_id}")))?;
            let mut rec: ClientRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt("client", e))?;
            let secret = crypto::random_token(32);
            rec.secret_sha256 = crypto::sha256_hex(&secret);
            let bytes =
                serde_json::to_vec(&rec).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if self
                .store
                .compare_and_swap(Table::Clients, client_id, Some(&raw), Some(&bytes))
                .await?
            {
                self.audit
                    .record(
                        actor,
                        "client.secret_rotated",
                        client_id,
                        json!({}),
                        self.now(),
                    )
                    .await?;
                return Ok(secret);
            }
        }
        Err(ServiceError::Conflict(
            "client is being changed concurrently".into(),
        ))
    }

    /// Checks a client's secret in constant time. Unknown clients take the same path.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<ClientRecord>, ServiceError> {
        let rec = self.get_client(client_id).await?;
        let presented = crypto::sha256_hex(secret);
        let stored = rec
            .as_ref()
            .map_or_else(|| "0".repeat(64), |r| r.secret_sha256.clone());
        let ok = ct_eq(presented.as_bytes(), stored.as_bytes());
        Ok(rec.filter(|_| ok))
    }

    /// Whether a sync call's bearer is a configured fleet credential (constant time,
    /// every hash checked). With none configured only `sync_allow_anonymous` lets calls in.
    pub fn sync_authorized(&self, bearer: Option<&str>) -> bool {
        sync_bearer_ok(
            &self.settings.sync_credential_hashes,
            self.settings.sync_allow_anonymous,
            bearer,
        )
    }

    pub fn admin_authorized(&self, bearer: &str) -> bool {
        let presented = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
            bearer.as_bytes(),
        ));
        // Check every configured hash, so timing reveals nothing about which matched.
        let mut ok = false;
        for h in &self.settings.admin_token_hashes {
            ok |= ct_eq(presented.as_slice(), h);
        }
        ok
    }

    // ---- grants ----

    pub async fn client_credentials(
        &self,
        client: &ClientRecord,
        scope: Option<&str>,
    ) -> Result<TokenResponse, GrantError> {
        let requested = match scope {
            Some(s) => split_scope(s),
            None => client.scopes.clone(),
        };
        if let Some(extra) = requested.iter().find(|s| !client.scopes.contains(s)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {extra:?} is not granted to this client"
            ))
            .into());
        }
        let scope = requested.join(" ");
        let ttl = self.settings.tokens.client_credentials_ttl.as_secs() as i64;
        let (token, _) = self.mint_access(
            &client.client_id,
            &client.client_id,
            &scope,
            self.settings.default_audiences.clone(),
            ttl,
            None,
        )?;
        self.metrics.issued("client_credentials");
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: ttl,
            refresh_token: None,
            scope,
            sid: None,
        })
    }

    /// A new refresh token for session `sid`: random, and MACed so that it proves which
    /// session it belongs to even once its record has been pruned.
    fn mint_refresh_token(&self, sid: &str) -> String {
        let nonce = crypto::random_token(32);
        format!(
            "{REFRESH_PREFIX}.{sid}.{nonce}.{}",
            self.refresh_mac(sid, &nonce)
        )
    }

    fn refresh_mac(&self, sid: &str, nonce: &str) -> String {
        b64::encode(crypto::hmac_sha256(
            &self.refresh_key,
            format!("{sid}.{nonce}").as_bytes(),
        ))
    }

    /// The session a refresh token of ours was issued for, if its MAC holds.
    fn refresh_token_sid(&self, token: &str) -> Option<String> {
        let mut p = token.split('.');
        if p.next()? != REFRESH_PREFIX {
            return None;
        }
        let (sid, nonce, mac) = (p.next()?, p.next()?, p.next()?);
        if p.next().is_some() {
            return None;
        }
        ct_eq(mac.as_bytes(), self.refresh_mac(sid, nonce).as_bytes()).then(|| sid.to_string())
    }

    async fn new_refresh(&self, rec: &RefreshRecord) -> Result<String, ServiceError> {
        let token = self.mint_refresh_token(&rec.sid);
        let bytes = serde_json::to_vec(rec).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store
            .put(Table::RefreshTokens, &crypto::sha256_hex(&token), &bytes)
            .await?;
        Ok(token)
    }

    /// Admin-issued tokens for a subject: an access token, a refresh token and a new session.
    pub async fn issue_for_subject(
        &self,
        actor: &str,
        sub: &str,
        scope: &[String],
        aud: Option<Vec<String>>,
        ttl: Option<i64>,
    ) -> Result<TokenResponse, ServiceError> {
        validate_name("sub", sub)?;
        validate_scopes(scope)?;
        let max = self.settings.tokens.max_access_ttl.as_secs() as i64;
        let ttl = ttl.unwrap_or(self.settings.tokens.access_ttl.as_secs() as i64);
        if ttl <= 0 || ttl > max {
            return Err(ServiceError::Invalid(format!(
                "ttl must be between 1s and {max}s"
            )));
        }
        let aud = aud.unwrap_or_else(|| self.settings.default_audiences.clone());
        if aud.is_empty() || aud.iter().any(|a| validate_name("aud", a).is_err()) {
            return Err(ServiceError::Invalid(
                "aud must list 1-256 printable characters each".into(),
            ));
        }
        let sid = format!("s-{}", crypto::random_token(12));
        let now = self.now();
        let family = FamilyRecord {
            sid: sid.clone(),
            sub: sub.into(),
            client_id: ADMIN_ACTOR.into(),
            created_at: now,
            revoked_at: None,
        };
        let fam = serde_json::to_vec(&family).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.put(Table::Families, &sid, &fam).await?;
        let scope = scope.join(" ");
        let (access, _) = self.mint_access(
            sub,
            ADMIN_ACTOR,
            &scope,
            aud.clone(),
            ttl,
            Some(sid.clone()),
        )?;
        let refresh = self
            .new_refresh(&RefreshRecord {
                sid: sid.clone(),
                sub: sub.into(),
                client_id: ADMIN_ACTOR.into(),
                scope: scope.clone(),
                aud,
                expires_at: now + self.settings.tokens.refresh_ttl.as_secs() as i64,
                used: false,
                used_at: None,
                answer: None,
            })
            .await?;
        self.audit
            .record(
                actor,
                "token.issued",
                sub,
                json!({"sid": sid, "scope": scope, "ttl": ttl}),
                now,
            )
            .await?;
        self.metrics.issued("admin");
        Ok(TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: ttl,
            refresh_token: Some(refresh),
            scope,
            sid: Some(sid),
        })
    }

    /// The refresh grant: one-time use, rotated on every use; a reused token revokes its
    /// family. Using a token again within `refresh_retry_grace` of its use gives the same
    /// answer (sealed in the spent record), so a client that lost the answer, or got a 503
    /// because the write was not replicated, can retry without losing its session.
    pub async fn refresh(
        &self,
        token: &str,
        client: Option<&ClientRecord>,
    ) -> Result<TokenResponse, GrantError> {
        let key = crypto::sha256_hex(token);
        let now = self.now();
        let Some(raw) = self.store.get(Table::RefreshTokens, &key).await? else {
            return Err(self.unstored_refresh(token, client, now).await);
        };
        let rec: RefreshRecord =
            serde_json::from_slice(&raw).map_err(|e| corrupt("refresh token", e))?;
        // A family bound to a registered client only refreshes for that client.
        if rec.client_id != ADMIN_ACTOR
            && client.map(|c| c.client_id.as_str()) != Some(rec.client_id.as_str())
        {
            return Err(
                OAuthError::invalid_grant("refresh token was issued to another client").into(),
            );
        }
        if rec.used {
            return self.retry_or_reuse(&key, &rec, now).await;
        }
        if rec.expires_at <= now {
            return Err(OAuthError::invalid_grant("refresh token has expired").into());
        }
        if self.session_revoked(&rec).await? {
            return Err(OAuthError::invalid_grant("session has been revoked").into());
        }
        let ttl = self.settings.tokens.access_ttl.as_secs() as i64;
        let (access, _) = self.mint_access(
            &rec.sub,
            &rec.client_id,
            &rec.scope,
            rec.aud.clone(),
            ttl,
            Some(rec.sid.clone()),
        )?;
        let next_token = self.mint_refresh_token(&rec.sid);
        let answer = TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: ttl,
            refresh_token: Some(next_token.clone()),
            scope: rec.scope.clone(),
            sid: Some(rec.sid.clone()),
        };
        let sealed = serde_json::to_vec(&SealedAnswer {
            access_token: answer.access_token.clone(),
            refresh_token: next_token.clone(),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let spent = RefreshRecord {
            used: true,
            used_at: Some(now),
            answer: Some(b64::encode(
                self.settings.master_key.seal(&sealed, key.as_bytes()),
            )),
            ..rec.clone()
        };
        let spent_bytes =
            serde_json::to_vec(&spent).map_err(|e| ServiceError::Internal(e.to_string()))?;
        // Exactly one concurrent use wins; the others are retries (within the grace) or
        // reuse. A `NotReplicated` failure here means the use applied: the retry path
        // answers it.
        if !self
            .store
            .compare_and_swap(Table::RefreshTokens, &key, Some(&raw), Some(&spent_bytes))
            .await?
        {
            let Some(cur) = self.store.get(Table::RefreshTokens, &key).await? else {
                return Err(OAuthError::invalid_grant("refresh token is invalid").into());
            };
            let cur: RefreshRecord =
                serde_json::from_slice(&cur).map_err(|e| corrupt("refresh token", e))?;
            return self.retry_or_reuse(&key, &cur, now).await;
        }
        self.store_next_refresh(&next_token, &rec).await?;
        self.metrics.issued("refresh_token");
        Ok(answer)
    }

    /// A refresh token with no record: invalid, unless its MAC proves we issued it for a
    /// session that still exists. Live tokens are always stored, so that one was spent
    /// and pruned: reuse, which revokes the session.
    async fn unstored_refresh(
        &self,
        token: &str,
        client: Option<&ClientRecord>,
        now: i64,
    ) -> GrantError {
        let invalid = || OAuthError::invalid_grant("refresh token is invalid").into();
        let Some(sid) = self.refresh_token_sid(token) else {
            return invalid();
        };
        let fam = match self.store.get(Table::Families, &sid).await {
            Ok(Some(raw)) => match serde_json::from_slice::<FamilyRecord>(&raw) {
                Ok(f) => f,
                Err(e) => return corrupt("family", e).into(),
            },
            Ok(None) => return invalid(), // the session expired and was pruned
            Err(e) => return e.into(),
        };
        if fam.client_id != ADMIN_ACTOR
            && client.map(|c| c.client_id.as_str()) != Some(fam.client_id.as_str())
        {
            return OAuthError::invalid_grant("refresh token was issued to another client").into();
        }
        if let Err(e) = self.revoke_family(&sid, "refresh_reuse", now).await {
            return e.into();
        }
        OAuthError::invalid_grant("refresh token was already used; its session has been revoked")
            .into()
    }

    /// Stores the refresh token that replaces `rec`'s, unless it is there already (a
    /// retry). False if it is there and already used.
    async fn store_next_refresh(
        &self,
        next_token: &str,
        rec: &RefreshRecord,
    ) -> Result<bool, ServiceError> {
        let next = RefreshRecord {
            used: false,
            used_at: None,
            answer: None,
            ..rec.clone()
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let next_key = crypto::sha256_hex(next_token);
        if self
            .store
            .compare_and_swap(Table::RefreshTokens, &next_key, None, Some(&bytes))
            .await?
        {
            return Ok(true);
        }
        Ok(
            match self.store.get(Table::RefreshTokens, &next_key).await? {
                Some(cur) => serde_json::from_slice::<RefreshRecord>(&cur)
                    .map_err(|e| corrupt("refresh token", e))?
                    .used
                    .not(),
                None => false,
            },
        )
    }

    /// A used token presented again: within the grace, and while neither the session is
    /// revoked nor the token that replaced it used, the same answer as the first time;
    /// otherwise reuse, which revokes the session.
    async fn retry_or_reuse(
        &self,
        key: &str,
        rec: &RefreshRecord,
        now: i64,
    ) -> Result<TokenResponse, GrantError> {
        let grace = i64::try_from(self.settings.tokens.refresh_retry_grace.as_secs()).unwrap_or(0);
        if let (Some(at), Some(sealed)) = (rec.used_at, rec.answer.as_deref()) {
            let opened = b64::decode(sealed)
                .ok()
                .and_then(|s| self.settings.master_key.open(&s, key.as_bytes()).ok())
                .and_then(|p| serde_json::from_slice::<SealedAnswer>(&p).ok());
            if let Some(a) = opened.filter(|_| grace > 0 && now - at <= grace) {
                if self.session_revoked(rec).await? {
                    return Err(OAuthError::invalid_grant("session has been revoked").into());
                }
                if self.store_next_refresh(&a.refresh_token, rec).await? {
                    return Ok(TokenResponse {
                        access_token: a.access_token,
                        token_type: "Bearer",
                        expires_in: self.settings.tokens.access_ttl.as_secs() as i64,
                        refresh_token: Some(a.refresh_token),
                        scope: rec.scope.clone(),
                        sid: Some(rec.sid.clone()),
                    });
                }
            }
        }
        self.revoke_family(&rec.sid, "refresh_reuse", now).await?;
        Err(OAuthError::invalid_grant(
            "refresh token was already used; its session has been revoked",
        )
        .into())
    }

    async fn revoke_family(&self, sid: &str, why: &str, now: i64) -> Result<(), ServiceError> {
        self.revoke_session(sid, now).await?;
        // Access tokens minted from the family carry its sid: the filter refuses them.
        // Idempotent: a family revoked before changes nothing more.
        self.revoke(
            "system",
            Revocation::Sid {
                value: sid.to_string(),
                not_before: now + 1,
            },
            why,
        )
        .await?;
        Ok(())
    }

    // ---- revocations ----

    /// Stores a revocation. Idempotent: one that an existing entry already covers changes
    /// nothing (no change-log entry, no audit entry, no new version), so repeating a call
    /// cannot grow the store. True when something changed.
    pub async fn revoke(
        &self,
        actor: &str,
        r: Revocation,
        why: &str,
    ) -> Result<bool, ServiceError> {
        let key = r.key();
        let bytes = serde_json::to_vec(&r).map_err(|e| ServiceError::Internal(e.to_string()))?;
        for _ in 0..8 {
            let cur = self.store.get(Table::Revocations, &key).await?;
            if let Some(existing) = cur
                .as_deref()
                .and_then(|raw| serde_json::from_slice::<Revocation>(raw).ok())
            {
                if covers(&existing, &r) {
                    return Ok(false);
                }
            }
            let unreplicated = match self
                .store
                .compare_and_swap(Table::Revocations, &key, cur.as_deref(), Some(&bytes))
                .await
            {
                Ok(true) => None,
                Ok(false) => continue, // changed under us: look again
                // The write applied; only a replica's copy is unconfirmed. The change must
                // still reach the change log now: a retry would find the rule stored,
                // take itself for a repeat and log nothing, and filters following deltas
                // would never hear of it.
                Err(e @ crate::store::StoreError::NotReplicated(_)) => Some(e),
                Err(e) => return Err(e.into()),
            };
            self.sync
                .changed(
                    self.store.as_ref(),
                    "revocations",
                    self.now(),
                    serde_json::to_value(&r).ok(),
                )
                .await?;
            if let Some(e) = unreplicated {
                self.audit
                    .record(
                        actor,
                        "revocation.added",
                        &key,
                        json!({"revocation": r, "reason": why}),
                        self.now(),
                    )
                    .await?;
                return Err(e.into());
            }
            self.audit
                .record(
                    actor,
                    "revocation.added",
                    &key,
                    json!({"revocation": r, "reason": why}),
                    self.now(),
                )
                .await?;
            return Ok(true);
        }
        Err(ServiceError::Conflict(
            "the revocation is being changed concurrently; try again".into(),
        ))
    }

    /// An admin revocation of a subject, session or client: revokes the sessions it
    /// covers (their refresh tokens stop at once) and adds the rule that stops access
    /// tokens already issued. Something never seen is a `NotFound`, not a silent no-op.
    pub async fn revoke_rule(&self, actor: &str, r: Revocation) -> Result<bool, ServiceError> {
        fn sub(f: &FamilyRecord) -> &str {
            &f.sub
        }
        fn sid(f: &FamilyRecord) -> &str {
            &f.sid
        }
        fn client(f: &FamilyRecord) -> &str {
            &f.client_id
        }
        let now = self.now();
        let (what, value, field): (&str, String, fn(&FamilyRecord) -> &str) = match &r {
            Revocation::Sub { value, .. } => ("subject", value.clone(), sub),
            Revocation::Sid { value, .. } => ("session", value.clone(), sid),
            Revocation::ClientId { value, .. } => ("client", value.clone(), client),
            Revocation::Jti { .. } => return self.revoke(actor, r, "admin").await,
        };
        let matches = |f: &FamilyRecord| field(f) == value;
        let sessions = self.revoke_sessions(&matches, now).await?;
        let known = sessions > 0
            || self.store.get(Table::Revocations, &r.key()).await?.is_some()
            // Client-credentials tokens have the client as their subject.
            || (what != "session" && self.get_client(&value).await?.is_some())
            || self.any_family(&matches).await?;
        if !known {
            // "… not found": no token was ever issued to it, so there is nothing to revoke.
            return Err(ServiceError::NotFound(format!("{what} {value:?}")));
        }
        self.revoke(actor, r, "admin").await
    }

    async fn any_family(
        &self,
        matches: &(dyn Fn(&FamilyRecord) -> bool + Sync),
    ) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .list(Table::Families)
            .await?
            .iter()
            .filter_map(|(_, raw)| serde_json::from_slice::<FamilyRecord>(raw).ok())
            .any(|f| matches(&f)))
    }

    /// Marks one session revoked, by its key: a replayed refresh token must not cost a
    /// scan of every session.
    async fn revoke_session(&self, sid: &str, now: i64) -> Result<(), ServiceError> {
        for _ in 0..8 {
            let Some(raw) = self.store.get(Table::Families, sid).await? else {
                return Ok(());
            };
            let mut fam: FamilyRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt("family", e))?;
            if fam.revoked_at.is_some() {
                return Ok(());
            }
            fam.revoked_at = Some(now);
            let bytes =
                serde_json::to_vec(&fam).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if self
                .store
                .compare_and_swap(Table::Families, sid, Some(&raw), Some(&bytes))
                .await?
            {
                return Ok(());
            }
        }
        Err(ServiceError::Conflict(
            "the session is being changed concurrently; try again".into(),
        ))
    }

    /// Marks every live session that `matches` as revoked; how many were.
    async fn revoke_sessions(
        &self,
        matches: &(dyn Fn(&FamilyRecord) -> bool + Sync),
        now: i64,
    ) -> Result<usize, ServiceError> {
        let mut n = 0;
        for (sid, raw) in self.store.list(Table::Families).await? {
            let Ok(mut fam) = serde_json::from_slice::<FamilyRecord>(&raw) else {
                continue;
            };
            if !matches(&fam) || fam.revoked_at.is_some() {
                continue;
            }
            fam.revoked_at = Some(now);
            let bytes =
                serde_json::to_vec(&fam).map_err(|e| ServiceError::Internal(e.to_string()))?;
            // A concurrent change (a refresh-reuse revocation) revokes it as well.
            if self
                .store
                .compare_and_swap(Table::Families, &sid, Some(&raw), Some(&bytes))
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether a session is dead: revoked itself, or covered by a subject, session or
    /// client rule newer than the session (a session created while a subject was being
    /// revoked is caught here).
    async fn session_revoked(&self, rec: &RefreshRecord) -> Result<bool, ServiceError> {
        let created_at = match self.store.get(Table::Families, &rec.sid).await? {
            Some(f) => {
                let fam: FamilyRecord =
                    serde_json::from_slice(&f).map_err(|e| corrupt("family", e))?;
                if fam.revoked_at.is_some() {
                    return Ok(true);
                }
                fam.created_at
            }
            None => 0,
        };
        for k in [
            format!("sid:{}", rec.sid),
            format!("sub:{}", rec.sub),
            format!("client_id:{}", rec.client_id),
        ] {
            if let Some(raw) = self.store.get(Table::Revocations, &k).await? {
                match serde_json::from_slice::<Revocation>(&raw) {
                    Ok(Revocation::Sub { not_before, .. })
                    | Ok(Revocation::Sid { not_before, .. })
                    | Ok(Revocation::ClientId { not_before, .. })
                        if created_at < not_before =>
                    {
                        return Ok(true)
                    }
                    _ => {}
                }
            }
        }
        Ok(false)
    }

    pub async fn revocations(&self) -> Result<Vec<Revocation>, ServiceError> {
        let all = self.store.list(Table::Revocations).await?;
        all.iter()
            .map(|(_, b)| serde_json::from_slice(b).map_err(|e| corrupt("revocation", e)))
            .collect()
    }

    /// Revocations that can still match a valid token (what `revoke list` shows).
    pub async fn live_revocations(&self) -> Result<Vec<Revocation>, ServiceError> {
        let now = self.now();
        let skew = i64::try_from(self.settings.keys.clock_skew.as_secs()).unwrap_or(0);
        let horizon = self.settings.lifecycle().retention;
        let mut all = self.revocations().await?;
        all.retain(|r| match r {
            Revocation::Jti { exp, .. } => exp.saturating_add(skew) >= now,
            Revocation::Sub { not_before, .. }
            | Revocation::Sid { not_before, .. }
            | Revocation::ClientId { not_before, .. } => not_before + horizon >= now,
        });
        Ok(all)
    }

    pub async fn is_revoked(&self, c: &AccessClaims) -> Result<bool, ServiceError> {
        let mut keys = vec![
            format!("jti:{}", c.jti),
            format!("sub:{}", c.sub),
            format!("client_id:{}", c.client_id),
        ];
        if let Some(sid) = &c.sid {
            keys.push(format!("sid:{sid}"));
        }
        for k in keys {
            if let Some(raw) = self.store.get(Table::Revocations, &k).await? {
                let r: Revocation =
                    serde_json::from_slice(&raw).map_err(|e| corrupt("revocation", e))?;
                let hit = match r {
                    Revocation::Jti { .. } => true,
                    Revocation::Sub { not_before, .. }
                    | Revocation::Sid { not_before, .. }
                    | Revocation::ClientId { not_before, .. } => c.iat < not_before,
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// RFC 7009: revoke an access token (by jti) or a refresh token (its whole family).
    /// Unknown tokens are not an error. `owner`: the authenticated client; a token issued
    /// to anyone else is left alone (RFC 7009 §2.1), with the same answer. `None`: admin.
    /// True when it is a live token of ours (revoked now, or already).
    pub async fn revoke_token(
        &self,
        actor: &str,
        token: &str,
        owner: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let mine =
            |client_id: &str| owner.is_none_or(|o| ct_eq(o.as_bytes(), client_id.as_bytes()));
        if let Some(c) = self.verify_access(token) {
            if !mine(&c.client_id) {
                return Ok(false);
            }
            self.revoke(
                actor,
                Revocation::Jti {
                    jti: c.jti,
                    exp: c.exp,
                },
                "rfc7009",
            )
            .await?;
            return Ok(true);
        }
        if let Some(raw) = self
            .store
            .get(Table::RefreshTokens, &crypto::sha256_hex(token))
            .await?
        {
            let rec: RefreshRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt("refresh token", e))?;
            if mine(&rec.client_id) {
                self.revoke_family(&rec.sid, "rfc7009", self.now()).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// RFC 7662 introspection.
    pub async fn introspect(&self, token: &str) -> Result<Value, ServiceError> {
        if let Some(c) = self.verify_access(token) {
            if self.is_revoked(&c).await? {
                return Ok(json!({"active": false}));
            }
            return Ok(json!({
                "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
                "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "nbf": c.nbf,
                "jti": c.jti, "sid": c.sid,
            }));
        }
        if let Some(raw) = self
            .store
            .get(Table::RefreshTokens, &crypto::sha256_hex(token))
            .await?
        {
            let rec: RefreshRecord =
                serde_json::from_slice(&raw).map_err(|e| corrupt("refresh token", e))?;
            if !rec.used && rec.expires_at > self.now() && !self.session_revoked(&rec).await? {
                // No `token_type`: RFC 7662 means the access token type (RFC 6749 §7.1),
                // which a refresh token does not have.
                return Ok(json!({
                    "active": true, "scope": rec.scope, "client_id": rec.client_id,
                    "sub": rec.sub, "exp": rec.expires_at, "sid": rec.sid,
                }));
            }
        }
        Ok(json!({"active": false}))
    }
}

impl App {
    /// The signed snapshot of what filters enforce, at the current version.
    pub async fn snapshot(&self) -> Result<(u64, Arc<String>), ServiceError> {
        let version = self.sync.version();
        self.reload_keys().await?;
        let revocations = self.revocations().await?;
        let limits = self.limits().await?;
        let horizon = self.settings.revocation_horizon();
        Ok((
            version,
            self.sync.snapshot(
                version,
                self.keyring().jwks(),
                &revocations,
                limits,
                self.now(),
                horizon,
            ),
        ))
    }

    /// Whether a `jti` is revoked, for filters confirming a Bloom hit.
    pub async fn jti_revoked(&self, jti: &str) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .get(Table::Revocations, &format!("jti:{jti}"))
            .await?
            .is_some())
    }
}

#[cfg(test)]
mod sync_auth_tests {
    use super::sync_bearer_ok;

    fn hash(s: &str) -> [u8; 32] {
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
            s.as_bytes(),
        ))
        .into()
    }

    #[test]
    fn sync_calls_need_a_configured_credential() {
        // Nothing configured: refused, unless anonymous sync is explicitly allowed.
        assert!(!sync_bearer_ok(&[], false, None));
        assert!(!sync_bearer_ok(&[], false, Some("anything")));
        assert!(sync_bearer_ok(&[], true, None));
        // Two valid at once (rotation); anything else refused, the flag then ignored.
        let both = [hash("old-cred"), hash("new-cred")];
        assert!(sync_bearer_ok(&both, false, Some("old-cred")));
        assert!(sync_bearer_ok(&both, false, Some("new-cred")));
        assert!(!sync_bearer_ok(&both, true, Some("new-cre")));
        assert!(!sync_bearer_ok(&both, true, None));
    }
}
