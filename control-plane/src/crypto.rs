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

/// The key that encrypts private keys at rest, and the root of the keys derived from it
/// (the audit chain's). Never logged: Debug is redacted.
pub struct MasterKey(XChaCha20Poly1305, [u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let key = parse_key32(text).ok_or(CryptoError::BadMasterKey)?;
        Ok(MasterKey(XChaCha20Poly1305::new(&key.into()), key))
    }

    /// A key for one purpose, named by `label`: HMAC-SHA256(master, label) (the expand
    /// step of HKDF, RFC 5869, with the uniformly random master key as its PRK). Keys
    /// for different labels are independent, and none reveals the master key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut info = label.as_bytes().to_vec();
        info.push(1);
        hmac_sha256(&self.1, &info)
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
/// 32 bytes written as 64 hex digits or base64url (a key in a file or variable;
/// surrounding whitespace ignored).
pub fn parse_key32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 {
        hex::decode(text).ok()?
    } else {
        meshauth_wire::b64::decode(text).ok()?
    };
    bytes.try_into().ok()
}

pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    meshauth_wire::b64::encode(b)
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key.
pub fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key.iter()) {
        *i ^= k;
        *o ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
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
    fn hmac_matches_rfc4231_and_derived_keys_differ() {
        // RFC 4231 test case 2 pads "Jefe" with zeros to 32 bytes: the same HMAC.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = MasterKey::parse(&"11".repeat(32)).unwrap();
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_eq!(k.derive("a"), k.derive("a"));
        assert_ne!(
            k.derive("a"),
            MasterKey::parse(&"22".repeat(32)).unwrap().derive("a")
        );
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
