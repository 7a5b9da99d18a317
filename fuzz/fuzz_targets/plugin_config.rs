//! The plugin configuration Envoy hands the filter: refused with a named field, or an
//! engine that answers requests.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::config::Config;
use meshauth_filter::engine::{Engine, Request};

fuzz_target!(|data: &[u8]| {
    match Config::from_json(data) {
        Ok(config) => {
            let mut e = Engine::new(config);
            for path in ["/", "/admin/x", "/public/..%2Fx"] {
                let _ = e.check(
                    &Request {
                        method: "GET",
                        path,
                        authorization: Some("Bearer a.b.c"),
                        repeated_authorization: false,
                    },
                    meshauth_fuzz::NOW,
                );
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
