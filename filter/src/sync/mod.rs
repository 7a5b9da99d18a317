//! Filter-side sync, host-agnostic: the sync configuration, backoff, the poll and
//! confirm calls, opening what the control plane signed (`mod.rs`); the leader lease and
//! what a leader publishes in shared data (`shared`); one worker's leader/follower
//! protocol (`worker`). The glue only moves bytes through proxy-wasm shared data and
//! `dispatch_http_call`.

use std::time::Duration;

use meshauth_wire::sync::{
    ConfirmAnswer, HeadStatement, Message, SignedSnapshot, Snapshot, SnapshotError,
};

use crate::ed25519::PreparedKey;

mod shared;
mod worker;

pub use shared::{
    acquire_lease, publish, read_published, Lease, Publication, PublishError, SharedData,
    DELTAS_KEY, LEADER_KEY, SNAPSHOT_KEY, SNAPSHOT_TAG_KEY, VERSION_KEY,
};
pub use worker::{Applied, Worker, LEASE_MS};

// ---- what the worker and the glue exchange ----

/// What sync did since the glue last asked, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub full: u32,
    pub deltas: u32,
    pub rejected: u32,
    /// Of the rejected: issued longer ago than the maximum snapshot age.
    pub too_old: u32,
    pub poll_failures: u32,
}

/// A poll for the glue to send to `SyncConfig::cluster`, with `call_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollCall {
    pub path: String,
    pub timeout: Duration,
}

/// The answer to a poll, as the glue read it.
#[derive(Debug, Clone, Copy)]
pub enum PollAnswer<'a> {
    /// `200` and its body: a signed snapshot or delta.
    Body(&'a [u8]),
    /// `304` and its `x-meshauth-head`, if any.
    NotModified(Option<&'a str>),
    /// Any other status.
    Other(&'a str),
}

// ---- configuration ----

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

/// `Bearer <fleet credential>` for sync calls; never shown in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

impl Bearer {
    pub fn new(credential: &str) -> Bearer {
        Bearer(format!("Bearer {credential}"))
    }

    pub fn header_value(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

/// Default for `sync.max_snapshot_age_seconds`: one day.
pub const DEFAULT_MAX_SNAPSHOT_AGE_SECONDS: u64 = 86_400;
/// The control plane re-signs an unchanged snapshot at least hourly, so a shorter
/// maximum age would refuse genuine snapshots.
pub const MIN_MAX_SNAPSHOT_AGE_SECONDS: u64 = 2 * 3_600;

#[derive(Debug)]
pub struct SyncConfig {
    /// `Authorization` for every sync call (the fleet credential).
    pub authorization: Option<Bearer>,
    /// Snapshots and deltas from the network issued longer ago than this are refused.
    pub max_snapshot_age_seconds: i64,
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

/// Capped exponential backoff with full jitter: a delay in `[cap/2, cap]` where
/// `cap = min(30 s, 250 ms · 2^attempt)`; `random` is any random number.
/// The longest wait between failed polls. Short, because a revocation made just after
/// an outage reaches the edge only at the next poll; a fleet polling a dead control
/// plane every 2.5–5 s costs it nothing (connections are refused).
pub const MAX_BACKOFF_MS: u64 = 5_000;

pub fn backoff_ms(attempt: u32, random: u64) -> u64 {
    let cap = 250u64
        .saturating_mul(1u64 << attempt.min(8))
        .min(MAX_BACKOFF_MS);
    cap / 2 + random % (cap / 2 + 1)
}

/// Deltas a leader keeps in shared data on top of the last full snapshot; past this it
/// asks for a full snapshot again.
pub const MAX_HELD_DELTAS: usize = 64;

/// The headers of a sync callout (`path` is the poll's or the confirm call's).
pub fn call_headers<'a>(
    cfg: &'a SyncConfig,
    method: &'a str,
    path: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        (":method", method),
        (":path", path),
        (":authority", cfg.authority.as_str()),
    ];
    if method == "POST" {
        headers.push(("content-type", "application/json"));
    }
    if let Some(bearer) = &cfg.authorization {
        headers.push(("authorization", bearer.header_value()));
    }
    headers
}

pub fn open_message(bytes: &[u8], key: &PreparedKey) -> Result<Message, SnapshotError> {
    SignedSnapshot::open_message(bytes, |payload, sig| key.verify(payload, sig))
}

/// Whether a snapshot or delta issued at `issued_at` (seconds) is recent enough to be
/// taken from the network at `now`: an old one replayed on the sync path could roll a
/// filter back (a fresh filter holds nothing to compare it with, and another epoch
/// replaces what a running filter holds).
pub fn fresh_enough(message: &Message, now: i64, max_age: i64) -> bool {
    let issued_at = match message {
        Message::Full(s) => s.issued_at,
        Message::Delta(d) => d.issued_at,
    };
    issued_at > now.saturating_sub(max_age)
}

/// Whether a `304`'s head statement (`x-meshauth-head`) is signed by the pinned key,
/// names the epoch and version the filter holds, and was issued within `max_age_s`
/// of `now`. Only then does a `304` count as contact with the control plane.
pub fn head_confirms(
    header: Option<&str>,
    held: (&str, u64),
    now: i64,
    max_age_s: i64,
    key: &PreparedKey,
) -> bool {
    header
        .and_then(|h| HeadStatement::open(h, |input, sig| key.verify(input, sig)))
        .is_some_and(|s| {
            s.epoch == held.0 && s.version == held.1 && (now - s.issued_at).abs() <= max_age_s
        })
}

/// The verdict in a confirm answer: `Some(revoked)` only when it is signed by the
/// pinned distribution key and answers this `jti` and `nonce`; anything else (unsigned,
/// another key, another question) is `None`, i.e. unconfirmed.
pub fn confirm_verdict(body: &[u8], jti: &str, nonce: &str, key: &PreparedKey) -> Option<bool> {
    ConfirmAnswer::open(body, jti, nonce, |input, sig| key.verify(input, sig))
}

/// A fresh, unpredictable nonce for a confirm question (22 base64url characters). std's
/// `RandomState` keys SipHash from the host's random source (WASI `random_get` in
/// Envoy) and varies the key per instance, so its output cannot be guessed from outside.
pub fn fresh_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let n = COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    meshauth_wire::b64::encode(bytes)
}

pub fn open(bytes: &[u8], key: &PreparedKey) -> Result<Snapshot, SnapshotError> {
    SignedSnapshot::open(bytes, |payload, sig| key.verify(payload, sig))
}

#[cfg(test)]
mod tests;
