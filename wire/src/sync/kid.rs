//! The unknown-`kid` report: a filter saw a token of an issuer it trusts signed with a
//! key id that issuer's pushed keys lack (a provider that rotated), and asks the control
//! plane to fetch that issuer's keys now instead of at its next scheduled fetch
//! (`POST /sync/v1/unknown-kid`, behind the sync credential). The filter sends it and
//! reads nothing back; the answer says what the control plane made of it, for tests and
//! operators. A control plane older than this answers 404, which changes nothing.

use serde::{Deserialize, Serialize};

use crate::federation::{visible, MAX_ISSUER_LEN, MAX_KID_LEN};

/// The body of `POST /sync/v1/unknown-kid`: the trusted `iss` as the snapshot names it,
/// and the unknown `kid` (so a control plane that already holds it need not fetch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownKidReport {
    pub issuer: String,
    pub kid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnknownKidError {
    #[error("issuer must be 1-{MAX_ISSUER_LEN} visible ASCII characters")]
    Issuer,
    #[error("kid must be 1-{MAX_KID_LEN} visible ASCII characters")]
    Kid,
}

impl UnknownKidReport {
    /// A report, if both values are within the bounds a control plane accepts (the same
    /// as a trusted issuer's `issuer` and a pushed key's `kid`: a kid outside them can
    /// never be among the keys, so reporting it could only cost a fetch).
    pub fn new(issuer: &str, kid: &str) -> Option<UnknownKidReport> {
        let r = UnknownKidReport {
            issuer: issuer.to_owned(),
            kid: kid.to_owned(),
        };
        r.validate().ok().map(|()| r)
    }

    pub fn validate(&self) -> Result<(), UnknownKidError> {
        if !visible(&self.issuer, MAX_ISSUER_LEN) {
            return Err(UnknownKidError::Issuer);
        }
        if !visible(&self.kid, MAX_KID_LEN) {
            return Err(UnknownKidError::Kid);
        }
        Ok(())
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        // Two strings always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the control plane did with a well-formed report (`202`, body
/// [`UnknownKidAnswer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKidOutcome {
    /// The issuer's keys are being fetched now.
    Triggered,
    /// A report-triggered fetch ran less than the refetch interval ago: one more is
    /// scheduled when the interval has passed (or one already is).
    Suppressed,
    /// This replica already holds that `kid`: the next snapshot carries it, no fetch.
    Held,
    /// No trusted issuer has that `iss`: nothing happens.
    Ignored,
}

impl UnknownKidOutcome {
    pub const ALL: [UnknownKidOutcome; 4] = [
        UnknownKidOutcome::Triggered,
        UnknownKidOutcome::Suppressed,
        UnknownKidOutcome::Held,
        UnknownKidOutcome::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UnknownKidOutcome::Triggered => "triggered",
            UnknownKidOutcome::Suppressed => "suppressed",
            UnknownKidOutcome::Held => "held",
            UnknownKidOutcome::Ignored => "ignored",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownKidAnswer {
    pub outcome: UnknownKidOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded_and_round_trip() {
        let r = UnknownKidReport::new("https://idp.example/", "rsa-2").unwrap();
        assert_eq!(
            r.body(),
            r#"{"issuer":"https://idp.example/","kid":"rsa-2"}"#
        );
        assert_eq!(
            serde_json::from_str::<UnknownKidReport>(&r.body()).unwrap(),
            r
        );
        for (iss, kid, want) in [
            ("", "k", UnknownKidError::Issuer),
            ("https://a b", "k", UnknownKidError::Issuer),
            (
                &"i".repeat(MAX_ISSUER_LEN + 1),
                "k",
                UnknownKidError::Issuer,
            ),
            ("https://a", "", UnknownKidError::Kid),
            ("https://a", "k\n", UnknownKidError::Kid),
            ("https://a", "ké", UnknownKidError::Kid),
            (
                "https://a",
                &"k".repeat(MAX_KID_LEN + 1),
                UnknownKidError::Kid,
            ),
        ] {
            assert!(UnknownKidReport::new(iss, kid).is_none(), "{iss:?} {kid:?}");
            let r = UnknownKidReport {
                issuer: iss.into(),
                kid: kid.into(),
            };
            assert_eq!(r.validate(), Err(want), "{iss:?} {kid:?}");
        }
        assert!(
            UnknownKidReport::new(&"i".repeat(MAX_ISSUER_LEN), &"k".repeat(MAX_KID_LEN)).is_some()
        );
        // Members other than the two are refused, not ignored.
        assert!(serde_json::from_str::<UnknownKidReport>(
            r#"{"issuer":"https://a","kid":"k","x":1}"#
        )
        .is_err());
        let answer = UnknownKidAnswer {
            outcome: UnknownKidOutcome::Suppressed,
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"outcome":"suppressed"}"#
        );
        for o in UnknownKidOutcome::ALL {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::String(o.as_str().into())
            );
        }
    }
}
