//! Ed25519 verification (RFC 8032, cofactorless, canonical `S`) tuned for Envoy's V8.
//!
//! Keys arrive before tokens, so each key gets a fixed-base table at load: `T[i][j] =
//! (j+1)·2^(W·i)·A`. With signed base-2^W digits, `[k]A` is then one table lookup and
//! one point addition per digit and no doublings at all, and `[S]B` the same over a
//! table for the base point built once. A verification costs one SHA-512, about
//! 2·256/W point additions and one inversion, against ~253 doublings for a
//! variable-base multiplication: about 3x faster inside V8, where wide multiplies are
//! slow.

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use sha2::{Digest, Sha512};

/// Digit width in bits. 6 keeps a table at ~220 KiB (43 rows of 32 points) with
/// 43 additions per multiplication; 8 would need ~655 KiB for 32 additions.
const W: usize = 6;
const ROWS: usize = 253_usize.div_ceil(W) + 1;
const HALF: usize = 1 << (W - 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a point on Ed25519")]
    NotOnCurve,
    #[error("a small-order (weak) key")]
    SmallOrder,
    #[error("a key with a torsion component (not in the prime-order subgroup)")]
    MixedOrder,
}

/// Multiples of one point for fixed-base multiplication; row-major `ROWS x HALF`.
struct FixedBase {
    points: Vec<EdwardsPoint>,
}

impl FixedBase {
    fn new(p: EdwardsPoint) -> FixedBase {
        let mut points = Vec::with_capacity(ROWS * HALF);
        let mut base = p;
        for _ in 0..ROWS {
            let mut acc = base;
            for _ in 0..HALF {
                points.push(acc);
                acc += base;
            }
            // acc = (HALF+1)·base; the next row's base is 2^W·base = 2·HALF·base.
            acc -= base;
            base = acc + acc;
        }
        FixedBase { points }
    }

    /// `[scalar]P` for a reduced scalar, in variable time (inputs are public).
    fn mul(&self, scalar: &Scalar, acc: &mut EdwardsPoint) {
        for (row, digit) in signed_digits(scalar).iter().enumerate() {
            let d = *digit;
            if d == 0 {
                continue;
            }
            let idx = row * HALF + (d.unsigned_abs() as usize - 1);
            if let Some(p) = self.points.get(idx) {
                if d > 0 {
                    *acc += p;
                } else {
                    *acc -= p;
                }
            }
        }
    }
}

/// Signed base-2^W digits in `[-HALF, HALF]` of a scalar below 2^253.
fn signed_digits(scalar: &Scalar) -> [i16; ROWS] {
    let bytes = scalar.as_bytes();
    let bit = |i: usize| -> i16 {
        bytes
            .get(i / 8)
            .map_or(0, |b| i16::from((b >> (i % 8)) & 1))
    };
    let mut digits = [0i16; ROWS];
    let mut carry = 0i16;
    for (row, digit) in digits.iter_mut().enumerate() {
        let mut v = carry;
        for j in 0..W {
            v += bit(row * W + j) << j;
        }
        carry = 0;
        if v > HALF as i16 {
            v -= 1 << W;
            carry = 1;
        }
        *digit = v;
    }
    digits
}

fn basepoint_table() -> &'static FixedBase {
    static TABLE: OnceLock<FixedBase> = OnceLock::new();
    TABLE.get_or_init(|| FixedBase::new(ED25519_BASEPOINT_POINT))
}

/// A public key ready for fast verification.
pub struct PreparedKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
    /// `None` for a compact key (`PreparedKey::compact`).
    table: Option<FixedBase>,
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedKey")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl PreparedKey {
    pub fn new(bytes: [u8; 32]) -> Result<Self, KeyError> {
        Self::load(bytes, true)
    }

    /// A key checked like `new` but without a table of its own (a couple of hundred
    /// bytes instead of ~220 KiB, built at once): each verification is then a plain
    /// double-scalar multiplication, a few times slower. For keys that come in bulk and
    /// are rebuilt on every change of any of them (federated issuers' keys: up to
    /// 256 x 16 in one snapshot, which with tables would be ~900 MiB per VM).
    pub fn compact(bytes: [u8; 32]) -> Result<Self, KeyError> {
        Self::load(bytes, false)
    }

    /// Heap memory the key holds (its table).
    pub fn heap_bytes(&self) -> usize {
        self.table.as_ref().map_or(0, |t| {
            t.points.capacity() * std::mem::size_of::<EdwardsPoint>()
        })
    }

    fn load(bytes: [u8; 32], with_table: bool) -> Result<Self, KeyError> {
        let a = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(KeyError::NotOnCurve)?;
        // A small-order key lets one signature verify for many messages.
        if a.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        // With a torsion component, `[S]B + [-k]A` (what the table computes) is not
        // `[S]B - [k]A` for every k, so such a key would accept signatures only the
        // cofactored equation admits. Honest keys are always torsion-free.
        if !a.is_torsion_free() {
            return Err(KeyError::MixedOrder);
        }
        // Non-canonical encodings (y >= p, or x = 0 with the sign bit set) need no check
        // of their own: every one of them is off the curve, of small order or of mixed
        // order (the test below tries them all), so two kids can never name one key.
        // Build the shared base-point table now rather than on the first request.
        let _ = basepoint_table();
        Ok(PreparedKey {
            bytes,
            point: a,
            table: with_table.then(|| FixedBase::new(a)),
        })
    }

    pub fn public_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// True when `sig` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let (r_bytes, s_bytes) = sig.split_at(32);
        let Ok(s_arr) = <[u8; 32]>::try_from(s_bytes) else {
            return false;
        };
        // Non-canonical S would make signatures malleable (RFC 8032 §5.1.7).
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_arr)) else {
            return false;
        };
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(self.bytes);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        // R' = [S]B - [k]A must encode to the R in the signature.
        let r = match &self.table {
            Some(table) => {
                let mut r = EdwardsPoint::identity();
                basepoint_table().mul(&s, &mut r);
                table.mul(&-k, &mut r);
                r
            }
            None => EdwardsPoint::vartime_double_scalar_mul_basepoint(&-k, &self.point, &s),
        };
        r.compress().as_bytes() == r_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc8032_test_vector_2() {
        let key: [u8; 32] = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
            .try_into()
            .unwrap();
        let sig: [u8; 64] = hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00").try_into().unwrap();
        let k = PreparedKey::new(key).unwrap();
        assert!(k.verify(&[0x72], &sig));
        assert!(!k.verify(&[0x73], &sig));
    }

    #[test]
    fn refuses_small_order_and_invalid_keys() {
        // The identity point encodes as 1 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PreparedKey::new(identity).unwrap_err(),
            KeyError::SmallOrder
        );
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(PreparedKey::new(bad).unwrap_err(), KeyError::NotOnCurve);
    }

    #[test]
    fn refuses_mixed_order_and_non_canonical_keys() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let honest = SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes();
        let a = CompressedEdwardsY(honest).decompress().unwrap();
        for t in EIGHT_TORSION.iter().skip(1) {
            let mixed = (a + t).compress().to_bytes();
            assert_eq!(
                PreparedKey::new(mixed).unwrap_err(),
                KeyError::MixedOrder,
                "{mixed:?}"
            );
        }
        // y >= p: every encoding of y + p (y < 19, both signs) aliases y, and each is
        // refused by the checks above (no separate canonicity check is needed).
        let p_bytes: [u8; 32] = {
            let mut b = [0xffu8; 32];
            b[0] = 0xed;
            b[31] = 0x7f;
            b
        };
        for y in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut enc = p_bytes;
                enc[0] += y; // 0xed + 18 = 0xff: no carry
                enc[31] |= sign;
                assert!(PreparedKey::new(enc).is_err(), "y = p + {y}, sign {sign}");
            }
        }
        // A honest key still loads.
        assert!(PreparedKey::new(honest).is_ok());
    }

    /// A compact key takes and refuses exactly what a tabled one does.
    #[test]
    fn compact_keys_verify_alike_and_hold_no_table() {
        for seed in 0u8..8 {
            let sk = SigningKey::from_bytes(&[seed; 32]);
            let public = sk.verifying_key().to_bytes();
            let (tabled, compact) = (
                PreparedKey::new(public).unwrap(),
                PreparedKey::compact(public).unwrap(),
            );
            assert_eq!(compact.heap_bytes(), 0);
            assert!(tabled.heap_bytes() > 100_000);
            let msg = [seed; 40];
            let sig = sk.sign(&msg).to_bytes();
            assert!(compact.verify(&msg, &sig));
            for i in [0, 31, 32, 63] {
                let mut bad = sig;
                bad[i] ^= 1;
                assert_eq!(compact.verify(&msg, &bad), tabled.verify(&msg, &bad));
                assert!(!compact.verify(&msg, &bad));
            }
            assert!(!compact.verify(&[seed ^ 1; 40], &sig));
        }
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PreparedKey::compact(identity).unwrap_err(),
            KeyError::SmallOrder
        );
    }

    #[test]
    fn refuses_non_canonical_s() {
        let sk = SigningKey::from_bytes(&[5u8; 32]);
        let msg = b"hello";
        let mut sig = sk.sign(msg).to_bytes();
        let k = PreparedKey::new(sk.verifying_key().to_bytes()).unwrap();
        assert!(k.verify(msg, &sig));
        // S + L is the same scalar mod L but not canonical.
        let l: [u8; 32] = hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .try_into()
            .unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let v = sig[32 + i] as u16 + l[i] as u16 + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(!k.verify(msg, &sig));
    }

    #[test]
    fn fixed_base_matches_variable_base() {
        let p = ED25519_BASEPOINT_POINT * Scalar::from(12345u64);
        let table = FixedBase::new(p);
        for s in [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(u64::MAX),
            Scalar::from_bytes_mod_order([0xff; 32]),
        ] {
            let mut acc = EdwardsPoint::identity();
            table.mul(&s, &mut acc);
            assert_eq!(acc, p * s);
        }
    }

    proptest! {
        #[test]
        fn signed_digits_recompose(bytes in any::<[u8; 32]>()) {
            let s = Scalar::from_bytes_mod_order(bytes);
            let mut acc = Scalar::ZERO;
            let mut weight = Scalar::ONE;
            for d in signed_digits(&s) {
                prop_assert!(d.unsigned_abs() as usize <= HALF);
                let term = Scalar::from(d.unsigned_abs() as u64) * weight;
                acc += if d < 0 { -term } else { term };
                weight *= Scalar::from(1u64 << W);
            }
            prop_assert_eq!(acc, s);
        }

        #[test]
        fn agrees_with_ed25519_dalek(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..100), flip in any::<(usize, u8)>()) {
            let sk = SigningKey::from_bytes(&seed);
            let sig = sk.sign(&msg).to_bytes();
            let k = PreparedKey::new(sk.verifying_key().to_bytes()).unwrap();
            prop_assert!(k.verify(&msg, &sig));
            let mut bad = sig;
            let bit = flip.1 | 1;
            bad[flip.0 % 64] ^= bit;
            prop_assert_eq!(k.verify(&msg, &bad), sk.verifying_key().verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&bad)).is_ok());
        }
    }
}
