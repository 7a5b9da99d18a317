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

/// 429 with Retry-After, for a source that failed authentication too often.
pub fn throttled(retry: Duration, oauth: bool) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let message = "too many failed authentications from this address; retry later";
    let mut resp = if oauth {
        super::error::OAuthReply(crate::error::OAuthError::new(
            crate::error::OAuthCode::TemporarilyUnavailable,
            message,
        ))
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

/// At most this many sources are tracked for failed authentication; past it, sources
/// not yet tracked share one bucket (an attacker with many addresses then slows only
/// himself and other new sources, and memory stays bounded).
const MAX_TRACKED_SOURCES: usize = 8192;

/// Per-source token buckets of failed authentications: `burst` failures at once, one
/// more every `interval`.
pub struct FailureThrottle {
    burst: u32,
    interval: Duration,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// The bucket of sources beyond `MAX_TRACKED_SOURCES`.
    overflow: Mutex<(f64, Instant)>,
    /// When the last log line about failures was written (logs are rate-limited).
    last_log: Mutex<Option<Instant>>,
}

impl FailureThrottle {
    pub fn new(burst: u32, interval: Duration) -> FailureThrottle {
        FailureThrottle {
            burst,
            interval,
            buckets: Mutex::new(HashMap::new()),
            overflow: Mutex::new((f64::from(burst), Instant::now())),
            last_log: Mutex::new(None),
        }
    }

    fn refill(&self, bucket: &mut (f64, Instant), now: Instant) {
        let gained = now.duration_since(bucket.1).as_secs_f64() / self.interval.as_secs_f64();
        bucket.0 = (bucket.0 + gained).min(f64::from(self.burst));
        bucket.1 = now;
    }

    fn with_bucket<R>(&self, source: IpAddr, f: impl FnOnce(&mut (f64, Instant)) -> R) -> R {
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(&source) && buckets.len() >= MAX_TRACKED_SOURCES {
            // Full buckets say nothing; forget them first.
            let burst = f64::from(self.burst);
            let interval = self.interval.as_secs_f64();
            buckets.retain(|_, b| b.0 + now.duration_since(b.1).as_secs_f64() / interval < burst);
        }
        if buckets.contains_key(&source) || buckets.len() < MAX_TRACKED_SOURCES {
            let bucket = buckets
                .entry(source)
                .or_insert((f64::from(self.burst), now));
            self.refill(bucket, now);
            return f(bucket);
        }
        drop(buckets);
        let mut bucket = lock(&self.overflow);
        self.refill(&mut bucket, now);
        f(&mut bucket)
    }

    /// `Some(retry after)` when `source` has used up its failures: it must not even try.
    pub fn blocked(&self, source: IpAddr) -> Option<Duration> {
        self.with_bucket(source, |b| {
            (b.0 < 1.0).then(|| self.interval.mul_f64(1.0 - b.0).max(Duration::from_secs(1)))
        })
    }

    /// Records a failed authentication from `source`.
    pub fn failed(&self, source: IpAddr) {
        self.with_bucket(source, |b| b.0 = (b.0 - 1.0).max(0.0));
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
    fn tracked(&self) -> usize {
        lock(&self.buckets).len()
    }
}

/// The server-wide guards the handlers consult.
pub struct Guards {
    pub long_polls: Arc<SourceLimiter>,
    pub auth_failures: FailureThrottle,
}

impl Guards {
    pub fn new(l: &crate::config::ServerLimits) -> Guards {
        Guards {
            long_polls: SourceLimiter::new(l.max_long_polls, l.max_long_polls_per_source),
            auth_failures: FailureThrottle::new(l.auth_failure_burst, l.auth_failure_interval),
        }
    }

    /// Before authenticating: the 429 answer when `source` failed too often already.
    /// `kind` is "client" (OAuth endpoints) or "admin".
    pub fn refuse(
        &self,
        metrics: &crate::metrics::Metrics,
        kind: &'static str,
        source: IpAddr,
    ) -> Option<axum::response::Response> {
        let retry = self.auth_failures.blocked(source)?;
        metrics
            .auth_throttled
            .get_or_create(&crate::metrics::AuthLabel { kind })
            .inc();
        Some(throttled(retry, kind == "client"))
    }

    /// Counts and (at most once a second) logs a failed authentication; never the
    /// credential itself.
    pub fn failed(&self, metrics: &crate::metrics::Metrics, kind: &'static str, source: IpAddr) {
        metrics
            .auth_failures
            .get_or_create(&crate::metrics::AuthLabel { kind })
            .inc();
        self.auth_failures.failed(source);
        if self.auth_failures.may_log() {
            tracing::warn!(%source, kind, "authentication failed (further failures in the next second are counted, not logged)");
        }
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
    fn throttle_blocks_after_burst_and_stays_bounded() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.blocked(ip(1)).is_none());
            t.failed(ip(1));
        }
        let retry = t.blocked(ip(1)).unwrap();
        assert!(retry >= Duration::from_secs(1) && retry <= Duration::from_secs(60));
        assert!(t.blocked(ip(2)).is_none(), "other sources are not affected");
        for n in 0..(MAX_TRACKED_SOURCES as u32 * 2) {
            t.failed(ip(10 + n));
        }
        assert!(t.tracked() <= MAX_TRACKED_SOURCES);
        assert!(t.blocked(ip(1)).is_some(), "a tracked source stays blocked");
    }
}
