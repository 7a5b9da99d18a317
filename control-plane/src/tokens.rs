//! Tokens: access tokens (JWTs signed by the current key, verified against the
//! published ones) and refresh tokens (`rt1.<sid>.<nonce>.<mac>`, random and MACed so
//! one proves its session after its record is gone).

use std::sync::Arc;

use ed25519_dalek::{Signer, Verifier};
use serde::Serialize;
use serde_json::Value;

use meshauth_wire::{b64, AccessClaims, Actor, ExternalSubject};

use crate::crypto::{self, ct_eq};
use crate::ctx::Ctx;
use crate::error::ServiceError;
use crate::keys::KeyService;
use crate::store::typed;

/// Refresh tokens are `rt1.<sid>.<nonce>.<mac>`; the store keeps them by SHA-256.
const REFRESH_PREFIX: &str = "rt1";

/// An issued token set, as the token endpoint answers (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Token exchange (RFC 8693 §2.2.1): the type of `access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// What an access token is minted for.
pub struct AccessGrant<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub aud: Vec<String>,
    pub ttl: i64,
    pub sid: Option<String>,
    /// Token exchange only: the external subject and the delegation chain.
    pub ext: Option<ExternalSubject>,
    pub act: Option<Actor>,
}

#[derive(Clone)]
pub struct Tokens {
    ctx: Arc<Ctx>,
    keys: Arc<KeyService>,
    /// MACs refresh tokens.
    refresh_key: [u8; 32],
}

impl Tokens {
    pub fn new(ctx: Arc<Ctx>, keys: Arc<KeyService>) -> Tokens {
        let refresh_key = ctx.settings.master_key.derive("meshauth refresh token v1");
        Tokens {
            ctx,
            keys,
            refresh_key,
        }
    }

    /// Signed with `ed25519-dalek` and a cached key (`sign_jws`): `jsonwebtoken` derives the key pair
    /// again on every token, measured at about twice the cost (docs/benchmarks.md).
    pub fn mint_access(&self, g: AccessGrant<'_>) -> Result<(String, AccessClaims), ServiceError> {
        let (kid, sk) = self.keys.signer()?;
        let now = self.ctx.now();
        let claims = AccessClaims {
            iss: self.ctx.settings.issuer.clone(),
            sub: g.sub.to_string(),
            aud: g.aud,
            exp: now + g.ttl,
            iat: now,
            nbf: now,
            jti: crypto::random_token(16),
            scope: g.scope.to_string(),
            client_id: g.client_id.to_string(),
            sid: g.sid,
            ext: g.ext,
            act: g.act,
        };
        let payload = typed::encode("access token claims", &claims)?;
        Ok((sign_jws(&kid, &sk, &payload), claims))
    }

    /// Verifies one of our access tokens (signature by a published key, expiry).
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64::decode(h).ok()?).ok()?;
        if header["alg"] != meshauth_wire::ALG_EDDSA && header["alg"] != meshauth_wire::ALG_ED25519
        {
            return None;
        }
        let public = self.keys.published_key(header["kid"].as_str()?)?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).ok()?;
        let sig = ed25519_dalek::Signature::from_bytes(&b64::decode_array::<64>(s)?);
        vk.verify(format!("{h}.{p}").as_bytes(), &sig).ok()?;
        let claims: AccessClaims = serde_json::from_slice(&b64::decode(p).ok()?).ok()?;
        (claims.exp > self.ctx.now()).then_some(claims)
    }

    /// A new refresh token for session `sid`.
    pub fn mint_refresh(&self, sid: &str) -> String {
        let nonce = crypto::random_token(32);
        format!(
            "{REFRESH_PREFIX}.{sid}.{nonce}.{}",
            self.refresh_mac(sid, &nonce)
        )
    }

    fn refresh_mac(&self, sid: &str, nonce: &str) -> String {
        b64::encode(crypto::hmac_sha256(
            &self.refresh_key,
            format!("{sid}.{nonce}").as_bytes(),
        ))
    }

    /// The session a refresh token of ours was issued for, if its MAC holds.
    pub fn refresh_sid(&self, token: &str) -> Option<String> {
        let mut p = token.split('.');
        if p.next()? != REFRESH_PREFIX {
            return None;
        }
        let (sid, nonce, mac) = (p.next()?, p.next()?, p.next()?);
        if p.next().is_some() {
            return None;
        }
        ct_eq(mac.as_bytes(), self.refresh_mac(sid, nonce).as_bytes()).then(|| sid.to_string())
    }
}

/// The protected header of an access token (RFC 9068 `typ`).
#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// A compact EdDSA JWS of `payload` (already JSON) under `kid`. Public so
/// `examples/sign_bench.rs` measures exactly what the token endpoint does.
pub fn sign_jws(kid: &str, sk: &ed25519_dalek::SigningKey, payload: &[u8]) -> String {
    let header = JwsHeader {
        alg: meshauth_wire::ALG_EDDSA,
        typ: meshauth_wire::TYP_ACCESS_TOKEN,
        kid,
    };
    // A struct of three strings always serializes.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = sk.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig.to_bytes()))
}
