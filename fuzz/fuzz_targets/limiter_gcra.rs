//! Structure-aware (`arbitrary`): a policy with a quota per key and an override, a slot
//! table of a given size, and a timeline of requests from up to four keys. Mutating JSON
//! rarely yields valid policies and never long timelines; this target builds both from
//! the fuzzer's bytes and checks the bucket's promise over time.
#![no_main]
use libfuzzer_sys::arbitrary::{self, Arbitrary};

use libfuzzer_sys::fuzz_target;
use meshauth_filter::limits::{LimitOutcome, Limiter, LimitsConfig, Subject};
use meshauth_fuzz::{Facts, MapSlots};
use meshauth_wire::limits::{KeyPart, LimitPolicy, Quota, MAX_BURST, MAX_RATE};

const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const NANOS: u64 = 1_000_000_000;

#[derive(Arbitrary, Debug)]
struct Case {
    rate: u32,
    window_seconds: u8,
    burst: u16,
    /// The quota of `k1`, when set.
    k1_override: Option<(u32, u8, u16)>,
    capacity: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Step {
    key: u8,
    /// Nanoseconds since the previous request (up to ~4 s).
    after_ns: u32,
}

fn quota(rate: u32, window: u8, burst: u16) -> Quota {
    Quota {
        rate: 1 + rate % MAX_RATE,
        window_seconds: 1 + u32::from(window % 120),
        burst: (1 + u32::from(burst)).min(MAX_BURST),
    }
}

fuzz_target!(|case: Case| {
    let base = quota(case.rate, case.window_seconds, case.burst);
    let mut policy = LimitPolicy {
        name: "p".into(),
        key: vec![KeyPart::Header("x-k".into())],
        rate: base.rate,
        window_seconds: base.window_seconds,
        burst: base.burst,
        matches: Default::default(),
        overrides: Default::default(),
    };
    if let Some((r, w, b)) = case.k1_override {
        policy.overrides.insert("k1".into(), quota(r, w, b));
    }
    assert!(policy.validate().is_ok(), "{policy:?}");
    let limiter = Limiter::new(
        &LimitsConfig {
            capacity: u32::from(case.capacity),
            headers_on_allow: true,
            policies: vec![policy.clone()],
            placement_key: [7; 16],
        },
        &[],
    );
    let slots = MapSlots::default();
    let subject = Subject {
        method: "GET",
        path: "/api",
        route: "default",
        claims: None,
        federated_by: None,
    };
    let mut now = 1_000 * NANOS;
    // Per key: the times its admitted requests arrived.
    let mut admitted: [Vec<u64>; 4] = Default::default();
    let mut last_seen: [Option<u64>; 4] = [None; 4];
    for step in case.steps.iter().take(512) {
        now += u64::from(step.after_ns);
        let k = usize::from(step.key % 4);
        let q = policy.quota_for(KEYS[k]);
        let outcome = limiter.check(&slots, &subject, &Facts(KEYS[k]), now);
        let window_ns = u64::from(q.window_seconds) * NANOS;
        if let LimitOutcome::Admitted(_) = outcome {
            admitted[k].push(now);
            // Over any stretch between two of its admitted requests, a key gets at most
            // burst + d·rate/window, however the others crowd the table.
            let times = &admitted[k];
            for (i, first) in times.iter().enumerate() {
                let d = now - first;
                let bound = u128::from(q.burst)
                    + u128::from(d) * u128::from(q.rate) / u128::from(window_ns);
                let count = (times.len() - i) as u128;
                assert!(
                    count <= bound,
                    "key {k}: {count} admitted in {d} ns, bound {bound} ({q:?})"
                );
            }
        } else if case.steps.iter().all(|s| s.key % 4 == step.key % 4) {
            // One key alone, after a full refill (burst periods of quiet), is never refused.
            let refill = window_ns.div_ceil(u64::from(q.rate)) * u64::from(q.burst);
            if let Some(seen) = last_seen[k] {
                assert!(
                    now - seen < refill,
                    "key {k} refused after {} ns of quiet ({q:?})",
                    now - seen
                );
            }
            assert!(
                last_seen[k].is_some(),
                "key {k} refused on its first request ({q:?})"
            );
        }
        last_seen[k] = Some(now);
    }
});
