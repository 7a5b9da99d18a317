//! The key set tokens are verified against: Ed25519 keys by `kid`, prepared at load.

use std::collections::HashMap;
use std::rc::Rc;

use meshauth_wire::JwkSet;

use crate::ed25519::PreparedKey;

#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Rc<PreparedKey>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeySetError {
    #[error("keys[{index}]: {reason}")]
    Key { index: usize, reason: String },
    #[error("keys[{index}]: duplicate kid {kid:?}")]
    Duplicate { index: usize, kid: String },
}

impl KeySet {
    /// Builds a key set; every member must be a valid Ed25519 verification key with a kid.
    pub fn from_jwks(set: &JwkSet) -> Result<KeySet, KeySetError> {
        let mut keys = HashMap::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            let err = |reason: String| KeySetError::Key { index, reason };
            let kid = jwk
                .kid
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| err("kid is missing".into()))?;
            let bytes = jwk.ed25519_public().map_err(|e| err(e.to_string()))?;
            let key = PreparedKey::new(bytes).map_err(|e| err(e.to_string()))?;
            if keys.insert(kid.clone(), Rc::new(key)).is_some() {
                return Err(KeySetError::Duplicate { index, kid });
            }
        }
        Ok(KeySet { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&Rc<PreparedKey>> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshauth_wire::Jwk;

    fn public(seed: u8) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    #[test]
    fn loads_keys_by_kid() {
        let a = Jwk::from_ed25519(&public(1));
        let set = KeySet::from_jwks(&JwkSet {
            keys: vec![a.clone(), Jwk::from_ed25519(&public(2))],
        })
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.get(a.kid.as_deref().unwrap()).unwrap().public_bytes(),
            &public(1)
        );
        assert!(set.get("nope").is_none());
    }

    #[test]
    fn refuses_bad_members_naming_the_index() {
        let mut bad = Jwk::from_ed25519(&public(1));
        bad.kid = None;
        let err = KeySet::from_jwks(&JwkSet {
            keys: vec![Jwk::from_ed25519(&public(3)), bad],
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "keys[1]: kid is missing");
        let dup = Jwk::from_ed25519(&public(1));
        let err = KeySet::from_jwks(&JwkSet {
            keys: vec![dup.clone(), dup],
        })
        .unwrap_err();
        assert!(matches!(err, KeySetError::Duplicate { index: 1, .. }));
    }
}
