#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The short form of scripts/chaos.sh for CI: steady load through a real Envoy while the
//! control plane (on Redis with Sentinel) is killed and restarted, then frozen, for a few
//! seconds each. No revoked token gets in, no valid one is refused, every acknowledged
//! revocation is enforced and listed afterwards, no worker VM fails, the limit holds.

use meshauth_tests::chaos::{Chaos, Settings};

#[test]
fn control_plane_killed_and_frozen_under_load_keeps_the_invariants() {
    let mut chaos = Chaos::start(Settings {
        seconds: 3,
        only: vec!["cp-sigkill".into(), "cp-sigstop".into()],
        rate_per_thread: 30,
    });
    for fault in chaos.faults() {
        let row = chaos.run(&fault);
        assert!(
            row.broken().is_empty(),
            "{fault}: {:?}\n{}\n{:?}\n{}",
            row.broken(),
            row.line(),
            row.counts.examples,
            chaos.cp_log()
        );
        // The load really ran through the fault: the checks above had something to see.
        assert!(row.counts.valid_ok > 0 && row.counts.requests > row.counts.valid_ok);
        assert!(!row.counts.acked.is_empty(), "no revocation acknowledged");
        // The limit really bit: the greedy user got through, and was refused past it.
        assert!(
            row.counts.greedy_admitted > 0 && row.counts.greedy_limited > 0,
            "{}",
            row.line()
        );
    }
    assert!(!chaos.cp_log().contains("panicked"));
}
