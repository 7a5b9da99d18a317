use super::*;
use crate::federated::tests::rsa_key;
use proptest::prelude::*;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::BigUint;

fn ours(k: &rsa::RsaPrivateKey) -> RsaKey {
    RsaKey::new(&k.n().to_bytes_be(), &k.e().to_bytes_be()).unwrap()
}

#[test]
fn pkcs1v15_signatures_of_the_rsa_crate_verify_and_tampered_ones_do_not() {
    let k = rsa_key();
    let key = ours(k);
    let msg = b"header.payload";
    let sigs = [
        (
            Hash::Sha256,
            rsa::pkcs1v15::SigningKey::<Sha256>::new(k.clone())
                .sign(msg)
                .to_vec(),
        ),
        (
            Hash::Sha384,
            rsa::pkcs1v15::SigningKey::<Sha384>::new(k.clone())
                .sign(msg)
                .to_vec(),
        ),
        (
            Hash::Sha512,
            rsa::pkcs1v15::SigningKey::<Sha512>::new(k.clone())
                .sign(msg)
                .to_vec(),
        ),
    ];
    for (hash, sig) in &sigs {
        assert!(key.verify_pkcs1v15(*hash, msg, sig), "{hash:?}");
        assert!(
            !key.verify_pkcs1v15(*hash, b"header.payloaD", sig),
            "{hash:?}"
        );
        assert!(!key.verify_pss(*hash, msg, sig), "{hash:?} is not PSS");
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert!(!key.verify_pkcs1v15(*hash, msg, &bad), "{hash:?}");
        // Shorter or longer by a byte, even a leading zero.
        assert!(!key.verify_pkcs1v15(*hash, msg, &sig[1..]));
        let mut long = vec![0u8];
        long.extend_from_slice(sig);
        assert!(!key.verify_pkcs1v15(*hash, msg, &long));
    }
    // A signature under one hash never verifies under another.
    assert!(!key.verify_pkcs1v15(Hash::Sha384, msg, &sigs[0].1));
    assert!(!key.verify_pkcs1v15(Hash::Sha256, msg, &sigs[2].1));
    // The modulus itself and anything above it is not a signature (s < n).
    assert!(!key.verify_pkcs1v15(Hash::Sha256, msg, &k.n().to_bytes_be()));
    assert!(!key.verify_pkcs1v15(Hash::Sha256, msg, &vec![0xff; key.len]));
    assert!(!key.verify_pkcs1v15(Hash::Sha256, msg, &[]));
}

#[test]
fn pss_signatures_of_the_rsa_crate_verify_and_tampered_ones_do_not() {
    let k = rsa_key();
    let key = ours(k);
    let msg = b"header.payload";
    let mut rng = rand::thread_rng();
    let sigs = [
        (
            Hash::Sha256,
            rsa::pss::BlindedSigningKey::<Sha256>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
        ),
        (
            Hash::Sha384,
            rsa::pss::BlindedSigningKey::<Sha384>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
        ),
        (
            Hash::Sha512,
            rsa::pss::BlindedSigningKey::<Sha512>::new(k.clone())
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
        ),
    ];
    for (hash, sig) in &sigs {
        assert!(key.verify_pss(*hash, msg, sig), "{hash:?}");
        assert!(!key.verify_pss(*hash, b"other", sig), "{hash:?}");
        assert!(
            !key.verify_pkcs1v15(*hash, msg, sig),
            "{hash:?} is not v1.5"
        );
        let mut bad = sig.clone();
        bad[7] ^= 0x80;
        assert!(!key.verify_pss(*hash, msg, &bad), "{hash:?}");
    }
    assert!(!key.verify_pss(Hash::Sha512, msg, &sigs[0].1));
    // A salt shorter than the hash (valid PSS, not JWS PS256) is refused.
    let short = rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(k.clone(), 20)
        .sign_with_rng(&mut rng, msg)
        .to_vec();
    assert!(!key.verify_pss(Hash::Sha256, msg, &short));
}

/// A modulus whose bit length is not a multiple of 8 (PSS's emLen is then shorter by
/// one byte than the modulus in some cases, and its top bits are masked).
#[test]
fn an_odd_sized_modulus_verifies_both_schemes() {
    let k = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2049).unwrap();
    let key = ours(&k);
    assert_eq!(key.bits, 2049);
    let msg = b"m";
    let v15 = rsa::pkcs1v15::SigningKey::<Sha256>::new(k.clone())
        .sign(msg)
        .to_vec();
    assert!(key.verify_pkcs1v15(Hash::Sha256, msg, &v15));
    let pss = rsa::pss::BlindedSigningKey::<Sha256>::new(k.clone())
        .sign_with_rng(&mut rand::thread_rng(), msg)
        .to_vec();
    assert!(key.verify_pss(Hash::Sha256, msg, &pss));
}

#[test]
fn keys_out_of_bounds_are_refused() {
    let k = rsa_key();
    let n = k.n().to_bytes_be();
    assert_eq!(
        RsaKey::new(&n[..128], &[1, 0, 1]).unwrap_err(),
        KeyError::Size(1024 - n[0].leading_zeros() as usize)
    );
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    assert_eq!(
        RsaKey::new(&even, &[1, 0, 1]).unwrap_err(),
        KeyError::EvenModulus
    );
    for e in [&[][..], &[1], &[0, 1], &[1, 0, 0], &[1; 9]] {
        assert_eq!(RsaKey::new(&n, e).unwrap_err(), KeyError::Exponent, "{e:?}");
    }
    assert!(RsaKey::new(&n, &[3]).is_ok());
    // Leading zero bytes are not bits.
    let mut padded = vec![0, 0];
    padded.extend_from_slice(&n);
    assert_eq!(RsaKey::new(&padded, &[0, 1, 0, 1]).unwrap().bits, 2048);
}

fn odd_modulus(bytes: Vec<u8>) -> Vec<u8> {
    let mut n = bytes;
    n[0] |= 0x80;
    *n.last_mut().unwrap() |= 1;
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// The Montgomery exponentiation agrees with a plain big-integer modpow, for moduli
    /// of any length 2048–4100 bits and exponents 3, 65537 or larger.
    #[test]
    fn public_op_is_modpow(
        n in (256usize..513).prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len)),
        s_seed in proptest::collection::vec(any::<u8>(), 513),
        e in prop_oneof![Just(vec![3u8]), Just(vec![1, 0, 1]), proptest::collection::vec(any::<u8>(), 1..8)],
    ) {
        let n = odd_modulus(n);
        let mut e = e;
        e[0] |= 1; // nonzero leading byte
        *e.last_mut().unwrap() |= 1;
        if e == [1] { e = vec![3]; }
        let key = RsaKey::new(&n, &e).unwrap();
        let nb = BigUint::from_bytes_be(&n);
        let s = BigUint::from_bytes_be(&s_seed[..n.len()]) % &nb;
        let mut sig = s.to_bytes_be();
        while sig.len() < n.len() { sig.insert(0, 0); }
        let want = s.modpow(&BigUint::from_bytes_be(&e), &nb).to_bytes_be();
        let got = key.public_op(&sig).unwrap();
        prop_assert_eq!(BigUint::from_bytes_be(&got).to_bytes_be(), want);
    }
}
