//! RFC 7662 introspection of our access and refresh tokens.

use serde_json::{json, Value};

use crate::error::ServiceError;

use super::OAuth;

impl OAuth {
    pub async fn introspect(&self, token: &str) -> Result<Value, ServiceError> {
        if let Some(c) = self.tokens.verify_access(token) {
            if self.revocations.is_revoked(&c).await? {
                return Ok(json!({"active": false}));
            }
            return Ok(json!({
                "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
                "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "nbf": c.nbf,
                "jti": c.jti, "sid": c.sid,
            }));
        }
        if let Some(rec) = self.sessions.refresh_record(token).await? {
            if !rec.used
                && rec.expires_at > self.ctx.now()
                && !self.revocations.session_revoked(&rec).await?
            {
                // No `token_type`: RFC 7662 means the access token type (RFC 6749 §7.1),
                // which a refresh token does not have.
                return Ok(json!({
                    "active": true, "scope": rec.scope, "client_id": rec.client_id,
                    "sub": rec.sub, "exp": rec.expires_at, "sid": rec.sid,
                }));
            }
        }
        Ok(json!({"active": false}))
    }
}
