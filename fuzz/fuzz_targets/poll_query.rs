//! The sync poll's query string: anything `parse` accepts builds back (`path`) to a
//! query that parses to the same value, and a refusal is an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_wire::sync::{PollQuery, PollQueryError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = PollQuery::parse(text) else {
        return;
    };
    let path = q.path();
    let (_, query) = path.split_once('?').expect("a poll path has a query");
    // The rebuilt query may be longer (escapes), so only a length refusal is allowed.
    match PollQuery::parse(query) {
        Ok(back) => assert_eq!(back, q, "{text:?} -> {query:?}"),
        Err(e) => assert_eq!(e, PollQueryError::TooLong, "{text:?} -> {query:?}"),
    }
});
