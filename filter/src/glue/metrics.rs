//! The filter's counters, addressed by name. Requests bump plain cells; the root
//! context flushes them to Envoy on its tick, so the hot path makes no metric host calls.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::deny::Denial;
use crate::sync::Tally;

/// The fixed counters; each request denial code has one more (`meshauth_requests_denied_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counter {
    Allowed,
    Anonymous,
    CacheHits,
    CacheMisses,
    SyncApplied,
    SyncFailures,
    SyncRejected,
    Confirmations,
    RateLimited,
    RateShared,
    RateContended,
    SyncDeltas,
    SyncTooOld,
    KidReports,
}

impl Counter {
    const ALL: [Counter; 14] = [
        Counter::Allowed,
        Counter::Anonymous,
        Counter::CacheHits,
        Counter::CacheMisses,
        Counter::SyncApplied,
        Counter::SyncFailures,
        Counter::SyncRejected,
        Counter::Confirmations,
        Counter::RateLimited,
        Counter::RateShared,
        Counter::RateContended,
        Counter::SyncDeltas,
        Counter::SyncTooOld,
        Counter::KidReports,
    ];

    fn name(self) -> &'static str {
        match self {
            Counter::Allowed => "meshauth_requests_allowed",
            Counter::Anonymous => "meshauth_requests_anonymous",
            Counter::CacheHits => "meshauth_verify_cache_hits",
            Counter::CacheMisses => "meshauth_verify_cache_misses",
            Counter::SyncApplied => "meshauth_sync_snapshots_applied",
            Counter::SyncFailures => "meshauth_sync_poll_failures",
            Counter::SyncRejected => "meshauth_sync_snapshots_rejected",
            Counter::Confirmations => "meshauth_revocation_confirmations",
            Counter::RateLimited => "meshauth_ratelimit_denied",
            Counter::RateShared => "meshauth_ratelimit_shared_slots",
            Counter::RateContended => "meshauth_ratelimit_cas_exhausted",
            Counter::SyncDeltas => "meshauth_sync_deltas_applied",
            Counter::SyncTooOld => "meshauth_sync_snapshots_too_old",
            Counter::KidReports => "meshauth_federation_kid_reports",
        }
    }
}

/// (metric id, count not yet flushed).
type Slot = (u32, Cell<i64>);
/// (policy, metric id, count not yet flushed).
type PolicyCounter = (Rc<str>, u32, Cell<i64>);

#[derive(Debug, Default)]
pub(super) struct Metrics {
    /// One per `Counter`, in `Counter::ALL` order (empty until defined).
    counters: Vec<Slot>,
    /// One per `Denial::ALL_CODES` entry.
    denied: Vec<Slot>,
    /// Rate-limit refusals by policy, defined on a policy's first refusal.
    by_policy: RefCell<Vec<PolicyCounter>>,
    /// Gauge: seconds since the leader last heard from the control plane.
    staleness: u32,
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or(0)
}

impl Metrics {
    pub(super) fn define() -> Metrics {
        Metrics {
            counters: Counter::ALL
                .iter()
                .map(|c| (define(MetricType::Counter, c.name()), Cell::new(0)))
                .collect(),
            denied: Denial::ALL_CODES
                .iter()
                .map(|c| {
                    let name = format!("meshauth_requests_denied_{c}");
                    (define(MetricType::Counter, &name), Cell::new(0))
                })
                .collect(),
            by_policy: RefCell::new(Vec::new()),
            staleness: define(MetricType::Gauge, "meshauth_sync_staleness_seconds"),
        }
    }

    pub(super) fn is_defined(&self) -> bool {
        !self.counters.is_empty()
    }

    pub(super) fn add(&self, counter: Counter, n: u32) {
        if let Some((_, c)) = self.counters.get(counter as usize) {
            c.set(c.get() + i64::from(n));
        }
    }

    pub(super) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub(super) fn denied(&self, denial: &Denial) {
        if let Some((_, c)) = self.denied.get(denial.index()) {
            c.set(c.get() + 1);
        }
    }

    pub(super) fn sync(&self, t: Tally) {
        self.add(Counter::SyncApplied, t.full);
        self.add(Counter::SyncDeltas, t.deltas);
        self.add(Counter::SyncRejected, t.rejected);
        self.add(Counter::SyncTooOld, t.too_old);
        self.add(Counter::SyncFailures, t.poll_failures);
    }

    pub(super) fn limited(&self, policy: &Rc<str>) {
        self.bump(Counter::RateLimited);
        let mut by = self.by_policy.borrow_mut();
        if let Some((_, _, c)) = by.iter().find(|(p, _, _)| p == policy) {
            c.set(c.get() + 1);
            return;
        }
        let name = format!(
            "meshauth_ratelimit_denied_policy_{}",
            policy.replace('-', "_")
        );
        by.push((
            policy.clone(),
            define(MetricType::Counter, &name),
            Cell::new(1),
        ));
    }

    pub(super) fn flush(&self) {
        let by = self.by_policy.borrow();
        let policies = by.iter().map(|(_, id, c)| (id, c));
        let fixed = self
            .counters
            .iter()
            .chain(&self.denied)
            .map(|(id, c)| (id, c));
        for (id, c) in policies.chain(fixed) {
            let n = c.take();
            if n != 0 && *id != 0 {
                let _ = hostcalls::increment_metric(*id, n);
            }
        }
    }

    pub(super) fn staleness(&self, seconds: u64) {
        if self.staleness != 0 {
            let _ = hostcalls::record_metric(self.staleness, seconds);
        }
    }
}
