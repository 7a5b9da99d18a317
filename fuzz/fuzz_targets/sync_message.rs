//! Sync answers: an envelope verbatim (signature checks must hold), or a payload the
//! target signs with the pinned distribution key, so mutations reach the snapshot and
//! delta parsers and the engine that applies them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::engine::Request;
use meshauth_filter::sync::open_message;
use meshauth_fuzz::{engine, sign_envelope, NOW};
use meshauth_wire::sync::Message;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut e = engine();
    let Some(cfg) = e.config().sync.clone() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        sign_envelope(rest)
    };
    let Ok(message) = open_message(&bytes, &cfg.distribution_key) else {
        return;
    };
    let _ = match message {
        Message::Full(s) => e.apply_snapshot(s).map(|_| ()),
        Message::Delta(d) => e.apply_delta(d).map(|_| ()),
    };
    let _ = e.check(
        &Request {
            method: "GET",
            path: "/api",
            authorization: Some("Bearer a.b.c"),
            repeated_authorization: false,
        },
        NOW,
    );
});
