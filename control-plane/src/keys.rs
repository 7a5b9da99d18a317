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
mod tests {
    use super::*;

    const POLICY: LifecyclePolicy = LifecyclePolicy {
        rotation_interval: 1000,
        prepublish: 100,
        retention: 300,
    };

    fn factory() -> impl FnMut(i64) -> KeyRecord {
        let mut n = 0;
        move |now| {
            n += 1;
            KeyRecord {
                kid: format!("k{n}"),
                public: String::new(),
                sealed_private: String::new(),
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

    const OPEN: FilterGate = FilterGate::OPEN;

    fn states(r: &Keyring) -> Vec<(String, KeyState)> {
        r.keys.iter().map(|k| (k.kid.clone(), k.state)).collect()
    }

    #[test]
    fn scheduled_rotation_prepublishes_then_retains() {
        let mut f = factory();
        let mut r = Keyring::default();
        r.tick(0, &POLICY, &OPEN, &mut f);
        assert_eq!(states(&r), vec![("k1".into(), KeyState::Current)]);
        r.tick(899, &POLICY, &OPEN, &mut f);
        assert!(r.next().is_none());
        // Published one pre-publication window before it is due.
        r.tick(900, &POLICY, &OPEN, &mut f);
        assert_eq!(r.next().map(|k| k.kid.as_str()), Some("k2"));
        assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
        r.tick(1000, &POLICY, &OPEN, &mut f);
        assert_eq!(
            states(&r),
            vec![
                ("k1".into(), KeyState::Previous),
                ("k2".into(), KeyState::Current)
            ]
        );
        // The previous key verifies until every token it signed has expired.
        r.tick(1299, &POLICY, &OPEN, &mut f);
        assert_eq!(r.get("k1").map(|k| k.state), Some(KeyState::Previous));
        r.tick(1300, &POLICY, &OPEN, &mut f);
        assert_eq!(r.get("k1").map(|k| k.state), Some(KeyState::Retired));
        assert_eq!(
            r.jwks().keys.len(),
            0,
            "test records have no public key bytes"
        );
    }

    #[test]
    fn a_key_never_signs_before_its_prepublication() {
        let mut f = factory();
        let mut r = Keyring::default();
        r.tick(0, &POLICY, &OPEN, &mut f);
        r.rotation_requested = true;
        r.tick(10, &POLICY, &OPEN, &mut f);
        assert_eq!(
            r.current().map(|k| k.kid.as_str()),
            Some("k1"),
            "k2 just published"
        );
        r.tick(109, &POLICY, &OPEN, &mut f);
        assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
        r.tick(110, &POLICY, &OPEN, &mut f);
        assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k2"));
        assert!(!r.rotation_requested);
    }

    #[test]
    fn revoking_the_current_key_replaces_it_at_once() {
        let mut f = factory();
        let mut r = Keyring::default();
        r.tick(0, &POLICY, &OPEN, &mut f);
        let events = r.revoke("k1", 5, &mut f).unwrap();
        assert!(events.contains(&KeyEvent::Revoked("k1".into())));
        assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k2"));
        assert!(r.published().all(|k| k.kid != "k1"));
        assert!(r.revoke("k1", 6, &mut f).is_none(), "already gone");
        assert!(r.revoke("nope", 6, &mut f).is_none());
    }

    #[test]
    fn activation_waits_for_connected_filters_up_to_a_cap() {
        let mut f = factory();
        let mut r = Keyring::default();
        r.tick(0, &POLICY, &OPEN, &mut f);
        r.rotation_requested = true;
        // Published at version 7's step; noted at the next step with the head then (8).
        let gate = |min: Option<u64>| FilterGate {
            head: 8,
            min_applied: min,
            max_wait: 50,
        };
        let events = r.tick(10, &POLICY, &gate(Some(7)), &mut f);
        assert_eq!(events, vec![KeyEvent::Published("k2".into())]);
        assert_eq!(r.next().and_then(|n| n.published_version), None);
        r.tick(11, &POLICY, &gate(Some(7)), &mut f);
        assert_eq!(r.next().and_then(|n| n.published_version), Some(8));
        // Pre-publication over, but a filter still holds version 7: wait.
        assert!(r.tick(110, &POLICY, &gate(Some(7)), &mut f).is_empty());
        assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
        // Every connected filter has 8: it signs.
        let events = r.tick(111, &POLICY, &gate(Some(8)), &mut f);
        assert!(
            events.contains(&KeyEvent::Activated("k2".into())),
            "{events:?}"
        );
        assert!(!events
            .iter()
            .any(|e| matches!(e, KeyEvent::ActivatedPastLaggingFilters(_))));

        // A filter that never catches up delays activation by the cap, then it is forced.
        r.rotation_requested = true;
        r.tick(200, &POLICY, &gate(Some(3)), &mut f);
        r.tick(201, &POLICY, &gate(Some(3)), &mut f);
        assert!(r.tick(349, &POLICY, &gate(Some(3)), &mut f).is_empty());
        let events = r.tick(350, &POLICY, &gate(Some(3)), &mut f);
        assert!(
            events.contains(&KeyEvent::Activated("k3".into())),
            "{events:?}"
        );
        assert!(events.contains(&KeyEvent::ActivatedPastLaggingFilters("k3".into())));

        // No filter connected: nothing to wait for.
        r.rotation_requested = true;
        r.tick(400, &POLICY, &gate(None), &mut f);
        r.tick(401, &POLICY, &gate(None), &mut f);
        let events = r.tick(500, &POLICY, &gate(None), &mut f);
        assert!(
            events.contains(&KeyEvent::Activated("k4".into())),
            "{events:?}"
        );
    }
}
