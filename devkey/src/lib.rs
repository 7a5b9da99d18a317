//! The one test signing key of meshauth's unit tests (filter) and end-to-end tests
//! (`tests/`). Well-formed tokens are signed by the `jsonwebtoken` crate, an
//! implementation independent of the filter's verifier; crafted ones by hand. Only
//! dev-dependencies name this crate, so it never reaches the release filter or binary.
#![allow(clippy::expect_used)] // a test helper that cannot sign has nothing to return

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use meshauth_wire::{b64, Jwk, JwkSet};
use serde_json::Value;

#[derive(Clone)]
pub struct DevKey {
    sk: SigningKey,
}

impl DevKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        DevKey {
            sk: SigningKey::from_bytes(&seed),
        }
    }

    /// A fixed key, `n` repeated: the same in every run.
    pub fn seeded(n: u8) -> Self {
        Self::from_seed([n; 32])
    }

    pub fn random() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.sk.to_bytes()
    }

    /// The public key's 32 bytes.
    pub fn public(&self) -> [u8; 32] {
        self.sk.verifying_key().to_bytes()
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::from_ed25519(&self.public())
    }

    pub fn kid(&self) -> String {
        self.jwk().thumbprint()
    }

    pub fn jwks(keys: &[&DevKey]) -> JwkSet {
        JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        }
    }

    /// A standard access token (`typ` `at+jwt`, this key's `kid`) signed by `jsonwebtoken`.
    pub fn sign(&self, claims: &Value) -> String {
        let der = self.sk.to_pkcs8_der().expect("pkcs8");
        let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid());
        header.typ = Some(meshauth_wire::TYP_ACCESS_TOKEN.into());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// Any header and payload bytes, signed as given.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
        format!("{input}.{}", b64::encode(self.sign_bytes(input.as_bytes())))
    }

    /// An Ed25519 signature over `message`, as the sync formats' `seal` functions take it.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.sk.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn tokens_verify_under_the_public_key_and_name_it() {
        let key = DevKey::seeded(1);
        let token = key.sign(&serde_json::json!({"sub": "a"}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let vk = VerifyingKey::from_bytes(&key.public()).unwrap();
        let sig = Signature::from_bytes(&b64::decode_array::<64>(sig).unwrap());
        assert!(vk.verify(input.as_bytes(), &sig).is_ok());
        let header: Value =
            serde_json::from_slice(&b64::decode(input.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["kid"], key.kid());
        assert_eq!(header["typ"], "at+jwt");
        assert_ne!(DevKey::seeded(2).kid(), key.kid());
    }
}
