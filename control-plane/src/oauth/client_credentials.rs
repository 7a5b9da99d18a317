//! The client-credentials grant (RFC 6749 §4.4): a client's own access token, for the
//! scopes it was given.

use crate::clients::{split_scope, ClientRecord};
use crate::ctx::secs;
use crate::error::{GrantError, OAuthError};
use crate::tokens::{AccessGrant, TokenResponse};

use super::OAuth;

impl OAuth {
    pub async fn client_credentials(
        &self,
        client: &ClientRecord,
        scope: Option<&str>,
    ) -> Result<TokenResponse, GrantError> {
        let requested = match scope {
            Some(s) => split_scope(s),
            None => client.scopes.clone(),
        };
        if let Some(extra) = requested.iter().find(|s| !client.scopes.contains(s)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {extra:?} is not granted to this client"
            ))
            .into());
        }
        let scope = requested.join(" ");
        let ttl = secs(self.ctx.settings.tokens.client_credentials_ttl);
        let (token, _) = self.tokens.mint_access(AccessGrant {
            sub: &client.client_id,
            client_id: &client.client_id,
            scope: &scope,
            aud: self.ctx.settings.default_audiences.clone(),
            ttl,
            sid: None,
            ext: None,
            act: None,
        })?;
        self.ctx.metrics.issued("client_credentials");
        Ok(self.bearer(token, ttl, scope))
    }
}
