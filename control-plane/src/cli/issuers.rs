//! `meshauth issuers add | list | show | delete`: trusted external issuers.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use super::run::Client;
use crate::api::{path, route, IssuerList, IssuerSpec, IssuerView};
use crate::issuers::model::ExchangePolicy;

#[derive(Subcommand)]
pub enum IssuersCmd {
    /// Trust an issuer: `--discovery URL`, or `--issuer ISS --jwks-uri URL`.
    Add(Box<AddArgs>),
    /// Every trusted issuer with the state of its key fetching (`--json`: as sent).
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    /// OpenID discovery document; the issuer is what precedes
    /// /.well-known/openid-configuration unless --issuer says otherwise.
    #[arg(long, conflicts_with = "jwks_uri", required_unless_present_any = ["jwks_uri", "file"])]
    discovery: Option<String>,
    /// The JWKS URL (with --issuer).
    #[arg(long, requires = "issuer")]
    jwks_uri: Option<String>,
    /// The exact `iss` of its tokens.
    #[arg(long)]
    issuer: Option<String>,
    /// An accepted audience (repeat for several).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// An allowed algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA.
    #[arg(long = "alg")]
    algorithms: Vec<String>,
    /// The JOSE `typ` its tokens must carry (e.g. at+jwt).
    #[arg(long)]
    typ: Option<String>,
    /// CLAIM=VALUE: the claim must have this value (repeat: any of the values).
    #[arg(long = "require-claim")]
    required_claims: Vec<String>,
    #[arg(long)]
    clock_skew_seconds: Option<u64>,
    /// Where its tokens carry scopes: scope, scp, permissions, realm_access.roles...
    #[arg(long)]
    scope_claim: Option<String>,
    /// CLAIM=HEADER: forward the claim upstream in this header (repeatable).
    #[arg(long = "forward-claim")]
    forward_claims: Vec<String>,
    /// The claim that identifies a token for revocation by id, when not jti (Entra ID: uti).
    #[arg(long)]
    id_claim: Option<String>,
    /// Admit its tokens that carry no such claim (Auth0, Google); they can then be
    /// revoked by subject or session only.
    #[arg(long)]
    id_optional: bool,
    /// The claim naming the client a token was issued to, which `revoke client
    /// --issuer` matches, when not client_id (Auth0, Keycloak, Google, Entra: azp;
    /// Okta: cid).
    #[arg(long)]
    client_claim: Option<String>,
    /// The longest its tokens may live, in seconds (`exp - iat`; 60 to 604800, default
    /// 86400): longer ones, and ones without `iat`, are refused, and revocations of its
    /// tokens are kept that long.
    #[arg(long = "max-token-lifetime", value_name = "SECONDS")]
    max_token_lifetime: Option<u64>,
    /// Allow token exchange (RFC 8693) of its tokens for mesh tokens with this audience
    /// (repeatable); without it, its tokens are never exchanged.
    #[arg(long = "exchange-audience")]
    exchange_audiences: Vec<String>,
    /// A scope exchanged tokens may carry (repeatable; space-separated also works).
    #[arg(long = "exchange-scope", requires = "exchange_audiences")]
    exchange_scopes: Vec<String>,
    /// Seconds exchanged tokens live (1 to 900, default 300).
    #[arg(long = "exchange-ttl", requires = "exchange_audiences")]
    exchange_ttl: Option<u64>,
    /// The whole spec as JSON (`-` for stdin) instead of the flags.
    #[arg(long, conflicts_with_all = ["discovery", "jwks_uri", "issuer", "audiences", "algorithms"])]
    file: Option<std::path::PathBuf>,
}

fn pair(flag: &str, s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--{flag} {s:?}: expected NAME=VALUE"))
}

/// The spec the flags describe; the control plane validates it.
fn spec_of(a: AddArgs) -> Result<IssuerSpec, String> {
    let mut required_claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &a.required_claims {
        let (k, v) = pair("require-claim", s)?;
        required_claims.entry(k).or_default().push(v);
    }
    let forward_claims = a
        .forward_claims
        .iter()
        .map(|s| pair("forward-claim", s))
        .collect::<Result<_, _>>()?;
    Ok(IssuerSpec {
        name: a.name,
        issuer: a.issuer,
        discovery: a.discovery,
        jwks_uri: a.jwks_uri,
        audiences: a.audiences,
        algorithms: a.algorithms,
        typ: a.typ,
        required_claims,
        clock_skew_seconds: a
            .clock_skew_seconds
            .unwrap_or(crate::issuers::model::DEFAULT_SKEW_SECONDS),
        scope_claim: a.scope_claim.unwrap_or_else(|| "scope".into()),
        forward_claims,
        id_claim: a.id_claim,
        id_optional: a.id_optional,
        client_claim: a.client_claim,
        max_token_lifetime_seconds: a
            .max_token_lifetime
            .unwrap_or(crate::issuers::model::DEFAULT_TOKEN_LIFETIME_SECONDS),
        exchange: (!a.exchange_audiences.is_empty()).then(|| ExchangePolicy {
            audiences: a.exchange_audiences,
            scopes: a
                .exchange_scopes
                .iter()
                .flat_map(|s| crate::clients::split_scope(s))
                .collect(),
            ttl_seconds: a
                .exchange_ttl
                .unwrap_or(crate::issuers::model::DEFAULT_EXCHANGE_TTL),
        }),
    })
}

fn read_spec(file: &std::path::Path, name: &str) -> Result<serde_json::Value, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?
    };
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    if let Some(o) = v.as_object_mut() {
        o.entry("name").or_insert_with(|| name.into());
    }
    Ok(v)
}

/// One line per issuer: name, circuit state, keys held, last success, last error.
fn table(list: &IssuerList) -> String {
    let mut out = String::from("NAME\tSTATE\tKEYS\tLAST_SUCCESS\tISSUER\tLAST_ERROR\n");
    for IssuerView { spec, fetch } in &list.issuers {
        let state = serde_json::to_value(fetch.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "{}\t{state}\t{}\t{}\t{}\t{}\n",
            spec.name,
            fetch.key_count,
            fetch.last_success.map_or("-".into(), |t| t.to_string()),
            spec.issuer.as_deref().unwrap_or("-"),
            fetch.last_error.as_deref().unwrap_or("-"),
        ));
    }
    out
}

pub(super) fn run(c: &Client, cmd: IssuersCmd) -> Result<(), String> {
    match cmd {
        IssuersCmd::Add(a) => {
            let answer = match a.file.clone() {
                Some(f) => {
                    let body = read_spec(&f, &a.name)?;
                    c.call::<IssuerView>("POST", route::ISSUERS, Some(&body))?
                }
                None => c.call::<IssuerView>("POST", route::ISSUERS, Some(&spec_of(*a)?))?,
            };
            answer.print();
        }
        IssuersCmd::List { json } => {
            let a = c.call::<IssuerList>("GET", route::ISSUERS, None)?;
            if json {
                a.print();
            } else {
                print!("{}", table(&a.value));
            }
        }
        IssuersCmd::Show { name } => c
            .call::<IssuerView>("GET", &path(route::ISSUER, &name)?, None)?
            .print(),
        IssuersCmd::Delete { name } => {
            c.send("DELETE", &path(route::ISSUER, &name)?, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    fn add(args: &[&str]) -> Result<IssuerSpec, String> {
        let mut argv = vec!["meshauth", "issuers", "add"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.cmd {
            Cmd::Issuers(IssuersCmd::Add(a)) => spec_of(*a),
            _ => Err("not issuers add".into()),
        }
    }

    #[test]
    fn flags_make_a_spec_and_a_source_is_required() {
        let s = add(&[
            "kc",
            "--discovery",
            "https://kc/.well-known/openid-configuration",
            "--audience",
            "api",
            "--alg",
            "RS256",
            "--alg",
            "ES256",
            "--require-claim",
            "tenant=a",
            "--require-claim",
            "tenant=b",
            "--forward-claim",
            "sub=x-user",
        ])
        .unwrap();
        assert_eq!(s.algorithms, ["RS256", "ES256"]);
        assert_eq!(s.required_claims["tenant"], ["a", "b"]);
        assert_eq!(s.forward_claims["sub"], "x-user");
        assert!(add(&["kc", "--audience", "api"]).is_err(), "no source");
        assert!(
            add(&["kc", "--jwks-uri", "https://kc/certs"]).is_err(),
            "jwks-uri needs --issuer"
        );
        assert!(add(&[
            "kc",
            "--discovery",
            "https://a",
            "--jwks-uri",
            "https://b",
            "--issuer",
            "i"
        ])
        .is_err());
        assert_eq!(s.exchange, None, "exchange is off unless asked for");
        assert_eq!(s.max_token_lifetime_seconds, 86_400);
        let hour = add(&[
            "kc",
            "--discovery",
            "https://a",
            "--max-token-lifetime",
            "3600",
        ]);
        assert_eq!(hour.unwrap().max_token_lifetime_seconds, 3_600);
        assert!(add(&[
            "kc",
            "--discovery",
            "https://a",
            "--max-token-lifetime",
            "-1"
        ])
        .is_err());
        let s = add(&[
            "kc",
            "--discovery",
            "https://a",
            "--exchange-audience",
            "api",
            "--exchange-scope",
            "read write",
            "--exchange-scope",
            "admin",
        ])
        .unwrap();
        let p = s.exchange.unwrap();
        assert_eq!(
            (p.audiences, p.scopes),
            (
                vec!["api".to_string()],
                vec!["read".to_string(), "write".into(), "admin".into()]
            )
        );
        assert_eq!(p.ttl_seconds, 300);
        assert!(add(&["kc", "--discovery", "https://a", "--exchange-scope", "read"]).is_err());
        let e = add(&["kc", "--discovery", "https://a", "--forward-claim", "sub"]).unwrap_err();
        assert!(e.contains("expected NAME=VALUE"), "{e}");
    }

    /// Every `meshauth issuers add` in docs/federation.md's shell blocks parses and
    /// passes the server's validation (https only, as in production).
    #[test]
    fn every_issuers_add_in_the_docs_makes_a_valid_issuer() {
        use crate::issuers::model::TrustedIssuer;
        use crate::issuers::url::UrlPolicy;
        let doc = include_str!("../../../docs/federation.md");
        let mut commands = Vec::new();
        let (mut in_sh, mut current) = (false, String::new());
        for line in doc.lines() {
            if line.starts_with("```") {
                in_sh = line == "```sh";
                continue;
            }
            if !in_sh {
                continue;
            }
            current.push_str(line.trim_end_matches('\\'));
            current.push(' ');
            if !line.ends_with('\\') {
                let cmd = current
                    .split('#')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                if cmd.starts_with("meshauth issuers add ") && !cmd.contains("--file") {
                    commands.push(cmd);
                }
                current.clear();
            }
        }
        assert!(commands.len() >= 8, "found only {commands:?}");
        for cmd in commands {
            let args: Vec<&str> = cmd.split_whitespace().skip(3).collect();
            let spec = add(&args).unwrap_or_else(|e| panic!("{cmd}: {e}"));
            TrustedIssuer::new(
                spec,
                &UrlPolicy { allow_http: false },
                Some("https://meshauth.example.com"),
            )
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
    }
}
