//! Caps per source address: open connections, parked long polls, and failed
//! authentications. Every map here is bounded, whatever the number of sources.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Extensions;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The source a peer counts as: its IPv4 address, or the /64 of its IPv6 address (one
/// host commonly holds a whole /64). Unspecified when the request did not come through
/// a socket (in-process tests).
pub fn source(ext: &Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| source_of(c.0.ip()))
}

pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// The requesting source, as an extractor.
pub struct Source(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Source(source(&parts.extensions)))
    }
}

/// 429 with Retry-After, for a source (or an identity from it) that failed authentication
/// too often.
pub fn throttled(retry: Duration, oauth: bool) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let message = "too many failed authentications from this address, or for this client from it; retry later";
    let mut resp = if oauth {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": message,
            })),
        )
            .into_response()
    } else {
        super::error::ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            .into_response()
    };
    let secs = retry.as_secs().max(1) + u64::from(retry.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Counts holders in total and per source; a holder over either cap is refused. The
/// per-source map only holds sources with a live holder, so it is bounded by `total`.
pub struct SourceLimiter {
    total: usize,
    per_source: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Returned on admission; releases its place when dropped.
pub struct Permit {
    limiter: Arc<SourceLimiter>,
    source: IpAddr,
}

impl SourceLimiter {
    pub fn new(total: usize, per_source: usize) -> Arc<SourceLimiter> {
        Arc::new(SourceLimiter {
            total,
            per_source,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, source: IpAddr) -> Option<Permit> {
        let mut held = lock(&self.held);
        let (total, by_source) = &mut *held;
        let mine = by_source.get(&source).copied().unwrap_or(0);
        if *total >= self.total || mine >= self.per_source {
            return None;
        }
        *total += 1;
        by_source.insert(source, mine + 1);
        Some(Permit {
            limiter: self.clone(),
            source,
        })
    }

    /// Holders now (for draining on shutdown and for tests).
    pub fn held(&self) -> usize {
        lock(&self.held).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = lock(&self.limiter.held);
        let (total, by_source) = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(n) = by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
    }
}

/// At most this many sources, and (source, identity) pairs, are tracked for failed
/// authentication. When a table is full a slice of it is evicted, the entries least
/// likely to matter first (see `evict`), so memory stays bounded whatever the number
/// of sources or identities.
const MAX_TRACKED_SOURCES: usize = 8192;
const MAX_TRACKED_PAIRS: usize = 16384;
/// A source may fail this many times the per-identity burst before identities new to
/// it are refused: it slows one address spraying identities, while a shared address
/// (NAT, proxy) with a few failing clients keeps serving the others.
pub const SOURCE_BURST_FACTOR: u32 = 4;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// The identity authenticated from this source: it is never refused for the
    /// source's failures, only for its own.
    good: bool,
}

/// Token buckets of failed authentications, counted twice: per (source, claimed
/// identity) with `burst` failures at once, and per source with `SOURCE_BURST_FACTOR`
/// times that; one more every `interval` for each. The identity is the client id with
/// the secret presented, or the bearer credential for admin and sync (so only the right
/// credential counts as known, and failures with wrong ones never count against it),
/// kept only as a keyed 64-bit hash.
pub struct FailureThrottle {
    burst: u32,
    interval: Duration,
    hasher: std::hash::RandomState,
    tables: Mutex<Tables>,
    /// When the last log line about failures was written (logs are rate-limited).
    last_log: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Tables {
    pairs: HashMap<(IpAddr, u64), Bucket>,
    sources: HashMap<IpAddr, Bucket>,
}

impl FailureThrottle {
    pub fn new(burst: u32, interval: Duration) -> FailureThrottle {
        FailureThrottle {
            burst,
            interval,
            hasher: std::hash::RandomState::new(),
            tables: Mutex::new(Tables::default()),
            last_log: Mutex::new(None),
        }
    }

    fn id(&self, claimed: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(claimed)
    }

    /// A bucket's tokens now, refilled since it was last touched.
    fn level(&self, b: &Bucket, cap: u32, now: Instant) -> f64 {
        let gained = now.duration_since(b.at).as_secs_f64() / self.interval.as_secs_f64();
        (b.tokens + gained).min(f64::from(cap))
    }

    fn retry(&self, tokens: f64) -> Duration {
        self.interval
            .mul_f64(1.0 - tokens)
            .max(Duration::from_secs(1))
    }

    /// `Some(retry after)` when this source or this identity from it has used up its
    /// failures: it must not even try. Looking never adds to the tables.
    pub fn blocked(&self, source: IpAddr, claimed: &[u8]) -> Option<Duration> {
        let now = Instant::now();
        let id = self.id(claimed);
        let t = lock(&self.tables);
        let pair = t.pairs.get(&(source, id));
        if let Some(p) = pair {
            let level = self.level(p, self.burst, now);
            if level < 1.0 {
                return Some(self.retry(level));
            }
            if p.good {
                return None;
            }
        }
        let s = t.sources.get(&source)?;
        let level = self.level(s, self.burst * SOURCE_BURST_FACTOR, now);
        (level < 1.0).then(|| self.retry(level))
    }

    /// Records a failed authentication of `claimed` from `source`.
    pub fn failed(&self, source: IpAddr, claimed: &[u8]) {
        let now = Instant::now();
        let id = self.id(claimed);
        let mut t = lock(&self.tables);
        let (burst, source_burst) = (self.burst, self.burst * SOURCE_BURST_FACTOR);
        let pair = self.entry(&mut t.pairs, (source, id), burst, MAX_TRACKED_PAIRS, now);
        pair.tokens = (self.level(pair, burst, now) - 1.0).max(0.0);
        pair.at = now;
        let src = self.entry(
            &mut t.sources,
            source,
            source_burst,
            MAX_TRACKED_SOURCES,
            now,
        );
        src.tokens = (self.level(src, source_burst, now) - 1.0).max(0.0);
        src.at = now;
    }

    /// Records that `claimed` authenticated from `source`.
    pub fn succeeded(&self, source: IpAddr, claimed: &[u8]) {
        let now = Instant::now();
        let id = self.id(claimed);
        let mut t = lock(&self.tables);
        let burst = self.burst;
        self.entry(&mut t.pairs, (source, id), burst, MAX_TRACKED_PAIRS, now)
            .good = true;
    }

    /// The bucket of `key`, added (full) if new, after making room in a full table.
    fn entry<'a, K: std::hash::Hash + Eq + Copy>(
        &self,
        table: &'a mut HashMap<K, Bucket>,
        key: K,
        cap: u32,
        max: usize,
        now: Instant,
    ) -> &'a mut Bucket {
        if !table.contains_key(&key) && table.len() >= max {
            self.evict(table, cap, max / 8, now);
        }
        table.entry(key).or_insert(Bucket {
            tokens: f64::from(cap),
            at: now,
            good: false,
        })
    }

    /// Removes `n` entries, those least likely to matter first: never authenticated
    /// before ever authenticated, then the fullest (a bucket with failures to spare
    /// holds back little; an exhausted one is an attacker's, and forgetting it would
    /// hand him a fresh budget), then the longest untouched. A flood of new sources
    /// thus evicts its own entries, not a known client's or an exhausted attacker's.
    /// One scan per `n` insertions keeps the cost per insertion constant.
    fn evict<K: std::hash::Hash + Eq + Copy>(
        &self,
        table: &mut HashMap<K, Bucket>,
        cap: u32,
        n: usize,
        now: Instant,
    ) {
        let mut ranked: Vec<(bool, f64, Instant, K)> = table
            .iter()
            .map(|(k, b)| (b.good, self.level(b, cap, now), b.at, *k))
            .collect();
        let rank = |a: &(bool, f64, Instant, K), b: &(bool, f64, Instant, K)| {
            a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2))
        };
        let n = n.clamp(1, ranked.len().max(1));
        if n < ranked.len() {
            ranked.select_nth_unstable_by(n, rank);
        }
        for (_, _, _, k) in ranked.iter().take(n) {
            table.remove(k);
        }
    }

    /// True at most once a second: whether a failure may be logged now.
    pub fn may_log(&self) -> bool {
        let mut last = lock(&self.last_log);
        let now = Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let t = lock(&self.tables);
        (t.sources.len(), t.pairs.len())
    }
}

/// The server-wide guards the handlers consult.
pub struct Guards {
    pub long_polls: Arc<SourceLimiter>,
    /// One throttle per kind of credential (client, admin, sync): spraying one kind from
    /// an address spends only that kind's budget there, so a client of the public port
    /// behind the admin's NAT or proxy cannot lock the admin out.
    auth_failures: [FailureThrottle; 3],
}

impl Guards {
    pub fn new(l: &crate::config::ServerLimits) -> Guards {
        Guards {
            long_polls: SourceLimiter::new(l.max_long_polls, l.max_long_polls_per_source),
            auth_failures: std::array::from_fn(|_| {
                FailureThrottle::new(l.auth_failure_burst, l.auth_failure_interval)
            }),
        }
    }

    fn throttle(&self, kind: &str) -> &FailureThrottle {
        let [client, admin, sync] = &self.auth_failures;
        match kind {
            "admin" => admin,
            "sync" => sync,
            _ => client,
        }
    }

    /// Before authenticating: the 429 answer when `source`, or `claimed` from it,
    /// failed too often already. `kind` is "client" (OAuth endpoints), "admin" or "sync";
    /// `claimed` the client id, or the bearer credential presented.
    pub fn refuse(
        &self,
        metrics: &crate::metrics::Metrics,
        kind: &'static str,
        source: IpAddr,
        claimed: &[u8],
    ) -> Option<axum::response::Response> {
        let retry = self.throttle(kind).blocked(source, claimed)?;
        metrics
            .auth_throttled
            .get_or_create(&crate::metrics::AuthLabel { kind })
            .inc();
        Some(throttled(retry, kind == "client"))
    }

    /// Counts and (at most once a second) logs a failed authentication; never the
    /// credential itself.
    pub fn failed(
        &self,
        metrics: &crate::metrics::Metrics,
        kind: &'static str,
        source: IpAddr,
        claimed: &[u8],
    ) {
        metrics
            .auth_failures
            .get_or_create(&crate::metrics::AuthLabel { kind })
            .inc();
        let throttle = self.throttle(kind);
        throttle.failed(source, claimed);
        if throttle.may_log() {
            tracing::warn!(%source, kind, "authentication failed (further failures in the next second are counted, not logged)");
        }
    }

    /// After a successful authentication of `claimed` (of `kind`) from `source`.
    pub fn succeeded(&self, kind: &str, source: IpAddr, claimed: &[u8]) {
        self.throttle(kind).succeeded(source, claimed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn limiter_caps_total_and_per_source_and_releases() {
        let l = SourceLimiter::new(3, 2);
        let a1 = l.try_acquire(ip(1)).unwrap();
        let _a2 = l.try_acquire(ip(1)).unwrap();
        assert!(l.try_acquire(ip(1)).is_none(), "per source");
        let _b = l.try_acquire(ip(2)).unwrap();
        assert!(l.try_acquire(ip(3)).is_none(), "total");
        drop(a1);
        assert!(l.try_acquire(ip(3)).is_some());
        assert_eq!(
            lock(&l.held).1.len(),
            2,
            "sources with no holder are forgotten"
        );
    }

    #[test]
    fn throttle_counts_per_identity_and_per_source() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.blocked(ip(1), b"a").is_none());
            t.failed(ip(1), b"a");
        }
        let retry = t.blocked(ip(1), b"a").unwrap();
        assert!(retry >= Duration::from_secs(1) && retry <= Duration::from_secs(60));
        assert!(
            t.blocked(ip(1), b"b").is_none(),
            "another id from the source"
        );
        assert!(
            t.blocked(ip(2), b"a").is_none(),
            "the id from another source"
        );
        t.succeeded(ip(1), b"known");
        for n in 0..(3 * SOURCE_BURST_FACTOR) {
            t.failed(ip(1), format!("spray{n}").as_bytes());
        }
        assert!(
            t.blocked(ip(1), b"new").is_some(),
            "the source's budget is spent"
        );
        assert!(
            t.blocked(ip(1), b"known").is_none(),
            "a known id is not refused"
        );
        for _ in 0..3 {
            t.failed(ip(1), b"known");
        }
        assert!(
            t.blocked(ip(1), b"known").is_some(),
            "but its own failures count"
        );
    }

    /// A flood of fresh sources (say, IPv6 /64s) keeps the tables bounded and evicts its
    /// own entries: a known client's and an exhausted attacker's survive it.
    #[test]
    fn a_flood_of_sources_stays_bounded_and_keeps_what_matters() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        t.succeeded(ip(1), b"known");
        t.failed(ip(1), b"known");
        for n in 0..(3 * SOURCE_BURST_FACTOR) {
            t.failed(ip(2), format!("spray{n}").as_bytes());
        }
        assert!(t.blocked(ip(2), b"new").is_some());
        for n in 0..(MAX_TRACKED_PAIRS as u32 * 3) {
            t.failed(ip(1000 + n), b"flood");
            let (sources, pairs) = t.tracked();
            assert!(sources <= MAX_TRACKED_SOURCES && pairs <= MAX_TRACKED_PAIRS);
        }
        assert!(
            t.blocked(ip(2), b"new").is_some(),
            "the attacker stays blocked"
        );
        for _ in 0..2 {
            assert!(t.blocked(ip(1), b"known").is_none());
            t.failed(ip(1), b"known");
        }
        assert!(
            t.blocked(ip(1), b"known").is_some(),
            "the known client's bucket survived with its failures and its mark"
        );
    }

    /// Open (review of the throttle): one valid credential used from as many sources as
    /// the pair table holds (IPv6 /64s are cheap) fills it with known entries, so the
    /// eviction reaches a known client's; behind an address whose budget a sprayer keeps
    /// spent, that client is then refused before its credential is even checked.
    #[test]
    #[ignore = "open finding: known entries can be evicted by a flood of known entries"]
    fn a_flood_of_known_entries_does_not_evict_a_known_client() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        t.succeeded(ip(1), b"victim");
        for n in 0..(3 * SOURCE_BURST_FACTOR) {
            t.failed(ip(1), format!("spray{n}").as_bytes());
        }
        assert!(t.blocked(ip(1), b"victim").is_none());
        for n in 0..(MAX_TRACKED_PAIRS as u32) {
            t.succeeded(ip(1000 + n), b"attacker's own valid credential");
        }
        assert!(
            t.blocked(ip(1), b"victim").is_none(),
            "the victim's known entry was evicted"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let a = source_of("2001:db8:1:2::1".parse().unwrap());
        let b = source_of("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = source_of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            source_of("::ffff:192.0.2.1".parse().unwrap()),
            ip(0xc000_0201)
        );
    }
}
