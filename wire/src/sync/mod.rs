//! What the control plane pushes to filters: a signed snapshot of the key
//! set and the revocations. The signature (Ed25519, by the distribution key whose public
//! half is pinned in the filter's configuration) covers the ASCII bytes of `payload`,
//! as in JWS, so nothing between the two can inject a key or lift a revocation.

use serde::{Deserialize, Serialize};

mod confirm;
mod head;
mod kid;
mod poll;

/// The header that carries a signed head statement on a `304`.
pub use crate::headers::HEAD as HEAD_HEADER;
pub use confirm::{ConfirmAnswer, ConfirmRequest, SignedConfirm, CONFIRM_SIGNING_CONTEXT};
pub use head::{HeadStatement, HEAD_SIGNING_CONTEXT};
pub use kid::{UnknownKidAnswer, UnknownKidError, UnknownKidOutcome, UnknownKidReport};
pub use poll::{PollQuery, PollQueryError};

/// The long poll for snapshots and deltas (`GET`, query: [`PollQuery`]).
pub const SNAPSHOT_PATH: &str = "/sync/v1/snapshot";
/// The confirm call (`POST`, body: [`ConfirmRequest`], answer: [`SignedConfirm`]).
pub const CONFIRM_PATH: &str = "/sync/v1/confirm";
/// The distribution key's public half and the epoch (`GET`).
pub const DISTRIBUTION_KEY_PATH: &str = "/sync/v1/distribution-key";
/// A filter's report of an unknown `kid` (`POST`, body: [`UnknownKidReport`], answer
/// `202` with [`UnknownKidAnswer`]).
pub const UNKNOWN_KID_PATH: &str = "/sync/v1/unknown-kid";

use crate::bloom::Bloom;
use crate::federation::FederatedIssuer;
use crate::limits::LimitPolicy;
use crate::JwkSet;

/// Claims a revocation rule can name: tokens with that value and an `iat` before
/// `not_before` are revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleClaim {
    Sub,
    Sid,
    ClientId,
}

impl RuleClaim {
    pub fn claim_name(self) -> &'static str {
        match self {
            RuleClaim::Sub => "sub",
            RuleClaim::Sid => "sid",
            RuleClaim::ClientId => "client_id",
        }
    }
}

/// Tokens whose `claim` has `value` and whose `iat` is before `not_before` are revoked:
/// without `issuer`, tokens of the control plane itself; with one, tokens a filter
/// verified as issued by that trusted external issuer (its exact `iss`), and, for a
/// `sub` rule, the control plane's tokens minted by token exchange from that issuer's
/// subject (their `ext` claim). One provider's `sub` never revokes another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRule {
    pub claim: RuleClaim,
    pub value: String,
    pub not_before: i64,
    /// The `iss` of a trusted external issuer. Left out when absent, so a control plane
    /// without such rules sends what earlier filters read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Changes when the control plane's history restarts; a new epoch means "replace all".
    pub epoch: String,
    /// Monotonic within an epoch.
    pub version: u64,
    pub issued_at: i64,
    pub jwks: JwkSet,
    /// Revoked `jti`s whose tokens have not expired yet.
    pub revoked_jti: Bloom,
    pub rules: Vec<RevocationRule>,
    /// Rate-limit policies set on the control plane; they replace plugin-config
    /// defaults of the same name.
    #[serde(default)]
    pub limits: Vec<LimitPolicy>,
    /// Trusted external issuers: their rules and last good keys. Left out when empty,
    /// so a control plane without issuers sends what filters before federation read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<FederatedIssuer>,
}

/// What changed since `base_version`: revocations added, nothing else. The
/// control plane sends one instead of a snapshot when the filter holds a recent version
/// of the same epoch and every change since was a revocation; a filter that does not
/// hold exactly `base_version` ignores it and gets a full snapshot next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    pub epoch: String,
    pub base_version: u64,
    pub version: u64,
    pub issued_at: i64,
    /// Newly revoked `jti`s (exact: no confirmation needed).
    pub revoked_jti: Vec<String>,
    pub rules: Vec<RevocationRule>,
}

/// A sync answer's payload: a full snapshot or a delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Message {
    Full(Snapshot),
    Delta(Delta),
}

/// Bounds on what one delta may carry, so a filter's exact set stays small.
pub const MAX_DELTA_ITEMS: usize = 4_096;

/// A snapshot as it travels: `payload` is base64url(JSON of the snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub payload: String,
    /// base64url of the 64-byte Ed25519 signature over `payload`'s bytes.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot envelope is malformed")]
    Envelope,
    #[error("snapshot signature is invalid")]
    Signature,
    #[error("snapshot payload is malformed: {0}")]
    Payload(String),
}

impl SignedSnapshot {
    /// Parses the envelope and, once `verify(payload_bytes, signature)` accepts, the payload,
    /// which must be a full snapshot.
    pub fn open(
        bytes: &[u8],
        verify: impl FnOnce(&[u8], &[u8; 64]) -> bool,
    ) -> Result<Snapshot, SnapshotError> {
        match Self::open_message(bytes, verify)? {
            Message::Full(snap) => Ok(snap),
            Message::Delta(_) => Err(SnapshotError::Payload(
                "a delta where a full snapshot was expected".into(),
            )),
        }
    }

    /// Like `open`, for an answer that may be a snapshot or a delta.
    pub fn open_message(
        bytes: &[u8],
        verify: impl FnOnce(&[u8], &[u8; 64]) -> bool,
    ) -> Result<Message, SnapshotError> {
        let env: SignedSnapshot =
            serde_json::from_slice(bytes).map_err(|_| SnapshotError::Envelope)?;
        let sig = crate::b64::decode_array::<64>(&env.signature).ok_or(SnapshotError::Envelope)?;
        if !verify(env.payload.as_bytes(), &sig) {
            return Err(SnapshotError::Signature);
        }
        let json = crate::b64::decode(&env.payload).map_err(|_| SnapshotError::Envelope)?;
        let message: Message =
            serde_json::from_slice(&json).map_err(|e| SnapshotError::Payload(e.to_string()))?;
        match &message {
            Message::Full(snap) => {
                snap.revoked_jti
                    .validate()
                    .map_err(|e| SnapshotError::Payload(e.to_string()))?;
                crate::limits::validate_all(&snap.limits)
                    .map_err(|e| SnapshotError::Payload(format!("limits{e}")))?;
                crate::federation::validate_all(&snap.issuers)
                    .map_err(|e| SnapshotError::Payload(format!("issuers: {e}")))?;
            }
            Message::Delta(d) => {
                if d.version <= d.base_version
                    || d.revoked_jti.len() + d.rules.len() > MAX_DELTA_ITEMS
                {
                    return Err(SnapshotError::Payload("delta out of bounds".into()));
                }
            }
        }
        Ok(message)
    }

    /// Builds an envelope with `sign(payload_bytes) -> signature`.
    pub fn seal(snapshot: &Snapshot, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> SignedSnapshot {
        Self::seal_message(&Message::Full(snapshot.clone()), sign)
    }

    pub fn seal_message(message: &Message, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> SignedSnapshot {
        let payload = crate::b64::encode(serde_json::to_vec(message).unwrap_or_default());
        let signature = crate::b64::encode(sign(payload.as_bytes()));
        SignedSnapshot { payload, signature }
    }
}

/// The largest `clock_skew_seconds` a filter accepts. A filter admits a token until
/// `exp` plus its skew, so the control plane keeps a revoked `jti` (and a revocation rule)
/// in what it sends until `exp` plus this, whatever skew each filter chose.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 600;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A delta from version 7 to 8 of epoch `e1`.
    fn delta() -> Delta {
        Delta {
            epoch: "e1".into(),
            base_version: 7,
            version: 8,
            issued_at: 100,
            revoked_jti: vec!["j2".into()],
            rules: vec![],
        }
    }

    pub(crate) fn snapshot() -> Snapshot {
        let mut revoked = Bloom::with_capacity(10, 0.01, 3);
        revoked.insert("j1");
        Snapshot {
            epoch: "e1".into(),
            version: 7,
            issued_at: 100,
            jwks: JwkSet::default(),
            revoked_jti: revoked,
            rules: vec![RevocationRule {
                claim: RuleClaim::Sub,
                value: "alice".into(),
                not_before: 90,
                issuer: None,
            }],
            limits: Vec::new(),
            issuers: Vec::new(),
        }
    }

    /// Filters before federation refuse a snapshot with a member they do not know:
    /// without issuers the bytes are exactly what they were before the member existed.
    #[test]
    fn a_snapshot_without_issuers_serializes_as_before() {
        let json = serde_json::to_string(&Message::Full(snapshot())).unwrap();
        assert_eq!(json, PINNED_SNAPSHOT);
        assert!(!json.contains("issuers"));
    }

    const PINNED_SNAPSHOT: &str = r#"{"epoch":"e1","version":7,"issued_at":100,"jwks":{"keys":[]},"revoked_jti":{"m":96,"k":7,"seed":3,"bits":"GIAAAAAAAAAAYAAD"},"rules":[{"claim":"sub","value":"alice","not_before":90}],"limits":[]}"#;

    /// A rule scoped to an issuer travels with it; one without reads as before.
    #[test]
    fn a_rule_scoped_to_an_issuer_travels_and_an_unscoped_one_is_unchanged() {
        let rule = |issuer: Option<&str>| RevocationRule {
            claim: RuleClaim::Sub,
            value: "mesh".into(),
            not_before: 5,
            issuer: issuer.map(str::to_owned),
        };
        assert_eq!(
            serde_json::to_string(&rule(None)).unwrap(),
            r#"{"claim":"sub","value":"mesh","not_before":5}"#
        );
        let scoped = serde_json::to_string(&rule(Some("https://idp.example/"))).unwrap();
        assert_eq!(
            scoped,
            r#"{"claim":"sub","value":"mesh","not_before":5,"issuer":"https://idp.example/"}"#
        );
        assert_eq!(
            serde_json::from_str::<RevocationRule>(&scoped).unwrap(),
            rule(Some("https://idp.example/"))
        );
        let mut snap = snapshot();
        snap.rules.push(rule(Some("https://idp.example/")));
        let sealed = SignedSnapshot::seal(&snap, |_| [1u8; 64]);
        let opened =
            SignedSnapshot::open(&serde_json::to_vec(&sealed).unwrap(), |_, _| true).unwrap();
        assert_eq!(opened, snap);
    }

    #[test]
    fn issuers_travel_and_are_validated_when_opened() {
        let open = |snap: &Snapshot| {
            let sealed = SignedSnapshot::seal(snap, |_| [1u8; 64]);
            SignedSnapshot::open(&serde_json::to_vec(&sealed).unwrap(), |_, _| true)
        };
        let mut with = snapshot();
        with.issuers = vec![crate::federation::tests::issuer()];
        assert_eq!(open(&with), Ok(with.clone()));
        with.issuers[0].keys.clear();
        assert!(matches!(open(&with), Err(SnapshotError::Payload(e)) if e.contains("keys")));
        with.issuers = vec![crate::federation::tests::issuer(); 2];
        assert!(matches!(open(&with), Err(SnapshotError::Payload(_))));
    }

    #[test]
    fn seal_and_open() {
        let sealed = SignedSnapshot::seal(&snapshot(), |_| [9u8; 64]);
        let bytes = serde_json::to_vec(&sealed).unwrap();
        let opened = SignedSnapshot::open(&bytes, |_, sig| sig == &[9u8; 64]).unwrap();
        assert_eq!(opened, snapshot());
        assert!(opened.revoked_jti.contains("j1"));
        assert_eq!(
            SignedSnapshot::open(&bytes, |_, _| false),
            Err(SnapshotError::Signature)
        );
        assert_eq!(
            SignedSnapshot::open(b"{}", |_, _| true),
            Err(SnapshotError::Envelope)
        );
    }

    #[test]
    fn the_signature_covers_the_payload() {
        let mut sealed = SignedSnapshot::seal(&snapshot(), |_| [9u8; 64]);
        let mut other = snapshot();
        other.rules.clear();
        sealed.payload = crate::b64::encode(serde_json::to_vec(&other).unwrap());
        let bytes = serde_json::to_vec(&sealed).unwrap();
        let original = SignedSnapshot::seal(&snapshot(), |_| [9u8; 64]).payload;
        // A verifier that checks the bytes it signed refuses the swapped payload.
        assert_eq!(
            SignedSnapshot::open(&bytes, |p, _| p == original.as_bytes()),
            Err(SnapshotError::Signature)
        );
    }

    #[test]
    fn deltas_travel_in_the_same_envelope() {
        let delta = Delta {
            epoch: "e1".into(),
            base_version: 7,
            version: 9,
            issued_at: 100,
            revoked_jti: vec!["j2".into()],
            rules: vec![],
        };
        let sealed = SignedSnapshot::seal_message(&Message::Delta(delta.clone()), |_| [1u8; 64]);
        let bytes = serde_json::to_vec(&sealed).unwrap();
        assert_eq!(
            SignedSnapshot::open_message(&bytes, |_, _| true),
            Ok(Message::Delta(delta.clone()))
        );
        // A delta is not a snapshot.
        assert!(matches!(
            SignedSnapshot::open(&bytes, |_, _| true),
            Err(SnapshotError::Payload(_))
        ));
        let full = SignedSnapshot::seal(&snapshot(), |_| [1u8; 64]);
        let bytes = serde_json::to_vec(&full).unwrap();
        assert_eq!(
            SignedSnapshot::open_message(&bytes, |_, _| true),
            Ok(Message::Full(snapshot()))
        );
        let backwards = Delta {
            version: 7,
            ..delta
        };
        let sealed = SignedSnapshot::seal_message(&Message::Delta(backwards), |_| [1u8; 64]);
        assert!(
            SignedSnapshot::open_message(&serde_json::to_vec(&sealed).unwrap(), |_, _| true)
                .is_err()
        );
    }

    /// What docs/operations.md promises across releases: a snapshot without a member
    /// added later with a default (`limits`, from a control plane before rate limits) is
    /// read; one with a member this filter does not know (from a later control plane) is
    /// refused though signed, and so is a delta with one.
    #[test]
    fn snapshot_compatibility() {
        let open = |payload: &serde_json::Value| {
            let env = SignedSnapshot {
                payload: crate::b64::encode(payload.to_string()),
                signature: crate::b64::encode([1u8; 64]),
            };
            SignedSnapshot::open_message(&serde_json::to_vec(&env).unwrap(), |_, _| true)
        };
        let mut older = serde_json::to_value(snapshot()).unwrap();
        older.as_object_mut().unwrap().remove("limits");
        assert_eq!(open(&older), Ok(Message::Full(snapshot())));
        let mut newer = serde_json::to_value(snapshot()).unwrap();
        newer["audiences"] = serde_json::json!(["api"]);
        assert!(matches!(open(&newer), Err(SnapshotError::Payload(_))));
        let mut delta = serde_json::to_value(delta()).unwrap();
        assert!(open(&delta).is_ok());
        delta["limits"] = serde_json::json!([]);
        assert!(matches!(open(&delta), Err(SnapshotError::Payload(_))));
    }

    /// A member named twice has no single meaning (a verifier that keeps the first and
    /// another program that keeps the last would read two messages): every sync message
    /// with one is refused, though it is signed.
    #[test]
    fn a_repeated_member_is_refused_even_when_signed() {
        let twice = |json: String, member: &str, extra: &str| {
            let at = json.find(&format!("\"{member}\":")).unwrap();
            format!("{}\"{member}\":{extra},{}", &json[..at], &json[at..])
        };
        let open = |payload_json: String| {
            let env = SignedSnapshot {
                payload: crate::b64::encode(payload_json.as_bytes()),
                signature: crate::b64::encode([1u8; 64]),
            };
            SignedSnapshot::open_message(&serde_json::to_vec(&env).unwrap(), |_, _| true)
        };
        let full = serde_json::to_string(&Message::Full(snapshot())).unwrap();
        assert!(open(full.clone()).is_ok(), "the message as sealed");
        assert!(open(twice(full.clone(), "version", "999")).is_err());
        assert!(open(twice(full, "epoch", "\"e0\"")).is_err());
        let delta = serde_json::to_string(&Message::Delta(delta())).unwrap();
        assert!(open(delta.clone()).is_ok(), "the delta as sealed");
        assert!(open(twice(delta, "revoked_jti", "[]")).is_err());
        // The envelope itself: a second payload after the one that was signed.
        let sealed =
            serde_json::to_string(&SignedSnapshot::seal(&snapshot(), |_| [1u8; 64])).unwrap();
        let bytes = twice(sealed, "signature", "\"x\"");
        assert_eq!(
            SignedSnapshot::open_message(bytes.as_bytes(), |_, _| true),
            Err(SnapshotError::Envelope)
        );
    }
}
