//! The revocation Bloom filter as a snapshot carries it: decoded, validated, queried.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_wire::bloom::Bloom;

fuzz_target!(|data: &[u8]| {
    let (json, jti) = meshauth_fuzz::split(data);
    let Ok(mut bloom) = serde_json::from_slice::<Bloom>(json) else {
        return;
    };
    if bloom.validate().is_err() {
        return;
    }
    let jti = String::from_utf8_lossy(jti);
    let _ = bloom.contains(&jti);
    bloom.insert(&jti);
    assert!(bloom.contains(&jti), "an inserted jti is always found");
});
