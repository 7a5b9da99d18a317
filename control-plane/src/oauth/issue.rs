//! Admin-issued tokens for a subject: a new session with an access and a refresh token.

use crate::audit::{AuditAction, AuditDetail};
use crate::clients::{validate_name, validate_scopes};
use crate::crypto;
use crate::ctx::secs;
use crate::error::ServiceError;
use crate::sessions::{FamilyRecord, RefreshRecord};
use crate::tokens::{AccessGrant, TokenResponse};

use super::{OAuth, ADMIN_ACTOR};

impl OAuth {
    pub async fn issue_for_subject(
        &self,
        actor: &str,
        sub: &str,
        scope: &[String],
        aud: Option<Vec<String>>,
        ttl: Option<i64>,
    ) -> Result<TokenResponse, ServiceError> {
        validate_name("sub", sub)?;
        if sub.starts_with(super::SUBJECT_PREFIX) {
            return Err(ServiceError::Invalid(format!(
                "sub: {:?} is reserved for the subjects of exchanged tokens",
                super::SUBJECT_PREFIX
            )));
        }
        validate_scopes(scope)?;
        let max = secs(self.ctx.settings.tokens.max_access_ttl);
        let ttl = ttl.unwrap_or(self.access_ttl());
        if ttl <= 0 || ttl > max {
            return Err(ServiceError::Invalid(format!(
                "ttl must be between 1s and {max}s"
            )));
        }
        let aud = aud.unwrap_or_else(|| self.ctx.settings.default_audiences.clone());
        if aud.is_empty() || aud.iter().any(|a| validate_name("aud", a).is_err()) {
            return Err(ServiceError::Invalid(
                "aud must list 1-256 printable characters each".into(),
            ));
        }
        let sid = format!("s-{}", crypto::random_token(12));
        let now = self.ctx.now();
        self.sessions
            .create_family(&FamilyRecord {
                sid: sid.clone(),
                sub: sub.into(),
                client_id: ADMIN_ACTOR.into(),
                created_at: now,
                revoked_at: None,
            })
            .await?;
        let scope = scope.join(" ");
        let (access, _) = self.tokens.mint_access(AccessGrant {
            sub,
            client_id: ADMIN_ACTOR,
            scope: &scope,
            aud: aud.clone(),
            ttl,
            sid: Some(sid.clone()),
            ext: None,
            act: None,
        })?;
        let refresh = self.tokens.mint_refresh(&sid);
        self.sessions
            .store_refresh(
                &refresh,
                &RefreshRecord {
                    sid: sid.clone(),
                    sub: sub.into(),
                    client_id: ADMIN_ACTOR.into(),
                    scope: scope.clone(),
                    aud,
                    expires_at: now + secs(self.ctx.settings.tokens.refresh_ttl),
                    used: false,
                    used_at: None,
                    answer: None,
                },
            )
            .await?;
        self.ctx
            .audit
            .record(
                actor,
                AuditAction::TokenIssued,
                sub,
                AuditDetail::TokenIssued {
                    sid: &sid,
                    scope: &scope,
                    ttl,
                },
                now,
            )
            .await?;
        self.ctx.metrics.issued("admin");
        Ok(TokenResponse {
            refresh_token: Some(refresh),
            sid: Some(sid),
            ..self.bearer(access, ttl, scope)
        })
    }
}
