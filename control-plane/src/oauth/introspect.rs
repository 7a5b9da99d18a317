//! RFC 7662 introspection of our access and refresh tokens.

use serde::Serialize;

use meshauth_wire::{Actor, ExternalSubject};

use crate::error::ServiceError;

use super::OAuth;

/// An RFC 7662 answer: `{"active": false}`, or `active: true` with what the token says.
#[derive(Debug, Serialize)]
pub struct Introspection {
    active: bool,
    #[serde(flatten)]
    token: Option<Active>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Active {
    Access {
        token_type: &'static str,
        scope: String,
        client_id: String,
        sub: String,
        aud: Vec<String>,
        iss: String,
        exp: i64,
        iat: i64,
        nbf: i64,
        jti: String,
        sid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ext: Option<Box<ExternalSubject>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        act: Option<Box<Actor>>,
    },
    /// No `token_type`: RFC 7662 means the access token type (RFC 6749 §7.1), which a
    /// refresh token does not have.
    Refresh {
        scope: String,
        client_id: String,
        sub: String,
        exp: i64,
        sid: String,
    },
}

const INACTIVE: Introspection = Introspection {
    active: false,
    token: None,
};

impl OAuth {
    pub async fn introspect(&self, token: &str) -> Result<Introspection, ServiceError> {
        if let Some(c) = self.tokens.verify_access(token) {
            if self.revocations.is_revoked(&c).await? {
                return Ok(INACTIVE);
            }
            let active = Active::Access {
                token_type: "Bearer",
                scope: c.scope,
                client_id: c.client_id,
                sub: c.sub,
                aud: c.aud,
                iss: c.iss,
                exp: c.exp,
                iat: c.iat,
                nbf: c.nbf,
                jti: c.jti,
                sid: c.sid,
                ext: c.ext.map(Box::new),
                act: c.act.map(Box::new),
            };
            return Ok(Introspection {
                active: true,
                token: Some(active),
            });
        }
        if let Some(rec) = self.sessions.refresh_record(token).await? {
            if !rec.used
                && rec.expires_at > self.ctx.now()
                && !self.revocations.session_revoked(&rec).await?
            {
                let active = Active::Refresh {
                    scope: rec.scope,
                    client_id: rec.client_id,
                    sub: rec.sub,
                    exp: rec.expires_at,
                    sid: rec.sid,
                };
                return Ok(Introspection {
                    active: true,
                    token: Some(active),
                });
            }
        }
        Ok(INACTIVE)
    }
}
