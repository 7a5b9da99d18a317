//! Secrets: the operator's master key (AEAD at rest), random tokens, hashes and
//! constant-time comparison.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, given as 64 hex digits or 43 base64url characters")]
    BadMasterKey,
    #[error("sealed data could not be opened (wrong master key or corrupted data)")]
    Open,
}

/// The key that encrypts private keys at rest. Never logged: Debug is redacted.
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            hex::decode(text).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            meshauth_wire::b64::decode(text).map_err(|_| CryptoError::BadMasterKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(MasterKey(XChaCha20Poly1305::new(&key.into())))
    }

    /// `nonce || ciphertext`; `aad` binds the blob to what it belongs to (e.g. a kid).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        if let Ok(ct) = self.0.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 24 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = sealed.split_at(24);
        self.0
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Open)
    }
}

/// `n` random bytes as base64url.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    meshauth_wire::b64::encode(b)
}

pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(data.as_ref()))
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let k = MasterKey::parse(&"11".repeat(32)).unwrap();
        let sealed = k.seal(b"secret", b"kid-1");
        assert_eq!(k.open(&sealed, b"kid-1").unwrap(), b"secret");
        assert_eq!(k.open(&sealed, b"kid-2"), Err(CryptoError::Open));
        let other = MasterKey::parse(&"22".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed, b"kid-1"), Err(CryptoError::Open));
        assert_eq!(k.open(&sealed[..10], b"kid-1"), Err(CryptoError::Open));
    }

    #[test]
    fn master_key_formats() {
        assert!(MasterKey::parse(&meshauth_wire::b64::encode([3u8; 32])).is_ok());
        assert_eq!(
            MasterKey::parse("short").unwrap_err(),
            CryptoError::BadMasterKey
        );
        assert_eq!(
            MasterKey::parse(&"zz".repeat(32)).unwrap_err(),
            CryptoError::BadMasterKey
        );
        assert!(!format!("{:?}", MasterKey::parse(&"11".repeat(32)).unwrap()).contains("11"));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
