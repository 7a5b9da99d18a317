//! The JSON of a token's header and claims: the strict parser against serde_json (the
//! same value whenever it accepts; it refuses only what serde_json refuses or what
//! repeats a name), then the claims and JWS parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::strict_json::{object, StrictError};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let theirs = serde_json::from_slice::<Map<String, Value>>(data);
    match object(data) {
        Ok(ours) => assert_eq!(Some(&ours), theirs.as_ref().ok(), "differs from serde_json"),
        // Refused either way; the rest of the text may not even be JSON.
        Err(StrictError::DuplicateMember) => {}
        Err(StrictError::NotAnObject) => {
            assert!(theirs.is_err(), "refused an object serde_json reads")
        }
    }
    let _ = meshauth_filter::claims::Claims::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = meshauth_filter::jwt::bearer(text);
        if let Ok(parsed) = meshauth_filter::jwt::parse(text) {
            let _ = parsed.claims();
        }
    }
});
