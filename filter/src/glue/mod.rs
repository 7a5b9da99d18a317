//! proxy-wasm glue: moves bytes between Envoy and the engine. Reads the plugin
//! configuration and request headers, asks the engine, writes its answer back; runs the
//! sync loop (leader lease in shared data, long poll with `dispatch_http_call`, every
//! worker picking snapshots up from shared data) and Bloom-hit confirmation callouts.
//! Decisions live in the engine and in `sync`; nothing here decides.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MapType, MetricType};

mod host;
mod http;

use crate::config::Config;
use crate::deny::Denial;
use crate::engine::Engine;
use crate::limits::{Conflict, Facts, Slot, Slots};
use crate::sync;
use meshauth_wire::sync::Message;

/// What a sync answer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Nothing,
    Full,
    Delta,
    /// Refused (bad signature, too old, a gap): the data held is not refreshed.
    Rejected,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root::new(id)) });
}}

const LEASE_MS: u64 = 3_000;

/// Envoy's shared data for the sync loop; the decisions are in `sync`.
struct HostShared;

impl sync::SharedData for HostShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// (policy, metric id, count not yet flushed).
type PolicyCounter = (Rc<str>, u32, Cell<i64>);

/// Filter counters. Requests bump plain cells; the root context flushes them to Envoy
/// on its tick, so the hot path makes no metric host calls.
#[derive(Debug, Default)]
struct Metrics {
    counters: Vec<(u32, Cell<i64>)>,
    /// Rate-limit refusals by policy, defined on a policy's first refusal.
    by_policy: RefCell<Vec<PolicyCounter>>,
    /// Gauge: seconds since the leader last heard from the control plane.
    staleness: u32,
}

const ALLOWED: usize = 0;
const ANONYMOUS: usize = 1;
const CACHE_HITS: usize = 2;
const CACHE_MISSES: usize = 3;
const SYNC_APPLIED: usize = 4;
const SYNC_FAILURES: usize = 5;
const SYNC_REJECTED: usize = 6;
const CONFIRMATIONS: usize = 7;
const RATE_LIMITED: usize = 8;
const RATE_SHARED: usize = 9;
const RATE_CONTENDED: usize = 10;
const SYNC_DELTAS: usize = 11;
const SYNC_TOO_OLD: usize = 12;
const FIRST_DENIAL: usize = 13;

impl Metrics {
    fn define() -> Metrics {
        let names = [
            "meshauth_requests_allowed",
            "meshauth_requests_anonymous",
            "meshauth_verify_cache_hits",
            "meshauth_verify_cache_misses",
            "meshauth_sync_snapshots_applied",
            "meshauth_sync_poll_failures",
            "meshauth_sync_snapshots_rejected",
            "meshauth_revocation_confirmations",
            "meshauth_ratelimit_denied",
            "meshauth_ratelimit_shared_slots",
            "meshauth_ratelimit_cas_exhausted",
            "meshauth_sync_deltas_applied",
            "meshauth_sync_snapshots_too_old",
        ]
        .into_iter()
        .map(str::to_string)
        .chain(
            Denial::ALL_CODES
                .iter()
                .map(|c| format!("meshauth_requests_denied_{c}")),
        );
        Metrics {
            counters: names
                .map(|n| {
                    (
                        hostcalls::define_metric(MetricType::Counter, &n).unwrap_or(0),
                        Cell::new(0),
                    )
                })
                .collect(),
            by_policy: RefCell::new(Vec::new()),
            staleness: hostcalls::define_metric(
                MetricType::Gauge,
                "meshauth_sync_staleness_seconds",
            )
            .unwrap_or(0),
        }
    }

    fn bump(&self, index: usize) {
        if let Some((_, c)) = self.counters.get(index) {
            c.set(c.get() + 1);
        }
    }

    fn denied(&self, code: &str) {
        if let Some(i) = Denial::ALL_CODES.iter().position(|c| *c == code) {
            self.bump(FIRST_DENIAL + i);
        }
    }

    fn add(&self, index: usize, n: u32) {
        if let Some((_, c)) = self.counters.get(index) {
            c.set(c.get() + i64::from(n));
        }
    }

    fn limited(&self, policy: &Rc<str>) {
        self.bump(RATE_LIMITED);
        let mut by = self.by_policy.borrow_mut();
        if let Some((_, _, c)) = by.iter().find(|(p, _, _)| p == policy) {
            c.set(c.get() + 1);
            return;
        }
        let name = format!(
            "meshauth_ratelimit_denied_policy_{}",
            policy.replace('-', "_")
        );
        let id = hostcalls::define_metric(MetricType::Counter, &name).unwrap_or(0);
        by.push((policy.clone(), id, Cell::new(1)));
    }

    fn flush(&self) {
        for (_, id, c) in self.by_policy.borrow().iter() {
            let n = c.take();
            if n != 0 && *id != 0 {
                let _ = hostcalls::increment_metric(*id, n);
            }
        }
        for (id, c) in &self.counters {
            let n = c.take();
            if n != 0 && *id != 0 {
                let _ = hostcalls::increment_metric(*id, n);
            }
        }
    }
}

/// Rate buckets in Envoy's shared data, one key per slot, so every worker draws from
/// the same buckets.
struct SharedSlots;

fn slot_key(index: u32) -> String {
    format!("meshauth.rl.{index}")
}

/// The CAS token a write carries to a slot that does not exist yet. Envoy accepts any
/// token for a key it does not have and refuses a stale one for a key it has, so this
/// write creates the slot only if no other worker did in between: an insert-if-absent.
/// (A write without a token would be unconditional and could overwrite a bucket.)
const ABSENT: u32 = u32::MAX;

impl Slots for SharedSlots {
    fn read(&self, index: u32) -> (Option<Slot>, Option<u32>) {
        match hostcalls::get_shared_data(&slot_key(index)) {
            Ok((Some(value), cas)) => (Slot::decode(&value), cas),
            _ => (None, Some(ABSENT)),
        }
    }

    fn write(&self, index: u32, slot: Slot, cas: Option<u32>) -> Result<(), Conflict> {
        hostcalls::set_shared_data(&slot_key(index), Some(&slot.encode()), cas)
            .map_err(|_| Conflict)
    }
}

const PLACEMENT_KEY: &str = "meshauth.rl.placement-key";

/// The secret that keys rate-slot placement, the same for every worker of this Envoy:
/// the first worker to configure draws it and the others read it (an insert-if-absent
/// write, so two first workers still agree on one).
fn placement_key() -> Option<[u8; 16]> {
    let read = || match hostcalls::get_shared_data(PLACEMENT_KEY) {
        Ok((Some(v), _)) => <[u8; 16]>::try_from(v.as_slice()).ok(),
        _ => None,
    };
    if let Some(key) = read() {
        return Some(key);
    }
    let mut fresh = [0u8; 16];
    getrandom::getrandom(&mut fresh).ok()?;
    let _ = hostcalls::set_shared_data(PLACEMENT_KEY, Some(&fresh), Some(ABSENT));
    read()
}

/// Request facts for bucket keys: the headers already read, and the client address,
/// fetched only when a policy asks.
struct HostFacts<'a> {
    headers: &'a [(String, String)],
}

impl Facts for HostFacts<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn client_address(&self) -> Option<String> {
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Default)]
struct Poll {
    in_flight: Option<(u32, u64)>,
    attempt: u32,
    next_at_ms: u64,
}

struct Root {
    id: String,
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Rc<Metrics>,
    pending: http::PendingList,
    poll: Poll,
    seen_version: Vec<u8>,
    /// The snapshot tag this worker applied, and how many of the deltas after it.
    seen_snapshot: Vec<u8>,
    deltas_done: usize,
    /// Leader: deltas held in shared data on top of the snapshot there.
    held_deltas: usize,
    /// Leader: the next poll asks for a full snapshot (after a delta that did not fit).
    need_full: bool,
    last_flush_ms: u64,
    /// Leader only: when a poll last got an answer (200 or 304).
    last_contact_ms: u64,
    leading: bool,
    /// The lease generation this worker leads at (fences what it publishes).
    generation: u64,
}

impl Root {
    fn new(context_id: u32) -> Root {
        let random = now_ms() ^ u64::from(context_id).rotate_left(32);
        Root {
            id: format!("{context_id}-{random:x}"),
            engine: None,
            metrics: Rc::new(Metrics::default()),
            pending: Rc::new(RefCell::new(Vec::new())),
            poll: Poll::default(),
            seen_version: Vec::new(),
            seen_snapshot: Vec::new(),
            deltas_done: 0,
            held_deltas: 0,
            need_full: false,
            last_flush_ms: 0,
            last_contact_ms: 0,
            leading: false,
            generation: 0,
        }
    }

    fn sync_config(&self) -> Option<Rc<sync::SyncConfig>> {
        self.engine
            .as_ref()
            .and_then(|e| e.borrow().config().sync.clone())
    }

    /// Verifies and applies a snapshot or a delta; says which one is now in force.
    /// `from_network`: it came from the sync path (not from this Envoy's shared data), so
    /// its age is checked too.
    fn apply(&mut self, bytes: &[u8], from_network: bool) -> Applied {
        let (Some(engine), Some(cfg)) = (self.engine.clone(), self.sync_config()) else {
            return Applied::Nothing;
        };
        let now_s = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        let opened = sync::open_message(bytes, &cfg.distribution_key);
        if let Ok(message) = &opened {
            if from_network && !sync::fresh_enough(message, now_s, cfg.max_snapshot_age_seconds) {
                log::warn!("meshauth: sync answer refused: issued longer ago than max_snapshot_age_seconds");
                self.metrics.bump(SYNC_TOO_OLD);
                self.metrics.bump(SYNC_REJECTED);
                // A stale delta would come again: ask for a full snapshot next.
                self.need_full = true;
                return Applied::Rejected;
            }
        }
        let result = match opened {
            Ok(Message::Full(snap)) => engine.borrow_mut().apply_snapshot(snap).map(|new| {
                if new {
                    Applied::Full
                } else {
                    Applied::Nothing
                }
            }),
            Ok(Message::Delta(delta)) => engine
                .borrow_mut()
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
                self.metrics.bump(SYNC_APPLIED);
                Applied::Full
            }
            Ok(Applied::Delta) => {
                self.metrics.bump(SYNC_DELTAS);
                Applied::Delta
            }
            Ok(_) => Applied::Nothing,
            Err(e) => {
                log::warn!("meshauth: sync answer refused: {e}");
                self.metrics.bump(SYNC_REJECTED);
                Applied::Rejected
            }
        }
    }

    /// Every worker: pick up what the leader put in shared data (the snapshot, then the
    /// deltas on top of it; both are no-ops where this worker is already ahead).
    fn pick_up(&mut self) {
        let Some(version) = sync::read_published(&HostShared, sync::VERSION_KEY) else {
            return;
        };
        if version == self.seen_version {
            return;
        }
        // The snapshot only when it changed (it can be hundreds of KiB), then the deltas
        // this worker has not applied yet.
        let tag = sync::read_published(&HostShared, sync::SNAPSHOT_TAG_KEY).unwrap_or_default();
        if tag != self.seen_snapshot {
            if let Some(bytes) = sync::read_published(&HostShared, sync::SNAPSHOT_KEY) {
                self.apply(&bytes, false);
            }
            self.seen_snapshot = tag;
            self.deltas_done = 0;
        }
        if let Some(deltas) = sync::read_published(&HostShared, sync::DELTAS_KEY) {
            let lines: Vec<&[u8]> = deltas
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            if lines.len() < self.deltas_done {
                self.deltas_done = 0; // the list restarted under a snapshot we have not seen
            }
            for line in lines.iter().skip(self.deltas_done) {
                self.apply(line, false);
            }
            self.deltas_done = lines.len();
        }
        self.seen_version = version;
    }

    fn lead(&mut self, cfg: &sync::SyncConfig, now: u64) {
        self.leading = false;
        let Some(generation) = sync::acquire_lease(&HostShared, &self.id, now, LEASE_MS) else {
            return; // another worker leads (or won the race)
        };
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
                return;
            }
            // Our own deadline: the host's timeout does not fire without a healthy endpoint.
            self.poll.in_flight = None;
            self.failed(now);
        }
        if now < self.poll.next_at_ms {
            return;
        }
        let (epoch, version) = self
            .engine
            .as_ref()
            .and_then(|e| e.borrow().applied().map(|(e, v)| (e.to_string(), v)))
            .unwrap_or_default();
        let deltas = !self.need_full && self.held_deltas < sync::MAX_HELD_DELTAS;
        let path = sync::poll_path(version, &epoch, cfg.poll_wait_ms, &self.id, deltas);
        let timeout = Duration::from_millis(cfg.poll_wait_ms + cfg.callout_timeout_ms);
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", cfg.authority.as_str()),
        ];
        if let Some(bearer) = &cfg.authorization {
            headers.push(("authorization", bearer.header_value()));
        }
        match self.dispatch_http_call(&cfg.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.poll.in_flight = Some((token, now + cfg.poll_wait_ms + cfg.callout_timeout_ms))
            }
            Err(_) => self.failed(now),
        }
    }

    fn failed(&mut self, now: u64) {
        self.metrics.bump(SYNC_FAILURES);
        self.poll.next_at_ms =
            now + sync::backoff_ms(self.poll.attempt, now.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.poll.attempt = self.poll.attempt.saturating_add(1);
    }

    /// Requests whose confirmation outlived the filter's deadline: finish them now.
    fn expire_confirmations(&mut self, now: u64) {
        if let Some(engine) = &self.engine {
            http::expire(&self.pending, engine, &self.metrics, now);
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.poll.in_flight.map(|(t, _)| t) != Some(token_id) {
            return; // a poll we already gave up on
        }
        self.poll.in_flight = None;
        let now = now_ms();
        // Through `host`: the SDK's getters panic on a header value that is not UTF-8,
        // which anything on the sync path could send.
        let status = host::header(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        match status.as_str() {
            "200" => {
                let body = host::call_response_body(body_size).unwrap_or_default();
                let tag_of = |root: &Root| {
                    root.engine
                        .as_ref()
                        .and_then(|e| e.borrow().applied().map(|(e, v)| format!("{e}|{v}")))
                        .unwrap_or_default()
                };
                let base = tag_of(self);
                let applied = self.apply(&body, true);
                if matches!(applied, Applied::Full | Applied::Delta) {
                    // Publish for the other workers, fenced by this worker's lease.
                    let tag = tag_of(self);
                    let publication = if applied == Applied::Full {
                        sync::Publication::Full {
                            body: &body,
                            tag: &tag,
                        }
                    } else {
                        sync::Publication::Delta {
                            body: &body,
                            base: &base,
                            tag: &tag,
                        }
                    };
                    match sync::publish(&HostShared, &self.id, self.generation, now, publication) {
                        Ok(()) => {
                            if applied == Applied::Full {
                                self.seen_snapshot = tag.clone().into_bytes();
                                self.deltas_done = 0;
                                self.held_deltas = 0;
                                self.need_full = false;
                            } else {
                                self.deltas_done =
                                    sync::read_published(&HostShared, sync::DELTAS_KEY)
                                        .unwrap_or_default()
                                        .split(|b| *b == b'\n')
                                        .filter(|l| !l.is_empty())
                                        .count();
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
                // The control plane answers 200 only with something newer than what we
                // reported. A 200 that changes nothing is a replay (a relay holding the
                // filter at a version it already has): a failed poll, so staleness grows
                // and alerts, rather than contact.
                if matches!(applied, Applied::Full | Applied::Delta) {
                    self.last_contact_ms = now;
                    self.poll.attempt = 0;
                    self.poll.next_at_ms = now;
                } else {
                    self.failed(now);
                }
            }
            "304" => {
                // Only a signed "still at your version" counts as contact: a bare 304
                // (a relay freezing the filter) is a failed poll.
                let head = host::header(
                    MapType::HttpCallResponseHeaders,
                    meshauth_wire::sync::HEAD_HEADER,
                )
                .ok()
                .flatten();
                let held = self
                    .engine
                    .as_ref()
                    .and_then(|e| e.borrow().applied().map(|(e, v)| (e.to_string(), v)))
                    .unwrap_or_default();
                let confirmed = self.sync_config().is_some_and(|cfg| {
                    let slack = i64::try_from(cfg.poll_wait_ms / 1000).unwrap_or(60) + 120;
                    sync::head_confirms(
                        head.as_deref(),
                        (&held.0, held.1),
                        i64::try_from(now / 1000).unwrap_or(i64::MAX),
                        slack,
                        &cfg.distribution_key,
                    )
                });
                if confirmed {
                    self.last_contact_ms = now;
                    self.poll.attempt = 0;
                    self.poll.next_at_ms = now;
                } else {
                    log::warn!("meshauth: sync poll answered 304 without a valid signed head");
                    self.failed(now);
                }
            }
            other => {
                log::warn!("meshauth: sync poll answered {other:?}; keeping the last snapshot");
                self.failed(now);
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("meshauth: no plugin configuration; refusing to start");
            return false;
        };
        match Config::from_json(&bytes) {
            Ok(mut config) => {
                let Some(key) = placement_key() else {
                    log::error!("meshauth: the host gave no random bytes for the rate-slot key; refusing to start");
                    return false;
                };
                config.limits.placement_key = key;
                log::info!(
                    "meshauth: configured with {} key(s), {} route(s), sync {}",
                    config.keys.len(),
                    config.routes.routes.len(),
                    if config.sync.is_some() { "on" } else { "off" }
                );
                let tick = config.sync.as_ref().map_or(1_000, |s| s.tick_ms);
                self.engine = Some(Rc::new(RefCell::new(Engine::new(config))));
                if self.metrics.counters.is_empty() {
                    self.metrics = Rc::new(Metrics::define());
                }
                self.set_tick_period(Duration::from_millis(tick));
                // A new worker, or a VM Envoy reloaded after a failure, starts from what
                // the leader already published rather than from its bootstrap keys and
                // no revocations until its first tick.
                if self.sync_config().is_some() {
                    self.pick_up();
                }
                true
            }
            Err(e) => {
                log::error!("meshauth: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        if let Some(cfg) = self.sync_config() {
            self.pick_up();
            self.lead(&cfg, now);
            self.expire_confirmations(now);
        }
        if now.saturating_sub(self.last_flush_ms) >= 1_000 {
            self.last_flush_ms = now;
            self.metrics.flush();
            if self.leading && self.metrics.staleness != 0 {
                let age = now.saturating_sub(self.last_contact_ms) / 1000;
                let _ = hostcalls::record_metric(self.metrics.staleness, age);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(http::Http {
            context_id,
            engine,
            metrics: self.metrics.clone(),
            pending: self.pending.clone(),
            ratelimit: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
