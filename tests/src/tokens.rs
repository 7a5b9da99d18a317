//! Test signing keys and tokens. Well-formed tokens are signed by the `jsonwebtoken`
//! crate, an implementation independent of the filter; crafted ones by hand.

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use meshauth_wire::{b64, Jwk, JwkSet};
use serde_json::{json, Value};

pub struct DevKey {
    sk: SigningKey,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl DevKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        DevKey {
            sk: SigningKey::from_bytes(&seed),
        }
    }

    pub fn random() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.sk.to_bytes()
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::from_ed25519(&self.sk.verifying_key().to_bytes())
    }

    pub fn kid(&self) -> String {
        self.jwk().thumbprint()
    }

    pub fn jwks(keys: &[&DevKey]) -> JwkSet {
        JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        }
    }

    /// A standard token signed by `jsonwebtoken`.
    pub fn sign(&self, claims: &Value) -> String {
        let der = self.sk.to_pkcs8_der().expect("pkcs8");
        let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// Any header and payload bytes, signed as given.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
        let sig = self.sk.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(sig.to_bytes()))
    }
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
