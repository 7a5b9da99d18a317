//! The error body every meshauth answer carries, from the filter and the control plane:
//! `{"error": {"code", "message", "correlation_id"}}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: String,
    /// For people; never carries a secret.
    pub message: String,
    /// The request's `x-request-id`, empty when it had none.
    pub correlation_id: String,
}

/// The body as JSON text.
pub fn body(code: &str, message: &str, correlation_id: &str) -> String {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        error: Detail<'a>,
    }
    #[derive(Serialize)]
    struct Detail<'a> {
        code: &'a str,
        message: &'a str,
        correlation_id: &'a str,
    }
    serde_json::to_string(&Borrowed {
        error: Detail {
            code,
            message,
            correlation_id,
        },
    })
    // Serializing three strings cannot fail; an empty object still parses as JSON.
    .unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_escapes() {
        let text = body("bad_path", "a \"quoted\"\nline", "id-1");
        let back: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(back.error.code, "bad_path");
        assert_eq!(back.error.message, "a \"quoted\"\nline");
        assert_eq!(back.error.correlation_id, "id-1");
    }
}
