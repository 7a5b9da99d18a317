//! The key sets this replica fetched, one entry per trusted issuer, and the fetch loop's
//! step. Each fetch goes through the issuer's circuit breaker; a failed, empty or
//! malformed answer never replaces the last good set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::{jittered, Breaker, CircuitState};
use super::http::{Answer, Getter};
use super::jwks::{cache_lifetime, parse_discovery, parse_jwks, FederatedKey};
use super::model::{KeySource, TrustedIssuer};
use super::refetch::Refetch;
use super::url::{FetchUrl, UrlPolicy};
use crate::config::FederationConfig;
use crate::metrics::Metrics;
use meshauth_wire::sync::UnknownKidOutcome;

/// What `GET /admin/issuers/{name}` shows of the fetching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStatus {
    pub state: CircuitState,
    pub key_count: usize,
    /// The key ids held (the last good set).
    pub kids: Vec<String>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub next_fetch: Option<i64>,
}

struct Entry {
    issuer: TrustedIssuer,
    breaker: Breaker,
    keys: Arc<Vec<FederatedKey>>,
    etag: Option<String>,
    /// From discovery; cleared after a failure so the next attempt looks again.
    jwks_uri: Option<FetchUrl>,
    last_success: Option<i64>,
    last_error: Option<String>,
    next_at: i64,
    /// Fetches out of schedule that filters' unknown-kid reports asked for.
    refetch: Refetch,
}

impl Entry {
    fn new(issuer: TrustedIssuer, now: i64) -> Entry {
        Entry {
            issuer,
            breaker: Breaker::default(),
            keys: Arc::new(Vec::new()),
            etag: None,
            jwks_uri: None,
            last_success: None,
            last_error: None,
            next_at: now,
            refetch: Refetch::default(),
        }
    }

    /// Due by its schedule, or by a report while the circuit is closed (an open or
    /// half-open circuit keeps its own pace: a report never adds a probe).
    fn due(&self, now: i64) -> bool {
        self.next_at <= now
            || (self.refetch.due(now) && self.breaker.state() == CircuitState::Closed)
    }
}

/// What one fetch needs, taken out of the lock.
struct Job {
    name: String,
    issuer: TrustedIssuer,
    jwks_uri: Option<FetchUrl>,
    etag: Option<String>,
}

/// What one fetch brought.
enum Outcome {
    Fresh {
        keys: Vec<FederatedKey>,
        etag: Option<String>,
        jwks_uri: FetchUrl,
        lifetime: Duration,
    },
    Unchanged {
        lifetime: Duration,
    },
    Failed(String),
}

pub struct Fetcher {
    entries: Mutex<BTreeMap<String, Entry>>,
    getter: Getter,
    floor: Duration,
    ceiling: Duration,
    /// Report-triggered fetches of one issuer are at least this far apart (seconds).
    refetch_interval: i64,
    /// A number from 0 to 1 for each jittered delay (tests pin it).
    jitter: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl Fetcher {
    pub fn new(c: &FederationConfig) -> Fetcher {
        Fetcher {
            entries: Mutex::new(BTreeMap::new()),
            getter: Getter::new(c.fetch_timeout),
            floor: c.cache_floor,
            ceiling: c.cache_ceiling,
            refetch_interval: c.refetch_interval_seconds(),
            jitter: Box::new(rand::random::<f64>),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic elsewhere leaves plain data behind: keep using it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self, name: &str) -> FetchStatus {
        match self.lock().get(name) {
            Some(e) => FetchStatus {
                state: e.breaker.state(),
                key_count: e.keys.len(),
                kids: e.keys.iter().map(|k| k.kid.clone()).collect(),
                last_success: e.last_success,
                last_error: e.last_error.clone(),
                next_fetch: Some(e.next_at),
            },
            None => FetchStatus {
                state: CircuitState::Closed,
                key_count: 0,
                kids: Vec::new(),
                last_success: None,
                last_error: None,
                next_fetch: None,
            },
        }
    }

    pub fn keys(&self, name: &str) -> Arc<Vec<FederatedKey>> {
        self.lock()
            .get(name)
            .map(|e| e.keys.clone())
            .unwrap_or_default()
    }

    /// A filter saw a token of `iss` signed with `kid`, which its pushed keys lack.
    /// Schedules a fetch of that issuer, at once unless a report-triggered one ran
    /// within the refetch interval. Only issuers this replica fetches for are known
    /// (one added in the last second is not yet).
    pub fn unknown_kid(&self, iss: &str, kid: &str, now: i64) -> UnknownKidOutcome {
        let mut entries = self.lock();
        let Some(e) = entries.values_mut().find(|e| e.issuer.issuer() == iss) else {
            return UnknownKidOutcome::Ignored;
        };
        if e.keys.iter().any(|k| k.kid == kid) {
            // The filter is behind: the snapshot it is about to get carries the key.
            return UnknownKidOutcome::Held;
        }
        if e.refetch.report(self.refetch_interval, now) {
            UnknownKidOutcome::Triggered
        } else {
            UnknownKidOutcome::Suppressed
        }
    }

    pub fn forget(&self, name: &str, metrics: &Metrics) {
        self.lock().remove(name);
        metrics.forget_issuer(name);
    }

    /// Brings the entries in line with `issuers` (an issuer deleted and added again
    /// with other settings starts afresh), then fetches every due one, concurrently.
    pub async fn step(
        &self,
        issuers: &[TrustedIssuer],
        urls: UrlPolicy,
        now: i64,
        metrics: &Metrics,
    ) {
        let jobs: Vec<Job> = {
            let mut entries = self.lock();
            let gone: Vec<String> = entries
                .keys()
                .filter(|n| !issuers.iter().any(|i| i.name() == n.as_str()))
                .cloned()
                .collect();
            for n in gone {
                entries.remove(&n);
                metrics.forget_issuer(&n);
            }
            for i in issuers {
                match entries.get(i.name()) {
                    Some(e) if e.issuer == *i => {}
                    _ => {
                        entries.insert(i.name().to_string(), Entry::new(i.clone(), now));
                    }
                }
            }
            entries
                .iter_mut()
                .filter(|(_, e)| e.due(now))
                .filter_map(|(name, e)| {
                    if !e.breaker.allow(now) {
                        e.next_at = e.breaker.retry_at().unwrap_or(now + 1);
                        return None;
                    }
                    e.refetch.started(now);
                    Some(Job {
                        name: name.clone(),
                        issuer: e.issuer.clone(),
                        jwks_uri: e.jwks_uri.clone(),
                        etag: e.etag.clone(),
                    })
                })
                .collect()
        };
        let runs = jobs.into_iter().map(|job| {
            let getter = self.getter.clone();
            let (floor, ceiling) = (self.floor, self.ceiling);
            async move {
                let name = job.name.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || fetch(&getter, &job, urls, floor, ceiling))
                        .await
                        .unwrap_or_else(|e| Outcome::Failed(format!("fetch task: {e}")));
                (name, outcome)
            }
        });
        let outcomes = futures_util::future::join_all(runs).await;
        let mut entries = self.lock();
        for (name, outcome) in outcomes {
            if let Some(e) = entries.get_mut(&name) {
                self.apply(&name, e, outcome, now, metrics);
            }
        }
    }

    fn apply(&self, name: &str, e: &mut Entry, outcome: Outcome, now: i64, metrics: &Metrics) {
        let lifetime = match outcome {
            Outcome::Fresh {
                keys,
                etag,
                jwks_uri,
                lifetime,
            } => {
                e.keys = Arc::new(keys);
                e.etag = etag;
                e.jwks_uri = Some(jwks_uri);
                lifetime
            }
            Outcome::Unchanged { lifetime } => lifetime,
            Outcome::Failed(why) => {
                let why = bounded(why);
                tracing::warn!(issuer = name, error = %why, "federated key fetch failed; keeping the last good keys");
                e.last_error = Some(why);
                e.next_at = e.breaker.on_failure(now, (self.jitter)());
                if matches!(e.issuer.source(), KeySource::Discovery(_)) {
                    e.jwks_uri = None;
                }
                metrics.issuer_fetch_failed(name);
                metrics.issuer_state(name, e.breaker.state() == CircuitState::Open, e.keys.len());
                return;
            }
        };
        e.last_success = Some(now);
        e.last_error = None;
        // Refreshes spread over the last tenth of the lifetime.
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4);
        let refresh = secs - (secs - jittered(secs, (self.jitter)())) / 5;
        e.next_at = e.breaker.on_success(now).unwrap_or(now + refresh.max(1));
        metrics.issuer_state(name, false, e.keys.len());
    }
}

/// One fetch: discovery first when the JWKS location is not known yet, then the JWKS
/// (conditional on the held set's `ETag`).
fn fetch(
    getter: &Getter,
    job: &Job,
    urls: UrlPolicy,
    floor: Duration,
    ceiling: Duration,
) -> Outcome {
    let jwks_uri = match (job.issuer.source(), &job.jwks_uri) {
        (KeySource::Jwks(u), _) | (KeySource::Discovery(_), Some(u)) => u.clone(),
        (KeySource::Discovery(d), None) => {
            if let Err(e) = fetchable(d, urls) {
                return Outcome::Failed(e);
            }
            match getter.get(d.as_str(), None) {
                Ok(Answer::Body { bytes, .. }) => {
                    match parse_discovery(&bytes, job.issuer.issuer(), &urls) {
                        Ok(u) => u,
                        Err(e) => return Outcome::Failed(e.to_string()),
                    }
                }
                Ok(Answer::NotModified { .. }) => {
                    return Outcome::Failed("discovery: unexpected 304".into())
                }
                Err(e) => return Outcome::Failed(format!("discovery: {e}")),
            }
        }
    };
    if let Err(e) = fetchable(&jwks_uri, urls) {
        return Outcome::Failed(e);
    }
    // The ETag is only worth sending to the URL it came from.
    let etag = job
        .jwks_uri
        .as_ref()
        .filter(|u| **u == jwks_uri)
        .and(job.etag.as_deref());
    match getter.get(jwks_uri.as_str(), etag) {
        Ok(Answer::NotModified { cache_control }) if etag.is_some() => Outcome::Unchanged {
            lifetime: cache_lifetime(cache_control.as_deref(), floor, ceiling),
        },
        Ok(Answer::NotModified { .. }) => {
            Outcome::Failed("jwks: 304 to an unconditional request".into())
        }
        Ok(Answer::Body {
            bytes,
            etag,
            cache_control,
        }) => match parse_jwks(&bytes, job.issuer.algorithms()) {
            Ok(keys) => Outcome::Fresh {
                keys,
                etag,
                jwks_uri,
                lifetime: cache_lifetime(cache_control.as_deref(), floor, ceiling),
            },
            Err(e) => Outcome::Failed(format!("jwks: {e}")),
        },
        Err(e) => Outcome::Failed(format!("jwks: {e}")),
    }
}

/// Errors quote what a provider sent (an issuer, a kid): at most `MAX_ERROR_CHARS` of
/// it reach the log and the status.
pub const MAX_ERROR_CHARS: usize = 300;

fn bounded(why: String) -> String {
    match why.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &why[..at]),
        None => why,
    }
}

/// http URLs stored while allowed are refused once the setting is off.
fn fetchable(u: &FetchUrl, urls: UrlPolicy) -> Result<(), String> {
    if u.is_https() || urls.allow_http {
        Ok(())
    } else {
        Err(format!(
            "{u}: https required (federation.allow_insecure_http is off)"
        ))
    }
}

#[cfg(test)]
mod tests;
