//! Tokens of trusted external issuers (federation): each issuer's rules and keys come
//! in the signed snapshot; here they are prepared once and a token is checked against
//! the issuer its `iss` names. Only that issuer's listed algorithms verify, each with a
//! key whose type matches: RS256/384/512 and PS256/384/512 (RSA), ES256 (P-256), ES384
//! (P-384) and EdDSA. The control plane's own issuer never comes here (it stays
//! EdDSA-only, `jwt::parse`).

use std::collections::HashMap;

use meshauth_wire::b64;
use meshauth_wire::federation::{Alg, FederatedIssuer, FederatedKey, KeyMaterial};
use p256::ecdsa::signature::Verifier as _;
use serde_json::{Map, Value};

use crate::claims::{ClaimRules, Claims};
use crate::deny::Denial;
use crate::ed25519::PreparedKey;
use crate::strict_json::{self, StrictError};

/// A key ready to verify, decoded once per snapshot.
#[derive(Debug)]
enum Prepared {
    Rsa(crate::rsa_verify::RsaKey),
    /// With a comb table for the first `p256_comb::MAX_TABLES` keys of a snapshot.
    P256(
        p256::ecdsa::VerifyingKey,
        Option<Box<crate::p256_comb::Comb>>,
    ),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(Box<PreparedKey>),
    /// A curve this filter does not know (wire admits none today): its tokens are
    /// refused.
    Unsupported,
}

#[derive(Debug)]
struct Key {
    algorithms: Vec<Alg>,
    prepared: Prepared,
}

#[derive(Debug)]
struct Issuer {
    rules: FederatedIssuer,
    keys: HashMap<String, Key>,
}

/// The trusted external issuers in force, by `iss`.
#[derive(Debug, Default)]
pub struct Federation {
    issuers: HashMap<String, Issuer>,
}

fn prepare(k: &FederatedKey) -> Result<Prepared, String> {
    let bytes = |s: &str| b64::decode(s).map_err(|_| "not base64url".to_string());
    match &k.material {
        KeyMaterial::Rsa { n, e } => crate::rsa_verify::RsaKey::new(&bytes(n)?, &bytes(e)?)
            .map(Prepared::Rsa)
            .map_err(|e| e.to_string()),
        KeyMaterial::Ec { crv, x, y } if crv == "P-256" => {
            let (x, y) = (bytes(x)?, bytes(y)?);
            // `wire` bounds these already; a wrong length must not reach from_slice.
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes".into());
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map(|k| Prepared::P256(k, None))
                .map_err(|_| "P-256 point is not on the curve".to_string())
        }
        KeyMaterial::Ec { crv, x, y } if crv == "P-384" => {
            let (x, y) = (bytes(x)?, bytes(y)?);
            if x.len() != 48 || y.len() != 48 {
                return Err("P-384 coordinates are not 48 bytes".into());
            }
            let point = p384::EncodedPoint::from_affine_coordinates(
                p384::FieldBytes::from_slice(&x),
                p384::FieldBytes::from_slice(&y),
                false,
            );
            p384::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map(Prepared::P384)
                .map_err(|_| "P-384 point is not on the curve".to_string())
        }
        KeyMaterial::Ec { .. } => Ok(Prepared::Unsupported),
        KeyMaterial::Okp { x, .. } => {
            let x: [u8; 32] = bytes(x)?
                .try_into()
                .map_err(|_| "Ed25519 key is not 32 bytes".to_string())?;
            // Compact: a snapshot may carry thousands of federated keys.
            PreparedKey::compact(x)
                .map(|k| Prepared::Ed25519(Box::new(k)))
                .map_err(|e| e.to_string())
        }
    }
}

impl Federation {
    /// Prepares the issuers of a snapshot (already bounded by `wire`). A key that
    /// cannot be prepared (a point off the curve) is left out and named in the second
    /// value, for the log; the issuer's other keys keep working. `own_issuer` (the
    /// control plane's) is never taken from the list.
    pub fn new(list: &[FederatedIssuer], own_issuer: Option<&str>) -> (Federation, Vec<String>) {
        let mut issuers = HashMap::with_capacity(list.len());
        let mut skipped = Vec::new();
        let mut tables = 0;
        for i in list {
            if own_issuer == Some(i.issuer.as_str()) {
                skipped.push(format!("{:?}: the control plane's own issuer", i.issuer));
                continue;
            }
            let mut keys = HashMap::with_capacity(i.keys.len());
            for k in &i.keys {
                match prepare(k) {
                    Ok(mut prepared) => {
                        if let Prepared::P256(key, comb @ None) = &mut prepared {
                            if tables < crate::p256_comb::MAX_TABLES {
                                tables += 1;
                                let point = p256::ProjectivePoint::from(*key.as_affine());
                                *comb = Some(Box::new(crate::p256_comb::Comb::new(&point)));
                            }
                        }
                        keys.insert(
                            k.kid.clone(),
                            Key {
                                algorithms: k.algorithms.clone(),
                                prepared,
                            },
                        );
                    }
                    Err(e) => skipped.push(format!("{:?} key {:?}: {e}", i.issuer, k.kid)),
                }
            }
            let rules = FederatedIssuer {
                keys: Vec::new(),
                ..i.clone()
            };
            issuers.insert(i.issuer.clone(), Issuer { rules, keys });
        }
        (Federation { issuers }, skipped)
    }

    /// Keeps only the forwarded headers `may_set` allows, naming each one dropped (for
    /// the log): the filter's own headers and any outside its reserved prefix, so a
    /// header is set by one issuer only and a client can never send it itself.
    pub fn keep_headers(&mut self, may_set: impl Fn(&str) -> bool) -> Vec<String> {
        let mut dropped = Vec::new();
        for i in self.issuers.values_mut() {
            i.rules.forward_claims.retain(|claim, header| {
                let keep = may_set(header);
                if !keep {
                    dropped.push(format!(
                        "{:?}: claim {claim:?} is not forwarded in {header:?} (one of the filter's own headers, or outside reserved_header_prefix)",
                        i.rules.issuer
                    ));
                }
                keep
            });
        }
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Whether `iss` is a trusted external issuer.
    pub fn trusts(&self, iss: &str) -> bool {
        self.issuers.contains_key(iss)
    }

    /// The name the issuer `iss` was registered under, if the snapshot gave one.
    pub fn name_of(&self, iss: &str) -> Option<&str> {
        self.issuers.get(iss).and_then(|i| i.rules.name.as_deref())
    }

    /// What verified `v`, for the revocation rules: its issuer names the client of its
    /// tokens in its client claim (`client_id` if it is no longer listed).
    pub fn verifier(&self, v: &crate::engine::Verified) -> crate::revocation::Verifier<'_> {
        if !v.federated {
            return crate::revocation::Verifier::Own;
        }
        let client_claim = v
            .claims
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.get(iss))
            .map_or(meshauth_wire::federation::DEFAULT_CLIENT_CLAIM, |i| {
                i.rules.client_claim()
            });
        crate::revocation::Verifier::Federated { client_claim }
    }

    /// Every header some issuer forwards a claim in.
    pub fn headers(&self) -> impl Iterator<Item = &str> {
        self.issuers
            .values()
            .flat_map(|i| i.rules.forward_claims.values().map(String::as_str))
    }

    /// The headers the issuer of a token it verified forwards, with their values (its
    /// `forward_claims`; an absent claim sets nothing).
    pub fn forwarded(&self, claims: &Claims) -> Result<Vec<(String, String)>, Denial> {
        let Some(issuer) = claims.iss.as_deref().and_then(|iss| self.issuers.get(iss)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(issuer.rules.forward_claims.len());
        for (path, header) in &issuer.rules.forward_claims {
            if let Some(v) = claims.forwarded_value_at(path)? {
                out.push((header.clone(), v));
            }
        }
        Ok(out)
    }

    /// The time checks again, for a verification taken from the cache.
    pub fn recheck(&self, claims: &Claims, now: i64) -> Result<(), Denial> {
        let issuer = claims
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.get(iss))
            .ok_or_else(|| Denial::BadIssuer {
                got: claims.iss.clone(),
            })?;
        claims.check(&rules_of(&issuer.rules), now)
    }

    /// Verifies a token of a trusted external issuer and returns its claims, with
    /// `scopes` read from the issuer's scope claim. Signature first, then the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, Denial> {
        let parts = split(token)?;
        let header = strict_json::object(&parts.header).map_err(|e| match e {
            StrictError::NotAnObject => Denial::Malformed("header is not a JSON object"),
            StrictError::DuplicateMember => Denial::Malformed("header repeats a member name"),
        })?;
        if header.contains_key("crit") {
            return Err(Denial::Malformed("unsupported crit header"));
        }
        let mut claims = Claims::parse_without_id(&parts.payload)?;
        let issuer = claims
            .iss
            .as_deref()
            .and_then(|iss| self.issuers.get(iss))
            .ok_or_else(|| Denial::BadIssuer {
                got: claims.iss.clone(),
            })?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => Alg::parse(a).ok_or(Denial::BadAlgorithm)?,
            Some(_) => return Err(Denial::BadAlgorithm),
            None => return Err(Denial::Malformed("header has no alg")),
        };
        if !issuer.rules.algorithms.contains(&alg) {
            return Err(Denial::BadAlgorithm);
        }
        let kid = match header.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => k,
            _ => return Err(Denial::Malformed("header has no kid")),
        };
        let key = issuer.keys.get(kid).ok_or(Denial::UnknownKey)?;
        if !key.algorithms.contains(&alg) {
            return Err(Denial::BadAlgorithm);
        }
        if !verify_signature(
            &key.prepared,
            alg,
            parts.signing_input.as_bytes(),
            &parts.signature,
        )? {
            return Err(Denial::BadSignature);
        }
        if let Some(want) = &issuer.rules.typ {
            let typ = header.get("typ").and_then(Value::as_str);
            if !meshauth_wire::federation::typ_matches(typ, want) {
                return Err(Denial::Malformed("typ is not the issuer's"));
            }
        }
        if claims.aud.is_empty() {
            return Err(Denial::BadAudience);
        }
        claims.check(&rules_of(&issuer.rules), now)?;
        for (name, allowed) in &issuer.rules.required_claims {
            if !claims.values(name).iter().any(|v| allowed.contains(v)) {
                return Err(Denial::ClaimMismatch {
                    claim: name.clone(),
                });
            }
        }
        claims.jti = token_id(&claims, &issuer.rules)?;
        claims.scopes = scopes_at(&claims.raw, &issuer.rules.scope_claim);
        Ok(claims)
    }
}

/// The token's id under its issuer's rules: the `id_claim` (`jti` unless set), a
/// non-empty string; absent only when the issuer has `id_optional`.
fn token_id(claims: &Claims, rules: &FederatedIssuer) -> Result<Option<String>, Denial> {
    match claims.raw.get(rules.id_claim()) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        None if rules.id_optional => Ok(None),
        _ => Err(Denial::BadClaim("jti")),
    }
}

fn rules_of(i: &FederatedIssuer) -> ClaimRules {
    ClaimRules {
        issuer: Some(i.issuer.clone()),
        audiences: i.audiences.clone(),
        skew_seconds: i64::try_from(i.clock_skew_seconds).unwrap_or(0),
        // Bounded by `wire` (at most a week): always fits.
        max_lifetime: Some(i64::try_from(i.max_token_lifetime_seconds).unwrap_or(i64::MAX)),
    }
}

/// The `iss` a token claims, before any check: only to pick the rules that verify it.
pub fn unverified_iss(token: &str) -> Option<String> {
    // Only `iss` is read: every other claim is skipped, not built into a map (this runs
    // on each cache miss, own tokens included, once any issuer is trusted).
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<Value>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = b64::decode(payload).ok()?;
    match serde_json::from_slice::<Iss>(&bytes).ok()?.iss {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The `kid` a token's header names, before any check: only for an unknown-kid report,
/// after `Federation::verify` refused the token for it.
pub fn unverified_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = b64::decode(header).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    match header.get("kid") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The scopes at a dotted claim path: an array of strings, or one space-separated
/// string (`scope`, `scp` either way; `permissions`, `realm_access.roles`). Anything
/// else gives none.
fn scopes_at(raw: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut segments = path.split('.');
    let first = segments.next().and_then(|s| raw.get(s));
    let value = segments
        .try_fold(first, |v, s| Some(v.and_then(|v| v.get(s))))
        .flatten();
    match value {
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

struct Parts<'a> {
    header: Vec<u8>,
    payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, Denial> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denial::Malformed("expected three dot-separated parts"));
    };
    let header = b64::decode(h).map_err(|_| Denial::Malformed("header is not base64url"))?;
    let payload = b64::decode(p).map_err(|_| Denial::Malformed("payload is not base64url"))?;
    let signature = b64::decode(s).map_err(|_| Denial::Malformed("signature is not base64url"))?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(Denial::Malformed("expected three dot-separated parts"))?;
    Ok(Parts {
        header,
        payload,
        signing_input,
        signature,
    })
}

/// `Err(BadAlgorithm)` when the key cannot serve `alg` (its type does not match).
fn verify_signature(key: &Prepared, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<bool, Denial> {
    use crate::rsa_verify::Hash;
    Ok(match (key, alg) {
        (Prepared::Rsa(k), _) => match alg {
            Alg::RS256 => k.verify_pkcs1v15(Hash::Sha256, msg, sig),
            Alg::RS384 => k.verify_pkcs1v15(Hash::Sha384, msg, sig),
            Alg::RS512 => k.verify_pkcs1v15(Hash::Sha512, msg, sig),
            Alg::PS256 => k.verify_pss(Hash::Sha256, msg, sig),
            Alg::PS384 => k.verify_pss(Hash::Sha384, msg, sig),
            Alg::PS512 => k.verify_pss(Hash::Sha512, msg, sig),
            Alg::ES256 | Alg::ES384 | Alg::EdDSA => return Err(Denial::BadAlgorithm),
        },
        (Prepared::P256(_, Some(comb)), Alg::ES256) => crate::p256_comb::verify(comb, msg, sig),
        (Prepared::P256(k, None), Alg::ES256) => {
            // JOSE's ECDSA signature is r || s, 32 bytes each (RFC 7518 §3.4).
            match p256::ecdsa::Signature::from_slice(sig) {
                Ok(s) if sig.len() == 64 => k.verify(msg, &s).is_ok(),
                _ => false,
            }
        }
        (Prepared::P384(k), Alg::ES384) => {
            // r || s, 48 bytes each.
            match p384::ecdsa::Signature::from_slice(sig) {
                Ok(s) if sig.len() == 96 => k.verify(msg, &s).is_ok(),
                _ => false,
            }
        }
        (Prepared::Ed25519(k), Alg::EdDSA) => match <&[u8; 64]>::try_from(sig) {
            Ok(s) => k.verify(msg, s),
            Err(_) => false,
        },
        _ => return Err(Denial::BadAlgorithm),
    })
}

pub mod report;

#[cfg(test)]
pub(crate) mod tests;
