//! `meshauth envoy-config`: asks a live control plane what the filter needs and writes
//! a complete Envoy bootstrap (the work is in `crate::envoy_config`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::envoy_config::{
    bootstrap, default_plugin, learn, parse_base_url, Choices, Code, FailurePolicy, HostPort,
    DEFAULT_CREDENTIAL_ENV,
};

#[derive(Args)]
pub struct EnvoyConfigArgs {
    /// The protected service, HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// Envoy's listener for protected traffic, IP:PORT.
    #[arg(long, default_value = "127.0.0.1:10000")]
    listen: String,
    /// Envoy's admin interface, IP:PORT (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: String,
    /// The control plane's sync port as Envoy (and this command) reach it,
    /// http://HOST:PORT; defaults to --url (the control plane without sync_listen).
    #[arg(long)]
    sync_url: Option<String>,
    /// The filter module as a file on Envoy's machine; without it Envoy fetches the
    /// module from the control plane, pinned by the sha256 the control plane serves.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// The filter's configuration (JSON: routes, audiences, claims to forward...; see
    /// docs/filter.md) without issuer, JWKS or credential; default: a token for `api`
    /// on every route.
    #[arg(long)]
    plugin_config: Option<PathBuf>,
    /// Requests while the filter's VM has failed: fail-reload (refused while it
    /// reloads), fail-closed (refused until Envoy restarts) or fail-open (let through).
    #[arg(long, value_enum, default_value = "fail-reload")]
    failure_policy: FailurePolicy,
    /// The environment variable in Envoy's environment holding the fleet credential.
    #[arg(long, default_value = DEFAULT_CREDENTIAL_ENV)]
    credential_env: String,
    /// Where to write the bootstrap (JSON, which Envoy reads as YAML); default: stdout.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// `public`: the control plane's public URL (OAuth metadata, JWKS).
pub fn run(public: &str, args: EnvoyConfigArgs) -> Result<(), String> {
    let sync_url = args.sync_url.clone().unwrap_or_else(|| public.to_string());
    let control_plane = parse_base_url(&sync_url).map_err(|e| format!("--sync-url: {e}"))?;
    let plugin = match &args.plugin_config {
        None => default_plugin(),
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--plugin-config {}: {e}", file.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("--plugin-config {}: {e}", file.display()))?
        }
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let get = |path: &str| -> Result<String, String> {
        // The distribution key and the module are on the sync port.
        let base = if path.starts_with("/sync/") || path.starts_with("/filter/") {
            &sync_url
        } else {
            public
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        match agent.get(&url).call() {
            Ok(r) => r.into_string().map_err(|e| e.to_string()),
            Err(ureq::Error::Status(code, _)) => Err(format!("{url} answered {code}")),
            Err(e) => Err(format!("cannot reach {url}: {e}")),
        }
    };
    let learned = learn(&get, args.wasm.is_none()).map_err(|e| e.to_string())?;
    let code = match (&args.wasm, &learned.module_sha256) {
        (Some(path), _) => Code::Local(
            std::path::absolute(path)
                .map_err(|e| format!("--wasm {}: {e}", path.display()))?
                .display()
                .to_string(),
        ),
        (None, Some(sha256)) => Code::Remote {
            sha256: sha256.clone(),
        },
        (None, None) => return Err("no module sha256 from the control plane".into()),
    };
    let choices = Choices {
        listen: HostPort::parse_ip(&args.listen).map_err(|e| format!("--listen: {e}"))?,
        admin: HostPort::parse_ip(&args.admin).map_err(|e| format!("--admin: {e}"))?,
        upstream: HostPort::parse(&args.upstream).map_err(|e| format!("--upstream: {e}"))?,
        control_plane,
        code,
        failure_policy: args.failure_policy,
        credential_env: args.credential_env,
        plugin,
    };
    let config = bootstrap(&learned, &choices).map_err(|e| e.to_string())?;
    // What the bootstrap pins, on stderr (stdout may be the bootstrap): the two values a
    // hand-written configuration most often gets wrong. The issuer came over plain HTTP
    // unauthenticated: quoted and escaped, so it cannot write to the terminal.
    eprintln!(
        "envoy-config: issuer {:?} (the plugin's issuer: tokens must carry exactly this iss)",
        learned.issuer
    );
    if let Code::Remote { sha256 } = &choices.code {
        eprintln!("envoy-config: module sha256 {sha256} (what the control plane serves at /filter/meshauth.wasm.sha256)");
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())? + "\n";
    match &args.out {
        None => print!("{text}"),
        Some(file) => {
            std::fs::write(file, text).map_err(|e| format!("--out {}: {e}", file.display()))?
        }
    }
    Ok(())
}
