//! Ed25519 public keys as JWKs (RFC 8037) and their `kid`, the RFC 7638 thumbprint.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::b64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwkError {
    #[error("kty must be \"OKP\", got {0:?}")]
    Kty(String),
    #[error("crv must be \"Ed25519\", got {0:?}")]
    Crv(String),
    #[error("x must be 32 bytes of base64url")]
    X,
    #[error("kid is missing")]
    NoKid,
    #[error("use must be \"sig\", got {0:?}")]
    Use(String),
    #[error("alg must be EdDSA or Ed25519, got {0:?}")]
    Alg(String),
    #[error("private key material (\"d\") must never be published")]
    Private,
}

impl Jwk {
    /// A signing key's public half, with `kid` set to its thumbprint.
    pub fn from_ed25519(public: &[u8; 32]) -> Self {
        let x = b64::encode(public);
        let kid = thumbprint_of_x(&x);
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x,
            kid: Some(kid),
            use_: Some("sig".into()),
            alg: Some(crate::ALG_EDDSA.into()),
        }
    }

    /// Checks that this is an Ed25519 verification key and returns its raw bytes.
    pub fn ed25519_public(&self) -> Result<[u8; 32], JwkError> {
        if self.kty != "OKP" {
            return Err(JwkError::Kty(self.kty.clone()));
        }
        if self.crv != "Ed25519" {
            return Err(JwkError::Crv(self.crv.clone()));
        }
        if let Some(u) = &self.use_ {
            if u != "sig" {
                return Err(JwkError::Use(u.clone()));
            }
        }
        if let Some(a) = &self.alg {
            if a != crate::ALG_EDDSA && a != crate::ALG_ED25519 {
                return Err(JwkError::Alg(a.clone()));
            }
        }
        b64::decode_array::<32>(&self.x).ok_or(JwkError::X)
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexical order.
    pub fn thumbprint(&self) -> String {
        thumbprint_of_x(&self.x)
    }
}

fn thumbprint_of_x(x: &str) -> String {
    // The members are fixed for OKP/Ed25519, and `x` is base64url (no characters that
    // need JSON escaping), so the canonical form can be written directly.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    b64::encode(Sha256::digest(canonical.as_bytes()))
}

/// Parses a JWK Set, refusing any member that carries a private key.
pub fn parse_jwk_set(text: &str) -> Result<JwkSet, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(keys) = value.get("keys").and_then(|k| k.as_array()) {
        if keys.iter().any(|k| k.get("d").is_some()) {
            return Err(JwkError::Private.to_string());
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_appendix_a3_thumbprint() {
        // RFC 8037 A.3: the thumbprint of the A.2 public key.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: None,
            use_: None,
            alg: None,
        };
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert!(jwk.ed25519_public().is_ok());
    }

    #[test]
    fn refuses_other_key_types() {
        let mut jwk = Jwk::from_ed25519(&[9u8; 32]);
        jwk.crv = "X25519".into();
        assert_eq!(jwk.ed25519_public(), Err(JwkError::Crv("X25519".into())));
        let mut jwk = Jwk::from_ed25519(&[9u8; 32]);
        jwk.x = "AAAA".into();
        assert_eq!(jwk.ed25519_public(), Err(JwkError::X));
        let mut jwk = Jwk::from_ed25519(&[9u8; 32]);
        jwk.alg = Some("HS256".into());
        assert!(matches!(jwk.ed25519_public(), Err(JwkError::Alg(_))));
    }

    #[test]
    fn private_members_are_refused() {
        let text = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}"#;
        assert!(parse_jwk_set(text).unwrap_err().contains("private"));
    }
}
