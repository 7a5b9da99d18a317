//! Caps per source address: open connections, parked long polls, and failed
//! authentications. Every map here is bounded, whatever the number of sources.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Extensions;

pub use super::throttle::FailureThrottle;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

/// The outcome of [`Guards::check`].
pub enum Checked<T> {
    Passed(T),
    /// The 429 to answer: the credential was not checked.
    Refused(axum::response::Response),
    Failed,
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

    /// One credential check of `kind` under its failure throttle: refused (429)
    /// without checking when `source`, or `claimed` from it, failed too often; a failed
    /// check counted, a passed one marking the credential known from `source`.
    pub fn check<T>(
        &self,
        metrics: &crate::metrics::Metrics,
        kind: &'static str,
        source: IpAddr,
        claimed: &[u8],
        check: impl FnOnce() -> Option<T>,
    ) -> Checked<T> {
        if let Some(refused) = self.refuse(metrics, kind, source, claimed) {
            return Checked::Refused(refused);
        }
        let Some(passed) = check() else {
            self.failed(metrics, kind, source, claimed);
            return Checked::Failed;
        };
        self.succeeded(kind, source, claimed);
        Checked::Passed(passed)
    }

    /// After a successful authentication of `claimed` (of `kind`) from `source`.
    pub fn succeeded(&self, kind: &str, source: IpAddr, claimed: &[u8]) {
        self.throttle(kind).succeeded(source, claimed);
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The IPv4 address numbered `n`, for the throttle's tests too.
    pub(in crate::http) fn ip(n: u32) -> IpAddr {
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
