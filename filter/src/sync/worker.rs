//! One worker's part in sync, in plain Rust. Every worker picks up what the leader
//! published in shared data; the worker holding the lease also long-polls the control
//! plane, applies each answer and publishes it, fenced by its lease generation. The glue
//! calls [`Worker::tick`] on the root context's tick, sends the [`PollCall`] it returns
//! and hands the answer back to [`Worker::answered`].

use std::time::Duration;

use meshauth_wire::sync::{Message, PollQuery};

use super::{
    acquire_lease, backoff_ms, fresh_enough, head_confirms, open_message, publish, read_published,
    PollAnswer, PollCall, Publication, SharedData, SyncConfig, Tally, DELTAS_KEY, MAX_HELD_DELTAS,
    SNAPSHOT_KEY, SNAPSHOT_TAG_KEY, VERSION_KEY,
};
use crate::engine::Engine;

/// How long a leader's lease lasts without renewal.
pub const LEASE_MS: u64 = 3_000;

/// What a sync answer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    Full,
    Delta,
    /// Refused (bad signature, too old, a gap): the data held is not refreshed.
    Rejected,
}

#[derive(Debug, Default)]
struct Poll {
    /// The callout's token and the filter's own deadline for it.
    in_flight: Option<(u32, u64)>,
    attempt: u32,
    next_at_ms: u64,
}

#[derive(Debug)]
pub struct Worker {
    id: String,
    poll: Poll,
    seen_version: Vec<u8>,
    /// The snapshot tag this worker applied, and how many of the deltas after it.
    seen_snapshot: Vec<u8>,
    deltas_done: usize,
    /// Leader: deltas held in shared data on top of the snapshot there.
    held_deltas: usize,
    /// Leader: the next poll asks for a full snapshot (after a delta that did not fit).
    need_full: bool,
    /// Leader only: when a poll last got an answer (200 or 304).
    last_contact_ms: u64,
    leading: bool,
    /// The lease generation this worker leads at (fences what it publishes).
    generation: u64,
    tally: Tally,
}

/// `epoch|version` of what the engine holds (empty before any snapshot).
fn tag_of(engine: &Engine) -> String {
    engine
        .applied()
        .map(|(e, v)| format!("{e}|{v}"))
        .unwrap_or_default()
}

fn count_lines(list: &[u8]) -> usize {
    list.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

impl Worker {
    /// `id` names this worker in the lease and to the control plane; unique per worker.
    pub fn new(id: String) -> Worker {
        Worker {
            id,
            poll: Poll::default(),
            seen_version: Vec::new(),
            seen_snapshot: Vec::new(),
            deltas_done: 0,
            held_deltas: 0,
            need_full: false,
            last_contact_ms: 0,
            leading: false,
            generation: 0,
            tally: Tally::default(),
        }
    }

    pub fn leading(&self) -> bool {
        self.leading
    }

    /// What happened since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Leader only: seconds since a poll was last answered.
    pub fn staleness_s(&self, now_ms: u64) -> Option<u64> {
        self.leading
            .then(|| now_ms.saturating_sub(self.last_contact_ms) / 1000)
    }

    /// Whether a callout answer is the poll this worker waits for (not one it gave up on).
    pub fn awaits(&self, token: u32) -> bool {
        self.poll.in_flight.is_some_and(|(t, _)| t == token)
    }

    /// Verifies and applies a snapshot or a delta; says which one is now in force.
    /// `from_network`: it came from the sync path (not from this Envoy's shared data), so
    /// its age is checked too.
    fn apply(
        &mut self,
        engine: &mut Engine,
        cfg: &SyncConfig,
        bytes: &[u8],
        from_network: bool,
        now_ms: u64,
    ) -> Applied {
        let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let opened = open_message(bytes, &cfg.distribution_key);
        if let Ok(message) = &opened {
            if from_network && !fresh_enough(message, now_s, cfg.max_snapshot_age_seconds) {
                log::warn!("meshauth: sync answer refused: issued longer ago than max_snapshot_age_seconds");
                self.tally.too_old += 1;
                self.tally.rejected += 1;
                // A stale delta would come again: ask for a full snapshot next.
                self.need_full = true;
                return Applied::Rejected;
            }
        }
        let result = match opened {
            Ok(Message::Full(snap)) => {
                engine
                    .apply_snapshot(snap)
                    .map(|new| if new { Applied::Full } else { Applied::Nothing })
            }
            Ok(Message::Delta(delta)) => engine
                .apply_delta(delta)
                .map(|new| {
                    if new {
                        Applied::Delta
                    } else {
                        Applied::Nothing
                    }
                })
                .inspect_err(|_| self.need_full = true),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(Applied::Full) => {
                self.tally.full += 1;
                Applied::Full
            }
            Ok(Applied::Delta) => {
                self.tally.deltas += 1;
                Applied::Delta
            }
            Ok(_) => Applied::Nothing,
            Err(e) => {
                log::warn!("meshauth: sync answer refused: {e}");
                self.tally.rejected += 1;
                Applied::Rejected
            }
        }
    }

    /// Picks up what the leader put in shared data (the snapshot, then the deltas on top
    /// of it; both are no-ops where this worker is already ahead).
    pub fn pick_up(&mut self, shared: &dyn SharedData, engine: &mut Engine, now_ms: u64) {
        let Some(cfg) = engine.config().sync.clone() else {
            return;
        };
        let Some(version) = read_published(shared, VERSION_KEY) else {
            return;
        };
        if version == self.seen_version {
            return;
        }
        // The snapshot only when it changed (it can be hundreds of KiB), then the deltas
        // this worker has not applied yet.
        let tag = read_published(shared, SNAPSHOT_TAG_KEY).unwrap_or_default();
        if tag != self.seen_snapshot {
            if let Some(bytes) = read_published(shared, SNAPSHOT_KEY) {
                self.apply(engine, &cfg, &bytes, false, now_ms);
            }
            self.seen_snapshot = tag;
            self.deltas_done = 0;
        }
        if let Some(deltas) = read_published(shared, DELTAS_KEY) {
            let lines = count_lines(&deltas);
            if lines < self.deltas_done {
                self.deltas_done = 0; // the list restarted under a snapshot we have not seen
            }
            for line in deltas
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .skip(self.deltas_done)
            {
                self.apply(engine, &cfg, line, false, now_ms);
            }
            self.deltas_done = lines;
        }
        self.seen_version = version;
    }

    /// The root context's tick: pick up, then take or renew the lease and, as leader,
    /// say when to poll.
    pub fn tick(
        &mut self,
        shared: &dyn SharedData,
        engine: &mut Engine,
        now_ms: u64,
    ) -> Option<PollCall> {
        let cfg = engine.config().sync.clone()?;
        self.pick_up(shared, engine, now_ms);
        self.lead(shared, engine, &cfg, now_ms)
    }

    fn lead(
        &mut self,
        shared: &dyn SharedData,
        engine: &Engine,
        cfg: &SyncConfig,
        now: u64,
    ) -> Option<PollCall> {
        self.leading = false;
        // None: another worker leads (or won the race).
        let generation = acquire_lease(shared, &self.id, now, LEASE_MS)?;
        if generation != self.generation {
            // Newly leading: what this worker held from an earlier term is not known to
            // be in shared data.
            self.generation = generation;
            self.need_full = true;
        }
        if self.last_contact_ms == 0 {
            self.last_contact_ms = now;
        }
        self.leading = true;
        if let Some((_, deadline)) = self.poll.in_flight {
            if now < deadline {
                return None;
            }
            // Our own deadline: the host's timeout does not fire without a healthy endpoint.
            self.poll.in_flight = None;
            self.failed(now);
        }
        if now < self.poll.next_at_ms {
            return None;
        }
        let (epoch, version) = engine.applied().unwrap_or_default();
        let query = PollQuery {
            version,
            // Always sent, empty before the first snapshot: the control plane then
            // answers at once.
            epoch: Some(epoch.to_string()),
            wait_ms: cfg.poll_wait_ms,
            filter: Some(self.id.clone()),
            applied: Some(version),
            deltas: !self.need_full && self.held_deltas < MAX_HELD_DELTAS,
        };
        Some(PollCall {
            path: query.path(),
            timeout: Duration::from_millis(cfg.poll_wait_ms + cfg.callout_timeout_ms),
        })
    }

    /// The glue sent the poll `lead` asked for (`Some(token)`) or could not (`None`).
    pub fn sent(&mut self, token: Option<u32>, timeout: Duration, now_ms: u64) {
        match token {
            Some(token) => {
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                self.poll.in_flight = Some((token, now_ms.saturating_add(ms)));
            }
            None => self.failed(now_ms),
        }
    }

    fn failed(&mut self, now: u64) {
        self.tally.poll_failures += 1;
        self.poll.next_at_ms =
            now + backoff_ms(self.poll.attempt, now.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.poll.attempt = self.poll.attempt.saturating_add(1);
    }

    fn contact(&mut self, now: u64) {
        self.last_contact_ms = now;
        self.poll.attempt = 0;
        self.poll.next_at_ms = now;
    }

    /// The answer to the poll in flight (check [`Worker::awaits`] first).
    pub fn answered(
        &mut self,
        shared: &dyn SharedData,
        engine: &mut Engine,
        answer: PollAnswer<'_>,
        now: u64,
    ) {
        self.poll.in_flight = None;
        let Some(cfg) = engine.config().sync.clone() else {
            return;
        };
        match answer {
            PollAnswer::Body(body) => {
                let base = tag_of(engine);
                let applied = self.apply(engine, &cfg, body, true, now);
                if !matches!(applied, Applied::Full | Applied::Delta) {
                    // The control plane answers 200 only with something newer than what
                    // we reported. A 200 that changes nothing is a replay (a relay
                    // holding the filter at a version it already has): a failed poll, so
                    // staleness grows and alerts, rather than contact.
                    self.failed(now);
                    return;
                }
                self.publish(shared, engine, applied, body, &base, now);
                self.contact(now);
            }
            PollAnswer::NotModified(head) => {
                // Only a signed "still at your version" counts as contact: a bare 304
                // (a relay freezing the filter) is a failed poll.
                let (epoch, version) = engine.applied().unwrap_or_default();
                let slack = i64::try_from(cfg.poll_wait_ms / 1000).unwrap_or(60) + 120;
                let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
                if head_confirms(head, (epoch, version), now_s, slack, &cfg.distribution_key) {
                    self.contact(now);
                } else {
                    log::warn!("meshauth: sync poll answered 304 without a valid signed head");
                    self.failed(now);
                }
            }
            PollAnswer::Other(status) => {
                log::warn!("meshauth: sync poll answered {status:?}; keeping the last snapshot");
                self.failed(now);
            }
        }
    }

    /// Publishes an answer this leader applied for the other workers, fenced by its lease.
    fn publish(
        &mut self,
        shared: &dyn SharedData,
        engine: &Engine,
        applied: Applied,
        body: &[u8],
        base: &str,
        now: u64,
    ) {
        let tag = tag_of(engine);
        let publication = if applied == Applied::Full {
            Publication::Full { body, tag: &tag }
        } else {
            Publication::Delta {
                body,
                base,
                tag: &tag,
            }
        };
        match publish(shared, &self.id, self.generation, now, publication) {
            Ok(()) => {
                if applied == Applied::Full {
                    self.seen_snapshot = tag.clone().into_bytes();
                    self.deltas_done = 0;
                    self.held_deltas = 0;
                    self.need_full = false;
                } else {
                    self.deltas_done =
                        count_lines(&read_published(shared, DELTAS_KEY).unwrap_or_default());
                    self.held_deltas += 1;
                }
                self.seen_version = tag.into_bytes();
            }
            Err(e) => {
                // Not published: the next poll (if still leading) asks for a full snapshot.
                log::warn!("meshauth: sync answer not published: {e:?}");
                self.need_full = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
