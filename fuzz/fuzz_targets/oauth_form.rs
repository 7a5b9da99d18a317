//! The OAuth endpoints' request parsing: the form body (token, introspect, revoke),
//! `Authorization: Basic` client credentials and the throttle's claimed client.
//!
//! Input: `CONTENT-TYPE\nAUTHORIZATION\nBODY` (the first two lines may be empty), so
//! seeds are readable requests.
//!
//! Invariants: nothing panics; a body that parses names each parameter once (a repeat
//! is refused) within the caps; what parses re-encodes (`serde_urlencoded`, as clients
//! build forms) to a body that parses to the same values; Basic credentials that decode
//! re-encode (form-encoded parts, base64) to the same pair.
#![no_main]
use std::collections::HashSet;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use meshauth_cp::http::extract::{auth_scheme, claimed_client};
use meshauth_cp::http::form::{basic_credentials, Params, MAX_CLIENT_CREDENTIAL, MAX_PARAMS};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A Basic credential part, form-encoded (RFC 6749 §2.3.1; `:` must be escaped).
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_body(content_type: Option<&str>, body: &[u8]) {
    let Ok(params) = Params::parse(content_type, body) else {
        return;
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).expect("what Params accepts is a form");
    assert!(pairs.len() <= MAX_PARAMS, "{} parameters", pairs.len());
    let mut seen = HashSet::new();
    for (k, v) in &pairs {
        assert!(seen.insert(k.as_str()), "repeated {k:?} accepted");
        // An empty value counts as absent.
        assert_eq!(params.get(k), Some(v.as_str()).filter(|v| !v.is_empty()));
    }
    let rebuilt = serde_urlencoded::to_string(&pairs).expect("pairs encode");
    let again = Params::parse(FORM, rebuilt.as_bytes())
        .unwrap_or_else(|e| panic!("{rebuilt:?} refused: {}", e.description));
    for (k, v) in &pairs {
        assert_eq!(params.get(k), again.get(k), "{k:?}={v:?} via {rebuilt:?}");
    }
    // The same body with its first parameter repeated is refused.
    if let Some((k, v)) = pairs.first() {
        let repeated = serde_urlencoded::to_string([(k, v), (k, v)]).expect("pairs encode");
        assert!(
            Params::parse(FORM, repeated.as_bytes()).is_err(),
            "{repeated:?}"
        );
    }
}

fn check_basic(value: &str) {
    let Some((id, secret)) = basic_credentials(value) else {
        return;
    };
    assert!(!id.is_empty() && id.len() <= MAX_CLIENT_CREDENTIAL);
    assert!(secret.len() <= MAX_CLIENT_CREDENTIAL);
    let rebuilt = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_encode(&id),
        form_encode(&secret)
    ));
    assert_eq!(
        basic_credentials(&rebuilt),
        Some((id, secret)),
        "{value:?} -> {rebuilt:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (content_type, rest) = split_line(data);
    let (authorization, body) = split_line(rest);
    let content_type = std::str::from_utf8(content_type).ok();
    let authorization = std::str::from_utf8(authorization).ok();

    check_body(content_type.filter(|c| !c.is_empty()), body);
    check_body(FORM, body);
    if let Some(a) = authorization {
        check_basic(a);
        if let Some(b) = auth_scheme(a, "Basic") {
            check_basic(b);
        }
    }

    let mut headers = HeaderMap::new();
    if let Some(v) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Some(v) = authorization.and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Some(claimed) = claimed_client(&headers, body) {
        // `LEN:ID SECRET`: the id's length leads, so the pair can be read back.
        let (len, rest) = claimed.split_once(':').expect("length prefix");
        let len: usize = len.parse().expect("a length");
        assert!(len > 0 && len <= rest.len(), "{claimed:?}");
        assert!(rest.is_char_boundary(len), "{claimed:?}");
    }
});
