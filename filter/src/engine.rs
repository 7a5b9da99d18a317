//! The filter's decision for one request, host-agnostic: the proxy-wasm glue hands in
//! the method, path, `Authorization` value and the time, and acts on the outcome.

use std::rc::Rc;

use crate::cache::VerifiedCache;
use crate::claims::Claims;
use crate::config::{Config, ForwardedClaim};
use crate::deny::Denial;
use crate::jwks::KeySet;
use crate::jwt;
use crate::rules::Policy;

#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
}

/// A token whose signature checked out: its claims, and the values of the configured
/// forwarded headers, worked out once per distinct token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub claims: Claims,
    /// One value per `Config::forward` entry, in order; `None` removes the header.
    pub headers: Vec<Option<String>>,
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
}

#[derive(Debug)]
pub struct Engine {
    config: Config,
    cache: VerifiedCache<Verified>,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let cache = VerifiedCache::new(config.cache_entries);
        Engine { config, cache }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn forwarded(&self) -> &[ForwardedClaim] {
        &self.config.forward
    }

    /// Replaces the key set. Cached verifications are dropped with the old keys, so a
    /// key removed from the set stops verifying at once.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.config.keys = keys;
        self.cache.clear();
    }

    pub fn check(&mut self, req: &Request<'_>, now: i64) -> Outcome {
        let Engine { config, cache } = self;
        let requirements = match config.routes.policy_for(req.method, req.path) {
            Policy::Anonymous => {
                return Outcome {
                    verdict: Verdict::Anonymous,
                    cache: CacheUse::NotUsed,
                }
            }
            Policy::Token(r) => r,
        };
        let mut used = CacheUse::NotUsed;
        let result = (|| {
            let auth = req.authorization.ok_or(Denial::MissingToken)?;
            // Measured on the raw value so nothing large is even split.
            if auth.len() > config.max_token_bytes + "Bearer ".len() {
                return Err(Denial::TooLarge);
            }
            let token = jwt::bearer(auth).ok_or(Denial::MissingToken)?;
            let verified = match cache.get(token, now) {
                Some(v) => {
                    used = CacheUse::Hit;
                    v
                }
                None => {
                    used = CacheUse::Miss;
                    let parsed = jwt::parse(token)?;
                    let key = config.keys.get(&parsed.kid).ok_or(Denial::UnknownKey)?;
                    if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
                        return Err(Denial::BadSignature);
                    }
                    let claims = parsed.claims()?;
                    claims.check(&config.claim_rules, now)?;
                    let headers = config
                        .forward
                        .iter()
                        .map(|f| claims.header_value(&f.claim))
                        .collect();
                    let v = Rc::new(Verified { claims, headers });
                    cache.insert(token, v.clone());
                    v
                }
            };
            verified.claims.check(&config.claim_rules, now)?;
            requirements.check(&verified.claims)?;
            Ok(verified)
        })();
        let verdict = match result {
            Ok(v) => Verdict::Allow(v),
            Err(d) => Verdict::Deny(d),
        };
        Outcome {
            verdict,
            cache: used,
        }
    }
}

#[cfg(test)]
mod tests;
