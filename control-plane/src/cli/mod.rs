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
    /// Change an existing client: `--token-exchange true|false` allows or disallows it
    /// to exchange trusted issuers' tokens.
    Update {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[arg(long, action = clap::ArgAction::Set, required = true)]
        token_exchange: bool,
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
    /// One token by its id (`jti`, or its issuer's `id_claim`), kept until it can have
    /// expired: with --issuer, a trusted issuer's token (kept a week, the longest any
    /// issuer's tokens may live); without, one of ours.
    Jti {
        #[arg(allow_hyphen_values = true)]
        jti: String,
        /// The trusted issuer (`meshauth issuers list`) that issued it.
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Every token of a subject issued until now.
    Subject {
        #[arg(allow_hyphen_values = true)]
        sub: String,
        #[command(flatten)]
        issuer: RuleIssuerArg,
    },
    /// Every token of a session issued until now.
    Session {
        #[arg(allow_hyphen_values = true)]
        sid: String,
        #[command(flatten)]
        issuer: RuleIssuerArg,
    },
    /// Every token of a client issued until now.
    Client {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[command(flatten)]
        issuer: RuleIssuerArg,
    },
    /// The revocations still in force.
    List,
}

#[derive(clap::Args)]
pub struct RuleIssuerArg {
    /// The trusted issuer (`meshauth issuers list`) whose tokens to revoke; without
    /// it, the control plane's own. Never both: a `sub` from one issuer never revokes
    /// another's.
    #[arg(long)]
    issuer: Option<String>,
}

/// The admin API's `kind`, `value` and `issuer`.
type Target = (RevocationKind, String, Option<String>);

impl RevokeCmd {
    /// What to revoke; `None` for `list`.
    fn target(self) -> Option<Target> {
        Some(match self {
            RevokeCmd::Token { token_or_jti }
                if token_or_jti.contains('.') || token_or_jti.len() > 40 =>
            {
                (RevocationKind::Token, token_or_jti, None)
            }
            RevokeCmd::Token { token_or_jti } => (RevocationKind::Jti, token_or_jti, None),
            RevokeCmd::Jti { jti, issuer } => (RevocationKind::Jti, jti, issuer),
            RevokeCmd::Subject { sub, issuer } => (RevocationKind::Sub, sub, issuer.issuer),
            RevokeCmd::Session { sid, issuer } => (RevocationKind::Sid, sid, issuer.issuer),
            RevokeCmd::Client { client_id, issuer } => {
                (RevocationKind::ClientId, client_id, issuer.issuer)
            }
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

    #[test]
    fn a_rule_names_its_issuer_or_none() {
        let target = |args: &[&str]| match Cli::try_parse_from(args).unwrap().cmd {
            Cmd::Revoke(r) => r.target(),
            _ => panic!("not revoke"),
        };
        assert_eq!(
            target(&["meshauth", "revoke", "subject", "mesh", "--issuer", "idp"]),
            Some((RevocationKind::Sub, "mesh".into(), Some("idp".into())))
        );
        assert_eq!(
            target(&["meshauth", "revoke", "session", "-s1", "--issuer", "idp"]),
            Some((RevocationKind::Sid, "-s1".into(), Some("idp".into())))
        );
        assert_eq!(
            target(&["meshauth", "revoke", "client", "c1"]),
            Some((RevocationKind::ClientId, "c1".into(), None))
        );
        assert!(
            Cli::try_parse_from(["meshauth", "revoke", "token", "j", "--issuer", "idp"]).is_err()
        );
        // A provider's token id, whatever its shape (dots, length), stays a jti.
        let long = "a.b".repeat(20);
        assert_eq!(
            target(&["meshauth", "revoke", "jti", &long, "--issuer", "idp"]),
            Some((RevocationKind::Jti, long.clone(), Some("idp".into())))
        );
        assert_eq!(
            target(&["meshauth", "revoke", "jti", "-j1"]),
            Some((RevocationKind::Jti, "-j1".into(), None))
        );
    }

    /// `clients update` says what it changes: no flag, or one without a value, is an
    /// error rather than a silent "false".
    #[test]
    fn a_client_update_names_its_change() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.cmd);
        for bad in [
            &["meshauth", "clients", "update", "c1"][..],
            &["meshauth", "clients", "update", "c1", "--token-exchange"],
            &[
                "meshauth",
                "clients",
                "update",
                "c1",
                "--token-exchange",
                "yes",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for (v, want) in [("true", true), ("false", false)] {
            let Ok(Cmd::Clients(ClientsCmd::Update {
                client_id,
                token_exchange,
            })) = parse(&["meshauth", "clients", "update", "c1", "--token-exchange", v])
            else {
                panic!("not clients update");
            };
            assert_eq!((client_id.as_str(), token_exchange), ("c1", want));
        }
    }

    // Key ids, client ids and jtis are random base64url: one in 32 starts with '-'.
    #[test]
    fn identifiers_starting_with_a_hyphen_are_values_not_flags() {
        for args in [
            &["meshauth", "keys", "revoke", "-uFqcbqh1uugPVG4DMmHL"][..],
            &["meshauth", "clients", "delete", "-abc"],
            &["meshauth", "clients", "rotate-secret", "-abc"],
            &[
                "meshauth",
                "clients",
                "update",
                "-abc",
                "--token-exchange",
                "true",
            ],
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
