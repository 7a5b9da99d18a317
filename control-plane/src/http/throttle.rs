//! Failed authentications, counted per source and per claimed identity from it, so
//! credentials cannot be guessed online at full speed. Bounded whatever the number of
//! sources or identities.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::guard::lock;

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
/// One identity is known from at most this many sources: past that its successes
/// protect nothing more, so one valid credential used from a flood of addresses
/// cannot fill the table with known entries and push a victim's out.
pub const MAX_KNOWN_SOURCES_PER_IDENTITY: u32 = 64;

/// A table key, and the identity it counts for (none for a bare source).
trait Identified: std::hash::Hash + Eq + Copy {
    fn identity(&self) -> Option<u64>;
}

impl Identified for IpAddr {
    fn identity(&self) -> Option<u64> {
        None
    }
}

impl Identified for (IpAddr, u64) {
    fn identity(&self) -> Option<u64> {
        Some(self.1)
    }
}

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
    /// How many sources each identity is known from (its `good` pairs).
    known: HashMap<u64, u32>,
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
        let Tables {
            pairs,
            sources,
            known,
        } = &mut *t;
        let pair = self.entry(pairs, (source, id), burst, MAX_TRACKED_PAIRS, now, known);
        pair.tokens = (self.level(pair, burst, now) - 1.0).max(0.0);
        pair.at = now;
        let src = self.entry(
            sources,
            source,
            source_burst,
            MAX_TRACKED_SOURCES,
            now,
            &mut HashMap::new(),
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
        let Tables { pairs, known, .. } = &mut *t;
        let pair = self.entry(pairs, (source, id), burst, MAX_TRACKED_PAIRS, now, known);
        // Counted after `entry`, whose eviction may have forgotten some of its sources.
        let known_from = known.get(&id).copied().unwrap_or(0);
        if !pair.good && known_from < MAX_KNOWN_SOURCES_PER_IDENTITY {
            pair.good = true;
            *known.entry(id).or_insert(0) += 1;
        }
    }

    /// The bucket of `key`, added (full) if new, after making room in a full table.
    fn entry<'a, K: Identified>(
        &self,
        table: &'a mut HashMap<K, Bucket>,
        key: K,
        cap: u32,
        max: usize,
        now: Instant,
        known: &mut HashMap<u64, u32>,
    ) -> &'a mut Bucket {
        if !table.contains_key(&key) && table.len() >= max {
            self.evict(table, cap, max / 8, now, known);
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
    fn evict<K: Identified>(
        &self,
        table: &mut HashMap<K, Bucket>,
        cap: u32,
        n: usize,
        now: Instant,
        known: &mut HashMap<u64, u32>,
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
            let removed = table.remove(k);
            if let (Some(b), Some(id)) = (removed, k.identity()) {
                if b.good {
                    if let Some(c) = known.get_mut(&id) {
                        *c = c.saturating_sub(1);
                        if *c == 0 {
                            known.remove(&id);
                        }
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http::guard::tests::ip;

    /// Spends `source`'s failure budget on ids it never used before.
    fn spray(t: &FailureThrottle, source: IpAddr) {
        for n in 0..(3 * SOURCE_BURST_FACTOR) {
            t.failed(source, format!("spray{n}").as_bytes());
        }
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
        spray(&t, ip(1));
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
        spray(&t, ip(2));
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
    fn a_flood_of_known_entries_does_not_evict_a_known_client() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        t.succeeded(ip(1), b"victim");
        spray(&t, ip(1));
        assert!(t.blocked(ip(1), b"victim").is_none());
        for n in 0..(MAX_TRACKED_PAIRS as u32) {
            t.succeeded(ip(1000 + n), b"attacker's own valid credential");
        }
        assert!(
            t.blocked(ip(1), b"victim").is_none(),
            "the victim's known entry was evicted"
        );
    }

    /// An identity known from the most sources, whose entries are then evicted, is
    /// known from the next source it authenticates from: its count is read after the
    /// eviction that makes room for that source, not before.
    #[test]
    fn an_identity_whose_known_entries_were_evicted_is_known_again() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        for n in 0..MAX_KNOWN_SOURCES_PER_IDENTITY {
            t.succeeded(ip(n), b"mover");
        }
        // Others' known entries fill the table; the mover's are the oldest.
        let mut n = 1000;
        while t.tracked().1 < MAX_TRACKED_PAIRS {
            let id = format!("id{}", n / MAX_KNOWN_SOURCES_PER_IDENTITY);
            t.succeeded(ip(n), id.as_bytes());
            n += 1;
        }
        let new_home = ip(u32::MAX);
        t.succeeded(new_home, b"mover");
        spray(&t, new_home);
        assert!(
            t.blocked(new_home, b"mover").is_none(),
            "refused for its source's failures: not known there"
        );
    }
}
