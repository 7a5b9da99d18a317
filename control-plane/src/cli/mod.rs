//! The `meshauth` CLI: `serve` runs the control plane; every other verb is a client
//! of the admin API (as kubectl is of the API server), configured by MESHAUTH_URL and
//! MESHAUTH_ADMIN_TOKEN.

mod envoy;
mod init;
mod issuers;
mod run;

use clap::{Args, Parser, Subcommand};

use crate::api::RevocationKind;
pub use run::run_client;

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
    /// Trusted external issuers (federation) and the state of their key fetching.
    #[command(subcommand)]
    Issuers(issuers::IssuersCmd),
    /// Write a complete Envoy bootstrap that runs the filter, synced with this control
    /// plane (needs no admin token).
    EnvoyConfig(envoy::EnvoyConfigArgs),
    /// Make the secrets a new deployment needs (master key, admin token, fleet
    /// credential): files and a configuration, or with --kubernetes Secrets and values.
    Init(init::InitArgs),
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
        /// Allow it to exchange trusted issuers' tokens for mesh tokens (RFC 8693).
        #[arg(long)]
        token_exchange: bool,
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
    fn target(self) -> Option<(RevocationKind, String)> {
        Some(match self {
            RevokeCmd::Token { token_or_jti }
                if token_or_jti.contains('.') || token_or_jti.len() > 40 =>
            {
                (RevocationKind::Token, token_or_jti)
            }
            RevokeCmd::Token { token_or_jti } => (RevocationKind::Jti, token_or_jti),
            RevokeCmd::Subject { sub } => (RevocationKind::Sub, sub),
            RevokeCmd::Session { sid } => (RevocationKind::Sid, sid),
            RevokeCmd::Client { client_id } => (RevocationKind::ClientId, client_id),
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
    /// The newest entries (`--limit` of them), or with `--from SEQ` the entries from SEQ on.
    List {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
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
}
