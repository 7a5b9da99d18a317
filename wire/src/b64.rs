//! Base64url without padding, strict (RFC 7515 §2): padding, non-alphabet bytes and
//! non-zero trailing bits are all refused, so one value has exactly one encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub use base64::DecodeError;

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Decodes into a fixed-size array; any other decoded length is an error.
pub fn decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // A buffer of N+3 bytes lets decode_slice report an over-long input as an error
    // instead of writing past what we keep.
    let mut buf = vec![0u8; N + 3];
    let n = URL_SAFE_NO_PAD.decode_slice(text, &mut buf).ok()?;
    if n != N {
        return None;
    }
    out.copy_from_slice(buf.get(..N)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_padding_and_standard_alphabet() {
        assert!(decode("YQ==").is_err());
        assert!(decode("a+b/").is_err());
        assert_eq!(decode("YQ").unwrap(), b"a");
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // "YR" decodes to 'a' only if trailing bits are ignored.
        assert!(decode("YR").is_err());
    }

    #[test]
    fn fixed_arrays_need_the_exact_length() {
        let text = encode([7u8; 32]);
        assert_eq!(decode_array::<32>(&text), Some([7u8; 32]));
        assert_eq!(decode_array::<31>(&text), None);
        assert_eq!(decode_array::<33>(&text), None);
        assert_eq!(decode_array::<32>(encode([7u8; 40])), None);
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
        }
    }
}
