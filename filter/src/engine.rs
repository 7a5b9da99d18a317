//! The filter's decision for one request, host-agnostic: the proxy-wasm glue hands in
//! the method, path, `Authorization` value and the time, and acts on the outcome.

use std::rc::Rc;

use crate::cache::VerifiedCache;
use crate::claims::Claims;
use crate::config::{Config, ForwardedClaim};
use crate::deny::Denial;
use crate::federated::report::KidReports;
use crate::federated::Federation;
use crate::jwks::KeySet;
use crate::jwt;
use crate::limits::{Facts, LimitOutcome, Limiter, Slots, Subject};
use crate::revocation::{Check, Revocations};
use crate::rules::strip_query;
use crate::rules::{IssuedBy, Policy};
use crate::sync::{BeforeFirst, OnUnconfirmed};
use meshauth_wire::federation::FederatedIssuer;
use meshauth_wire::limits::LimitPolicy;
use meshauth_wire::sync::{Delta, Snapshot, UnknownKidReport};
use meshauth_wire::JwkSet;

#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// More than one `Authorization` header: we would check one and an upstream that
    /// reads the forwarded request could read another.
    pub repeated_authorization: bool,
}

/// A token whose signature checked out: its claims, and the headers forwarded with
/// it, worked out once per distinct token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub claims: Claims,
    /// The headers to set upstream, with their values: from `Config::forward` for our
    /// own tokens, from the issuer's `forward_claims` for a federated one. Every other
    /// header of `Engine::forwarded_headers` is taken off the request.
    pub headers: Vec<(String, String)>,
    /// The name a federated token's issuer was registered under, for routes that
    /// require issuers (`None`: ours, or a federated issuer sent without a name).
    pub issuer_name: Option<String>,
    /// Issued by a trusted external issuer (its rules apply, and only revocation rules
    /// scoped to it: see `Revocations::check`).
    pub federated: bool,
}

impl crate::cache::Expiring for Verified {
    fn exp(&self) -> i64 {
        self.claims.exp
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The route needs no token.
    Anonymous,
    Allow(Rc<Verified>),
    /// Valid, but its `jti` is a Bloom hit: ask the control plane, then `confirm`.
    Confirm {
        jti: String,
        verified: Rc<Verified>,
    },
    Deny(Denial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    NotUsed,
    Hit,
    Miss,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub cache: CacheUse,
    /// The route that matched (`None`: the default), for the rate-limit check.
    pub route: Option<usize>,
}

#[derive(Debug)]
pub struct Engine {
    config: Config,
    cache: VerifiedCache<Verified>,
    revocations: Revocations,
    /// (epoch, version) of the snapshot in force.
    applied: Option<(String, u64)>,
    /// When the control plane issued what is in force (the snapshot, or a later delta).
    issued_at: i64,
    jwks: JwkSet,
    /// False until a first snapshot when the configuration says to deny before it.
    ready: bool,
    limiter: Limiter,
    /// The control plane's policies in force, to rebuild the limiter only on change.
    pushed_limits: Vec<LimitPolicy>,
    /// Trusted external issuers in force, prepared, and as pushed (to rebuild on change).
    federation: Federation,
    pushed_issuers: Vec<FederatedIssuer>,
    /// Unknown kids of trusted issuers, throttled, for the root context to report.
    kid_reports: KidReports,
    /// Every header a token may set (the configuration's and each issuer's), once.
    forwarded_headers: Vec<String>,
}

/// The configuration's forwarded headers and the issuers', without repeats.
fn all_forwarded(config: &Config, federation: &Federation) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let ours = config.forward.iter().map(|f| f.header.as_str());
    for h in ours.chain(federation.headers()) {
        if !all.iter().any(|a| a == h) {
            all.push(h.to_owned());
        }
    }
    all
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let cache = VerifiedCache::new(config.cache_entries);
        let ready = config
            .sync
            .as_ref()
            .is_none_or(|s| s.before_first == BeforeFirst::Bootstrap);
        let limiter = Limiter::new(&config.limits, &[]);
        let federation = Federation::default();
        Engine {
            limiter,
            pushed_limits: Vec::new(),
            forwarded_headers: all_forwarded(&config, &federation),
            federation,
            pushed_issuers: Vec::new(),
            kid_reports: KidReports::default(),
            config,
            cache,
            revocations: Revocations::default(),
            applied: None,
            issued_at: i64::MIN,
            jwks: JwkSet::default(),
            ready,
        }
    }

    /// Puts a verified snapshot in force. `Ok(false)`: not newer than the one we have.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> Result<bool, String> {
        if let Some((epoch, version)) = &self.applied {
            if *epoch == snap.epoch && snap.version <= *version {
                return Ok(false);
            }
            // Epochs have no order of their own, so a snapshot of another epoch replaces
            // ours only if it was issued later: an old epoch's snapshot, replayed, would
            // otherwise roll the filter back and lift revocations made since.
            if *epoch != snap.epoch && snap.issued_at <= self.issued_at {
                return Err(format!(
                    "a snapshot of epoch {:?} issued at {}, not after the one held ({})",
                    snap.epoch, snap.issued_at, self.issued_at
                ));
            }
        }
        let keys = KeySet::from_jwks(&snap.jwks).map_err(|e| format!("snapshot key set: {e}"))?;
        if snap.jwks != self.jwks {
            self.set_keys(keys);
            self.jwks = snap.jwks;
        }
        self.revocations
            .replace(Revocations::new(snap.revoked_jti, snap.rules));
        if snap.issuers != self.pushed_issuers {
            let (mut federation, mut skipped) =
                Federation::new(&snap.issuers, self.config.claim_rules.issuer.as_deref());
            let (prefix, own) = (&self.config.reserved_header_prefix, &self.config.forward);
            // Compared as CGI-style upstreams read them (`_` as `-`): an issuer's header
            // must not fold onto one of the filter's own.
            let fold = |h: &str| h.replace('_', "-");
            skipped.extend(federation.keep_headers(|h| {
                !prefix.is_empty()
                    && h.starts_with(prefix.as_str())
                    && !own.iter().any(|f| fold(&f.header) == fold(h))
            }));
            for s in skipped {
                log::warn!("meshauth: federated key or issuer left out: {s}");
            }
            self.forwarded_headers = all_forwarded(&self.config, &federation);
            self.federation = federation;
            self.pushed_issuers = snap.issuers;
            let federation = &self.federation;
            self.kid_reports.retain(|iss| federation.trusts(iss));
            // Verifications under keys no longer pushed must not outlive them; the
            // control plane's own tokens depend on its keys only (`set_keys`), so a
            // provider churning its key set cannot flush them from every filter.
            self.cache.retain(|v| !v.federated);
        }
        if snap.limits != self.pushed_limits {
            self.limiter = Limiter::new(&self.config.limits, &snap.limits);
            self.pushed_limits = snap.limits;
        }
        self.applied = Some((snap.epoch, snap.version));
        self.issued_at = snap.issued_at;
        self.ready = true;
        Ok(true)
    }

    /// Applies a delta on top of the version in force. `Ok(false)`: already applied.
    /// `Err`: it does not start from the version held (a gap; a full snapshot follows).
    pub fn apply_delta(&mut self, delta: Delta) -> Result<bool, String> {
        let Some((epoch, version)) = &self.applied else {
            return Err("a delta before any snapshot".into());
        };
        if *epoch != delta.epoch {
            return Err("a delta from another epoch".into());
        }
        if delta.version <= *version {
            return Ok(false);
        }
        if delta.base_version != *version {
            return Err(format!(
                "a delta from version {} while holding {version}",
                delta.base_version
            ));
        }
        self.revocations.add(delta.revoked_jti, delta.rules);
        self.applied = Some((delta.epoch, delta.version));
        self.issued_at = self.issued_at.max(delta.issued_at);
        Ok(true)
    }

    /// The unknown-kid reports queued since the last call (at most one per trusted
    /// issuer per second), for the root context to send to the control plane.
    pub fn take_kid_reports(&mut self) -> Vec<UnknownKidReport> {
        self.kid_reports.take()
    }

    /// (epoch, version) of the snapshot in force, if any.
    pub fn applied(&self) -> Option<(&str, u64)> {
        self.applied.as_ref().map(|(e, v)| (e.as_str(), *v))
    }

    /// How a `Verdict::Confirm` ends. `answer`: the control plane's signed verdict, which
    /// is remembered until `exp`; `None` when none counts (no callout, past the deadline,
    /// not signed for the question), and then `sync.on_unconfirmed` decides.
    pub fn settle(
        &mut self,
        jti: &str,
        answer: Option<bool>,
        verified: &Verified,
        now: i64,
    ) -> Result<(), Denial> {
        let allow_unconfirmed = self
            .config
            .sync
            .as_ref()
            .is_some_and(|c| c.on_unconfirmed == OnUnconfirmed::Allow);
        let revoked = match answer {
            Some(revoked) => {
                self.revocations.confirm(jti, revoked, verified.claims.exp);
                // A token minted by exchange has two ids (its own and `ext.jti`): both
                // may be Bloom hits, and only one was asked. The other is asked on the
                // next request; until then it counts as unconfirmed.
                revoked
                    || match self.revocations.check(
                        &verified.claims,
                        self.federation.verifier(verified),
                        now,
                    ) {
                        Check::Clear => false,
                        Check::Revoked => true,
                        Check::Unconfirmed(_) => !allow_unconfirmed,
                    }
            }
            None => !allow_unconfirmed,
        };
        if revoked {
            Err(Denial::Revoked)
        } else {
            Ok(())
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every header a verified token may set upstream: a client's copy of any of them
    /// is taken off every request.
    pub fn forwarded_headers(&self) -> &[String] {
        &self.forwarded_headers
    }

    /// Replaces the key set. Cached verifications are dropped with the old keys, so a
    /// key removed from the set stops verifying at once.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.config.keys = keys;
        self.cache.clear();
    }

    /// Whether any rate-limit policy is in force (if not, `limit` need not be called).
    pub fn limits_enabled(&self) -> bool {
        !self.limiter.is_empty()
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The rate-limit check for a request the token checks let through (`route` as
    /// `check` found it).
    pub fn limit(
        &self,
        slots: &impl Slots,
        req: &Request<'_>,
        route: Option<usize>,
        verified: Option<&Verified>,
        facts: &impl Facts,
        now_ns: u64,
    ) -> LimitOutcome {
        let subject = Subject {
            method: req.method,
            path: strip_query(req.path),
            route: self.config.routes.name(route),
            claims: verified.map(|v| &v.claims),
            federated_by: verified
                .filter(|v| v.federated)
                .and_then(|v| v.claims.iss.as_deref()),
        };
        self.limiter.check(slots, &subject, facts, now_ns)
    }

    pub fn check(&mut self, req: &Request<'_>, now: i64) -> Outcome {
        let Engine {
            config,
            cache,
            revocations,
            ready,
            federation,
            kid_reports,
            ..
        } = self;
        let route = config.routes.find(req.method, req.path);
        if config.reject_ambiguous_paths {
            // Both ways a path can mean one route here and another upstream, one refusal.
            let why = crate::path::ambiguity(req.path).or_else(|| {
                crate::path::case_folded(req.path)
                    .is_some_and(|f| config.routes.find(req.method, &f) != route)
                    .then_some("the path has a letter that Unicode case folding turns into ASCII, and folded it matches another route")
            });
            if let Some(why) = why {
                return Outcome {
                    verdict: Verdict::Deny(Denial::BadPath(why)),
                    cache: CacheUse::NotUsed,
                    route: None,
                };
            }
        }
        let requirements = match config.routes.policy(route) {
            Policy::Anonymous => {
                return Outcome {
                    verdict: Verdict::Anonymous,
                    cache: CacheUse::NotUsed,
                    route,
                }
            }
            Policy::Token(r) => r,
        };
        let mut used = CacheUse::NotUsed;
        if !*ready {
            return Outcome {
                verdict: Verdict::Deny(Denial::NotReady),
                cache: used,
                route,
            };
        }
        let result = (|| {
            if req.repeated_authorization {
                return Err(Denial::Malformed("more than one Authorization header"));
            }
            let auth = req.authorization.ok_or(Denial::MissingToken)?;
            // Measured on the raw value so nothing large is even split.
            if auth.len() > config.max_token_bytes + "Bearer ".len() {
                return Err(Denial::TooLarge);
            }
            let token = jwt::bearer(auth).ok_or(Denial::MissingToken)?;
            let verified = match cache.get(token, now) {
                Some(v) => {
                    used = CacheUse::Hit;
                    // Time passes for a cached verification too (`exp`, `nbf`).
                    if v.federated {
                        federation.recheck(&v.claims, now)?;
                    } else {
                        v.claims.check(&config.claim_rules, now)?;
                    }
                    v
                }
                None => {
                    used = CacheUse::Miss;
                    // Which issuer a token claims decides which rules verify it; the
                    // control plane's own issuer is never a federated one.
                    let trusted_iss = if federation.is_empty() {
                        None
                    } else {
                        crate::federated::unverified_iss(token).filter(|iss| federation.trusts(iss))
                    };
                    let federated = trusted_iss.is_some();
                    let v = if let Some(iss) = &trusted_iss {
                        let claims = federation.verify(token, now).inspect_err(|d| {
                            // The provider may have rotated: ask the control plane to
                            // fetch its keys now. Throttled before the kid is even read.
                            if *d == Denial::UnknownKey && kid_reports.due(iss, now) {
                                if let Some(kid) = crate::federated::unverified_kid(token) {
                                    kid_reports.note(iss, &kid, now);
                                }
                            }
                        })?;
                        // The issuer's forwarded claims, never the configuration's: a
                        // header means one issuer's claim to the upstream.
                        let headers = federation.forwarded(&claims)?;
                        let issuer_name = federation.name_of(iss).map(str::to_owned);
                        Verified {
                            claims,
                            headers,
                            issuer_name,
                            federated,
                        }
                    } else {
                        let parsed = jwt::parse(token)?;
                        let key = config.keys.get(&parsed.kid).ok_or(Denial::UnknownKey)?;
                        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
                            return Err(Denial::BadSignature);
                        }
                        let claims = parsed.claims()?;
                        claims.check(&config.claim_rules, now)?;
                        let headers = forwarded_by_config(&config.forward, &claims)?;
                        Verified {
                            claims,
                            headers,
                            issuer_name: None,
                            federated,
                        }
                    };
                    let v = Rc::new(v);
                    cache.insert(token, v.clone());
                    v
                }
            };
            let by = if verified.federated {
                IssuedBy::Federated(verified.issuer_name.as_deref())
            } else {
                IssuedBy::Own
            };
            requirements.check(&verified.claims, by)?;
            Ok(verified)
        })();
        let verdict = match result {
            Ok(v) => match revocations.check(&v.claims, federation.verifier(&v), now) {
                Check::Clear => Verdict::Allow(v),
                Check::Revoked => Verdict::Deny(Denial::Revoked),
                Check::Unconfirmed(jti) => Verdict::Confirm { jti, verified: v },
            },
            Err(d) => Verdict::Deny(d),
        };
        Outcome {
            verdict,
            cache: used,
            route,
        }
    }
}

/// The configuration's forwarded headers of one of our tokens, with their values.
fn forwarded_by_config(
    forward: &[ForwardedClaim],
    claims: &Claims,
) -> Result<Vec<(String, String)>, Denial> {
    let mut out = Vec::with_capacity(forward.len());
    for f in forward {
        if let Some(v) = claims.forwarded_value(&f.claim)? {
            out.push((f.header.clone(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
