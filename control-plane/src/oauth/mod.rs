//! The OAuth side of the domain: one module per grant, introspection (RFC 7662) and
//! revocation (RFC 7009), over the token, session, client and revocation services.

mod client_credentials;
mod exchange;
mod introspect;
mod issue;
mod refresh;
mod revoke;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ctx::{secs, Ctx};
use crate::issuers::Issuers;
use crate::revocations::Revocations;
use crate::sessions::Sessions;
use crate::tokens::{TokenResponse, Tokens};

/// The client id of admin-issued sessions.
pub const ADMIN_ACTOR: &str = "admin";

pub use exchange::{ExchangeRequest, SUBJECT_PREFIX, TOKEN_EXCHANGE};

pub struct OAuth {
    ctx: Arc<Ctx>,
    tokens: Tokens,
    sessions: Sessions,
    revocations: Revocations,
    issuers: Issuers,
    /// Per-client token buckets for RFC 7009 calls (tokens, last refill).
    revoke_budget: Mutex<HashMap<String, (f64, std::time::Instant)>>,
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
            revoke_budget: Mutex::new(HashMap::new()),
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
