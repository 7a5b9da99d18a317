//! The token path end to end: an `Authorization` value (verbatim, or a header and claims
//! the target signs with the engine's key, so mutations reach the claim checks) and a
//! path through `Engine::check`, then the rate limiter.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::engine::{Request, Verdict};
use meshauth_fuzz::{engine, sign_token, split, Facts, MapSlots, NOW};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = split(rest);
    let (auth, path) = if mode % 2 == 0 {
        (String::from_utf8_lossy(a).into_owned(), b)
    } else {
        let (claims, path) = split(b);
        (format!("Bearer {}", sign_token(a, claims)), path)
    };
    let path = String::from_utf8_lossy(path);
    let path = if path.is_empty() { "/api".into() } else { path };
    let mut e = engine();
    let req = Request {
        method: if mode & 2 == 0 { "GET" } else { "POST" },
        path: &path,
        authorization: Some(&auth),
        repeated_authorization: mode & 4 != 0,
    };
    let first = e.check(&req, NOW);
    if let Verdict::Allow(v) = &first.verdict {
        assert!(v.claims.exp > NOW - 30, "allowed an expired token");
        assert!(!req.repeated_authorization);
        assert!(meshauth_filter::path::ambiguity(&path).is_none());
    }
    // The second check may come from the verified cache: it must agree.
    let second = e.check(&req, NOW);
    assert_eq!(first.verdict, second.verdict);
    if !matches!(first.verdict, Verdict::Deny(_)) {
        let verified = match &first.verdict {
            Verdict::Allow(v) | Verdict::Confirm { verified: v, .. } => Some(v.as_ref()),
            _ => None,
        };
        let slots = MapSlots::default();
        let facts = Facts(&auth);
        for _ in 0..3 {
            let _ = e.limit(
                &slots,
                &req,
                first.route,
                verified,
                &facts,
                1_800_000_000_000_000_000,
            );
        }
    }
});
