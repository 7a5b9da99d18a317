//! The proxy-wasm ABI's serialized header map, decoded and encoded without trusting it:
//! `u32` count, then a `u32` name length and a `u32` value length per pair, then each
//! name and value followed by a NUL. Values are bytes (a client may send any byte Envoy
//! lets through, not only UTF-8), decoded lossily here; a map that does not add up
//! decodes to what was well-formed before the fault.

pub fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        let arr = <[u8; 4]>::try_from(b).ok()?;
        usize::try_from(u32::from_le_bytes(arr)).ok()
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    // Each pair takes at least 10 bytes: a count past that is a lie.
    let count = count.min(bytes.len() / 10);
    let mut pairs = Vec::with_capacity(count);
    let Some(mut p) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return pairs;
    };
    for n in 0..count {
        let s = 4 + n * 8;
        let (Some(name_len), Some(value_len)) = (word(s), word(s + 4)) else {
            break;
        };
        let Some(name) = bytes.get(p..p.saturating_add(name_len)) else {
            break;
        };
        p = p.saturating_add(name_len).saturating_add(1);
        let Some(value) = bytes.get(p..p.saturating_add(value_len)) else {
            break;
        };
        p = p.saturating_add(value_len).saturating_add(1);
        pairs.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    pairs
}

pub fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let pairs = [(":path", "/a"), ("x", ""), ("authorization", "Bearer t")];
        let back = decode(&encode(&pairs));
        let want: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn non_utf8_values_decode_lossily() {
        let mut bytes = encode(&[("x-junk", "ab")]);
        let at = bytes.len() - 3;
        bytes[at] = 0xff; // "a" becomes an invalid byte
        assert_eq!(
            decode(&bytes),
            vec![("x-junk".to_string(), "\u{fffd}b".to_string())]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncations_keep_what_was_whole(n in 0usize..60) {
            let full = encode(&[("a", "1"), ("bb", "22"), ("ccc", "333")]);
            let cut = &full[..n.min(full.len())];
            let got = decode(cut);
            prop_assert!(got.len() <= 3);
        }
    }
}
