//! Access-token claims as the control plane writes them (RFC 9068).
//! The filter reads tokens from any issuer, so it parses claims leniently by type
//! (see the filter's `claims` module); this struct is what meshauth itself emits.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// On a token issued by token exchange (RFC 8693): the external subject it was
    /// exchanged for. Revoking that subject at its issuer revokes this token too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<ExternalSubject>,
    /// The delegation chain (RFC 8693 §4.1): the party acting for `sub`, then the parties
    /// before it, each nested in the one after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// The `ext` claim: who a token was exchanged for, at a trusted external issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalSubject {
    /// The external issuer's exact `iss`.
    pub iss: String,
    /// The `sub` of the subject token at that issuer.
    pub sub: String,
    /// The subject token's `sid`, client (its issuer's `client_claim`) and id (its
    /// `id_claim`): rules scoped to that issuer made after the exchange reach this
    /// token by them. Absent from tokens exchanged before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl ExternalSubject {
    /// An external subject with nothing else recorded (as tokens exchanged before the
    /// session, client and id were).
    pub fn subject(iss: impl Into<String>, sub: impl Into<String>) -> ExternalSubject {
        ExternalSubject {
            iss: iss.into(),
            sub: sub.into(),
            sid: None,
            client: None,
            jti: None,
        }
    }
}

/// An `act` (RFC 8693 §4.1) member: an actor, and the actor before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain names (this one included).
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// The claim name of [`ExternalSubject`].
pub const EXT_CLAIM: &str = "ext";

#[cfg(test)]
mod tests {
    use super::*;

    /// The `ext` claim keeps its subject token's session, client and id, leaves them
    /// out when unknown, and reads tokens minted before they were recorded.
    #[test]
    fn the_ext_claim_round_trips_with_and_without_session_client_and_id() {
        let full = ExternalSubject {
            iss: "https://idp.example/".into(),
            sub: "alice".into(),
            sid: Some("s1".into()),
            client: Some("app".into()),
            jti: Some("t1".into()),
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"iss": "https://idp.example/", "sub": "alice", "sid": "s1", "client": "app", "jti": "t1"})
        );
        assert_eq!(
            serde_json::from_value::<ExternalSubject>(json).unwrap(),
            full
        );
        let old: ExternalSubject =
            serde_json::from_str(r#"{"iss":"https://idp.example/","sub":"alice"}"#).unwrap();
        assert_eq!((old.sid, old.client, old.jti), (None, None, None));
        let bare = ExternalSubject {
            sid: None,
            client: None,
            jti: None,
            ..full
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"iss":"https://idp.example/","sub":"alice"}"#
        );
    }
}
