//! A trusted issuer's token verified at the control plane (token exchange): the
//! signature by the `jsonwebtoken` crate with one of the keys held for the issuer (the
//! last good set, never fetched here), then the issuer's rules as the filter applies
//! them (algorithms, `typ`, audiences, required claims, times with its clock skew).
//! Pure: the caller hands in the issuer, its keys and the time.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{FederatedKey, KeyMaterial};
use super::model::{Alg, TrustedIssuer};
use meshauth_wire::b64;

/// Why a token is refused: short on purpose, since the answer goes to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is not a well-formed JWT")]
    Malformed,
    #[error("is not from a trusted issuer")]
    Untrusted,
    #[error("is signed with an algorithm its issuer does not allow")]
    Algorithm,
    #[error("names a key its issuer does not publish")]
    UnknownKey,
    #[error("signature is not valid")]
    Signature,
    #[error("has expired")]
    Expired,
    #[error("is not valid yet")]
    NotYetValid,
    #[error("has no iat")]
    NoIssuedAt,
    #[error("lives longer than its issuer allows (exp - iat over max_token_lifetime_seconds)")]
    Lifetime,
    #[error("audience is not accepted")]
    Audience,
    #[error("typ is not its issuer's")]
    Typ,
    #[error("claim {0:?} does not have an accepted value")]
    Claim(String),
    #[error("has no usable sub")]
    Subject,
    #[error("has no usable id (its issuer's id claim, a non-empty string)")]
    Id,
}

/// The header and the claimed `iss` of a compact JWS, before any check: only to pick
/// the issuer whose rules verify it. `crit` is refused (no extension is understood).
pub fn peek(token: &str) -> Result<(Map<String, Value>, String), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let object = |part: &str| -> Result<Map<String, Value>, TokenError> {
        let bytes = b64::decode(part).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
    };
    let header = object(h)?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    let iss = match object(p)?.get("iss") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(TokenError::Untrusted),
    };
    Ok((header, iss))
}

fn algorithm(a: Alg) -> Algorithm {
    match a {
        Alg::RS256 => Algorithm::RS256,
        Alg::RS384 => Algorithm::RS384,
        Alg::RS512 => Algorithm::RS512,
        Alg::PS256 => Algorithm::PS256,
        Alg::PS384 => Algorithm::PS384,
        Alg::PS512 => Algorithm::PS512,
        Alg::ES256 => Algorithm::ES256,
        Alg::ES384 => Algorithm::ES384,
        Alg::EdDSA => Algorithm::EdDSA,
    }
}

fn decoding_key(m: &KeyMaterial) -> Option<DecodingKey> {
    match m {
        KeyMaterial::Rsa { n, e } => DecodingKey::from_rsa_components(n, e).ok(),
        KeyMaterial::Ec { x, y, .. } => DecodingKey::from_ec_components(x, y).ok(),
        KeyMaterial::Okp { x, .. } => DecodingKey::from_ed_components(x).ok(),
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
            _ => Err(TokenError::Malformed),
        },
        Some(_) => Err(TokenError::Malformed),
    }
}

/// A claim's values as the filter reads them for required claims: a string, the
/// scalars of an array, or a scalar written out.
fn values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    meshauth_wire::federation::claim_values(claims.get(name))
}

/// The scopes at the issuer's scope claim (a dotted path): an array of strings or one
/// space-separated string; anything else gives none.
pub fn scopes(claims: &Map<String, Value>, issuer: &TrustedIssuer) -> Vec<String> {
    let mut segments = issuer.scope_claim().segments().iter();
    let first = segments.next().and_then(|s| claims.get(s));
    match segments.try_fold(first, |v, s| Some(v.and_then(|v| v.get(s)))) {
        Some(Some(Value::String(s))) => s
            .split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A `sub` the control plane will carry: 1-256 characters, none a control character.
pub fn subject(claims: &Map<String, Value>) -> Result<&str, TokenError> {
    match claims.get("sub") {
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) =>
        {
            Ok(s)
        }
        _ => Err(TokenError::Subject),
    }
}

/// Verifies `token` as `issuer`'s with one of `keys` at time `now`: the signature
/// first, then the issuer's rules. The claims on success.
pub fn verify(
    token: &str,
    issuer: &TrustedIssuer,
    keys: &[FederatedKey],
    now: i64,
) -> Result<Map<String, Value>, TokenError> {
    let (header, iss) = peek(token)?;
    if iss != issuer.issuer() {
        return Err(TokenError::Untrusted);
    }
    // `none` and `HS*` are not `Alg`s: refused here, before any key is touched.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::parse)
        .filter(|a| issuer.algorithms().contains(a))
        .ok_or(TokenError::Algorithm)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(TokenError::UnknownKey)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(TokenError::UnknownKey)?;
    if !key.algorithms.contains(&alg) || !key.material.serves(alg) {
        return Err(TokenError::Algorithm);
    }
    let decoding = decoding_key(&key.material).ok_or(TokenError::Signature)?;
    let mut v = Validation::new(algorithm(alg));
    v.algorithms = vec![algorithm(alg)];
    // The claims are checked below, on this control plane's clock and with the
    // issuer's own rules; the crate checks the signature and the algorithm only.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &v)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
            | jsonwebtoken::errors::ErrorKind::Crypto(_) => TokenError::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?
        .claims;
    if let Some(want) = issuer.typ() {
        let typ = header.get("typ").and_then(Value::as_str);
        if !meshauth_wire::federation::typ_matches(typ, want) {
            return Err(TokenError::Typ);
        }
    }
    let skew = i64::try_from(issuer.clock_skew_seconds()).unwrap_or(0);
    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::Malformed)?;
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    for name in ["nbf", "iat"] {
        if numeric_date(&claims, name)?.is_some_and(|t| now.saturating_add(skew) < t) {
            return Err(TokenError::NotYetValid);
        }
    }
    // As the filter: a token living longer than the issuer allows could outlive a
    // revocation of it, which is kept only that long.
    let iat = numeric_date(&claims, "iat")?.ok_or(TokenError::NoIssuedAt)?;
    let max = i64::try_from(issuer.max_token_lifetime_seconds()).unwrap_or(i64::MAX);
    if exp.checked_sub(iat).is_none_or(|life| life > max) {
        return Err(TokenError::Lifetime);
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud
        .iter()
        .any(|a| issuer.audiences().iter().any(|x| x == a))
    {
        return Err(TokenError::Audience);
    }
    for (name, allowed) in issuer.required_claims() {
        if !values(&claims, name).iter().any(|v| allowed.contains(v)) {
            return Err(TokenError::Claim(name.clone()));
        }
    }
    // As the filter: an id is a non-empty string, absent only when the issuer allows
    // that (a token the edge refuses must not buy a mesh token, and one without an id
    // could never be revoked by it).
    match claims.get(issuer.id_claim()) {
        Some(Value::String(s)) if !s.is_empty() => {}
        None if issuer.id_optional() => {}
        _ => return Err(TokenError::Id),
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
