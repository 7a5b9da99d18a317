//! Filter-side sync, host-agnostic: the sync configuration, leader lease
//! decisions, backoff, the poll request, and opening a signed snapshot. The glue moves
//! these through proxy-wasm shared data and `dispatch_http_call`.

use meshauth_wire::sync::{
    ConfirmAnswer, HeadStatement, Message, SignedSnapshot, Snapshot, SnapshotError,
};

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

/// The body of a confirm question.
pub fn confirm_request(jti: &str, nonce: &str) -> String {
    serde_json::to_string(&meshauth_wire::sync::ConfirmRequest {
        jti: jti.to_string(),
        nonce: nonce.to_string(),
    })
    .unwrap_or_default()
}

// ---- the leader and what it publishes in shared data ----

/// Envoy's shared data as the sync loop uses it: `get` returns the value and its CAS
/// token; `set` with a token writes only if the key is unchanged since (a token for a
/// key that does not exist creates it only if it still does not).
pub trait SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `false`: the CAS token was stale.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

pub const LEADER_KEY: &str = "meshauth.sync.leader";
pub const SNAPSHOT_KEY: &str = "meshauth.sync.snapshot";
/// `epoch|version` of the snapshot in SNAPSHOT_KEY, so workers re-read it only when it changed.
pub const SNAPSHOT_TAG_KEY: &str = "meshauth.sync.snapshot-tag";
/// Signed deltas received since the snapshot in SNAPSHOT_KEY, one envelope a line.
pub const DELTAS_KEY: &str = "meshauth.sync.deltas";
/// `epoch|version` in force after the snapshot and the deltas.
pub const VERSION_KEY: &str = "meshauth.sync.version";

/// The CAS token that creates a missing key only if it is still missing (Envoy accepts
/// any token for a key it does not have).
const ABSENT: u32 = u32::MAX;

/// The lease in shared data: `holder|expires_ms|generation`. The generation grows by one
/// each time the lease changes hands, and fences what leaders publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: u64,
    pub generation: u64,
}

impl Lease {
    pub fn parse(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.rsplitn(3, '|');
        let generation = parts.next()?.parse().ok()?;
        let expires_ms = parts.next()?.parse().ok()?;
        let holder = parts.next()?.to_string();
        if holder.contains('|') {
            return None;
        }
        Some(Lease {
            holder,
            expires_ms,
            generation,
        })
    }

    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.holder, self.expires_ms, self.generation)
    }
}

/// Takes the lease (when free or expired) or renews it (when `me` holds it). `Some(gen)`:
/// `me` leads, at that generation.
pub fn acquire_lease(shared: &dyn SharedData, me: &str, now_ms: u64, lease_ms: u64) -> Option<u64> {
    let (current, cas) = shared.get(LEADER_KEY);
    let current = current.as_deref().and_then(Lease::parse);
    let generation = match &current {
        Some(l) if l.holder == me => l.generation,
        Some(l) if l.expires_ms > now_ms => return None,
        Some(l) => l.generation.saturating_add(1),
        None => 1,
    };
    let lease = Lease {
        holder: me.to_string(),
        expires_ms: now_ms.saturating_add(lease_ms),
        generation,
    };
    shared
        .set(
            LEADER_KEY,
            lease.encode().as_bytes(),
            Some(cas.unwrap_or(ABSENT)),
        )
        .then_some(generation)
}

/// What a leader publishes for the other workers after applying a sync answer.
#[derive(Debug, Clone, Copy)]
pub enum Publication<'a> {
    /// A full snapshot now at `tag` (`epoch|version`): replaces the snapshot, empties
    /// the delta list.
    Full { body: &'a [u8], tag: &'a str },
    /// A delta from `base` to `tag`, appended to the list.
    Delta {
        body: &'a [u8],
        base: &'a str,
        tag: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// `me` no longer holds the lease at `generation`, or a later leader has written.
    Fenced,
    /// The delta does not start from the version published (another leader moved on).
    WrongBase,
    /// A concurrent write kept winning.
    Contended,
}

/// Every published value starts with `generation\n`: a write is refused where a later
/// generation has written, so a leader that stalled past its lease and wakes up cannot
/// overwrite what its successor published.
fn fenced(generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{generation}\n").into_bytes();
    v.extend_from_slice(payload);
    v
}

fn split_fenced(value: &[u8]) -> Option<(u64, &[u8])> {
    let nl = value.iter().position(|b| *b == b'\n')?;
    let generation = std::str::from_utf8(value.get(..nl)?).ok()?.parse().ok()?;
    Some((generation, value.get(nl + 1..)?))
}

/// The payload of a published key (what workers read), without its generation.
pub fn read_published(shared: &dyn SharedData, key: &str) -> Option<Vec<u8>> {
    let (value, _) = shared.get(key);
    value.and_then(|v| split_fenced(&v).map(|(_, p)| p.to_vec()))
}

/// Builds a key's new payload from its current one.
type Edit<'a> = dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, PublishError> + 'a;

/// Writes `payload` to `key` unless a later generation wrote there (CAS, a few tries).
/// `edit` builds the new payload from the current one.
fn fenced_write(
    shared: &dyn SharedData,
    key: &str,
    generation: u64,
    edit: &Edit<'_>,
) -> Result<(), PublishError> {
    for _ in 0..4 {
        let (value, cas) = shared.get(key);
        let current = value.as_deref().and_then(split_fenced);
        if current.is_some_and(|(g, _)| g > generation) {
            return Err(PublishError::Fenced);
        }
        let payload = edit(current.map(|(_, p)| p))?;
        if shared.set(
            key,
            &fenced(generation, &payload),
            Some(cas.unwrap_or(ABSENT)),
        ) {
            return Ok(());
        }
    }
    Err(PublishError::Contended)
}

/// Publishes a sync answer the leader applied, fenced by its lease: refused unless `me`
/// still holds the lease at `generation` and no later leader has written. The version
/// key is written last, so workers never see a version before what it covers.
pub fn publish(
    shared: &dyn SharedData,
    me: &str,
    generation: u64,
    now_ms: u64,
    what: Publication<'_>,
) -> Result<(), PublishError> {
    let holds = shared
        .get(LEADER_KEY)
        .0
        .as_deref()
        .and_then(Lease::parse)
        .is_some_and(|l| l.holder == me && l.generation == generation && l.expires_ms > now_ms);
    // Every publication ends with the version key, so a later leader's mark is there
    // (or on the others) before anything of this one is written.
    let later = [VERSION_KEY, SNAPSHOT_KEY, DELTAS_KEY, SNAPSHOT_TAG_KEY]
        .iter()
        .any(|k| {
            shared
                .get(k)
                .0
                .as_deref()
                .and_then(split_fenced)
                .is_some_and(|(g, _)| g > generation)
        });
    if !holds || later {
        return Err(PublishError::Fenced);
    }
    let tag = match what {
        Publication::Full { body, tag } => {
            fenced_write(shared, SNAPSHOT_KEY, generation, &|_| Ok(body.to_vec()))?;
            fenced_write(shared, DELTAS_KEY, generation, &|_| Ok(Vec::new()))?;
            fenced_write(shared, SNAPSHOT_TAG_KEY, generation, &|_| {
                Ok(tag.as_bytes().to_vec())
            })?;
            tag
        }
        Publication::Delta { body, base, tag } => {
            if read_published(shared, VERSION_KEY).as_deref() != Some(base.as_bytes()) {
                return Err(PublishError::WrongBase);
            }
            fenced_write(shared, DELTAS_KEY, generation, &|held| {
                let mut list = held.unwrap_or_default().to_vec();
                list.extend_from_slice(body);
                list.push(b'\n');
                Ok(list)
            })?;
            tag
        }
    };
    fenced_write(shared, VERSION_KEY, generation, &|_| {
        Ok(tag.as_bytes().to_vec())
    })
}

pub fn open(bytes: &[u8], key: &PreparedKey) -> Result<Snapshot, SnapshotError> {
    SignedSnapshot::open(bytes, |payload, sig| key.verify(payload, sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use meshauth_wire::bloom::Bloom;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Envoy's shared data: a CAS token per key, bumped on every write.
    #[derive(Default)]
    struct FakeShared(RefCell<BTreeMap<String, (Vec<u8>, u32)>>);

    impl SharedData for FakeShared {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.0.borrow().get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let mut map = self.0.borrow_mut();
            let current = map.get(key).map(|(_, c)| *c);
            if let (Some(want), Some(have)) = (cas, current) {
                if want != have {
                    return false;
                }
            }
            map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            true
        }
    }

    #[test]
    fn leases_change_hands_only_when_expired_and_count_generations() {
        let shared = FakeShared::default();
        assert_eq!(acquire_lease(&shared, "a", 10, 3_000), Some(1));
        assert_eq!(acquire_lease(&shared, "a", 20, 3_000), Some(1), "renew own");
        assert_eq!(acquire_lease(&shared, "b", 30, 3_000), None, "held");
        assert_eq!(
            acquire_lease(&shared, "b", 3_020, 3_000),
            Some(2),
            "expired: taken"
        );
        assert_eq!(acquire_lease(&shared, "a", 3_030, 3_000), None);
        shared.set(LEADER_KEY, b"garbage", None);
        assert_eq!(acquire_lease(&shared, "c", 3_040, 3_000), Some(1));
        assert_eq!(
            Lease::parse(b"w|1-2|5|7"),
            None,
            "three parts exactly, the holder may not hide a number"
        );
        assert_eq!(Lease::parse(b"1-ab|5|7").unwrap().holder, "1-ab");
    }

    fn published(shared: &FakeShared) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            read_published(shared, SNAPSHOT_KEY).unwrap_or_default(),
            read_published(shared, DELTAS_KEY).unwrap_or_default(),
            read_published(shared, VERSION_KEY).unwrap_or_default(),
        )
    }

    #[test]
    fn a_stalled_former_leader_cannot_overwrite_its_successor() {
        let shared = FakeShared::default();
        let ga = acquire_lease(&shared, "a", 0, 3_000).unwrap();
        let full = Publication::Full {
            body: b"snap-8",
            tag: "e|8",
        };
        publish(&shared, "a", ga, 10, full).unwrap();
        // `a` stalls past its lease; `b` takes over and moves on with a delta.
        let gb = acquire_lease(&shared, "b", 5_000, 3_000).unwrap();
        assert!(gb > ga);
        let delta = Publication::Delta {
            body: b"delta-8-9",
            base: "e|8",
            tag: "e|9",
        };
        publish(&shared, "b", gb, 5_010, delta).unwrap();
        let before = published(&shared);
        assert_eq!(
            before,
            (b"snap-8".to_vec(), b"delta-8-9\n".to_vec(), b"e|9".to_vec())
        );
        // `a` wakes up with an old answer: refused, nothing changes.
        let stale = Publication::Full {
            body: b"snap-7",
            tag: "e|7",
        };
        assert_eq!(
            publish(&shared, "a", ga, 5_020, stale),
            Err(PublishError::Fenced)
        );
        // Even if it believed its lease fresh (its clock), a later generation's values stop it.
        shared.set(
            LEADER_KEY,
            Lease {
                holder: "a".into(),
                expires_ms: 99_999,
                generation: ga,
            }
            .encode()
            .as_bytes(),
            None,
        );
        assert_eq!(
            publish(&shared, "a", ga, 5_030, stale),
            Err(PublishError::Fenced)
        );
        assert_eq!(published(&shared), before);
    }

    #[test]
    fn a_delta_from_another_base_is_not_published() {
        let shared = FakeShared::default();
        let g = acquire_lease(&shared, "a", 0, 3_000).unwrap();
        publish(
            &shared,
            "a",
            g,
            1,
            Publication::Full {
                body: b"s",
                tag: "e|8",
            },
        )
        .unwrap();
        let wrong = Publication::Delta {
            body: b"d-7-9",
            base: "e|7",
            tag: "e|9",
        };
        assert_eq!(
            publish(&shared, "a", g, 2, wrong),
            Err(PublishError::WrongBase)
        );
        let right = Publication::Delta {
            body: b"d-8-9",
            base: "e|8",
            tag: "e|9",
        };
        publish(&shared, "a", g, 3, right).unwrap();
        let next = Publication::Delta {
            body: b"d-9-10",
            base: "e|9",
            tag: "e|10",
        };
        publish(&shared, "a", g, 4, next).unwrap();
        assert_eq!(
            published(&shared),
            (b"s".to_vec(), b"d-8-9\nd-9-10\n".to_vec(), b"e|10".to_vec())
        );
        // A full snapshot restarts the list.
        publish(
            &shared,
            "a",
            g,
            5,
            Publication::Full {
                body: b"s2",
                tag: "f|1",
            },
        )
        .unwrap();
        assert_eq!(
            published(&shared),
            (b"s2".to_vec(), Vec::new(), b"f|1".to_vec())
        );
    }

    #[test]
    fn snapshots_older_than_the_maximum_age_are_stale() {
        let snap = |issued_at| {
            Message::Full(Snapshot {
                epoch: "e".into(),
                version: 1,
                issued_at,
                jwks: Default::default(),
                revoked_jti: Bloom::with_capacity(1, 0.01, 1),
                rules: vec![],
                limits: vec![],
            })
        };
        assert!(fresh_enough(&snap(1_000), 1_500, 600));
        assert!(!fresh_enough(&snap(1_000), 1_600, 600));
        assert!(
            !fresh_enough(&snap(0), 1_000_000, 86_400),
            "a replayed old one"
        );
    }

    #[test]
    fn a_304_counts_only_with_a_fresh_signed_head_for_the_version_held() {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let pinned = PreparedKey::new(sk.verifying_key().to_bytes()).unwrap();
        let head = |epoch: &str, version, issued_at, key: &SigningKey| {
            HeadStatement {
                epoch: epoch.into(),
                version,
                issued_at,
            }
            .seal(|m| key.sign(m).to_bytes())
        };
        let ok = head("e", 7, 1_000, &sk);
        assert!(head_confirms(Some(&ok), ("e", 7), 1_010, 120, &pinned));
        assert!(
            !head_confirms(None, ("e", 7), 1_010, 120, &pinned),
            "a bare 304"
        );
        assert!(!head_confirms(Some(&ok), ("e", 6), 1_010, 120, &pinned));
        assert!(!head_confirms(Some(&ok), ("f", 7), 1_010, 120, &pinned));
        assert!(
            !head_confirms(Some(&ok), ("e", 7), 2_000, 120, &pinned),
            "replayed later"
        );
        let other = SigningKey::from_bytes(&[4u8; 32]);
        assert!(!head_confirms(
            Some(&head("e", 7, 1_000, &other)),
            ("e", 7),
            1_010,
            120,
            &pinned
        ));
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let all: std::collections::BTreeSet<String> = (0..1000).map(|_| fresh_nonce()).collect();
        assert_eq!(all.len(), 1000);
        assert!(all
            .iter()
            .all(|n| meshauth_wire::sync::ConfirmRequest::valid_nonce(n)));
    }

    #[test]
    fn confirm_answers_count_only_when_signed_for_this_question() {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let pinned = PreparedKey::new(sk.verifying_key().to_bytes()).unwrap();
        let answer = |revoked, jti: &str, nonce: &str, key: &SigningKey| {
            let a = ConfirmAnswer {
                jti: jti.into(),
                nonce: nonce.into(),
                revoked,
            };
            serde_json::to_vec(&a.seal(|m| key.sign(m).to_bytes())).unwrap()
        };
        let nonce = "abcdefghijklmnop0123";
        assert_eq!(
            confirm_verdict(&answer(true, "j", nonce, &sk), "j", nonce, &pinned),
            Some(true)
        );
        assert_eq!(
            confirm_verdict(&answer(false, "j", nonce, &sk), "j", nonce, &pinned),
            Some(false)
        );
        // What a relay on the sync path would answer.
        assert_eq!(
            confirm_verdict(br#"{"jti":"j","revoked":false}"#, "j", nonce, &pinned),
            None
        );
        let other = SigningKey::from_bytes(&[4u8; 32]);
        assert_eq!(
            confirm_verdict(&answer(false, "j", nonce, &other), "j", nonce, &pinned),
            None
        );
        assert_eq!(
            confirm_verdict(&answer(false, "k", nonce, &sk), "j", nonce, &pinned),
            None
        );
        assert_eq!(
            confirm_verdict(
                &answer(false, "j", "another-nonce-012345", &sk),
                "j",
                nonce,
                &pinned
            ),
            None
        );
        let body: serde_json::Value = serde_json::from_str(&confirm_request("j", nonce)).unwrap();
        assert_eq!(body, serde_json::json!({"jti": "j", "nonce": nonce}));
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
