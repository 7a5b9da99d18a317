//! Test tokens: the signing key is `meshauth_devkey::DevKey`, shared with the filter's unit
//! tests; the claims of a valid token are here.

pub use meshauth_devkey::DevKey;
use serde_json::{json, Value};

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Claims of a valid token for `sub`, with `extra` merged over them.
pub fn claims(sub: &str, extra: Value) -> Value {
    let now = now();
    let mut c = json!({
        "iss": "https://meshauth.test", "sub": sub, "aud": ["api"], "exp": now + 600,
        "iat": now, "nbf": now, "jti": format!("{sub}-{}", rand::random::<u64>()),
        "scope": "read", "client_id": "test-client"
    });
    if let (Some(base), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    c
}

pub fn jwks_value(keys: &[&DevKey]) -> Value {
    json!(DevKey::jwks(keys))
}
