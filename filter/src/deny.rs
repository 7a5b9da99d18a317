//! Why a request is refused, and how each reason is answered (RFC 6750).

/// A refusal. Each variant maps to one status, one RFC 6750 error and one metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token is larger than the configured limit")]
    TooLarge,
    #[error("token algorithm is not allowed (only EdDSA)")]
    BadAlgorithm,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    /// `got`: the token's `iss` (None: absent), for the operator's log line only: the
    /// answer stays "not accepted", naming neither issuer (`operator_note`).
    #[error("token issuer is not accepted")]
    BadIssuer { got: Option<String> },
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token lacks the {0} claim or it has the wrong type")]
    BadClaim(&'static str),
    #[error("token lacks the required scope")]
    InsufficientScope { required: String },
    #[error("token claim {claim} does not have a permitted value")]
    ClaimMismatch { claim: String },
    #[error("token has been revoked")]
    Revoked,
    #[error("the filter has no key set yet")]
    NotReady,
    /// The path could route differently once normalised (`crate::path`).
    #[error("{0}")]
    BadPath(&'static str),
    /// A valid token, but the route admits only tokens of other issuers.
    #[error("token issuer is not one this route admits")]
    IssuerNotAllowed,
    /// A federated token living longer (`exp - iat`) than its issuer's
    /// `max_token_lifetime_seconds`: a revocation could lapse before it expires.
    #[error("token lives longer than its issuer allows")]
    TokenLifetime,
}

/// RFC 6750 §3.1 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No credentials at all: the challenge carries no error code.
    None,
    InvalidToken,
    InsufficientScope,
}

impl Denial {
    pub fn status(&self) -> u32 {
        if *self == Denial::Revoked {
            return 403;
        }
        if *self == Denial::NotReady {
            return 503;
        }
        if matches!(self, Denial::BadPath(_)) {
            return 400;
        }
        match self.bearer_error() {
            BearerError::InsufficientScope => 403,
            _ => 401,
        }
    }

    pub fn bearer_error(&self) -> BearerError {
        match self {
            Denial::MissingToken | Denial::NotReady | Denial::BadPath(_) => BearerError::None,
            Denial::InsufficientScope { .. }
            | Denial::ClaimMismatch { .. }
            | Denial::IssuerNotAllowed => BearerError::InsufficientScope,
            _ => BearerError::InvalidToken,
        }
    }

    /// Stable machine-readable code: the JSON body's `code` and the metric suffix.
    pub fn code(&self) -> &'static str {
        // In range for every variant (`each_variant_has_its_code`).
        Self::ALL_CODES
            .get(self.index())
            .copied()
            .unwrap_or_default()
    }

    /// This denial's place in `ALL_CODES` (and in the filter's denial counters).
    pub fn index(&self) -> usize {
        match self {
            Denial::MissingToken => 0,
            Denial::Malformed(_) => 1,
            Denial::TooLarge => 2,
            Denial::BadAlgorithm => 3,
            Denial::UnknownKey => 4,
            Denial::BadSignature => 5,
            Denial::Expired => 6,
            Denial::NotYetValid => 7,
            Denial::BadIssuer { .. } => 8,
            Denial::BadAudience => 9,
            Denial::BadClaim(_) => 10,
            Denial::InsufficientScope { .. } => 11,
            Denial::ClaimMismatch { .. } => 12,
            Denial::Revoked => 13,
            Denial::NotReady => 14,
            Denial::BadPath(_) => 15,
            Denial::IssuerNotAllowed => 16,
            Denial::TokenLifetime => 17,
        }
    }

    pub const ALL_CODES: [&'static str; 18] = [
        "missing_token",
        "malformed_token",
        "token_too_large",
        "bad_algorithm",
        "unknown_key",
        "bad_signature",
        "token_expired",
        "token_not_yet_valid",
        "bad_issuer",
        "bad_audience",
        "bad_claim",
        "insufficient_scope",
        "claim_mismatch",
        "token_revoked",
        "not_ready",
        "bad_path",
        "issuer_not_allowed",
        "token_lifetime",
    ];

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(&self, realm: &str) -> String {
        self.challenge_with(realm, &self.to_string())
    }

    /// The challenge, with this denial's message already written out.
    fn challenge_with(&self, realm: &str, message: &str) -> String {
        match self.bearer_error() {
            BearerError::None => format!("Bearer realm=\"{realm}\""),
            BearerError::InvalidToken => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{message}\""
            ),
            BearerError::InsufficientScope => match self {
                Denial::InsufficientScope { required } => format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{message}\", scope=\"{required}\""
                ),
                _ => format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{message}\""
                ),
            },
        }
    }

    /// What an operator needs to fix a refusal that comes from the configuration rather
    /// than the client, for the proxy's log; never sent to the client, who learns only the
    /// code. `expected`: the filter's `issuer` setting.
    pub fn operator_note(&self, expected: Option<&str>) -> Option<String> {
        match self {
            Denial::BadIssuer { got } => {
                // The token is signed by a trusted key, but its claims are still not ours
                // to write into a log raw: quoted (escaped) and cut short.
                let got = got.as_deref().map_or_else(
                    || "none".to_string(),
                    |g| format!("{:?}", g.chars().take(256).collect::<String>()),
                );
                Some(format!(
                    "meshauth: bad_issuer: expected issuer {:?} (the plugin's `issuer`), the token carries iss {got}; the plugin's issuer must equal the control plane's (`meshauth status` prints it)",
                    expected.unwrap_or_default()
                ))
            }
            _ => None,
        }
    }

    /// The whole answer (RFC 6750 challenge included).
    pub fn answer(&self, realm: &str, correlation_id: &str) -> Answer {
        // Written once for the challenge and the body: a flood of refusals is a hot path.
        let message = self.to_string();
        // A 400 is not an authentication problem: no challenge (RFC 9110 §11.6.1).
        let challenge = (self.status() != 400)
            .then(|| ("www-authenticate", self.challenge_with(realm, &message)));
        Answer::refusal(
            self.status(),
            self.code(),
            &message,
            challenge,
            correlation_id,
        )
    }
}

/// A local answer the filter sends instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    /// Every refusal the filter sends is built here (a denial's and a rate limit's), so
    /// none forgets a header or the error body shared with the control plane
    /// (`{"error":{code,message,correlation_id}}`).
    pub fn refusal(
        status: u32,
        code: &str,
        message: &str,
        extra: impl IntoIterator<Item = (&'static str, String)>,
        correlation_id: &str,
    ) -> Answer {
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        headers.extend(extra);
        Answer {
            status,
            headers,
            body: meshauth_wire::error::body(code, message, correlation_id),
        }
    }

    pub fn limited(limited: &crate::limits::Limited, correlation_id: &str) -> Answer {
        Answer::refusal(
            429,
            crate::limits::Limited::CODE,
            &limited.message(),
            limited.headers.iter().cloned(),
            correlation_id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenges() {
        assert_eq!(Denial::Expired.status(), 401);
        assert_eq!(
            Denial::Expired.challenge("meshauth"),
            "Bearer realm=\"meshauth\", error=\"invalid_token\", error_description=\"token has expired\""
        );
        assert_eq!(Denial::MissingToken.challenge("r"), "Bearer realm=\"r\"");
        let scope = Denial::InsufficientScope {
            required: "admin".into(),
        };
        assert_eq!(scope.status(), 403);
        assert!(scope.challenge("r").ends_with("scope=\"admin\""));
        assert_eq!(Denial::Revoked.status(), 403);
        assert!(Denial::Revoked
            .challenge("r")
            .contains("error=\"invalid_token\""));
        assert_eq!(Denial::NotReady.status(), 503);
    }

    #[test]
    fn a_bad_issuer_names_both_issuers_to_the_operator_and_neither_to_the_client() {
        let d = Denial::BadIssuer {
            got: Some("http://0.0.0.0:8080\n\u{1b}[31mforged".into()),
        };
        let note = d.operator_note(Some("https://auth.example.com")).unwrap();
        assert!(
            note.contains(r#"expected issuer "https://auth.example.com""#),
            "{note}"
        );
        assert!(
            note.contains(r#"iss "http://0.0.0.0:8080\n\u{1b}[31mforged""#),
            "{note}"
        );
        assert!(
            !note.contains('\n') && !note.contains('\u{1b}'),
            "escaped: {note}"
        );
        let long = Denial::BadIssuer {
            got: Some("x".repeat(10_000)),
        };
        assert!(long.operator_note(Some("a")).unwrap().len() < 600);
        let none = Denial::BadIssuer { got: None };
        assert!(none.operator_note(Some("a")).unwrap().contains("iss none"));
        let a = d.answer("r", "c");
        let client = format!("{a:?}");
        assert!(
            !client.contains("auth.example.com") && !client.contains("0.0.0.0"),
            "{client}"
        );
        assert!(
            a.body.contains("token issuer is not accepted"),
            "{}",
            a.body
        );
        assert_eq!(Denial::Expired.operator_note(Some("a")), None);
    }

    #[test]
    fn body_carries_the_correlation_id() {
        let body: serde_json::Value =
            serde_json::from_str(&Denial::BadSignature.answer("r", "abc-123").body).unwrap();
        assert_eq!(body["error"]["code"], "bad_signature");
        assert_eq!(body["error"]["correlation_id"], "abc-123");
    }

    #[test]
    fn every_answer_is_uncacheable_and_carries_the_correlation_id() {
        let all = [
            Denial::MissingToken,
            Denial::Revoked,
            Denial::NotReady,
            Denial::BadPath("x"),
            Denial::InsufficientScope {
                required: "a".into(),
            },
        ];
        for d in all {
            let a = d.answer("r", "corr-9");
            assert_eq!(a.status, d.status());
            assert!(a.headers.contains(&("cache-control", "no-store".into())));
            assert!(a
                .headers
                .contains(&("content-type", "application/json".into())));
            let challenge = a.headers.iter().any(|(k, _)| *k == "www-authenticate");
            assert_eq!(challenge, d.status() != 400, "{d:?}");
            if challenge {
                assert!(a.headers.contains(&("www-authenticate", d.challenge("r"))));
            }
            let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(body["error"]["correlation_id"], "corr-9");
            assert_eq!(body["error"]["code"], d.code());
        }
    }

    #[test]
    fn a_rate_limit_refusal_has_the_same_shape() {
        let limited = crate::limits::Limited {
            policy: "per-client".into(),
            headers: vec![("retry-after", "2".into())],
            contended: false,
        };
        let a = Answer::limited(&limited, "corr-3");
        assert_eq!(a.status, 429);
        let common = Denial::MissingToken.answer("r", "corr-3").headers;
        for h in common.iter().filter(|(k, _)| *k != "www-authenticate") {
            assert!(a.headers.contains(h), "{h:?}");
        }
        assert!(a.headers.contains(&("retry-after", "2".into())));
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["correlation_id"], "corr-3");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per-client"));
    }

    /// `code` is read from `ALL_CODES` by `index`: each variant keeps the code it had.
    #[test]
    fn each_variant_has_its_code() {
        let all = [
            (Denial::MissingToken, "missing_token"),
            (Denial::Malformed("x"), "malformed_token"),
            (Denial::TooLarge, "token_too_large"),
            (Denial::BadAlgorithm, "bad_algorithm"),
            (Denial::UnknownKey, "unknown_key"),
            (Denial::BadSignature, "bad_signature"),
            (Denial::Expired, "token_expired"),
            (Denial::NotYetValid, "token_not_yet_valid"),
            (Denial::BadIssuer { got: None }, "bad_issuer"),
            (Denial::BadAudience, "bad_audience"),
            (Denial::BadClaim("x"), "bad_claim"),
            (
                Denial::InsufficientScope {
                    required: "a".into(),
                },
                "insufficient_scope",
            ),
            (
                Denial::ClaimMismatch { claim: "c".into() },
                "claim_mismatch",
            ),
            (Denial::Revoked, "token_revoked"),
            (Denial::NotReady, "not_ready"),
            (Denial::BadPath("x"), "bad_path"),
            (Denial::IssuerNotAllowed, "issuer_not_allowed"),
            (Denial::TokenLifetime, "token_lifetime"),
        ];
        assert_eq!(all.len(), Denial::ALL_CODES.len());
        for (d, code) in all {
            assert_eq!(d.code(), code, "{d:?}");
        }
    }

    #[test]
    fn every_code_is_listed_once() {
        let mut codes = Denial::ALL_CODES.to_vec();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Denial::ALL_CODES.len());
    }
}
