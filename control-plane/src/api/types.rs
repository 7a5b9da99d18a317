//! The admin API's requests and answers.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditReport};
use crate::clients::ClientRecord;
use crate::keys::{KeyRecord, KeyState};
use crate::revocation::Revocation;
use crate::sync::FilterStatus;
use meshauth_wire::limits::LimitPolicy;

/// A signing key as the admin API shows it: never its private half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub kid: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub revoked: bool,
}

impl From<&KeyRecord> for KeyView {
    fn from(k: &KeyRecord) -> Self {
        KeyView {
            kid: k.kid.clone(),
            state: k.state,
            created_at: k.created_at,
            activated_at: k.activated_at,
            deactivated_at: k.deactivated_at,
            retired_at: k.retired_at,
            revoked: k.revoked,
        }
    }
}

/// `GET /admin/keys`, and the answer to a rotation or a key revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
    pub rotation_requested: bool,
}

/// `POST /admin/clients`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// May exchange trusted issuers' tokens (RFC 8693); default false.
    #[serde(default)]
    pub token_exchange: bool,
}

/// `PATCH /admin/clients/{id}`: what an admin may change on an existing client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChange {
    /// May exchange trusted issuers' tokens (RFC 8693).
    pub token_exchange: bool,
}

/// A client without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    #[serde(default)]
    pub token_exchange: bool,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        ClientView {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            scopes: c.scopes.clone(),
            created_at: c.created_at,
            token_exchange: c.token_exchange,
        }
    }
}

/// A new client: its secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    pub client_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// `POST /admin/clients/{id}/secret`: the new secret (the old one stops working).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSecret {
    pub client_id: String,
    pub client_secret: String,
}

/// Scopes as a list or as one space-separated string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    List(Vec<String>),
    Text(String),
}

impl Scope {
    pub fn into_list(self) -> Vec<String> {
        match self {
            Scope::List(l) => l,
            Scope::Text(t) => t
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// A lifetime in seconds, or as text (`10m`, `1h`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ttl {
    Seconds(i64),
    Text(String),
}

impl Ttl {
    pub fn seconds(self) -> Result<i64, String> {
        match self {
            Ttl::Seconds(s) => Ok(s),
            Ttl::Text(t) => humantime::parse_duration(&t)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .map_err(|e| format!("ttl: {e}")),
        }
    }
}

/// `POST /admin/tokens`: an access token (and a refresh token) for a subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
}

/// What the CLI reads of the token answer (RFC 6749 §5.1, as the token endpoint's).
#[derive(Debug, Clone, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
}

/// What an admin revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum RevocationKind {
    /// An access or refresh token of this control plane.
    Token,
    /// A token's id, until `exp`.
    Jti,
    /// Every token of a subject, session or client issued until now.
    Sub,
    Sid,
    ClientId,
}

impl TryFrom<String> for RevocationKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "token" => RevocationKind::Token,
            "jti" => RevocationKind::Jti,
            "sub" => RevocationKind::Sub,
            "sid" => RevocationKind::Sid,
            "client_id" => RevocationKind::ClientId,
            other => {
                return Err(format!(
                    "kind {other:?}: expected token, jti, sub, sid or client_id"
                ))
            }
        })
    }
}

impl From<RevocationKind> for &'static str {
    fn from(k: RevocationKind) -> &'static str {
        match k {
            RevocationKind::Token => "token",
            RevocationKind::Jti => "jti",
            RevocationKind::Sub => "sub",
            RevocationKind::Sid => "sid",
            RevocationKind::ClientId => "client_id",
        }
    }
}

/// `POST /admin/revocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    pub kind: RevocationKind,
    pub value: String,
    /// For `jti`: when the token expires (the entry is kept until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// For `sub`, `sid` and `client_id`: the name of the trusted issuer whose tokens
    /// the rule covers (`meshauth issuers add NAME`); absent or `self`: the control
    /// plane's own. For `jti`: the issuer of the token, whose longest token life
    /// bounds `exp` (and is its default) instead of the control plane's longest TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `GET /admin/revocations`: those still in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationList {
    pub revocations: Vec<Revocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitList {
    pub limits: Vec<LimitPolicy>,
}

/// `PUT /admin/limits/{name}` from `limits set` flags. The control plane validates it
/// (into a `LimitPolicy`), so the CLI checks nothing twice and reports the server's
/// field paths.
#[derive(Debug, Clone, Serialize)]
pub struct LimitDraft {
    pub key: Vec<String>,
    pub rate: u64,
    pub window_seconds: u64,
    pub burst: u64,
    #[serde(rename = "match", skip_serializing_if = "LimitDraftMatch::is_empty")]
    pub matches: LimitDraftMatch,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub overrides: std::collections::BTreeMap<String, QuotaDraft>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LimitDraftMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

impl LimitDraftMatch {
    fn is_empty(&self) -> bool {
        self.path_prefix.is_none() && self.path_exact.is_none() && self.methods.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaDraft {
    pub rate: u64,
    pub burst: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
}

/// `GET /admin/audit?from=&limit=` (`limit` entries from entry `from`, 0 when absent),
/// or `?last=N` (the newest N entries, oldest first; not with `from`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    #[serde(default = "default_audit_limit")]
    pub limit: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
}

fn default_audit_limit() -> u64 {
    100
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// `GET /admin/audit/verify?anchor=SEQ:HASH`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyQuery {
    /// `SEQ:HASH` recorded outside the store: the chain must reach it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
}

/// The answer of `GET /admin/audit/verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditVerify {
    pub entries: u64,
    pub ok: bool,
    pub problem: Option<String>,
    /// `SEQ:HASH` of the last entry checked: what to record as the next anchor.
    #[serde(default)]
    pub head: Option<String>,
}

impl From<AuditReport> for AuditVerify {
    fn from(r: AuditReport) -> Self {
        AuditVerify {
            entries: r.entries,
            ok: r.ok,
            problem: r.problem,
            head: r.head,
        }
    }
}

/// `GET /admin/audit/head`: the last entry's `SEQ:HASH` (none in an empty log).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditHead {
    pub head: Option<String>,
}

/// `GET /admin/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub issuer: String,
    pub store: String,
    pub replica: String,
    /// Every key but retired ones.
    pub keys: Vec<KeyView>,
    pub sync: SyncStatus,
    pub filters: Vec<FilterStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncStatus {
    pub epoch: String,
    pub version: u64,
    pub distribution_key: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn revocation_kinds_keep_their_wire_names() {
        for (kind, text) in [
            (RevocationKind::Token, "\"token\""),
            (RevocationKind::ClientId, "\"client_id\""),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), text);
            assert_eq!(serde_json::from_str::<RevocationKind>(text).unwrap(), kind);
        }
        let e = serde_json::from_str::<RevocationKind>("\"user\"").unwrap_err();
        assert!(e.to_string().contains("expected token, jti"), "{e}");
    }

    #[test]
    fn a_draft_without_match_or_overrides_leaves_them_out() {
        let d = LimitDraft {
            key: vec!["route".into()],
            rate: 1,
            window_seconds: 1,
            burst: 1,
            matches: LimitDraftMatch::default(),
            overrides: Default::default(),
        };
        let v = serde_json::to_value(&d).unwrap();
        assert!(
            v.get("match").is_none() && v.get("overrides").is_none(),
            "{v}"
        );
    }
}
