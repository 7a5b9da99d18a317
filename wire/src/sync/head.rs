//! The signed head statement a `304` to a long poll carries.

use serde::{Deserialize, Serialize};

/// What a `304` to a long poll says, signed: "at `issued_at` the head of `epoch` was
/// still `version`". Without it a relay could answer every poll `304` and freeze a filter
/// at its snapshot while it looked in sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadStatement {
    pub epoch: String,
    pub version: u64,
    pub issued_at: i64,
}

/// Prefixed to a head statement's payload before signing (see [`super::CONFIRM_SIGNING_CONTEXT`]).
pub const HEAD_SIGNING_CONTEXT: &[u8] = b"meshauth.sync.head.v1\n";

impl HeadStatement {
    /// `payload.signature`, both base64url; the signature covers
    /// `HEAD_SIGNING_CONTEXT || payload`.
    pub fn seal(&self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> String {
        let payload = crate::b64::encode(serde_json::to_vec(self).unwrap_or_default());
        let mut input = HEAD_SIGNING_CONTEXT.to_vec();
        input.extend_from_slice(payload.as_bytes());
        format!("{payload}.{}", crate::b64::encode(sign(&input)))
    }

    /// The statement, if `verify(signed_bytes, sig)` accepts it.
    pub fn open(
        text: &str,
        verify: impl FnOnce(&[u8], &[u8; 64]) -> bool,
    ) -> Option<HeadStatement> {
        let (payload, sig) = text.split_once('.')?;
        let sig = crate::b64::decode_array::<64>(sig)?;
        let mut input = HEAD_SIGNING_CONTEXT.to_vec();
        input.extend_from_slice(payload.as_bytes());
        if !verify(&input, &sig) {
            return None;
        }
        serde_json::from_slice(&crate::b64::decode(payload).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy signature that depends on every byte signed (enough to tell inputs apart).
    fn sign(m: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        for (i, b) in m.iter().enumerate() {
            s[i % 64] ^= b.rotate_left(u32::try_from(i % 7).unwrap());
        }
        s
    }

    #[test]
    fn round_trips_and_refuses_what_it_did_not_sign() {
        let head = HeadStatement {
            epoch: "e".into(),
            version: 9,
            issued_at: 1_000,
        };
        let sealed = head.seal(sign);
        let good = |m: &[u8], s: &[u8; 64]| &sign(m) == s;
        assert_eq!(HeadStatement::open(&sealed, good), Some(head.clone()));
        assert_eq!(HeadStatement::open(&sealed, |_, _| false), None);
        // Another statement's payload under this signature.
        let other = HeadStatement {
            version: 10,
            ..head
        }
        .seal(sign);
        let (payload, _) = other.split_once('.').unwrap();
        let (_, sig) = sealed.split_once('.').unwrap();
        assert_eq!(HeadStatement::open(&format!("{payload}.{sig}"), good), None);
        for junk in ["", ".", "a.b", "no-dot", &format!("{payload}.")] {
            assert_eq!(HeadStatement::open(junk, |_, _| true), None, "{junk}");
        }
    }
}
