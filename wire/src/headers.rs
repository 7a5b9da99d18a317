//! Header names meshauth puts on the wire, defined once for the filter, the control
//! plane and the tests.

/// Prefix of the identity headers the filter forwards upstream; by default every header
/// under it is reserved to the filter (a client's copy is dropped).
pub const RESERVED_PREFIX: &str = "x-meshauth-";
/// The version a sync answer (a snapshot, a delta or a `304`) brings the filter to.
pub const VERSION: &str = "x-meshauth-version";
/// The signed head statement on a `304` to a long poll.
pub const HEAD: &str = "x-meshauth-head";
/// The correlation id: echoed in every error body as `correlation_id`.
pub const REQUEST_ID: &str = "x-request-id";

/// Headers never set from a claim, whoever configures it (the filter's forwarded
/// claims, a trusted issuer's).
pub const NEVER_FROM_CLAIM: [&str; 9] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    REQUEST_ID,
];

/// A header name as meshauth writes one: lower-case ASCII letters, digits, `-`, `_`.
pub fn is_lower_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether a claim may be forwarded upstream in header `h`.
pub fn may_carry_claim(h: &str) -> bool {
    is_lower_name(h) && !NEVER_FROM_CLAIM.contains(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deployed filters and control planes of other versions send these: pinned.
    #[test]
    fn names_do_not_change() {
        assert_eq!(
            [RESERVED_PREFIX, VERSION, HEAD, REQUEST_ID],
            [
                "x-meshauth-",
                "x-meshauth-version",
                "x-meshauth-head",
                "x-request-id"
            ]
        );
        assert_eq!(
            [
                crate::sync::SNAPSHOT_PATH,
                crate::sync::CONFIRM_PATH,
                crate::sync::DISTRIBUTION_KEY_PATH
            ],
            [
                "/sync/v1/snapshot",
                "/sync/v1/confirm",
                "/sync/v1/distribution-key"
            ]
        );
    }

    #[test]
    fn claims_never_land_in_framing_or_credential_headers() {
        for h in ["x-user", "x_user", "x-meshauth-sub2"] {
            assert!(may_carry_claim(h), "{h}");
        }
        for h in [
            "",
            "X-User",
            "x user",
            "x-user:",
            "authorization",
            "host",
            "te",
            REQUEST_ID,
        ] {
            assert!(!may_carry_claim(h), "{h:?}");
        }
    }

    #[test]
    fn sync_headers_are_lowercase_and_under_the_reserved_prefix() {
        for h in [VERSION, HEAD] {
            assert!(h.starts_with(RESERVED_PREFIX), "{h}");
            assert_eq!(h, h.to_ascii_lowercase());
        }
    }
}
