//! The `meshauth` CLI: `serve` runs the control plane; every other verb is a client
//! of the admin API (as kubectl is of the API server), configured by MESHAUTH_URL and
//! MESHAUTH_ADMIN_TOKEN.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "meshauth",
    version,
    about = "meshauth: edge authentication for Envoy and Istio"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args)]
pub struct Conn {
    /// Control-plane URL.
    #[arg(
        long,
        global = true,
        env = "MESHAUTH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Admin bearer token.
    #[arg(
        long,
        global = true,
        env = "MESHAUTH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the control plane.
    Serve {
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Revoke a token, or every token of a subject, session or client.
    #[command(subcommand)]
    Revoke(RevokeCmd),
    /// Control-plane version, keys and connected filters.
    Status,
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Rate-limit policies pushed to the filters.
    #[command(subcommand)]
    Limits(LimitsCmd),
}

#[derive(Subcommand)]
pub enum LimitsCmd {
    List,
    /// Create or replace a policy, from flags or from a JSON file (`--file`, `-` for stdin).
    Set {
        name: String,
        #[command(flatten)]
        flags: LimitFlags,
        #[arg(long, conflicts_with_all = ["key", "rate", "burst", "path_prefix", "path_exact", "methods", "overrides"])]
        file: Option<std::path::PathBuf>,
    },
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub struct LimitFlags {
    /// Key part: claim:NAME, header:NAME, client_address or route (repeat to combine).
    #[arg(long = "key")]
    key: Vec<String>,
    /// Requests per window.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 1)]
    window_seconds: u64,
    /// Requests admitted at once.
    #[arg(long)]
    burst: Option<u64>,
    #[arg(long, conflicts_with = "path_exact")]
    path_prefix: Option<String>,
    #[arg(long)]
    path_exact: Option<String>,
    /// Upper-case method (repeat for several).
    #[arg(long = "method")]
    methods: Vec<String>,
    /// VALUE=RATE/BURST[/WINDOW_SECONDS] for one key value (repeatable).
    #[arg(long = "override")]
    overrides: Vec<String>,
}

/// `alice=100/10` or `alice=100/10/60` → (value, quota JSON).
fn parse_override(s: &str) -> Result<(String, Value), String> {
    let bad = || format!("--override {s:?}: expected VALUE=RATE/BURST[/WINDOW_SECONDS]");
    let (value, quota) = s.rsplit_once('=').ok_or_else(bad)?;
    let nums: Vec<u64> = quota
        .split('/')
        .map(|n| n.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let q = match nums.as_slice() {
        [rate, burst] => json!({"rate": rate, "burst": burst}),
        [rate, burst, window] => json!({"rate": rate, "burst": burst, "window_seconds": window}),
        _ => return Err(bad()),
    };
    Ok((value.to_string(), q))
}

/// The policy body the flags describe; the control plane validates it.
fn limit_body(f: LimitFlags) -> Result<Value, String> {
    let mut body = json!({
        "key": f.key,
        "rate": f.rate.ok_or("--rate is required (or give --file)")?,
        "window_seconds": f.window_seconds,
        "burst": f.burst.ok_or("--burst is required (or give --file)")?,
    });
    let mut m = serde_json::Map::new();
    if let Some(p) = f.path_prefix {
        m.insert("path_prefix".into(), p.into());
    }
    if let Some(p) = f.path_exact {
        m.insert("path_exact".into(), p.into());
    }
    if !f.methods.is_empty() {
        m.insert("methods".into(), json!(f.methods));
    }
    if !m.is_empty() {
        body["match"] = Value::Object(m);
    }
    if !f.overrides.is_empty() {
        let o: serde_json::Map<String, Value> = f
            .overrides
            .iter()
            .map(|s| parse_override(s))
            .collect::<Result<_, _>>()?;
        body["overrides"] = Value::Object(o);
    }
    Ok(body)
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Issue an access token (and a refresh token) for a subject; prints the access token.
    Issue {
        #[arg(long, allow_hyphen_values = true)]
        sub: String,
        #[arg(long, default_value = "")]
        scope: String,
        #[arg(long)]
        aud: Vec<String>,
        /// e.g. 10m, 1h
        #[arg(long)]
        ttl: Option<String>,
        /// Print the whole token response as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    List,
    /// Start a rotation now (the new key signs once published for one JWKS max-age).
    Rotate,
    /// Remove a key from the JWKS at once (a compromised key).
    Revoke {
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Subcommand)]
pub enum ClientsCmd {
    /// Register a client; prints its id and secret (the secret is shown once).
    Create {
        name: String,
        #[arg(long, default_value = "")]
        scope: String,
    },
    List,
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Issue a new secret; the old one stops working.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Subcommand)]
pub enum RevokeCmd {
    /// An access or refresh token, or a bare jti.
    Token {
        #[arg(allow_hyphen_values = true)]
        token_or_jti: String,
    },
    Subject {
        #[arg(allow_hyphen_values = true)]
        sub: String,
    },
    Session {
        #[arg(allow_hyphen_values = true)]
        sid: String,
    },
    Client {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// The revocations still in force.
    List,
}

impl RevokeCmd {
    /// The admin API's `kind` and `value`; `None` for `list`.
    fn target(self) -> Option<(&'static str, String)> {
        Some(match self {
            RevokeCmd::Token { token_or_jti }
                if token_or_jti.contains('.') || token_or_jti.len() > 40 =>
            {
                ("token", token_or_jti)
            }
            RevokeCmd::Token { token_or_jti } => ("jti", token_or_jti),
            RevokeCmd::Subject { sub } => ("sub", sub),
            RevokeCmd::Session { sid } => ("sid", sid),
            RevokeCmd::Client { client_id } => ("client_id", client_id),
            RevokeCmd::List => return None,
        })
    }
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain; exits non-zero naming the first broken entry.
    Verify {
        /// SEQ:HASH of an entry recorded earlier (from the control plane's log or `audit
        /// head`): fails when the chain no longer reaches it or it differs.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Print the last entry's SEQ:HASH, to record outside the store as an anchor.
    Head,
    List {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let token = self
            .token
            .as_deref()
            .ok_or("MESHAUTH_ADMIN_TOKEN is not set")?;
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let req = self
            .agent
            .request(method, &url)
            .set("authorization", &format!("Bearer {token}"));
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| e.to_string())?;
                if text.is_empty() {
                    Ok(Value::Null)
                } else {
                    serde_json::from_str(&text).map_err(|e| format!("bad answer from {url}: {e}"))
                }
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or(text);
                Err(format!("{code}: {msg}"))
            }
            Err(e) => Err(format!("cannot reach {url}: {e}")),
        }
    }
}

/// An id or name from the command line as one path segment of the admin API: anything
/// but unreserved characters is percent-encoded, so `x/../../clients/ID` or `x?` cannot
/// turn a call into another one. `.` and `..` alone would still be dot segments.
fn seg(s: &str) -> Result<String, String> {
    if s == "." || s == ".." {
        return Err(format!("{s:?} cannot be an id or a name"));
    }
    Ok(s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect())
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
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
        Cmd::Token(TokenCmd::Issue {
            sub,
            scope,
            aud,
            ttl,
            json: as_json,
        }) => {
            let mut body = json!({"sub": sub, "scope": scope});
            if !aud.is_empty() {
                body["aud"] = json!(aud);
            }
            if let Some(t) = ttl {
                body["ttl"] = json!(t);
            }
            let v = c.call("POST", "/admin/tokens", Some(body))?;
            if as_json {
                print(&v);
            } else {
                println!(
                    "{}",
                    v["access_token"]
                        .as_str()
                        .ok_or("no access_token in the answer")?
                );
            }
        }
        Cmd::Keys(KeysCmd::List) => print(&c.call("GET", "/admin/keys", None)?),
        Cmd::Keys(KeysCmd::Rotate) => print(&c.call("POST", "/admin/keys/rotate", None)?),
        Cmd::Keys(KeysCmd::Revoke { kid }) => {
            print(&c.call("POST", &format!("/admin/keys/{}/revoke", seg(&kid)?), None)?)
        }
        Cmd::Clients(ClientsCmd::Create { name, scope }) => {
            let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            print(&c.call(
                "POST",
                "/admin/clients",
                Some(json!({"name": name, "scopes": scopes})),
            )?)
        }
        Cmd::Clients(ClientsCmd::List) => print(&c.call("GET", "/admin/clients", None)?),
        Cmd::Clients(ClientsCmd::Delete { client_id }) => {
            c.call(
                "DELETE",
                &format!("/admin/clients/{}", seg(&client_id)?),
                None,
            )?;
        }
        Cmd::Clients(ClientsCmd::RotateSecret { client_id }) => print(&c.call(
            "POST",
            &format!("/admin/clients/{}/secret", seg(&client_id)?),
            None,
        )?),
        Cmd::Revoke(r) => match r.target() {
            None => print(&c.call("GET", "/admin/revocations", None)?),
            Some((kind, value)) => {
                c.call(
                    "POST",
                    "/admin/revocations",
                    Some(json!({"kind": kind, "value": value})),
                )?;
            }
        },
        Cmd::Status => print(&c.call("GET", "/admin/status", None)?),
        Cmd::Audit(AuditCmd::Verify { anchor }) => {
            let path = match anchor {
                Some(a) => {
                    // Checked here too, so a typo is named before any request.
                    a.parse::<crate::audit::Anchor>()?;
                    format!("/admin/audit/verify?anchor={}", a.trim())
                }
                None => "/admin/audit/verify".into(),
            };
            let v = c.call("GET", &path, None)?;
            if v["ok"] != true {
                return Err(format!(
                    "audit chain broken: {}",
                    v["problem"].as_str().unwrap_or("unknown problem")
                ));
            }
            match v["head"].as_str() {
                Some(head) => println!(
                    "audit chain ok: {} entries, head {head} (record it as an anchor)",
                    v["entries"]
                ),
                None => println!("audit chain ok: {} entries", v["entries"]),
            }
        }
        Cmd::Audit(AuditCmd::Head) => {
            let v = c.call("GET", "/admin/audit/head", None)?;
            println!("{}", v["head"].as_str().unwrap_or("(empty log)"));
        }
        Cmd::Limits(LimitsCmd::List) => print(&c.call("GET", "/admin/limits", None)?),
        Cmd::Limits(LimitsCmd::Set { name, flags, file }) => {
            let body = match file {
                Some(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
                    } else {
                        std::fs::read_to_string(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))?
                    };
                    serde_json::from_str(&text)
                        .map_err(|e| format!("{}: not JSON: {e}", path.display()))?
                }
                None => limit_body(flags)?,
            };
            print(&c.call("PUT", &format!("/admin/limits/{}", seg(&name)?), Some(body))?)
        }
        Cmd::Limits(LimitsCmd::Delete { name }) => {
            c.call("DELETE", &format!("/admin/limits/{}", seg(&name)?), None)?;
        }
        Cmd::Audit(AuditCmd::List { from, limit }) => print(&c.call(
            "GET",
            &format!("/admin/audit?from={from}&limit={limit}"),
            None,
        )?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Key ids, client ids and jtis are random base64url: one in 32 starts with '-'.
    #[test]
    fn identifiers_starting_with_a_hyphen_are_values_not_flags() {
        for args in [
            &["meshauth", "keys", "revoke", "-uFqcbqh1uugPVG4DMmHL"][..],
            &["meshauth", "clients", "delete", "-abc"],
            &["meshauth", "clients", "rotate-secret", "-abc"],
            &["meshauth", "revoke", "token", "-jti"],
            &["meshauth", "revoke", "subject", "-alice"],
            &["meshauth", "revoke", "session", "-sid"],
            &["meshauth", "revoke", "client", "-abc"],
            &["meshauth", "token", "issue", "--sub", "-alice"],
        ] {
            let parsed = Cli::try_parse_from(args);
            assert!(
                parsed.is_ok(),
                "{args:?}: {:?}",
                parsed.err().map(|e| e.to_string())
            );
        }
        let Cmd::Keys(KeysCmd::Revoke { kid }) =
            Cli::try_parse_from(["meshauth", "keys", "revoke", "-u"])
                .unwrap()
                .cmd
        else {
            panic!("not keys revoke");
        };
        assert_eq!(kid, "-u");
    }

    #[test]
    fn ids_stay_inside_their_path_segment() {
        assert_eq!(seg("abc-_.~9").unwrap(), "abc-_.~9");
        assert_eq!(
            seg("x/../../clients/c1").unwrap(),
            "x%2F..%2F..%2Fclients%2Fc1"
        );
        assert_eq!(seg("rotate?#%").unwrap(), "rotate%3F%23%25");
        assert_eq!(seg("é").unwrap(), "%C3%A9");
        assert!(seg("..").is_err() && seg(".").is_err());
        assert_eq!(seg("...").unwrap(), "...");
    }
}
