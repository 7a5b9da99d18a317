//! Who may call the admin API and the sync channel: bearer credentials checked against
//! configured SHA-256 hashes, in constant time, every hash compared.

use sha2::{Digest, Sha256};

use crate::crypto::ct_eq;

/// Whether `bearer` hashes to one of `hashes` (timing shows nothing about which).
pub fn matches_any(hashes: &[[u8; 32]], bearer: &str) -> bool {
    let presented = Sha256::digest(bearer.as_bytes());
    let mut ok = false;
    for h in hashes {
        ok |= ct_eq(presented.as_slice(), h);
    }
    ok
}

/// The fleet-credential check: with hashes configured, the bearer must match one
/// (`allow_anonymous` is then ignored); with none, only `allow_anonymous` lets calls in.
pub fn sync_bearer_ok(hashes: &[[u8; 32]], allow_anonymous: bool, bearer: Option<&str>) -> bool {
    if hashes.is_empty() {
        return allow_anonymous;
    }
    bearer.is_some_and(|b| matches_any(hashes, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(s: &str) -> [u8; 32] {
        Sha256::digest(s.as_bytes()).into()
    }

    #[test]
    fn sync_calls_need_a_configured_credential() {
        // Nothing configured: refused, unless anonymous sync is explicitly allowed.
        assert!(!sync_bearer_ok(&[], false, None));
        assert!(!sync_bearer_ok(&[], false, Some("anything")));
        assert!(sync_bearer_ok(&[], true, None));
        // Two valid at once (rotation); anything else refused, the flag then ignored.
        let both = [hash("old-cred"), hash("new-cred")];
        assert!(sync_bearer_ok(&both, false, Some("old-cred")));
        assert!(sync_bearer_ok(&both, false, Some("new-cred")));
        assert!(!sync_bearer_ok(&both, true, Some("new-cre")));
        assert!(!sync_bearer_ok(&both, true, None));
    }

    #[test]
    fn admin_tokens_match_only_their_hash() {
        assert!(!matches_any(&[], "anything"));
        assert!(matches_any(&[hash("a"), hash("b")], "b"));
        assert!(!matches_any(&[hash("a")], "a "));
    }
}
