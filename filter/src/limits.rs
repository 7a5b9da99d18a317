//! Local rate limiting (docs/filter.md, "Rate limits"): which policies apply to a request, whose bucket it
//! draws from, and the answer's header fields. Buckets live in a fixed table of
//! `capacity` slots that every worker shares (proxy-wasm shared data in Envoy, a map in
//! tests), so memory is bounded whatever the number of distinct keys.
//!
//! A key hashes to two candidate slots; every slot holds a GCRA TAT and the fingerprint
//! of the key that last raised it. A request is decided by the lower of its key's two
//! TATs and, when admitted, raises both to the key's new TAT (see `Limiter::draw`).
//! Another key sharing a slot can only raise it, so a crowded table makes buckets
//! stricter, never looser: the limit holds for every key even beyond capacity, and
//! such decisions are counted. An idle slot (TAT in the past) is a full bucket.

use std::hash::Hasher;
use std::rc::Rc;

use siphasher::sip::SipHasher13;

use meshauth_wire::limits::{KeyPart, LimitPolicy, Quota, KEY_SEPARATOR};

use crate::bucket::{ceil_seconds, Decision, Gcra};
use crate::claims::Claims;

pub const DEFAULT_CAPACITY: u32 = 65_536;
pub const MAX_CAPACITY: u32 = 4_194_304;
/// Compare-and-swap attempts before a request is refused as contended.
pub const MAX_CAS_ATTEMPTS: u32 = 8;

/// One slot's content: which key (a 64-bit fingerprint) and its bucket's TAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub fingerprint: u64,
    pub tat: u64,
}

impl Slot {
    pub const BYTES: usize = 16;

    pub fn encode(&self) -> [u8; Slot::BYTES] {
        let mut out = [0u8; Slot::BYTES];
        let (fp, tat) = out.split_at_mut(8);
        fp.copy_from_slice(&self.fingerprint.to_le_bytes());
        tat.copy_from_slice(&self.tat.to_le_bytes());
        out
    }

    /// Anything but 16 bytes reads as an empty slot.
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let fp: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let tat: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        (bytes.len() == Slot::BYTES).then_some(Slot {
            fingerprint: u64::from_le_bytes(fp),
            tat: u64::from_le_bytes(tat),
        })
    }
}

/// The shared slot table: Envoy's shared data in the filter, a map in tests.
pub trait Slots {
    /// The slot's content and its compare-and-swap token (`None`: never written).
    fn read(&self, index: u32) -> (Option<Slot>, Option<u32>);
    /// Writes only if the slot is unchanged since the read that gave `cas`.
    fn write(&self, index: u32, slot: Slot, cas: Option<u32>) -> Result<(), Conflict>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// What a request offers for building keys; lookups are lazy, so a policy that does
/// not key on the client address never asks the host for it.
pub trait Facts {
    fn header(&self, name: &str) -> Option<String>;
    fn client_address(&self) -> Option<String>;
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub capacity: u32,
    /// Whether admitted answers carry `RateLimit` too.
    pub headers_on_allow: bool,
    pub policies: Vec<LimitPolicy>,
    /// Keys slot placement (SipHash-1-3). The glue sets it from a random secret that all
    /// of the process's workers share: with a public placement function a client that
    /// controls a key part could pick values that land on a victim's slots and drain them.
    pub placement_key: [u8; 16],
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            capacity: DEFAULT_CAPACITY,
            headers_on_allow: false,
            policies: Vec::new(),
            placement_key: [0; 16],
        }
    }
}

#[derive(Debug)]
struct Compiled {
    policy: LimitPolicy,
    /// The policy's own quota and its GCRA, worked out once.
    quota: Quota,
    gcra: Gcra,
}

/// The policies in force, compiled.
#[derive(Debug, Default)]
pub struct Limiter {
    capacity: u32,
    placement_key: [u8; 16],
    headers_on_allow: bool,
    policies: Vec<Compiled>,
}

/// A refused request: which policy, and the answer's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub policy: Rc<str>,
    pub headers: Vec<(&'static str, String)>,
    /// True when the refusal came from CAS contention, not from the bucket.
    pub contended: bool,
}

impl Limited {
    /// The error body's `code`.
    pub const CODE: &'static str = "rate_limited";

    /// The error body's `message`.
    pub fn message(&self) -> String {
        format!("rate limit exceeded (policy {:?})", &*self.policy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admitted {
    /// `RateLimit` for the answer, when configured.
    pub header: Option<String>,
    /// Requests that shared a busy slot with another key (the table was full).
    pub shared: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitOutcome {
    Admitted(Admitted),
    Limited(Limited),
}

/// The request as the limiter sees it.
pub struct Subject<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    pub route: &'a str,
    pub claims: Option<&'a Claims>,
    /// The `iss` of the trusted external issuer that issued the token; `None` for the
    /// control plane's own tokens and anonymous requests.
    pub federated_by: Option<&'a str>,
}

impl Limiter {
    /// Merges the plugin configuration's policies with the control plane's: a pushed
    /// policy replaces a default of the same name.
    pub fn new(config: &LimitsConfig, pushed: &[LimitPolicy]) -> Limiter {
        let mut policies: Vec<LimitPolicy> = config
            .policies
            .iter()
            .filter(|d| !pushed.iter().any(|p| p.name == d.name))
            .cloned()
            .collect();
        policies.extend(pushed.iter().cloned());
        Limiter {
            capacity: config.capacity.clamp(1, MAX_CAPACITY),
            placement_key: config.placement_key,
            headers_on_allow: config.headers_on_allow,
            policies: policies
                .into_iter()
                .map(|policy| Compiled {
                    quota: policy.quota(),
                    gcra: Gcra::new(policy.quota()),
                    policy,
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|c| c.policy.name.as_str())
    }

    /// Applies every matching policy in order; the first that refuses decides (buckets
    /// of the policies before it have been drawn from).
    pub fn check(
        &self,
        slots: &impl Slots,
        subject: &Subject<'_>,
        facts: &impl Facts,
        now_ns: u64,
    ) -> LimitOutcome {
        // The admitted policy with the least left, for `RateLimit` on the answer.
        let mut tightest: Option<(Decision, &Compiled)> = None;
        let mut shared = 0;
        for c in &self.policies {
            if !c.policy.matches.matches(subject.method, subject.path) {
                continue;
            }
            let (fingerprint, value) = self.key(c, subject, facts);
            let (quota, gcra) = match value.as_deref().map(|v| c.policy.quota_for(v)) {
                Some(q) if q != c.quota => (q, Gcra::new(q)),
                _ => (c.quota, c.gcra),
            };
            let Some((decision, was_shared)) = self.draw(slots, fingerprint, &gcra, now_ns) else {
                return LimitOutcome::Limited(Limited {
                    policy: c.policy.name.as_str().into(),
                    headers: Vec::new(),
                    contended: true,
                });
            };
            shared += u32::from(was_shared);
            if !decision.allowed {
                return LimitOutcome::Limited(Limited {
                    policy: c.policy.name.as_str().into(),
                    headers: refusal_headers(&c.policy.name, &quota, &decision),
                    contended: false,
                });
            }
            if self.headers_on_allow
                && tightest.is_none_or(|(d, _)| decision.remaining < d.remaining)
            {
                tightest = Some((decision, c));
            }
        }
        LimitOutcome::Admitted(Admitted {
            header: tightest.map(|(d, c)| ratelimit_field(&c.policy.name, &d)),
            shared,
        })
    }

    /// The key's fingerprint and, when the policy has overrides, its value as override
    /// keys spell it.
    fn key(
        &self,
        c: &Compiled,
        subject: &Subject<'_>,
        facts: &impl Facts,
    ) -> (u64, Option<String>) {
        let want_value = !c.policy.overrides.is_empty();
        // The policy's name first, so equal key values under two policies are two buckets.
        let mut h = SipHasher13::new_with_key(&self.placement_key);
        h.write(c.policy.name.as_bytes());
        h.write_u8(0xff);
        let mut value = String::new();
        for (i, part) in c.policy.key.iter().enumerate() {
            // A federated token's claims are qualified by its issuer (all but `iss`,
            // which is the issuer): one provider's `sub` never draws from another's
            // bucket, nor from ours, nor takes an override written for ours.
            let scope = match part {
                KeyPart::Claim(name) if name != "iss" => subject.federated_by,
                _ => None,
            };
            let text: Option<std::borrow::Cow<'_, str>> = match part {
                // A string claim (the usual `sub`, `client_id`) is borrowed, not copied.
                KeyPart::Claim(name) => subject.claims.and_then(|cl| match cl.raw.get(name) {
                    Some(serde_json::Value::String(s)) => Some(s.as_str().into()),
                    Some(_) => cl.header_value(name).map(Into::into),
                    None => None,
                }),
                KeyPart::Header(name) => facts.header(name).map(Into::into),
                KeyPart::ClientAddress => facts
                    .client_address()
                    .map(|a| strip_port(&a).to_string().into()),
                KeyPart::Route => Some(subject.route.into()),
            };
            // A missing part is the empty value: every such request shares one bucket,
            // which is the strict choice.
            let text = text.unwrap_or_default();
            if let Some(iss) = scope {
                h.write(iss.as_bytes());
                h.write_u8(0xfe); // not UTF-8 either: no value of ours hashes the same
            }
            h.write(text.as_bytes());
            h.write_u8(0xff); // no UTF-8 text contains 0xff: parts can't run together
            if want_value {
                if i > 0 {
                    value.push(KEY_SEPARATOR);
                }
                if let Some(iss) = scope {
                    // As overrides spell it: the `iss`, a space (an `iss` has none), the value.
                    value.push_str(iss);
                    value.push(' ');
                }
                value.push_str(&text);
            }
        }
        (h.finish(), want_value.then_some(value))
    }

    /// Draws one request from the key's bucket. `None`: CAS contention outlasted the
    /// retries. The flag tells whether another key's traffic decided it (the table is
    /// crowded).
    ///
    /// Both candidates carry, at least, the TAT of every key that draws from them: each
    /// admission raises both to the key's new TAT, and nothing ever lowers a slot. So
    /// the lower of the two is a bound on this key's own bucket that other keys can
    /// only make stricter (a conservative-update count-min sketch of the buckets), and
    /// no key ever gets more than its quota, however crowded the table. Both are read
    /// before either is written, and a write is a compare-and-swap against that read,
    /// so an admission is final only when neither changed meanwhile; a retry after a
    /// half-written attempt leaves that attempt's charge behind (stricter, never looser).
    fn draw(&self, slots: &impl Slots, fp: u64, gcra: &Gcra, now: u64) -> Option<(Decision, bool)> {
        let cap = u64::from(self.capacity);
        let first = u32::try_from(fp % cap).unwrap_or(0);
        let second = u32::try_from(fp.rotate_left(32) % cap).unwrap_or(0);
        'attempt: for _ in 0..MAX_CAS_ATTEMPTS {
            let a = (first, slots.read(first));
            let b = (first != second).then(|| (second, slots.read(second)));
            let lower = match &b {
                Some(b) if tat(&b.1 .0) < tat(&a.1 .0) => &b.1 .0,
                _ => &a.1 .0,
            };
            let was_shared = !owns(lower, fp) && !free(lower, now);
            let (decision, next) = gcra.decide(tat(lower), now);
            let Some(next) = next else {
                return Some((decision, was_shared));
            };
            for (index, (slot, cas)) in [Some(a), b].into_iter().flatten() {
                // Already at or past the new TAT: nothing to raise. The lower slot is
                // always below it (next > its TAT), so it is always compared and swapped.
                if tat(&slot) >= next {
                    continue;
                }
                let written = Slot {
                    fingerprint: fp,
                    tat: next,
                };
                if slots.write(index, written, cas).is_err() {
                    continue 'attempt;
                }
            }
            return Some((decision, was_shared));
        }
        None
    }
}

fn owns(slot: &Option<Slot>, fp: u64) -> bool {
    slot.is_some_and(|s| s.fingerprint == fp)
}

fn free(slot: &Option<Slot>, now: u64) -> bool {
    slot.is_none_or(|s| s.tat <= now)
}

fn tat(slot: &Option<Slot>) -> u64 {
    slot.map_or(0, |s| s.tat)
}

/// `203.0.113.7:5555` → `203.0.113.7`, `[2001:db8::1]:443` → `2001:db8::1`.
fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => addr,
    }
}

/// `RateLimit-Policy: "name";q=100;w=60` (IETF draft-ietf-httpapi-ratelimit-headers).
pub fn policy_field(name: &str, q: &Quota) -> String {
    format!("\"{name}\";q={};w={}", q.rate, q.window_seconds)
}

/// `RateLimit: "name";r=0;t=30`.
pub fn ratelimit_field(name: &str, d: &Decision) -> String {
    format!(
        "\"{name}\";r={};t={}",
        d.remaining,
        ceil_seconds(if d.allowed {
            d.reset_ns
        } else {
            d.retry_after_ns
        })
    )
}

fn refusal_headers(name: &str, q: &Quota, d: &Decision) -> Vec<(&'static str, String)> {
    let retry = ceil_seconds(d.retry_after_ns).max(1);
    vec![
        ("retry-after", retry.to_string()),
        ("ratelimit-policy", policy_field(name, q)),
        ("ratelimit", format!("\"{name}\";r=0;t={retry}")),
    ]
}

#[cfg(test)]
mod tests;
