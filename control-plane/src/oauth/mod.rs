//! The OAuth side of the domain: one module per grant, introspection (RFC 7662) and
//! revocation (RFC 7009), over the token, session, client and revocation services.

mod budget;
mod client_credentials;
mod exchange;
mod introspect;
mod issue;
mod refresh;
mod revoke;

use std::sync::Arc;

use crate::ctx::{secs, Ctx};
use crate::issuers::Issuers;
use crate::revocations::Revocations;
use crate::sessions::Sessions;
use crate::tokens::{TokenResponse, Tokens};

/// The client id of admin-issued sessions.
pub const ADMIN_ACTOR: &str = "admin";

pub use exchange::{ExchangeRequest, SUBJECT_PREFIX, TOKEN_EXCHANGE};

/// RFC 7009 calls a client may burst, and how many per second it regains.
const REVOKE_BURST: f64 = 20.0;
const REVOKE_PER_SECOND: f64 = 2.0;
/// Refused token exchanges (each audited) a client may burst, and per second regained:
/// past them its exchanges get 429 before any verification or audit record.
const REFUSED_EXCHANGE_BURST: f64 = 30.0;
const REFUSED_EXCHANGE_PER_SECOND: f64 = 0.5;

pub struct OAuth {
    ctx: Arc<Ctx>,
    tokens: Tokens,
    sessions: Sessions,
    revocations: Revocations,
    issuers: Issuers,
    /// Per-client budgets: RFC 7009 calls, and refused token exchanges (each one
    /// audited, so a client cannot grow the audit log without bound).
    revoke_budget: budget::Budget,
    exchange_refusals: budget::Budget,
}

impl OAuth {
    pub fn new(
        ctx: Arc<Ctx>,
        tokens: Tokens,
        sessions: Sessions,
        revocations: Revocations,
        issuers: Issuers,
    ) -> OAuth {
        OAuth {
            ctx,
            tokens,
            sessions,
            revocations,
            issuers,
            revoke_budget: budget::Budget::new(REVOKE_BURST, REVOKE_PER_SECOND),
            exchange_refusals: budget::Budget::new(
                REFUSED_EXCHANGE_BURST,
                REFUSED_EXCHANGE_PER_SECOND,
            ),
        }
    }

    fn access_ttl(&self) -> i64 {
        secs(self.ctx.settings.tokens.access_ttl)
    }

    fn bearer(&self, access_token: String, expires_in: i64, scope: String) -> TokenResponse {
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: None,
            scope,
            sid: None,
            issued_token_type: None,
        }
    }
}
