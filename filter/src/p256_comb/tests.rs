use super::*;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use proptest::prelude::*;

fn comb_of(k: &VerifyingKey) -> Comb {
    Comb::new(&ProjectivePoint::from(*k.as_affine()))
}

#[test]
fn signatures_verify_and_anything_else_does_not() {
    let sk = SigningKey::random(&mut rand::thread_rng());
    let comb = comb_of(sk.verifying_key());
    let msg = b"header.payload";
    let sig: Signature = sk.sign(msg);
    let bytes = sig.to_bytes();
    assert!(verify(&comb, msg, &bytes));
    assert!(!verify(&comb, b"header.payloaD", &bytes));
    // Another key.
    let other = comb_of(SigningKey::random(&mut rand::thread_rng()).verifying_key());
    assert!(!verify(&other, msg, &bytes));
    // High-S (n - s) is as valid under ECDSA as s, for us as for the crate.
    let (r, s) = sig.split_scalars();
    let high = Signature::from_scalars(r, -*s).unwrap();
    assert_eq!(
        verify(&comb, msg, &high.to_bytes()),
        sk.verifying_key().verify(msg, &high).is_ok()
    );
    // Wrong lengths, zero and out-of-range scalars, DER.
    assert!(!verify(&comb, msg, &bytes[..63]));
    assert!(!verify(&comb, msg, &[bytes.as_slice(), &[0]].concat()));
    assert!(!verify(&comb, msg, &[0u8; 64]));
    let mut zero_s = bytes.to_vec();
    zero_s[32..].fill(0);
    assert!(!verify(&comb, msg, &zero_s));
    let mut big_r = bytes.to_vec();
    big_r[..32].fill(0xff);
    assert!(!verify(&comb, msg, &big_r));
    assert!(!verify(&comb, msg, sig.to_der().as_bytes()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Equal to the crate's verification for valid signatures and for corrupted ones.
    #[test]
    fn agrees_with_the_p256_crate(msg in proptest::collection::vec(any::<u8>(), 0..64),
                                  flip in 0usize..64, bit in 0u8..8, corrupt: bool) {
        let sk = SigningKey::random(&mut rand::thread_rng());
        let vk = sk.verifying_key();
        let sig: Signature = sk.sign(&msg);
        let mut bytes = sig.to_bytes().to_vec();
        if corrupt {
            bytes[flip] ^= 1 << bit;
        }
        let theirs = Signature::from_slice(&bytes).map(|s| vk.verify(&msg, &s).is_ok()).unwrap_or(false);
        prop_assert_eq!(verify(&comb_of(vk), &msg, &bytes), theirs);
        prop_assert_eq!(theirs, !corrupt);
    }
}
