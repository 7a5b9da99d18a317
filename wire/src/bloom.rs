//! The revocation Bloom filter, defined once for both halves: the control
//! plane builds it over revoked `jti`s, the filter checks tokens against it.
//!
//! Hashing (part of the wire contract, pinned by the golden test below):
//! - `h1` = FNV-1a 64 over the seed's 8 little-endian bytes followed by the `jti`'s UTF-8 bytes;
//! - `h2` = splitmix64(`h1`) with the low bit set (odd, so the probes cycle);
//! - probe `i` (0 ≤ i < k) is bit `(h1 + i·h2) mod m` (wrapping 64-bit arithmetic);
//! - bit `b` lives in byte `b / 8`, at `1 << (b % 8)`; `bits` is those bytes, base64url.
//!
//! A miss is an exact "not revoked"; a hit may be a false positive and must be confirmed.

use serde::{Deserialize, Serialize};

use crate::b64;

/// Bounds that keep a snapshot's filter small enough to ship and to hold.
pub const MAX_BITS: u32 = 64 * 1024 * 1024;
pub const MAX_HASHES: u8 = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bloom {
    /// Number of bits.
    pub m: u32,
    /// Number of probes.
    pub k: u8,
    pub seed: u64,
    #[serde(with = "bits_b64")]
    pub bits: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BloomError {
    #[error("m must be between 8 and {MAX_BITS} bits")]
    Size,
    #[error("k must be between 1 and {MAX_HASHES}")]
    Hashes,
    #[error("bits must hold exactly ceil(m / 8) bytes")]
    Length,
}

mod bits_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bits: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::b64::encode(bits))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::b64::decode(text).map_err(serde::de::Error::custom)
    }
}

fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(data) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bloom {
    /// An empty filter sized for `n` entries at false-positive rate `p`.
    pub fn with_capacity(n: usize, p: f64, seed: u64) -> Bloom {
        let n = n.max(1) as f64;
        let p = p.clamp(1e-9, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let m = (-(n * p.ln()) / (ln2 * ln2))
            .ceil()
            .clamp(64.0, f64::from(MAX_BITS)) as u32;
        let k = ((f64::from(m) / n) * ln2)
            .round()
            .clamp(1.0, f64::from(MAX_HASHES)) as u8;
        Bloom {
            m,
            k,
            seed,
            bits: vec![0; m.div_ceil(8) as usize],
        }
    }

    /// Checks a filter received from the wire.
    pub fn validate(&self) -> Result<(), BloomError> {
        if !(8..=MAX_BITS).contains(&self.m) {
            return Err(BloomError::Size);
        }
        if !(1..=MAX_HASHES).contains(&self.k) {
            return Err(BloomError::Hashes);
        }
        if self.bits.len() != self.m.div_ceil(8) as usize {
            return Err(BloomError::Length);
        }
        Ok(())
    }

    fn probes(&self, jti: &str) -> impl Iterator<Item = u64> + '_ {
        let h1 = fnv1a(self.seed, jti.as_bytes());
        let h2 = splitmix64(h1) | 1;
        let m = u64::from(self.m.max(1));
        (0..u64::from(self.k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    pub fn insert(&mut self, jti: &str) {
        let probes: Vec<u64> = self.probes(jti).collect();
        for b in probes {
            if let Some(byte) = self.bits.get_mut((b / 8) as usize) {
                *byte |= 1 << (b % 8);
            }
        }
    }

    /// False: certainly not inserted. True: inserted, or a false positive.
    pub fn contains(&self, jti: &str) -> bool {
        self.probes(jti).all(|b| {
            self.bits
                .get((b / 8) as usize)
                .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
        })
    }

    pub fn bits_b64(&self) -> String {
        b64::encode(&self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    /// The wire contract: if this changes, filters and control planes of different
    /// versions disagree on what is revoked.
    #[test]
    fn golden_vector() {
        let mut b = Bloom {
            m: 1024,
            k: 7,
            seed: 42,
            bits: vec![0; 128],
        };
        for i in 0..50 {
            b.insert(&format!("jti-{i}"));
        }
        let digest = hex_digest(&b.bits);
        assert_eq!(digest, GOLDEN, "bloom bits changed");
        let json = serde_json::to_string(&b).unwrap();
        let back: Bloom = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }

    const GOLDEN: &str = "625948a69ab421697d57cd74b4b24d36b986bca388493c6a630f8fd5a9de5d65";

    fn hex_digest(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn hash_building_blocks_match_their_references() {
        // FNV-1a 64 of "a" with no seed bytes, and splitmix64's first output from 0.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= u64::from(b'a');
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_ne!(fnv1a(1, b"x"), fnv1a(2, b"x"), "the seed takes part");
    }

    #[test]
    fn validation() {
        let mut b = Bloom::with_capacity(100, 0.01, 1);
        assert_eq!(b.validate(), Ok(()));
        b.bits.pop();
        assert_eq!(b.validate(), Err(BloomError::Length));
        b.k = 0;
        assert_eq!(b.validate(), Err(BloomError::Hashes));
    }

    proptest! {
        #[test]
        fn no_false_negatives(items in proptest::collection::hash_set("[a-zA-Z0-9_-]{1,40}", 0..300), seed in any::<u64>()) {
            let mut b = Bloom::with_capacity(items.len(), 0.01, seed);
            for i in &items { b.insert(i); }
            for i in &items { prop_assert!(b.contains(i)); }
        }
    }

    #[test]
    fn false_positive_rate_is_near_the_target() {
        let mut b = Bloom::with_capacity(10_000, 0.01, 7);
        for i in 0..10_000 {
            b.insert(&format!("revoked-{i}"));
        }
        let fp = (0..100_000)
            .filter(|i| b.contains(&format!("valid-{i}")))
            .count();
        assert!(fp < 2_000, "{fp} false positives in 100000 (target 1%)");
    }
}
