//! The client verbs: each one admin API call, typed by `crate::api`, its answer printed
//! as the control plane sent it.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{AuditCmd, ClientsCmd, Cmd, Conn, KeysCmd, LimitFlags, LimitsCmd, TokenCmd};
use crate::api::{
    path, route, AuditHead, AuditList, AuditQuery, AuditVerify, ClientChange, ClientList,
    ClientSecret, ClientView, CreatedClient, IssueToken, IssuedToken, KeyList, LimitDraft,
    LimitDraftMatch, LimitList, NewClient, NewRevocation, QuotaDraft, RevocationList, Scope,
    Status, Ttl, VerifyQuery,
};
use meshauth_wire::error::ErrorBody;
use meshauth_wire::limits::LimitPolicy;

/// `alice=100/10` or `alice=100/10/60` → (value, quota).
fn parse_override(s: &str) -> Result<(String, QuotaDraft), String> {
    let bad = || format!("--override {s:?}: expected VALUE=RATE/BURST[/WINDOW_SECONDS]");
    let (value, quota) = s.rsplit_once('=').ok_or_else(bad)?;
    let nums: Vec<u64> = quota
        .split('/')
        .map(|n| n.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let q = match nums.as_slice() {
        [rate, burst] => QuotaDraft {
            rate: *rate,
            burst: *burst,
            window_seconds: None,
        },
        [rate, burst, window] => QuotaDraft {
            rate: *rate,
            burst: *burst,
            window_seconds: Some(*window),
        },
        _ => return Err(bad()),
    };
    Ok((value.to_string(), q))
}

/// The policy the flags describe; the control plane validates it.
fn limit_body(f: LimitFlags) -> Result<LimitDraft, String> {
    Ok(LimitDraft {
        key: f.key,
        rate: f.rate.ok_or("--rate is required (or give --file)")?,
        window_seconds: f.window_seconds,
        burst: f.burst.ok_or("--burst is required (or give --file)")?,
        matches: LimitDraftMatch {
            path_prefix: f.path_prefix,
            path_exact: f.path_exact,
            methods: (!f.methods.is_empty()).then_some(f.methods),
        },
        overrides: f
            .overrides
            .iter()
            .map(|s| parse_override(s))
            .collect::<Result<_, _>>()?,
    })
}

/// A bearer token as it can stand in a header: visible ASCII, no spaces or line breaks.
fn is_bearer_value(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// One admin call; the answer's body as text (empty for 204).
    pub(super) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&dyn Body>,
    ) -> Result<String, String> {
        let token = self
            .token
            .as_deref()
            .ok_or("MESHAUTH_ADMIN_TOKEN is not set")?;
        // Checked here so the HTTP library never quotes the bad header (and with it the
        // secret) in its error, and so the answer does not blame the network.
        if !is_bearer_value(token) {
            return Err(
                "MESHAUTH_ADMIN_TOKEN is an invalid header value (only visible ASCII, no spaces or line breaks); the value is not shown".into(),
            );
        }
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let req = self
            .agent
            .request(method, &url)
            .set("authorization", &format!("Bearer {token}"));
        let res = match body {
            Some(b) => req.send_json(b.json()?),
            None => req.call(),
        };
        match res {
            Ok(r) => r.into_string().map_err(|e| e.to_string()),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error.message)
                    .unwrap_or(text);
                Err(format!("{code}: {msg}"))
            }
            Err(e) => Err(format!("cannot reach {url}: {e}")),
        }
    }

    /// A call whose answer is a `T`.
    pub(super) fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&dyn Body>,
    ) -> Result<Answer<T>, String> {
        let text = self.send(method, path, body)?;
        let value = serde_json::from_str(&text)
            .map_err(|e| format!("bad answer from {}{path}: {e}", self.base))?;
        Ok(Answer { value, text })
    }
}

/// A request body: typed, or a policy file sent as written.
pub(super) trait Body {
    fn json(&self) -> Result<serde_json::Value, String>;
}

impl<T: Serialize> Body for T {
    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::to_value(self).map_err(|e| e.to_string())
    }
}

/// A typed answer and its text as the control plane sent it.
pub(super) struct Answer<T> {
    pub(super) value: T,
    text: String,
}

impl<T> Answer<T> {
    /// Printed as sent (pretty): fields a newer control plane adds are shown too.
    pub(super) fn print(&self) {
        let pretty = serde_json::from_str::<serde_json::Value>(&self.text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| self.text.clone());
        println!("{pretty}");
    }
}

/// Runs a client verb; `Ok` output goes to stdout.
pub fn run_client(conn: Conn, cmd: Cmd) -> Result<(), String> {
    let c = Client {
        base: conn.url,
        token: conn.admin_token,
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build(),
    };
    match cmd {
        Cmd::Serve { .. } => return Err("serve is not a client verb".into()),
        Cmd::EnvoyConfig(args) => return super::envoy::run(&c.base, args),
        Cmd::Init(args) => return super::init::run(args),
        Cmd::Issuers(cmd) => return super::issuers::run(&c, cmd),
        Cmd::Token(TokenCmd::Issue {
            sub,
            scope,
            aud,
            ttl,
            json: as_json,
        }) => {
            let body = IssueToken {
                sub,
                scope: Some(Scope::Text(scope)),
                aud: (!aud.is_empty()).then_some(aud),
                ttl: ttl.map(Ttl::Text),
            };
            let a = c.call::<IssuedToken>("POST", route::TOKENS, Some(&body))?;
            if as_json {
                a.print();
            } else {
                println!("{}", a.value.access_token);
            }
        }
        Cmd::Keys(KeysCmd::List) => c.call::<KeyList>("GET", route::KEYS, None)?.print(),
        Cmd::Keys(KeysCmd::Rotate) => c.call::<KeyList>("POST", route::KEYS_ROTATE, None)?.print(),
        Cmd::Keys(KeysCmd::Revoke { kid }) => c
            .call::<KeyList>("POST", &path(route::KEY_REVOKE, &kid)?, None)?
            .print(),
        Cmd::Clients(ClientsCmd::Create {
            name,
            scope,
            token_exchange,
        }) => {
            let body = NewClient {
                name,
                scopes: Scope::Text(scope).into_list(),
                token_exchange,
            };
            c.call::<CreatedClient>("POST", route::CLIENTS, Some(&body))?
                .print()
        }
        Cmd::Clients(ClientsCmd::List) => {
            c.call::<ClientList>("GET", route::CLIENTS, None)?.print()
        }
        Cmd::Clients(ClientsCmd::Delete { client_id }) => {
            c.send("DELETE", &path(route::CLIENT, &client_id)?, None)?;
        }
        Cmd::Clients(ClientsCmd::Update {
            client_id,
            token_exchange,
        }) => {
            let body = ClientChange { token_exchange };
            c.call::<ClientView>("PATCH", &path(route::CLIENT, &client_id)?, Some(&body))?
                .print()
        }
        Cmd::Clients(ClientsCmd::RotateSecret { client_id }) => c
            .call::<ClientSecret>("POST", &path(route::CLIENT_SECRET, &client_id)?, None)?
            .print(),
        Cmd::Revoke(r) => match r.target() {
            None => c
                .call::<RevocationList>("GET", route::REVOCATIONS, None)?
                .print(),
            Some((kind, value, issuer)) => {
                let body = NewRevocation {
                    kind,
                    value,
                    exp: None,
                    issuer,
                };
                c.send("POST", route::REVOCATIONS, Some(&body))?;
            }
        },
        Cmd::Status => c.call::<Status>("GET", route::STATUS, None)?.print(),
        Cmd::Audit(AuditCmd::Verify { anchor }) => {
            // Checked here too, so a typo is named before any request.
            if let Some(a) = &anchor {
                a.parse::<crate::audit::Anchor>()?;
            }
            let query = serde_urlencoded::to_string(VerifyQuery {
                anchor: anchor.map(|a| a.trim().to_string()),
            })
            .map_err(|e| e.to_string())?;
            let at = match query.as_str() {
                "" => route::AUDIT_VERIFY.to_string(),
                q => format!("{}?{q}", route::AUDIT_VERIFY),
            };
            let v = c.call::<AuditVerify>("GET", &at, None)?.value;
            if !v.ok {
                return Err(format!(
                    "audit chain broken: {}",
                    v.problem.as_deref().unwrap_or("unknown problem")
                ));
            }
            match v.head {
                Some(head) => println!(
                    "audit chain ok: {} entries, head {head} (record it as an anchor)",
                    v.entries
                ),
                None => println!("audit chain ok: {} entries", v.entries),
            }
        }
        Cmd::Audit(AuditCmd::Head) => {
            let v = c.call::<AuditHead>("GET", route::AUDIT_HEAD, None)?.value;
            println!("{}", v.head.as_deref().unwrap_or("(empty log)"));
        }
        Cmd::Limits(LimitsCmd::List) => c.call::<LimitList>("GET", route::LIMITS, None)?.print(),
        Cmd::Limits(LimitsCmd::Set { name, flags, file }) => {
            let at = path(route::LIMIT, &name)?;
            let answer = match file {
                Some(file) => {
                    let text = if file.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
                    } else {
                        std::fs::read_to_string(&file)
                            .map_err(|e| format!("{}: {e}", file.display()))?
                    };
                    let body: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
                    c.call::<LimitPolicy>("PUT", &at, Some(&body))?
                }
                None => c.call::<LimitPolicy>("PUT", &at, Some(&limit_body(flags)?))?,
            };
            answer.print()
        }
        Cmd::Limits(LimitsCmd::Delete { name }) => {
            c.send("DELETE", &path(route::LIMIT, &name)?, None)?;
        }
        Cmd::Audit(AuditCmd::List { from, limit }) => {
            // Without --from: the newest entries, the ones an operator looks for.
            let last = from.is_none().then_some(limit);
            let query = serde_urlencoded::to_string(AuditQuery { from, limit, last })
                .map_err(|e| e.to_string())?;
            c.call::<AuditList>("GET", &format!("{}?{query}", route::AUDIT), None)?
                .print()
        }
    }
    Ok(())
}
