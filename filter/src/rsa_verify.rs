//! RSA signature verification (RS256/384/512: PKCS #1 v1.5; PS256/384/512: PSS with a
//! salt as long as the hash, RFC 7518 §3.5) with per-key precomputation, for
//! federated issuers' tokens.
//!
//! Why not the `rsa` crate: its general modular exponentiation allocates big integers
//! at every step and, compiled to wasm and run by V8, cost several times native
//! `jwt_authn`'s verification (`scripts/bench.sh`, federated rows). Here a key is
//! prepared once (Montgomery constants, `R² mod n`) and a verification is ~18
//! Montgomery products on 32-bit limbs, the widest multiply wasm has natively.
//! Only public values are involved: nothing here needs to be constant-time.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash of an RS*/PS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    /// The DER `DigestInfo` before the hash value (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// An RSA public key ready to verify.
#[derive(Debug, Clone)]
pub struct RsaKey {
    /// The modulus, little-endian 32-bit limbs.
    n: Vec<u32>,
    /// −n⁻¹ mod 2³².
    n0inv: u32,
    /// R² mod n, R = 2^(32·limbs): takes a value into Montgomery form in one product.
    rr: Vec<u32>,
    /// The public exponent, big-endian bytes without leading zeros.
    e: Vec<u8>,
    /// The modulus' length in bytes (a signature's exact length) and bits.
    len: usize,
    bits: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("RSA modulus is {0} bits; 2048 to {max} allowed", max = MAX_BITS)]
    Size(usize),
    #[error("RSA modulus is even")]
    EvenModulus,
    #[error("RSA exponent must be odd, at least 3 and at most 64 bits")]
    Exponent,
}

const MIN_BITS: usize = meshauth_wire::federation::MIN_RSA_BITS;
const MAX_BITS: usize = meshauth_wire::federation::MAX_RSA_BITS;

impl RsaKey {
    /// From the JWK's `n` and `e` (big-endian, as decoded from base64url).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, KeyError> {
        let n = strip(n);
        let e = strip(e).to_vec();
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(KeyError::Size(bits));
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyError::EvenModulus);
        }
        let e_ok = !e.is_empty()
            && e.len() <= 8
            && e.last().is_some_and(|b| b & 1 == 1)
            && (e.len() > 1 || e.first().is_some_and(|&b| b >= 3));
        if !e_ok {
            return Err(KeyError::Exponent);
        }
        let limbs = to_limbs(n, n.len().div_ceil(4));
        let n0inv = neg_inverse(limbs.first().copied().unwrap_or(1));
        let rr = r_squared(&limbs);
        Ok(RsaKey {
            n0inv,
            rr,
            e,
            len: n.len(),
            bits,
            n: limbs,
        })
    }

    /// `sig^e mod n` as `len` big-endian bytes; `None` when `sig` is not exactly `len`
    /// bytes or not below `n` (RFC 8017 §5.2.2).
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.len {
            return None;
        }
        let s = to_limbs(sig, self.n.len());
        if !less(&s, &self.n) {
            return None;
        }
        let base = self.mont_mul(&s, &self.rr);
        let mut acc = base.clone();
        // Left to right from the bit after the leading 1 (acc starts as base).
        let mut seen_one = false;
        for byte in &self.e {
            for i in (0..8).rev() {
                let bit = byte >> i & 1 == 1;
                if !seen_one {
                    seen_one = bit;
                    continue;
                }
                acc = self.mont_mul(&acc, &acc);
                if bit {
                    acc = self.mont_mul(&acc, &base);
                }
            }
        }
        let mut one = vec![0u32; self.n.len()];
        if let Some(l) = one.first_mut() {
            *l = 1;
        }
        Some(to_bytes(&self.mont_mul(&acc, &one), self.len))
    }

    /// a·b·R⁻¹ mod n (CIOS: multiply and reduce one limb of `a` at a time), for
    /// a, b < n with n's limb count.
    fn mont_mul(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let len = self.n.len();
        // t: len limbs, then two carry limbs.
        let mut t = vec![0u32; len + 2];
        for &ai in a {
            {
                let (body, top) = t.split_at_mut(len);
                let [hi, hi2] = top else { break };
                // t += ai·b
                let mut carry = 0u64;
                for (tj, &bj) in body.iter_mut().zip(b) {
                    let v = u64::from(*tj) + u64::from(ai) * u64::from(bj) + carry;
                    *tj = v as u32;
                    carry = v >> 32;
                }
                let v = u64::from(*hi) + carry;
                *hi = v as u32;
                *hi2 += (v >> 32) as u32;
                // t += m·n with m chosen so that the lowest limb becomes 0...
                let m = body.first().copied().unwrap_or(0).wrapping_mul(self.n0inv);
                let mut carry = 0u64;
                for (tj, &nj) in body.iter_mut().zip(&self.n) {
                    let v = u64::from(*tj) + u64::from(m) * u64::from(nj) + carry;
                    *tj = v as u32;
                    carry = v >> 32;
                }
                let v = u64::from(*hi) + carry;
                *hi = v as u32;
                *hi2 += (v >> 32) as u32;
            }
            // ...and then t /= 2³².
            t.copy_within(1.., 0);
            if let Some(l) = t.last_mut() {
                *l = 0;
            }
        }
        let overflow = t.get(len).is_some_and(|&l| l != 0);
        t.truncate(len);
        if overflow || !less(&t, &self.n) {
            sub_in_place(&mut t, &self.n);
        }
        t
    }

    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.2): the whole encoded message must match
    /// 00 01 FF…FF 00 DigestInfo(hash).
    pub fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let digest = hash.digest(msg);
        let Some(pad) = self.len.checked_sub(prefix.len() + digest.len() + 3) else {
            return false;
        };
        let mut want = Vec::with_capacity(self.len);
        want.extend_from_slice(&[0, 1]);
        want.resize(2 + pad, 0xff);
        want.push(0);
        want.extend_from_slice(prefix);
        want.extend_from_slice(&digest);
        em == want
    }

    /// RSASSA-PSS (RFC 8017 §8.1.2, §9.1.2), MGF1 with the same hash, salt length =
    /// hash length (what JWS's PS* algorithms use).
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        self.pss_check(hash, msg, sig).unwrap_or(false)
    }

    fn pss_check(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> Option<bool> {
        let out = self.public_op(sig)?;
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // The public operation gives `len` bytes; EM is the last em_len of them.
        let (lead, em) = out.split_at_checked(self.len.checked_sub(em_len)?)?;
        let m_hash = hash.digest(msg);
        let (h_len, s_len) = (m_hash.len(), m_hash.len());
        let (masked_db, rest) = em.split_at_checked(em_len.checked_sub(h_len + 1)?)?;
        let (h, trailer) = rest.split_at_checked(h_len)?;
        let top_mask = 0xffu8 >> (8 * em_len - em_bits);
        if lead.iter().any(|&b| b != 0)
            || em_len < h_len + s_len + 2
            || trailer != [0xbc]
            || masked_db.first().is_none_or(|&b| b & !top_mask != 0)
        {
            return Some(false);
        }
        let mut db = masked_db.to_vec();
        mgf1_xor(hash, h, &mut db);
        if let Some(b) = db.first_mut() {
            *b &= top_mask;
        }
        let (ps, one_salt) = db.split_at_checked(em_len.checked_sub(h_len + s_len + 2)?)?;
        let (one, salt) = one_salt.split_first()?;
        if ps.iter().any(|&b| b != 0) || *one != 1 {
            return Some(false);
        }
        let mut m_prime = Vec::with_capacity(8 + h_len + s_len);
        m_prime.extend_from_slice(&[0u8; 8]);
        m_prime.extend_from_slice(&m_hash);
        m_prime.extend_from_slice(salt);
        Some(hash.digest(&m_prime) == h)
    }
}

/// XORs MGF1(seed) into `out` (RFC 8017 §B.2.1).
fn mgf1_xor(hash: Hash, seed: &[u8], out: &mut [u8]) {
    let h_len = match hash {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
    };
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(h_len)) {
        let mut input = seed.to_vec();
        input.extend_from_slice(&counter.to_be_bytes());
        for (o, m) in chunk.iter_mut().zip(hash.digest(&input)) {
            *o ^= m;
        }
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    b.get(zeros..).unwrap_or_default()
}

/// Big-endian bytes → `limbs` little-endian limbs (the bytes must fit).
fn to_limbs(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, &b) in be.iter().rev().enumerate() {
        if let Some(l) = out.get_mut(i / 4) {
            *l |= u32::from(b) << (8 * (i % 4));
        }
    }
    out
}

fn to_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().rev().enumerate() {
        *o = (limbs.get(i / 4).copied().unwrap_or(0) >> (8 * (i % 4))) as u8;
    }
    out
}

/// a < b, equal lengths.
fn less(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a −= b (a ≥ b, or a holds a carried-out top bit the subtraction consumes).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = i64::from(*x) - i64::from(y) - borrow;
        *x = v as u32;
        borrow = i64::from(v < 0);
    }
}

/// −n0⁻¹ mod 2³² for odd n0 (Newton: each step doubles the correct low bits).
fn neg_inverse(n0: u32) -> u32 {
    let mut inv = 1u32;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// R² mod n by doubling 1 modulo n, 2·32·limbs times: once per key.
fn r_squared(n: &[u32]) -> Vec<u32> {
    let len = n.len();
    let mut x = vec![0u32; len];
    if let Some(l) = x.first_mut() {
        *l = 1;
    }
    for _ in 0..2 * 32 * len {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let v = (*l >> 31) & 1;
            *l = (*l << 1) | carry;
            carry = v;
        }
        if carry == 1 || !less(&x, n) {
            sub_in_place(&mut x, n);
        }
    }
    x
}

#[cfg(test)]
mod tests;
