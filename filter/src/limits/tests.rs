use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * SECOND;

/// Shared data as Envoy keeps it: a value and a CAS token that changes on every write.
#[derive(Default)]
struct Table {
    slots: RefCell<HashMap<u32, (Slot, u32)>>,
    /// Writes to refuse before accepting, to exercise the retry path.
    conflicts: Cell<u32>,
}

impl Slots for Table {
    fn read(&self, index: u32) -> (Option<Slot>, Option<u32>) {
        match self.slots.borrow().get(&index) {
            Some((s, cas)) => (Some(*s), Some(*cas)),
            None => (None, None),
        }
    }

    fn write(&self, index: u32, slot: Slot, cas: Option<u32>) -> Result<(), Conflict> {
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            return Err(Conflict);
        }
        let mut slots = self.slots.borrow_mut();
        let current = slots.get(&index).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(Conflict);
        }
        slots.insert(index, (slot, current.unwrap_or(0) + 1));
        Ok(())
    }
}

#[derive(Default)]
struct Req {
    headers: Vec<(&'static str, String)>,
    address: Option<String>,
}

impl Facts for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
    fn client_address(&self) -> Option<String> {
        self.address.clone()
    }
}

fn policy(json: serde_json::Value) -> LimitPolicy {
    let p: LimitPolicy = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

fn limiter(policies: Vec<LimitPolicy>, capacity: u32) -> Limiter {
    Limiter::new(
        &LimitsConfig {
            capacity,
            headers_on_allow: true,
            policies,
            placement_key: [7; 16],
        },
        &[],
    )
}

fn claims(sub: &str) -> Claims {
    Claims::parse(
        serde_json::json!({"sub": sub, "client_id": "c1", "exp": 9_999_999_999i64, "iat": 1, "jti": "j"})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn subject<'a>(claims: Option<&'a Claims>) -> Subject<'a> {
    Subject {
        method: "GET",
        path: "/api/x",
        route: "api",
        claims,
        federated_by: None,
    }
}

fn admitted(o: &LimitOutcome) -> bool {
    matches!(o, LimitOutcome::Admitted(_))
}

fn per_header(rate: u32, burst: u32) -> Limiter {
    limiter(
        vec![policy(serde_json::json!({
            "name": "per-key", "key": ["header:x-key"], "rate": rate, "burst": burst
        }))],
        1 << 20,
    )
}

fn keyed(key: &str) -> Req {
    Req {
        headers: vec![("x-key", key.to_string())],
        address: None,
    }
}

#[test]
fn refusal_carries_retry_after_and_the_draft_fields() {
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "per-user", "key": ["claim:sub"], "rate": 100, "window_seconds": 60, "burst": 2
        }))],
        1024,
    );
    let t = Table::default();
    let alice = claims("alice");
    let s = subject(Some(&alice));
    let r = Req::default();
    match l.check(&t, &s, &r, T0) {
        LimitOutcome::Admitted(a) => assert_eq!(a.header.as_deref(), Some("\"per-user\";r=1;t=1")),
        other => panic!("{other:?}"),
    }
    assert!(admitted(&l.check(&t, &s, &r, T0)));
    match l.check(&t, &s, &r, T0) {
        LimitOutcome::Limited(lim) => {
            assert_eq!(&*lim.policy, "per-user");
            assert!(!lim.contended);
            assert_eq!(
                lim.headers,
                vec![
                    ("retry-after", "1".to_string()),
                    ("ratelimit-policy", "\"per-user\";q=100;w=60".to_string()),
                    ("ratelimit", "\"per-user\";r=0;t=1".to_string()),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // Another user has a bucket of their own.
    let bob = claims("bob");
    assert!(admitted(&l.check(&t, &subject(Some(&bob)), &r, T0)));
}

fn as_by<'a>(claims: &'a Claims, federated_by: Option<&'a str>) -> Subject<'a> {
    Subject {
        federated_by,
        ..subject(Some(claims))
    }
}

fn token_of(iss: &str, sub: &str) -> Claims {
    Claims::parse(
        serde_json::json!({"iss": iss, "sub": sub, "exp": 9_999_999_999i64, "jti": "j"})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

/// One `sub` from our own issuer and from two providers: three buckets; an override
/// written for ours does not reach a provider's; `claim:iss` keys by issuer.
#[test]
fn a_federated_sub_never_shares_a_bucket_or_an_override_with_anothers() {
    const IDP: &str = "https://idp.example/";
    const OTHER: &str = "https://other.example/";
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "per-user", "key": ["claim:sub"], "rate": 1, "window_seconds": 3600, "burst": 1,
            "overrides": {"mesh": {"rate": 1, "window_seconds": 3600, "burst": 3},
                          "https://idp.example/ vip": {"rate": 1, "window_seconds": 3600, "burst": 2}}
        }))],
        1 << 20,
    );
    let t = Table::default();
    let r = Req::default();
    let own = token_of("https://cp.example", "mesh");
    let idp = token_of(IDP, "mesh");
    let other = token_of(OTHER, "mesh");
    let (own, idp, other) = (&own, &idp, &other);
    // The provider's "mesh" spends its one request...
    assert!(admitted(&l.check(&t, &as_by(idp, Some(IDP)), &r, T0)));
    assert!(!admitted(&l.check(&t, &as_by(idp, Some(IDP)), &r, T0)));
    // ...which neither the other provider's "mesh" nor ours draws from; ours has the
    // override (3), the providers' do not.
    assert!(admitted(&l.check(&t, &as_by(other, Some(OTHER)), &r, T0)));
    assert!(!admitted(&l.check(&t, &as_by(other, Some(OTHER)), &r, T0)));
    for _ in 0..3 {
        assert!(admitted(&l.check(&t, &as_by(own, None), &r, T0)));
    }
    assert!(!admitted(&l.check(&t, &as_by(own, None), &r, T0)));
    // An override for a provider's subject is spelled with its `iss`.
    let vip = &token_of(IDP, "vip");
    for _ in 0..2 {
        assert!(admitted(&l.check(&t, &as_by(vip, Some(IDP)), &r, T0)));
    }
    assert!(!admitted(&l.check(&t, &as_by(vip, Some(IDP)), &r, T0)));

    // `claim:iss`: one bucket per issuer, whatever the subject.
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "per-issuer", "key": ["claim:iss"], "rate": 1, "window_seconds": 3600, "burst": 1
        }))],
        1 << 20,
    );
    let t = Table::default();
    let idp_b = &token_of(IDP, "b");
    assert!(admitted(&l.check(&t, &as_by(idp, Some(IDP)), &r, T0)));
    assert!(!admitted(&l.check(&t, &as_by(idp_b, Some(IDP)), &r, T0)));
    assert!(admitted(&l.check(&t, &as_by(other, Some(OTHER)), &r, T0)));
    assert!(admitted(&l.check(&t, &as_by(own, None), &r, T0)));
}

#[test]
fn policies_match_on_path_and_method_and_keys_combine() {
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "writes", "key": ["claim:sub", "client_address"], "rate": 1, "window_seconds": 3600, "burst": 1,
            "match": {"path_prefix": "/api", "methods": ["POST"]}
        }))],
        1024,
    );
    let t = Table::default();
    let alice = claims("alice");
    let from = |a: &str| Req {
        headers: vec![],
        address: Some(a.into()),
    };
    let get = subject(Some(&alice));
    for _ in 0..5 {
        assert!(admitted(&l.check(&t, &get, &from("10.0.0.1:1000"), T0)));
    }
    let post = Subject {
        method: "POST",
        ..subject(Some(&alice))
    };
    assert!(admitted(&l.check(&t, &post, &from("10.0.0.1:1000"), T0)));
    // Same address, another port: the same bucket.
    assert!(!admitted(&l.check(&t, &post, &from("10.0.0.1:2000"), T0)));
    assert!(admitted(&l.check(&t, &post, &from("10.0.0.2:1000"), T0)));
    assert!(admitted(&l.check(
        &t,
        &post,
        &from("[2001:db8::1]:443"),
        T0
    )));
    assert!(!admitted(&l.check(
        &t,
        &post,
        &from("[2001:db8::1]:444"),
        T0
    )));
    let other_path = Subject {
        method: "POST",
        path: "/health",
        ..subject(Some(&alice))
    };
    assert!(admitted(&l.check(&t, &other_path, &from("10.0.0.1:1"), T0)));
}

#[test]
fn overrides_give_one_key_its_own_quota() {
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "per-client", "key": ["claim:client_id", "route"], "rate": 1, "window_seconds": 3600, "burst": 1,
            "overrides": {"c1|api": {"rate": 1, "window_seconds": 3600, "burst": 3}}
        }))],
        1024,
    );
    let t = Table::default();
    let c = claims("x");
    let r = Req::default();
    let api = subject(Some(&c));
    let n = (0..10)
        .filter(|_| admitted(&l.check(&t, &api, &r, T0)))
        .count();
    assert_eq!(n, 3);
    let other = Subject {
        route: "other",
        ..subject(Some(&c))
    };
    let n = (0..10)
        .filter(|_| admitted(&l.check(&t, &other, &r, T0)))
        .count();
    assert_eq!(n, 1);
}

#[test]
fn pushed_policies_replace_defaults_of_the_same_name() {
    let default = policy(serde_json::json!({"name": "p", "key": ["route"], "rate": 1, "burst": 1}));
    let pushed = policy(serde_json::json!({"name": "p", "key": ["route"], "rate": 1, "burst": 4}));
    let extra = policy(serde_json::json!({"name": "q", "key": ["route"], "rate": 9, "burst": 9}));
    let l = Limiter::new(
        &LimitsConfig {
            capacity: 64,
            headers_on_allow: false,
            policies: vec![default],
            placement_key: [0; 16],
        },
        &[pushed, extra],
    );
    assert_eq!(l.policy_names().collect::<Vec<_>>(), vec!["p", "q"]);
    let t = Table::default();
    let n = (0..10)
        .filter(|_| admitted(&l.check(&t, &subject(None), &Req::default(), T0)))
        .count();
    assert_eq!(n, 4);
    // Headers on admitted answers only when configured.
    match l.check(&t, &subject(None), &Req::default(), T0 + SECOND) {
        LimitOutcome::Admitted(a) => assert_eq!(a.header, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_key_part_shares_one_strict_bucket() {
    let l = per_header(1, 2);
    let t = Table::default();
    let none = Req::default();
    let n = (0..5)
        .filter(|_| admitted(&l.check(&t, &subject(None), &none, T0)))
        .count();
    assert_eq!(n, 2);
}

#[test]
fn cas_conflicts_are_retried_then_refused() {
    let l = per_header(1, 5);
    let t = Table::default();
    t.conflicts.set(MAX_CAS_ATTEMPTS - 1);
    assert!(admitted(&l.check(&t, &subject(None), &keyed("a"), T0)));
    t.conflicts.set(MAX_CAS_ATTEMPTS);
    match l.check(&t, &subject(None), &keyed("a"), T0) {
        LimitOutcome::Limited(lim) => assert!(lim.contended),
        other => panic!("{other:?}"),
    }
    // A refused write drew nothing: four more are admitted, then no more.
    let n = (0..10)
        .filter(|_| admitted(&l.check(&t, &subject(None), &keyed("a"), T0)))
        .count();
    assert_eq!(n, 4);
}

#[test]
fn slot_bytes_round_trip_and_junk_reads_as_empty() {
    let s = Slot {
        fingerprint: 0x0123_4567_89ab_cdef,
        tat: 42,
    };
    assert_eq!(Slot::decode(&s.encode()), Some(s));
    assert_eq!(Slot::decode(&[1, 2, 3]), None);
    assert_eq!(Slot::decode(&[0; 17]), None);
}

/// A million distinct keys through a table of 4096 slots: the table never grows past
/// its capacity, keys that went idle are replaced without loss, and one heavy key
/// keeps its exact limit throughout.
#[test]
fn a_million_keys_stay_within_capacity_and_the_limit_holds() {
    let capacity = 4096;
    // 100/s with a burst of 10 per key; keys go idle 100 ms after their last request.
    let l = limiter(
        vec![policy(serde_json::json!({
            "name": "per-key", "key": ["header:x-key"], "rate": 100, "burst": 10
        }))],
        capacity,
    );
    let t = Table::default();
    let mut heavy_admitted = 0u64;
    let mut shared = 0u64;
    let mut refused_fresh = 0u64;
    let step = 10_000; // 10 µs between requests: 100k requests/s overall
    let mut now = T0;
    for i in 0..1_000_000u64 {
        now += step;
        let key = format!("k{i}");
        match l.check(&t, &subject(None), &keyed(&key), now) {
            LimitOutcome::Admitted(a) => shared += u64::from(a.shared),
            LimitOutcome::Limited(_) => refused_fresh += 1,
        }
        if i % 10 == 0 && admitted(&l.check(&t, &subject(None), &keyed("heavy"), now)) {
            heavy_admitted += 1;
        }
    }
    assert!(t.slots.borrow().len() <= capacity as usize);
    // 10 s of asking at 10 k/s: burst + rate × duration, exactly (to one period).
    let elapsed = now - T0 - step;
    let bound = 10 + elapsed / (SECOND / 100);
    assert!(heavy_admitted <= bound, "{heavy_admitted} > {bound}");
    assert!(
        heavy_admitted + 1 >= bound,
        "{heavy_admitted} far under {bound}"
    );
    // ~1000 keys are live at any moment (10 ms each), each raising two of 4096 slots:
    // about 1 - e^(-2000/4096) ≈ 0.39 of the slots are busy, so both candidates are busy
    // for ≈ 0.15 of fresh keys, which are then decided by another key's bucket with room
    // in it, so they are still admitted.
    assert!(refused_fresh < 1_000, "{refused_fresh} fresh keys refused");
    assert!(
        shared > 100_000 && shared < 250_000,
        "{shared} shared slots"
    );
}

#[test]
fn beyond_capacity_sharing_only_makes_buckets_stricter() {
    // 64 slots, 1000 keys all busy (a bucket of 1 per hour): no key is admitted twice.
    let l = per_header(1, 1);
    let l = Limiter { capacity: 64, ..l };
    let t = Table::default();
    let mut per_key = HashMap::new();
    for round in 0..3 {
        for k in 0..1000 {
            let key = format!("k{k}");
            if admitted(&l.check(&t, &subject(None), &keyed(&key), T0 + round)) {
                *per_key.entry(key).or_insert(0) += 1;
            }
        }
    }
    assert!(per_key.values().all(|n| *n == 1));
    assert!(t.slots.borrow().len() <= 64);
    // The first 64-odd keys got in; the rest share full buckets and wait.
    assert!(
        per_key.len() >= 40 && per_key.len() <= 128,
        "{}",
        per_key.len()
    );
}

proptest! {
    /// Many keys hammering a small table: for every key, no interval admits more than
    /// burst + rate × duration, whatever the sharing.
    #[test]
    fn no_key_ever_exceeds_its_limit(
        capacity in 1u32..16,
        ops in proptest::collection::vec((0u8..40, 0u64..30_000_000), 1..600),
    ) {
        let l = per_header(50, 3); // 20 ms apart, 3 at once
        let l = Limiter { capacity, ..l };
        let t = Table::default();
        let mut now = T0;
        let mut log: HashMap<u8, Vec<u64>> = HashMap::new();
        for (k, gap) in ops {
            now += gap;
            if admitted(&l.check(&t, &subject(None), &keyed(&k.to_string()), now)) {
                log.entry(k).or_default().push(now);
            }
        }
        prop_assert!(t.slots.borrow().len() <= capacity as usize);
        for times in log.values() {
            for i in 0..times.len() {
                for j in i..times.len() {
                    let d = times[j] - times[i];
                    prop_assert!((j - i + 1) as u64 <= 3 + d / 20_000_000);
                }
            }
        }
    }
}

/// The shape of the input the `limiter_gcra` fuzz target found
/// (fuzz/seeds/limiter_gcra/displacement): a key drew from a busy slot that still had
/// room and took it over; the key pushed off, finding its other candidate empty,
/// started a full bucket there and got a third request within a burst of 2.
#[test]
fn a_key_crowded_off_its_slot_never_gets_a_fresh_bucket() {
    // A burst of 2 and 1 per second per key, all within a few milliseconds: no key may
    // get more than 2, whatever the others do and however small the table.
    for capacity in 1..24 {
        let l = Limiter {
            capacity,
            ..per_header(1, 2)
        };
        let t = Table::default();
        let mut per_key: HashMap<String, u32> = HashMap::new();
        let mut now = T0;
        for round in 0..20u64 {
            for k in 0..8 {
                // Keys take turns in a shifting order, so each finds its candidates
                // taken, half-used and retaken by the others.
                let key = format!("k{}", (k * 5 + round * 3) % 8);
                now += 1_000;
                if admitted(&l.check(&t, &subject(None), &keyed(&key), now)) {
                    *per_key.entry(key).or_insert(0) += 1;
                }
            }
        }
        assert!(
            per_key.values().all(|n| *n <= 2),
            "capacity {capacity}: {per_key:?}"
        );
    }
}

#[test]
fn slot_placement_is_keyed_by_the_secret() {
    // An attacker who knows a victim's key value and the policy name must not be able to
    // compute where its bucket lives: under another secret the same keys land elsewhere.
    let build = |secret: u8| {
        Limiter::new(
            &LimitsConfig {
                capacity: 4096,
                headers_on_allow: false,
                policies: vec![policy(serde_json::json!({
                    "name": "per-key", "key": ["header:x-key"], "rate": 1, "burst": 1
                }))],
                placement_key: [secret; 16],
            },
            &[],
        )
    };
    let (a, b) = (build(1), build(2));
    let moved = (0..64)
        .filter(|i| {
            let req = keyed(&format!("user-{i}"));
            let s = subject(None);
            let fa = a.key(&a.policies[0], &s, &req).0;
            let fb = b.key(&b.policies[0], &s, &req).0;
            fa % 4096 != fb % 4096
        })
        .count();
    assert!(moved > 56, "only {moved} of 64 keys moved with the secret");
}
