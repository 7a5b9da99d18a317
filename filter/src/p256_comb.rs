//! ES256 verification with per-key precomputation, for federated issuers' tokens.
//!
//! Why: the `p256` crate verifies with two constant-time scalar multiplications (256
//! doublings each, and a masked table scan per window) — right for secrets, wasteful
//! for a signature check, where every value is public. Here the base point and each
//! key get a fixed-base comb once: 64 windows of 4 bits × 15 multiples.
//! `u1·G + u2·Q` is then at most 128 additions and no doubling. A table is ~92 KB, so only the first `MAX_TABLES` keys of a snapshot get one; the rest use
//! the crate's own verification. The result is tested equal to the crate's.

use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{Field as _, PrimeField as _};
use p256::{FieldBytes, ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};

/// Keys per snapshot with a table of their own (~92 KB each, per worker VM).
pub const MAX_TABLES: usize = 8;

const WINDOWS: usize = 64;
const PER_WINDOW: usize = 15;

/// `j·16ʷ·P` for w in 0..64, j in 1..16, kept projective: making them affine would
/// cost a field inversion each (the crate offers no batch inversion for P-256), and
/// the additions cost about the same either way.
pub struct Comb(Vec<ProjectivePoint>);

impl std::fmt::Debug for Comb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Comb")
    }
}

impl Comb {
    pub fn new(p: &ProjectivePoint) -> Comb {
        let mut points = Vec::with_capacity(WINDOWS * PER_WINDOW);
        let mut base = *p;
        for _ in 0..WINDOWS {
            let mut acc = base;
            for _ in 0..PER_WINDOW {
                points.push(acc);
                acc += base;
            }
            // acc = 16·base: the next window's base.
            base = acc;
        }
        Comb(points)
    }

    /// k·P, in variable time (k is public here).
    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes = k.to_bytes();
        let mut acc = ProjectivePoint::IDENTITY;
        // Little-endian nibbles: window w holds bits 4w..4w+3.
        let nibbles = bytes.iter().rev().flat_map(|b| [b & 0xf, b >> 4]);
        for (window, nibble) in self.0.chunks_exact(PER_WINDOW).zip(nibbles) {
            if let Some(point) = usize::from(nibble)
                .checked_sub(1)
                .and_then(|i| window.get(i))
            {
                acc += point;
            }
        }
        acc
    }
}

fn generator() -> &'static Comb {
    static G: std::sync::OnceLock<Comb> = std::sync::OnceLock::new();
    G.get_or_init(|| Comb::new(&ProjectivePoint::GENERATOR))
}

/// ECDSA P-256 with SHA-256 (FIPS 186-5 §6.4.2): `sig` is JOSE's r ‖ s, 64 bytes.
pub fn verify(key: &Comb, msg: &[u8], sig: &[u8]) -> bool {
    let Some((r, s)) = sig.split_at_checked(32).filter(|(_, s)| s.len() == 32) else {
        return false;
    };
    let scalar = |b: &[u8]| -> Option<Scalar> {
        let s: Option<Scalar> = Scalar::from_repr(*FieldBytes::from_slice(b)).into();
        s.filter(|s| !bool::from(s.is_zero()))
    };
    let (Some(r), Some(s)) = (scalar(r), scalar(s)) else {
        return false;
    };
    let Some(w) = Option::<Scalar>::from(s.invert()) else {
        return false;
    };
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(msg));
    let point = generator().mul(&(z * w)) + key.mul(&(r * w));
    let affine = point.to_affine();
    if bool::from(affine.is_identity()) {
        return false;
    }
    <Scalar as Reduce<U256>>::reduce_bytes(&affine.x()) == r
}

#[cfg(test)]
mod tests;
