//! What a provider's answers are allowed to be: its JWKS (each key checked against the
//! algorithms the issuer allows), its discovery document, and how long an answer may be
//! cached. Pure: the fetcher hands bytes and headers in.

use std::time::Duration;

use serde_json::{Map, Value};

use super::model::Alg;
use super::url::{FetchUrl, UrlPolicy};
use meshauth_wire::b64;
pub use meshauth_wire::federation::{
    FederatedKey, KeyMaterial, MAX_KEYS, MAX_KID_LEN, MAX_RSA_BITS, MIN_RSA_BITS,
};

/// A body larger than this is refused (and not read past it).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Entries a JWKS may list at all (keys for encryption or other algorithms included).
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("body over {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS: {0}")]
    Malformed(String),
    #[error("no usable key ({0})")]
    Empty(String),
    #[error("more than {MAX_KEYS} usable keys")]
    TooManyKeys,
    #[error("kid {0:?} names two keys")]
    DuplicateKid(String),
    #[error("discovery: {0}")]
    Discovery(String),
}

/// Why one entry was skipped.
fn skip(kid: &str, why: impl Into<String>) -> String {
    format!("{kid:?}: {}", why.into())
}

fn text<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// Base64url without padding, decoded; `None` when it is not.
fn bytes(o: &Map<String, Value>, k: &str) -> Option<Vec<u8>> {
    b64::decode(text(o, k)?).ok()
}

fn bit_len(n: &[u8]) -> usize {
    let n: &[u8] = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize)
}

/// Whether (x, y) is a point of P-256. A set of points off the curve would otherwise
/// replace the last good keys with keys every filter leaves out.
fn on_p256(x: &[u8], y: &[u8]) -> bool {
    let point = p256::EncodedPoint::from_affine_coordinates(
        p256::FieldBytes::from_slice(x),
        p256::FieldBytes::from_slice(y),
        false,
    );
    p256::ecdsa::VerifyingKey::from_encoded_point(&point).is_ok()
}

/// Whether `x` is an Ed25519 key the filter takes: on the curve, not of small order,
/// no torsion component (`filter/src/ed25519.rs` refuses the others).
fn usable_ed25519(x: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(x) else {
        return false;
    };
    curve25519_dalek::edwards::CompressedEdwardsY(bytes)
        .decompress()
        .is_some_and(|a| !a.is_small_order() && a.is_torsion_free())
}

/// One entry: the key and the allowed algorithms it serves, or why it is skipped.
fn key_of(o: &Map<String, Value>, allowed: &[Alg]) -> Result<FederatedKey, String> {
    let kid = match text(o, "kid") {
        Some(k)
            if !k.is_empty()
                && k.len() <= MAX_KID_LEN
                && k.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            k.to_string()
        }
        Some(k) => {
            return Err(skip(
                k,
                format!("kid must be 1-{MAX_KID_LEN} visible ASCII characters"),
            ))
        }
        None => return Err("a key without kid".into()),
    };
    if let Some(u) = o.get("use") {
        if u.as_str() != Some("sig") {
            return Err(skip(&kid, "not a signature key (use)"));
        }
    }
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|p| o.contains_key(*p))
    {
        return Err(skip(&kid, "carries private or symmetric key material"));
    }
    let kty = text(o, "kty").unwrap_or_default();
    let mut algorithms: Vec<Alg> = allowed.iter().copied().filter(|a| a.kty() == kty).collect();
    if let Some(a) = o.get("alg") {
        let alg = a.as_str().and_then(Alg::parse);
        algorithms.retain(|x| Some(*x) == alg);
    }
    let material = match kty {
        "RSA" => {
            let (Some(n), Some(e)) = (bytes(o, "n"), bytes(o, "e")) else {
                return Err(skip(&kid, "RSA n and e must be base64url"));
            };
            let bits = bit_len(&n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(skip(
                    &kid,
                    format!("RSA modulus of {bits} bits (from {MIN_RSA_BITS} to {MAX_RSA_BITS})"),
                ));
            }
            let e_ok =
                bit_len(&e) >= 2 && bit_len(&e) <= 64 && e.last().is_some_and(|b| b & 1 == 1);
            if !e_ok {
                return Err(skip(
                    &kid,
                    "RSA exponent must be odd, 3 or more, at most 64 bits",
                ));
            }
            KeyMaterial::Rsa {
                n: b64::encode(&n[n.len() - bits.div_ceil(8)..]),
                e: b64::encode(&e),
            }
        }
        "EC" => {
            let crv = text(o, "crv").unwrap_or_default();
            let (alg, len) = match crv {
                "P-256" => (Alg::ES256, 32),
                "P-384" => (Alg::ES384, 48),
                other => return Err(skip(&kid, format!("EC curve {other:?} (P-256 or P-384)"))),
            };
            algorithms.retain(|a| *a == alg);
            let (Some(x), Some(y)) = (bytes(o, "x"), bytes(o, "y")) else {
                return Err(skip(&kid, "EC x and y must be base64url"));
            };
            if x.len() != len || y.len() != len {
                return Err(skip(&kid, format!("{crv} coordinates must be {len} bytes")));
            }
            if alg == Alg::ES256 && !on_p256(&x, &y) {
                return Err(skip(&kid, "P-256 point is not on the curve"));
            }
            KeyMaterial::Ec {
                crv: crv.into(),
                x: b64::encode(&x),
                y: b64::encode(&y),
            }
        }
        "OKP" => {
            if text(o, "crv") != Some("Ed25519") {
                return Err(skip(&kid, "OKP keys must be Ed25519"));
            }
            match bytes(o, "x") {
                Some(x) if x.len() == 32 && !usable_ed25519(&x) => {
                    return Err(skip(
                        &kid,
                        "Ed25519 x is not a point of the prime-order subgroup",
                    ))
                }
                Some(x) if x.len() == 32 => KeyMaterial::Okp {
                    crv: "Ed25519".into(),
                    x: b64::encode(&x),
                },
                _ => return Err(skip(&kid, "Ed25519 x must be 32 bytes of base64url")),
            }
        }
        other => return Err(skip(&kid, format!("key type {other:?}"))),
    };
    if algorithms.is_empty() {
        return Err(skip(&kid, "serves none of the issuer's algorithms"));
    }
    Ok(FederatedKey {
        kid,
        algorithms,
        material,
    })
}

/// The usable keys of a JWKS body for an issuer allowing `allowed`. Entries for other
/// uses or algorithms are skipped; an empty result, a duplicate `kid` among usable keys
/// or more than `MAX_KEYS` of them refuse the whole set (the caller keeps its last good
/// one).
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<Vec<FederatedKey>, JwksError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(JwksError::TooLarge);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
    let entries = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::Malformed("no \"keys\" array".into()))?;
    if entries.len() > MAX_ENTRIES {
        return Err(JwksError::Malformed(format!(
            "more than {MAX_ENTRIES} entries"
        )));
    }
    let mut keys: Vec<FederatedKey> = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        let Some(o) = e.as_object() else {
            return Err(JwksError::Malformed("an entry is not an object".into()));
        };
        match key_of(o, allowed) {
            Ok(k) if keys.iter().any(|x| x.kid == k.kid) => {
                return Err(JwksError::DuplicateKid(k.kid))
            }
            Ok(k) => keys.push(k),
            Err(why) => skipped.push(why),
        }
    }
    if keys.is_empty() {
        let why = if skipped.is_empty() {
            "the set is empty".to_string()
        } else {
            skipped.join("; ")
        };
        return Err(JwksError::Empty(why));
    }
    if keys.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    // By kid: a provider serving one set in another order has not changed it (each
    // change is a new snapshot version for every filter).
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    Ok(keys)
}

/// The `jwks_uri` of a discovery document whose `issuer` must be exactly `issuer`
/// (OpenID Connect Discovery 1.0 §4.3: else anyone's metadata could be served).
pub fn parse_discovery(body: &[u8], issuer: &str, urls: &UrlPolicy) -> Result<FetchUrl, JwksError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(JwksError::TooLarge);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| JwksError::Discovery(format!("not JSON: {e}")))?;
    match v.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(i) => {
            return Err(JwksError::Discovery(format!(
                "issuer is {i:?}, not {issuer:?}"
            )))
        }
        None => return Err(JwksError::Discovery("no issuer".into())),
    }
    let uri = v
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| JwksError::Discovery("no jwks_uri".into()))?;
    urls.check("jwks_uri", uri).map_err(JwksError::Discovery)
}

/// How long an answer stays fresh: its `Cache-Control: max-age`, clamped to
/// `[floor, ceiling]`; `no-store`, `no-cache` or no max-age: the floor.
pub fn cache_lifetime(cache_control: Option<&str>, floor: Duration, ceiling: Duration) -> Duration {
    let mut max_age = None;
    for d in cache_control.unwrap_or_default().split(',') {
        let d = d.trim().to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return floor;
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            max_age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age.unwrap_or(floor).clamp(floor, ceiling.max(floor))
}

#[cfg(test)]
mod tests;
