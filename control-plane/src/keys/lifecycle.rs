//! Signing keys and their lifecycle: `next` (published, not signing) →
//! `current` (signs) → `previous` (published, verify-only) → `retired` (gone).
//!
//! The whole keyring is one document updated by compare-and-swap, so every replica
//! sees one consistent set and concurrent rotations cannot both win. Transitions are
//! pure functions of (keyring, now, policy), unit-tested below.

use serde::{Deserialize, Serialize};

use meshauth_wire::{Jwk, JwkSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Current,
    Previous,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    /// Raw Ed25519 public key, base64url.
    pub public: String,
    /// The 32-byte seed sealed under the master key with the kid as associated data.
    pub sealed_private: String,
    pub state: KeyState,
    pub created_at: i64,
    #[serde(default)]
    pub activated_at: Option<i64>,
    #[serde(default)]
    pub deactivated_at: Option<i64>,
    #[serde(default)]
    pub retired_at: Option<i64>,
    #[serde(default)]
    pub revoked: bool,
    /// The sync version from which filters' snapshots carry this key (set for `next`
    /// keys by the first schedule step after publication).
    #[serde(default)]
    pub published_version: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    pub keys: Vec<KeyRecord>,
    /// An operator asked for a rotation; it happens as soon as the gate allows.
    #[serde(default)]
    pub rotation_requested: bool,
    #[serde(default)]
    pub rotations: u64,
}

/// What the connected filters hold, for gating activation: a `next` key
/// signs only once every connected filter has applied a snapshot that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterGate {
    /// The change-log length now: the version the latest snapshot has.
    pub head: u64,
    /// The lowest version a connected filter has applied; `None`: no filter connected.
    pub min_applied: Option<u64>,
    /// How long past its pre-publication a `next` key waits for laggards before it
    /// signs anyway (counted and alerted on).
    pub max_wait: i64,
}

impl FilterGate {
    /// No filters to wait for.
    pub const OPEN: FilterGate = FilterGate {
        head: 0,
        min_applied: None,
        max_wait: 0,
    };
}

/// Timing of the lifecycle, derived from the token TTLs, clock skew and JWKS max-age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecyclePolicy {
    pub rotation_interval: i64,
    /// How long a key is published before it signs: one JWKS max-age + skew, so
    /// third-party verifiers have refetched.
    pub prepublish: i64,
    /// How long a key stays published after it stops signing: the longest token TTL
    /// + skew, so every token it signed expires first.
    pub retention: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    Published(String),
    Activated(String),
    Deactivated(String),
    Retired(String),
    Revoked(String),
    /// A key started signing although a connected filter had not acknowledged it
    /// within the cap.
    ActivatedPastLaggingFilters(String),
}

impl KeyRecord {
    /// A key just made at `now`: `next`, with nothing scheduled yet.
    pub fn fresh(kid: String, public: String, sealed_private: String, now: i64) -> KeyRecord {
        KeyRecord {
            kid,
            public,
            sealed_private,
            state: KeyState::Next,
            created_at: now,
            activated_at: None,
            deactivated_at: None,
            retired_at: None,
            revoked: false,
            published_version: None,
        }
    }
}

impl Keyring {
    pub fn current(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Current)
    }

    pub fn next(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Next)
    }

    pub fn get(&self, kid: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Keys that verify: next, current and previous.
    pub fn published(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(|k| k.state != KeyState::Retired)
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .published()
                .filter_map(|k| meshauth_wire::b64::decode_array::<32>(&k.public))
                .map(|p| Jwk::from_ed25519(&p))
                .collect(),
        }
    }

    fn mut_state(&mut self, state: KeyState) -> Option<&mut KeyRecord> {
        self.keys.iter_mut().find(|k| k.state == state)
    }

    fn promote_next(&mut self, now: i64, events: &mut Vec<KeyEvent>) -> bool {
        if self.next().is_none() {
            return false;
        }
        if let Some(cur) = self.mut_state(KeyState::Current) {
            cur.state = KeyState::Previous;
            cur.deactivated_at = Some(now);
            events.push(KeyEvent::Deactivated(cur.kid.clone()));
        }
        if let Some(next) = self.mut_state(KeyState::Next) {
            next.state = KeyState::Current;
            next.activated_at = Some(now);
            events.push(KeyEvent::Activated(next.kid.clone()));
        }
        self.rotation_requested = false;
        self.rotations += 1;
        true
    }

    /// One step of the schedule. `new_key` makes a fresh `next` record when one is due.
    pub fn tick(
        &mut self,
        now: i64,
        policy: &LifecyclePolicy,
        gate: &FilterGate,
        new_key: &mut dyn FnMut(i64) -> KeyRecord,
    ) -> Vec<KeyEvent> {
        let mut events = Vec::new();
        // Bootstrap: nothing has been signed yet, so a first key may sign at once.
        if self.current().is_none() && self.next().is_none() {
            let mut k = new_key(now);
            k.state = KeyState::Current;
            k.activated_at = Some(now);
            events.push(KeyEvent::Activated(k.kid.clone()));
            self.keys.push(k);
        }
        for k in self
            .keys
            .iter_mut()
            .filter(|k| k.state == KeyState::Previous)
        {
            if k.deactivated_at
                .is_some_and(|d| now >= d + policy.retention)
            {
                k.state = KeyState::Retired;
                k.retired_at = Some(now);
                events.push(KeyEvent::Retired(k.kid.clone()));
            }
        }
        let current_age = self
            .current()
            .and_then(|c| c.activated_at)
            .map_or(i64::MAX, |a| now - a);
        let due_soon = current_age >= policy.rotation_interval - policy.prepublish;
        let publish = self.next().is_none()
            && (due_soon || self.rotation_requested || self.current().is_none());
        if publish {
            let k = new_key(now);
            events.push(KeyEvent::Published(k.kid.clone()));
            self.keys.push(k);
        } else if let Some(n) = self.mut_state(KeyState::Next) {
            // The version that carries `next` is the change-log head seen after its
            // publication was logged, i.e. at a later step than the one that published it.
            n.published_version.get_or_insert(gate.head);
        }
        let (next_ready, forced) = match self.next() {
            Some(n) if now - n.created_at >= policy.prepublish => {
                let acked = n
                    .published_version
                    .is_some_and(|v| gate.min_applied.is_none_or(|m| m >= v));
                let cap_over = now - n.created_at >= policy.prepublish + gate.max_wait;
                (acked || cap_over, !acked)
            }
            _ => (false, false),
        };
        let due = current_age >= policy.rotation_interval
            || self.rotation_requested
            || self.current().is_none();
        if next_ready && due {
            let kid = self.next().map(|n| n.kid.clone()).unwrap_or_default();
            if self.promote_next(now, &mut events) && forced {
                events.push(KeyEvent::ActivatedPastLaggingFilters(kid));
            }
        }
        // Retired records are kept for the audit trail only a while.
        self.keys.retain(|k| {
            k.state != KeyState::Retired || k.retired_at.is_some_and(|r| now - r < 7 * 86_400)
        });
        events
    }

    /// Emergency removal: the key leaves the JWKS now. If it was signing, the `next`
    /// key (or a brand-new one) takes over at once.
    pub fn revoke(
        &mut self,
        kid: &str,
        now: i64,
        new_key: &mut dyn FnMut(i64) -> KeyRecord,
    ) -> Option<Vec<KeyEvent>> {
        let k = self
            .keys
            .iter_mut()
            .find(|k| k.kid == kid && k.state != KeyState::Retired)?;
        let was_current = k.state == KeyState::Current;
        k.state = KeyState::Retired;
        k.revoked = true;
        k.retired_at = Some(now);
        let mut events = vec![KeyEvent::Revoked(kid.to_string())];
        if was_current && !self.promote_next(now, &mut events) {
            let mut fresh = new_key(now);
            fresh.state = KeyState::Current;
            fresh.activated_at = Some(now);
            events.push(KeyEvent::Activated(fresh.kid.clone()));
            self.keys.push(fresh);
        }
        Some(events)
    }
}

#[cfg(test)]
mod tests;
