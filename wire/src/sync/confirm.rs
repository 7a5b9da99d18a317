//! The confirm call: a filter asks the control plane about a Bloom hit
//! (`POST /sync/v1/confirm`) and accepts only an answer signed for its question.

use serde::{Deserialize, Serialize};

/// A filter's question about a Bloom hit (`POST /sync/v1/confirm`). `nonce` is fresh and
/// unpredictable per question; the signed answer repeats it, so an answer recorded for
/// one question cannot be replayed for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    pub jti: String,
    pub nonce: String,
}

impl ConfirmRequest {
    /// The JSON body of a question.
    pub fn body(jti: &str, nonce: &str) -> String {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            jti: &'a str,
            nonce: &'a str,
        }
        // Two strings always serialize.
        serde_json::to_string(&Borrowed { jti, nonce }).unwrap_or_default()
    }

    /// 16-128 characters of the base64url alphabet.
    pub fn valid_nonce(nonce: &str) -> bool {
        (16..=128).contains(&nonce.len())
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

/// The signed payload of a confirm answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmAnswer {
    pub jti: String,
    pub nonce: String,
    pub revoked: bool,
}

/// Prefixed to a confirm answer's payload before signing: the distribution key also
/// signs snapshots, and with the prefix neither can ever pass for the other.
pub const CONFIRM_SIGNING_CONTEXT: &[u8] = b"meshauth.sync.confirm.v1\n";

/// A confirm answer as it travels: `payload` is base64url(JSON of a `ConfirmAnswer`),
/// `signature` base64url(Ed25519 over `CONFIRM_SIGNING_CONTEXT || payload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedConfirm {
    pub payload: String,
    pub signature: String,
}

impl ConfirmAnswer {
    pub fn seal(&self, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> SignedConfirm {
        let payload = crate::b64::encode(serde_json::to_vec(self).unwrap_or_default());
        let signature = crate::b64::encode(sign(&confirm_signing_input(&payload)));
        SignedConfirm { payload, signature }
    }

    /// The longest answer to a question about `jti` with `nonce`: JSON escaping at most
    /// sextuples a string, base64 adds a third, the envelope and the signature a few
    /// hundred bytes. A filter reads nothing longer, so a party on the sync path cannot
    /// make it copy megabytes per question.
    pub fn max_len(jti: &str, nonce: &str) -> usize {
        (6 * (jti.len() + nonce.len()) + 64).div_ceil(3) * 4 + 512
    }

    /// `Some(revoked)` only for an answer whose signature `verify(signed_bytes, sig)`
    /// accepts and that answers exactly this `jti` and `nonce`; anything else is `None`
    /// ("unconfirmed").
    pub fn open(
        bytes: &[u8],
        jti: &str,
        nonce: &str,
        verify: impl FnOnce(&[u8], &[u8; 64]) -> bool,
    ) -> Option<bool> {
        let env: SignedConfirm = serde_json::from_slice(bytes).ok()?;
        let sig = crate::b64::decode_array::<64>(&env.signature)?;
        if !verify(&confirm_signing_input(&env.payload), &sig) {
            return None;
        }
        let answer: ConfirmAnswer =
            serde_json::from_slice(&crate::b64::decode(&env.payload).ok()?).ok()?;
        (answer.jti == jti && answer.nonce == nonce).then_some(answer.revoked)
    }
}

fn confirm_signing_input(payload: &str) -> Vec<u8> {
    let mut input = CONFIRM_SIGNING_CONTEXT.to_vec();
    input.extend_from_slice(payload.as_bytes());
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tests::snapshot;
    use crate::sync::SignedSnapshot;

    #[test]
    fn confirm_answers_are_bound_to_the_key_the_jti_and_the_nonce() {
        let answer = ConfirmAnswer {
            jti: "j1".into(),
            nonce: "n".repeat(22),
            revoked: false,
        };
        // A toy signature: the first 64 bytes of the signed input, padded.
        let sign = |m: &[u8]| {
            let mut s = [0u8; 64];
            for (d, b) in s.iter_mut().zip(m.iter().rev()) {
                *d = *b;
            }
            s
        };
        let good = |m: &[u8], sig: &[u8; 64]| &sign(m) == sig;
        let bytes = serde_json::to_vec(&answer.seal(sign)).unwrap();
        let nonce = "n".repeat(22);
        assert_eq!(ConfirmAnswer::open(&bytes, "j1", &nonce, good), Some(false));
        assert_eq!(
            ConfirmAnswer::open(&bytes, "j1", &nonce, |_, _| false),
            None
        );
        assert_eq!(ConfirmAnswer::open(&bytes, "j2", &nonce, good), None);
        assert_eq!(
            ConfirmAnswer::open(&bytes, "j1", &"m".repeat(22), good),
            None
        );
        assert_eq!(
            ConfirmAnswer::open(br#"{"jti":"j1","revoked":false}"#, "j1", &nonce, |_, _| {
                true
            }),
            None,
            "the old unsigned shape"
        );
        // A snapshot envelope signed by the same key is not a confirm answer.
        let snap = serde_json::to_vec(&SignedSnapshot::seal(&snapshot(), sign)).unwrap();
        assert_eq!(ConfirmAnswer::open(&snap, "j1", &nonce, good), None);
        assert!(ConfirmRequest::valid_nonce(&nonce));
        let question: ConfirmRequest =
            serde_json::from_str(&ConfirmRequest::body("j\"1", &nonce)).unwrap();
        assert_eq!(
            (question.jti.as_str(), question.nonce),
            ("j\"1", nonce.clone())
        );
        assert!(
            serde_json::from_str::<ConfirmRequest>(r#"{"jti":"j","nonce":"n","x":1}"#).is_err()
        );
        assert!(!ConfirmRequest::valid_nonce("short"));
    }

    /// A signed answer naming `revoked` twice has no single verdict: refused.
    #[test]
    fn a_repeated_member_in_a_confirm_answer_is_refused() {
        let nonce = "n".repeat(22);
        let open = |payload: &str| {
            let env = SignedConfirm {
                payload: crate::b64::encode(payload.as_bytes()),
                signature: crate::b64::encode([1u8; 64]),
            };
            ConfirmAnswer::open(&serde_json::to_vec(&env).unwrap(), "j1", &nonce, |_, _| {
                true
            })
        };
        let one = format!(r#"{{"jti":"j1","nonce":"{nonce}","revoked":true}}"#);
        assert_eq!(open(&one), Some(true), "the answer as sealed");
        let twice = format!(r#"{{"jti":"j1","nonce":"{nonce}","revoked":true,"revoked":false}}"#);
        assert_eq!(open(&twice), None);
    }

    #[test]
    fn every_real_answer_fits_in_max_len() {
        let nonce = "n".repeat(128);
        for jti in [
            "",
            "j1",
            &"\u{1}".repeat(300),
            &"\"".repeat(300),
            &"é".repeat(300),
        ] {
            for revoked in [false, true] {
                let a = ConfirmAnswer {
                    jti: jti.into(),
                    nonce: nonce.clone(),
                    revoked,
                };
                let bytes = serde_json::to_vec(&a.seal(|_| [0xff; 64])).unwrap();
                assert!(
                    bytes.len() <= ConfirmAnswer::max_len(jti, &nonce),
                    "{jti:?}"
                );
            }
        }
        assert!(!ConfirmRequest::valid_nonce(&"a/".repeat(10)));
    }
}
