//! The leader/follower protocol across workers, each with its own engine, over one
//! map-backed shared data.

use meshauth_devkey::DevKey;
use meshauth_wire::bloom::Bloom;
use meshauth_wire::sync::{Delta, HeadStatement, Message, PollQuery, SignedSnapshot, Snapshot};

use super::*;
use crate::config::Config;
use crate::sync::tests::FakeShared;

const T0: u64 = 1_800_000_000_000;

fn distribution_key() -> DevKey {
    DevKey::seeded(9)
}

fn engine() -> Engine {
    let dist = meshauth_wire::b64::encode(distribution_key().public());
    let config = serde_json::json!({
        "issuer": "https://issuer",
        "sync": {"cluster": "cp", "distribution_key": dist},
    });
    Engine::new(Config::from_json(config.to_string().as_bytes()).unwrap())
}

fn seal(message: Message, key: &DevKey) -> Vec<u8> {
    serde_json::to_vec(&SignedSnapshot::seal_message(&message, |p| {
        key.sign_bytes(p)
    }))
    .unwrap()
}

fn full(version: u64, at_ms: u64) -> Vec<u8> {
    seal(
        Message::Full(Snapshot {
            epoch: "e1".into(),
            version,
            issued_at: i64::try_from(at_ms / 1000).unwrap(),
            jwks: Default::default(),
            revoked_jti: Bloom::with_capacity(16, 0.01, 1),
            rules: vec![],
            limits: vec![],
            issuers: vec![],
        }),
        &distribution_key(),
    )
}

fn delta(base: u64, version: u64, at_ms: u64) -> Vec<u8> {
    seal(
        Message::Delta(Delta {
            epoch: "e1".into(),
            base_version: base,
            version,
            issued_at: i64::try_from(at_ms / 1000).unwrap(),
            revoked_jti: vec![format!("j{version}")],
            rules: vec![],
        }),
        &distribution_key(),
    )
}

/// A worker and its engine, as one Envoy worker thread holds them.
struct Thread {
    worker: Worker,
    engine: Engine,
}

impl Thread {
    fn new(id: &str) -> Thread {
        Thread {
            worker: Worker::new(id.into()),
            engine: engine(),
        }
    }

    /// A tick; the query of the poll it sends, if it sends one (as callout `token`).
    fn tick(&mut self, shared: &FakeShared, now: u64, token: u32) -> Option<PollQuery> {
        let call = self.worker.tick(shared, &mut self.engine, now)?;
        self.worker.sent(Some(token), call.timeout, now);
        let (_, query) = call.path.split_once('?').unwrap();
        Some(PollQuery::parse(query).unwrap())
    }

    fn answer(&mut self, shared: &FakeShared, token: u32, answer: PollAnswer<'_>, now: u64) {
        assert!(self.worker.awaits(token), "no poll {token} in flight");
        self.worker.answered(shared, &mut self.engine, answer, now);
    }

    fn holds(&self) -> Option<(&str, u64)> {
        self.engine.applied()
    }
}

fn published_version(shared: &FakeShared) -> String {
    String::from_utf8(read_published(shared, VERSION_KEY).unwrap_or_default()).unwrap()
}

/// Worker "a" after its first tick (call token 1): the lease was free, so it leads.
fn leading_a(shared: &FakeShared) -> Thread {
    let mut a = Thread::new("a");
    a.tick(shared, T0, 1).unwrap();
    a
}

#[test]
fn followers_pick_up_the_leaders_snapshot_then_its_deltas() {
    let shared = FakeShared::default();
    let (mut a, mut b) = (Thread::new("a"), Thread::new("b"));
    let poll = a.tick(&shared, T0, 1).expect("the first worker leads");
    assert_eq!((poll.version, poll.epoch.as_deref()), (0, Some("")));
    assert!(!poll.deltas, "a new leader asks for a full snapshot");
    assert_eq!(b.tick(&shared, T0 + 1, 2), None, "a follower does not poll");
    assert!(!b.worker.leading());

    a.answer(&shared, 1, PollAnswer::Body(&full(1, T0)), T0 + 5);
    assert_eq!(a.holds(), Some(("e1", 1)));
    assert_eq!(published_version(&shared), "e1|1");
    b.tick(&shared, T0 + 10, 2);
    assert_eq!(b.holds(), Some(("e1", 1)));

    let poll = a.tick(&shared, T0 + 20, 3).expect("polls again at once");
    assert_eq!((poll.version, poll.deltas), (1, true));
    a.answer(&shared, 3, PollAnswer::Body(&delta(1, 2, T0)), T0 + 25);
    a.tick(&shared, T0 + 30, 4);
    a.answer(&shared, 4, PollAnswer::Body(&delta(2, 3, T0)), T0 + 35);
    b.tick(&shared, T0 + 40, 5);
    assert_eq!(b.holds(), Some(("e1", 3)));
    let applied = Tally {
        full: 1,
        deltas: 2,
        ..Tally::default()
    };
    assert_eq!(a.worker.take_tally(), applied);
    assert_eq!(b.worker.take_tally(), applied, "picked up, not polled");
    // A worker that starts later takes the snapshot and every delta after it.
    let mut c = Thread::new("c");
    c.worker.pick_up(&shared, &mut c.engine, T0 + 50);
    assert_eq!(c.holds(), Some(("e1", 3)));
}

#[test]
fn the_lease_passes_to_a_follower_when_the_leader_stops() {
    let shared = FakeShared::default();
    let (mut a, mut b) = (leading_a(&shared), Thread::new("b"));
    a.answer(&shared, 1, PollAnswer::Body(&full(1, T0)), T0 + 5);
    assert_eq!(a.worker.staleness_s(T0 + 2_000), Some(1));
    assert_eq!(
        b.worker.staleness_s(T0 + 2_000),
        None,
        "only the leader reports"
    );
    // `a` stops ticking: within the lease `b` still follows, past it `b` leads.
    assert_eq!(b.tick(&shared, T0 + LEASE_MS - 1, 2), None);
    let poll = b
        .tick(&shared, T0 + LEASE_MS + 1, 2)
        .expect("b took the lease");
    assert!(b.worker.leading());
    assert_eq!(poll.version, 1, "b polls from what it picked up");
    assert!(!poll.deltas, "a new leader asks for a full snapshot");
    // `a` comes back: it follows now.
    assert_eq!(a.tick(&shared, T0 + LEASE_MS + 2, 3), None);
    assert!(!a.worker.leading());
    b.answer(
        &shared,
        2,
        PollAnswer::Body(&full(2, T0)),
        T0 + LEASE_MS + 5,
    );
    a.tick(&shared, T0 + LEASE_MS + 10, 4);
    assert_eq!(a.holds(), Some(("e1", 2)));
}

#[test]
fn a_stalled_leaders_late_answer_does_not_overwrite_its_successor() {
    let shared = FakeShared::default();
    let (mut a, mut b) = (leading_a(&shared), Thread::new("b"));
    // `a` stalls with its poll in flight; `b` takes over and publishes version 2.
    b.tick(&shared, T0 + 1, 9);
    let later = T0 + LEASE_MS + 1;
    b.tick(&shared, later, 2).unwrap();
    b.answer(&shared, 2, PollAnswer::Body(&full(2, T0)), later + 1);
    assert_eq!(published_version(&shared), "e1|2");
    // `a` wakes up with the answer to its old poll: it applies it itself, but its
    // write is fenced and what `b` published stays.
    a.answer(&shared, 1, PollAnswer::Body(&full(1, T0)), later + 2);
    assert_eq!(a.holds(), Some(("e1", 1)));
    assert_eq!(published_version(&shared), "e1|2");
    a.tick(&shared, later + 3, 3);
    assert_eq!(a.holds(), Some(("e1", 2)), "and then follows it");
}

#[test]
fn a_delta_from_the_wrong_base_is_refused_and_the_next_poll_asks_for_a_full_snapshot() {
    let shared = FakeShared::default();
    let mut a = leading_a(&shared);
    a.answer(&shared, 1, PollAnswer::Body(&full(1, T0)), T0 + 1);
    assert!(a.tick(&shared, T0 + 2, 2).unwrap().deltas);
    // A gap: the engine holds 1, the delta starts from 5.
    a.answer(&shared, 2, PollAnswer::Body(&delta(5, 6, T0)), T0 + 3);
    assert_eq!(a.holds(), Some(("e1", 1)));
    assert_eq!(published_version(&shared), "e1|1");
    let tally = a.worker.take_tally();
    assert_eq!((tally.rejected, tally.poll_failures), (1, 1));
    let retry = T0 + 3 + 30_000; // past any backoff
    assert!(!a.tick(&shared, retry, 3).unwrap().deltas);

    a.answer(&shared, 3, PollAnswer::Body(&full(2, T0)), retry + 1);
    assert_eq!(published_version(&shared), "e1|2");
    // Shared data moved on under this leader (as if its own write got lost): a delta on
    // top of what the engine holds is not appended to another base.
    shared.set(VERSION_KEY, b"1\ne1|7", None);
    assert!(a.tick(&shared, retry + 2, 4).unwrap().deltas);
    a.answer(&shared, 4, PollAnswer::Body(&delta(2, 3, T0)), retry + 3);
    assert_eq!(a.holds(), Some(("e1", 3)));
    assert_eq!(published_version(&shared), "e1|7", "not published");
    assert!(!a.tick(&shared, retry + 4, 5).unwrap().deltas);
}

#[test]
fn only_a_fresh_signed_answer_counts_as_contact() {
    let shared = FakeShared::default();
    let mut a = leading_a(&shared);
    a.answer(&shared, 1, PollAnswer::Body(&full(1, T0)), T0);
    a.worker.take_tally();
    let head = |version, key: &DevKey, at_ms: u64| {
        HeadStatement {
            epoch: "e1".into(),
            version,
            issued_at: i64::try_from(at_ms / 1000).unwrap(),
        }
        .seal(|m| key.sign_bytes(m))
    };
    let other = DevKey::seeded(4);
    let late = T0 + 420_000;
    let (forged, wrong) = (head(1, &other, T0), head(2, &distribution_key(), T0));
    let old = head(1, &distribution_key(), T0);
    let refused: [PollAnswer<'_>; 7] = [
        PollAnswer::Body(&full(1, T0)), // a replay of what is held
        PollAnswer::Body(&full(2, T0 - 90_000_000)), // older than the maximum age
        PollAnswer::Body(b"{}"),
        PollAnswer::NotModified(None), // a bare 304
        PollAnswer::NotModified(Some(&forged)),
        PollAnswer::NotModified(Some(&wrong)),
        PollAnswer::NotModified(Some(&old)), // replayed (answered at `late`)
    ];
    let mut now = T0;
    for (i, answer) in refused.into_iter().enumerate() {
        now += 60_000; // past any backoff
        let token = 10 + u32::try_from(i).unwrap();
        a.tick(&shared, now, token).expect("still leads");
        a.answer(&shared, token, answer, now);
        assert_eq!(
            a.worker.staleness_s(now),
            Some((now - T0) / 1000),
            "answer {i}"
        );
    }
    let tally = a.worker.take_tally();
    assert_eq!(
        (tally.poll_failures, tally.rejected, tally.too_old),
        (7, 2, 1)
    );
    assert_eq!(now, late);
    assert_eq!(a.holds(), Some(("e1", 1)));
    now += 60_000;
    let good = head(1, &distribution_key(), now);
    a.tick(&shared, now, 20).unwrap();
    a.answer(&shared, 20, PollAnswer::NotModified(Some(&good)), now);
    assert_eq!(a.worker.staleness_s(now), Some(0));
    assert!(!a.worker.awaits(20));
    assert_eq!(a.worker.take_tally(), Tally::default());
}

#[test]
fn a_poll_past_its_deadline_is_given_up_and_retried_after_a_backoff() {
    let shared = FakeShared::default();
    let mut a = Thread::new("a");
    let call = a.worker.tick(&shared, &mut a.engine, T0).unwrap();
    a.worker.sent(Some(1), call.timeout, T0);
    let deadline = T0 + u64::try_from(call.timeout.as_millis()).unwrap();
    assert_eq!(a.tick(&shared, deadline - 1, 2), None, "still waiting");
    assert_eq!(a.tick(&shared, deadline, 2), None, "gave up, backing off");
    assert!(!a.worker.awaits(1), "its late answer is dropped");
    assert_eq!(a.worker.take_tally().poll_failures, 1);
    assert!(a.tick(&shared, deadline + 30_000, 2).is_some());
    // A poll the host would not send is a failure too.
    let call = a.worker.tick(&shared, &mut a.engine, deadline + 200_000);
    assert!(
        call.is_none() || {
            a.worker.sent(None, Duration::ZERO, deadline + 200_000);
            a.worker.take_tally().poll_failures == 1
        }
    );
}
