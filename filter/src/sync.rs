//! Filter-side sync, host-agnostic (DESIGN §6): the sync configuration, leader lease
//! decisions, backoff, the poll request, and opening a signed snapshot. The glue moves
//! these through proxy-wasm shared data and `dispatch_http_call`.

use meshauth_wire::sync::{Message, SignedSnapshot, Snapshot, SnapshotError};

use crate::ed25519::PreparedKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnconfirmed {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeFirst {
    Deny,
    Bootstrap,
}

#[derive(Debug)]
pub struct SyncConfig {
    /// Envoy cluster that reaches the control plane.
    pub cluster: String,
    /// `:authority` of sync calls (in Istio the cluster alone does not set it).
    pub authority: String,
    /// Pinned public half of the control plane's distribution key.
    pub distribution_key: PreparedKey,
    pub poll_wait_ms: u64,
    /// The filter's own deadline for any callout; Envoy's timeout does not fire when
    /// the cluster has no healthy endpoint.
    pub callout_timeout_ms: u64,
    pub tick_ms: u64,
    pub on_unconfirmed: OnUnconfirmed,
    pub before_first: BeforeFirst,
}

/// Lease value in shared data: `holder|expires_ms`.
pub fn lease_value(holder: &str, expires_ms: u64) -> String {
    format!("{holder}|{expires_ms}")
}

/// Whether `me` should write the lease (take it or renew it), given its current value.
pub fn should_lead(current: Option<&str>, me: &str, now_ms: u64) -> bool {
    match current.and_then(|c| c.rsplit_once('|')) {
        None => true,
        Some((holder, exp)) => holder == me || exp.parse::<u64>().map_or(true, |e| e <= now_ms),
    }
}

/// Capped exponential backoff with full jitter: a delay in `[cap/2, cap]` where
/// `cap = min(30 s, 250 ms · 2^attempt)`; `random` is any random number.
pub fn backoff_ms(attempt: u32, random: u64) -> u64 {
    let cap = 250u64.saturating_mul(1u64 << attempt.min(8)).min(30_000);
    cap / 2 + random % (cap / 2 + 1)
}

/// Deltas a leader keeps in shared data on top of the last full snapshot; past this it
/// asks for a full snapshot again.
pub const MAX_HELD_DELTAS: usize = 64;

/// The long poll. `deltas`: whether a delta may answer it.
pub fn poll_path(version: u64, epoch: &str, wait_ms: u64, filter_id: &str, deltas: bool) -> String {
    format!(
        "/sync/v1/snapshot?version={version}&epoch={epoch}&wait_ms={wait_ms}&filter={filter_id}&applied={version}{}",
        if deltas { "&delta=1" } else { "" }
    )
}

pub fn open_message(bytes: &[u8], key: &PreparedKey) -> Result<Message, SnapshotError> {
    SignedSnapshot::open_message(bytes, |payload, sig| key.verify(payload, sig))
}

pub fn open(bytes: &[u8], key: &PreparedKey) -> Result<Snapshot, SnapshotError> {
    SignedSnapshot::open(bytes, |payload, sig| key.verify(payload, sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use meshauth_wire::bloom::Bloom;

    #[test]
    fn leases() {
        assert!(should_lead(None, "a", 10));
        assert!(should_lead(Some("a|5"), "a", 10), "renew own");
        assert!(should_lead(Some("a|50"), "a", 10), "renew own early");
        assert!(!should_lead(Some("b|50"), "a", 10), "another holds it");
        assert!(should_lead(Some("b|5"), "a", 10), "take an expired one");
        assert!(should_lead(Some("garbage"), "a", 10));
        assert_eq!(lease_value("a", 7), "a|7");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert!((125..=250).contains(&backoff_ms(0, 12345)));
        assert!((250..=500).contains(&backoff_ms(1, 999)));
        for r in [0, 1, u64::MAX] {
            assert!((15_000..=30_000).contains(&backoff_ms(40, r)));
        }
        assert_ne!(backoff_ms(3, 1), backoff_ms(3, 400));
    }

    #[test]
    fn opens_only_snapshots_signed_by_the_pinned_key() {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let pinned = PreparedKey::new(sk.verifying_key().to_bytes()).unwrap();
        let other = PreparedKey::new(
            SigningKey::from_bytes(&[4u8; 32])
                .verifying_key()
                .to_bytes(),
        )
        .unwrap();
        let snap = Snapshot {
            epoch: "e".into(),
            version: 3,
            issued_at: 1,
            jwks: Default::default(),
            revoked_jti: Bloom::with_capacity(1, 0.01, 1),
            rules: vec![],
            limits: vec![],
        };
        let bytes =
            serde_json::to_vec(&SignedSnapshot::seal(&snap, |p| sk.sign(p).to_bytes())).unwrap();
        assert_eq!(open(&bytes, &pinned).unwrap(), snap);
        assert_eq!(open(&bytes, &other), Err(SnapshotError::Signature));
        assert!(open(b"not json", &pinned).is_err());
    }
}
