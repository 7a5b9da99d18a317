//! What an audit entry says: the kind of change and its typed detail.

use serde::Serialize;

use meshauth_wire::limits::LimitPolicy;

use crate::revocation::Revocation;

/// Every kind of change the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    KeyPublished,
    KeyActivated,
    KeyActivatedPastLaggingFilters,
    KeyDeactivated,
    KeyRetired,
    KeyRevoked,
    ClientCreated,
    ClientDeleted,
    ClientSecretRotated,
    ClientUpdated,
    TokenIssued,
    RevocationAdded,
    LimitSet,
    LimitDeleted,
    IssuerAdded,
    IssuerDeleted,
    TokenExchanged,
    TokenExchangeRefused,
}

impl AuditAction {
    /// The name stored in the entry (and covered by its MAC): never change one.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::KeyPublished => "key.published",
            AuditAction::KeyActivated => "key.activated",
            AuditAction::KeyActivatedPastLaggingFilters => "key.activated_past_lagging_filters",
            AuditAction::KeyDeactivated => "key.deactivated",
            AuditAction::KeyRetired => "key.retired",
            AuditAction::KeyRevoked => "key.revoked",
            AuditAction::ClientCreated => "client.created",
            AuditAction::ClientDeleted => "client.deleted",
            AuditAction::ClientSecretRotated => "client.secret_rotated",
            AuditAction::ClientUpdated => "client.updated",
            AuditAction::TokenIssued => "token.issued",
            AuditAction::RevocationAdded => "revocation.added",
            AuditAction::LimitSet => "limit.set",
            AuditAction::LimitDeleted => "limit.deleted",
            AuditAction::IssuerAdded => "issuer.added",
            AuditAction::IssuerDeleted => "issuer.deleted",
            AuditAction::TokenExchanged => "token.exchanged",
            AuditAction::TokenExchangeRefused => "token.exchange_refused",
        }
    }
}

/// What an entry records beside its action and target (`{}` when nothing).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AuditDetail<'a> {
    Nothing {},
    TokenIssued {
        sid: &'a str,
        scope: &'a str,
        ttl: i64,
    },
    ClientCreated {
        name: &'a str,
        scopes: &'a [String],
        /// Written only when set, so other clients' entries read as before.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        token_exchange: bool,
    },
    /// What an admin changed on an existing client.
    ClientUpdated {
        token_exchange: bool,
    },
    RevocationAdded {
        revocation: &'a Revocation,
        reason: &'a str,
    },
    LimitSet {
        policy: &'a LimitPolicy,
    },
    IssuerAdded {
        issuer: &'a str,
        source: &'a str,
        audiences: &'a [String],
        algorithms: &'a [&'a str],
    },
    /// A token exchange, granted (`jti`) or refused (`error`, `reason`): what was
    /// established by then, never a token.
    TokenExchange {
        #[serde(skip_serializing_if = "Option::is_none")]
        issuer: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actor: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        aud: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        jti: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
}
