//! Rate-limit policy JSON (the admin API's and the plugin configuration's), then a
//! limiter built from what validates, drawing from map-backed slots.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::limits::{Limiter, LimitsConfig, Subject};
use meshauth_fuzz::{Facts, MapSlots};
use meshauth_wire::limits::LimitPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = serde_json::from_slice::<LimitPolicy>(data) else {
        return;
    };
    if policy.validate().is_err() {
        return;
    }
    let limiter = Limiter::new(
        &LimitsConfig {
            capacity: 16,
            headers_on_allow: true,
            policies: vec![policy.clone()],
            placement_key: [1; 16],
        },
        &[],
    );
    let slots = MapSlots::default();
    let subject = Subject {
        method: "GET",
        path: "/api/x",
        route: "default",
        claims: None,
        federated_by: None,
    };
    // A policy that does not cover the probe request limits nothing.
    if !policy.matches.matches(subject.method, subject.path) {
        return;
    }
    let burst = u64::from(policy.burst);
    // Past a few thousand draws the loop is the harness's cost, not the limiter's
    // (a burst of 864000 took most of libFuzzer's 10 s timeout): draw at most that.
    let admitted = (0..burst.min(4096) + 2)
        .filter(|_| {
            matches!(
                limiter.check(&slots, &subject, &Facts("k"), 1_000_000_000_000),
                meshauth_filter::limits::LimitOutcome::Admitted(_)
            )
        })
        .count() as u64;
    // At one instant no key gets more than its burst (an override may raise it).
    let max_burst = policy
        .overrides
        .values()
        .map(|o| u64::from(o.burst))
        .chain([burst])
        .max()
        .unwrap_or(burst);
    assert!(
        admitted <= max_burst,
        "{admitted} admitted at once, burst {max_burst}"
    );
});
