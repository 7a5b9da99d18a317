//! `meshauth envoy-config`: a complete Envoy bootstrap that runs the filter in front of
//! one upstream, with live sync to this control plane. The pure half: what the control
//! plane said (issuer, JWKS, distribution key, module sha256) and what the operator
//! chose (addresses, code, failure policy, plugin configuration) in, the bootstrap out.
//! `learn` asks a control plane through a `get` the caller supplies.

use serde_json::{json, Map, Value};

/// The Envoy cluster that reaches the control plane (sync, confirmations, the module).
pub const CONTROL_PLANE_CLUSTER: &str = "meshauth_control_plane";
/// The environment variable that holds the fleet credential by default.
pub const DEFAULT_CREDENTIAL_ENV: &str = "MESHAUTH_SYNC_CREDENTIAL";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyConfigError {
    /// An address or URL the operator gave is unusable.
    Address(String),
    /// The plugin configuration given is unusable.
    Plugin(String),
    /// The control plane did not answer what is needed, or answered nonsense.
    ControlPlane(String),
}

impl std::fmt::Display for EnvoyConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvoyConfigError::Address(m) => write!(f, "address: {m}"),
            EnvoyConfigError::Plugin(m) => write!(f, "plugin configuration: {m}"),
            EnvoyConfigError::ControlPlane(m) => write!(f, "control plane: {m}"),
        }
    }
}

/// `host:port`; the host is a name or an IP address (IPv6 in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<HostPort, EnvoyConfigError> {
        let bad = |why: &str| EnvoyConfigError::Address(format!("{s:?}: {why}"));
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("want HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not 1-65535"))?;
        if port == 0 {
            return Err(bad("the port is not 1-65535"));
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !name_ok {
            return Err(bad("the host is not a name or an IP address"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// The same, and the host must be an IP address (Envoy binds listeners to addresses).
    pub fn parse_ip(s: &str) -> Result<HostPort, EnvoyConfigError> {
        let hp = HostPort::parse(s)?;
        if hp.host.parse::<std::net::IpAddr>().is_err() {
            return Err(EnvoyConfigError::Address(format!(
                "{s:?}: Envoy listens on an IP address, not a name"
            )));
        }
        Ok(hp)
    }

    fn socket_address(&self) -> Value {
        json!({ "socket_address": { "address": self.host, "port_value": self.port } })
    }
}

/// An `http://HOST:PORT` base URL (no path): where Envoy reaches the control plane.
pub fn parse_base_url(url: &str) -> Result<HostPort, EnvoyConfigError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        EnvoyConfigError::Address(format!(
            "{url:?}: want http://HOST:PORT (Envoy reaches the control plane's sync port in \
             plain HTTP here; put TLS in front with a cluster of your own)"
        ))
    })?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(EnvoyConfigError::Address(format!(
            "{url:?}: want http://HOST:PORT without a path"
        )));
    }
    HostPort::parse(rest)
}

/// Where Envoy gets the filter module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A file on Envoy's machine.
    Local(String),
    /// Fetched from the control plane (`/filter/meshauth.wasm`), pinned by its sha256.
    Remote { sha256: String },
}

/// Envoy's Wasm `failure_policy`: what happens to requests while the VM has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Refused until Envoy restarts.
    FailClosed,
    /// Let through unchecked: never for an authentication filter you rely on.
    FailOpen,
    /// Refused while the VM is reloaded with backoff (the default).
    FailReload,
}

impl FailurePolicy {
    fn envoy_name(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailOpen => "FAIL_OPEN",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// What the control plane says about itself, as the filter needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub issuer: String,
    pub jwks: Value,
    pub distribution_key: String,
    /// The served module's sha256, when the caller asked for it.
    pub module_sha256: Option<String>,
}

/// Asks the control plane at `public` (OAuth metadata, JWKS) and `sync` (distribution key,
/// module) through `get` (a path → the body, or why not).
pub fn learn(
    get: &dyn Fn(&str) -> Result<String, String>,
    want_module_sha256: bool,
) -> Result<Learned, EnvoyConfigError> {
    let cp = EnvoyConfigError::ControlPlane;
    let json_at = |path: &str| -> Result<Value, EnvoyConfigError> {
        let body = get(path).map_err(|e| cp(format!("GET {path}: {e}")))?;
        serde_json::from_str(&body).map_err(|e| cp(format!("GET {path}: not JSON: {e}")))
    };
    let meta = json_at("/.well-known/oauth-authorization-server")?;
    let issuer = meta["issuer"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| cp("its metadata names no issuer".into()))?
        .to_string();
    let jwks = json_at("/.well-known/jwks.json")?;
    if jwks["keys"].as_array().is_none_or(|k| k.is_empty()) {
        return Err(cp("its JWKS holds no key".into()));
    }
    let key = json_at("/sync/v1/distribution-key")?;
    let distribution_key = key["public_key"]
        .as_str()
        .filter(|k| k.len() == 43)
        .ok_or_else(|| cp("no distribution key (/sync/v1/distribution-key)".into()))?
        .to_string();
    let module_sha256 = if want_module_sha256 {
        let sha = get("/filter/meshauth.wasm.sha256").map_err(|e| {
            cp(format!(
                "GET /filter/meshauth.wasm.sha256: {e} (does it serve the module? set \
                 filter_wasm or MESHAUTH_FILTER_WASM, or use a local module)"
            ))
        })?;
        let sha = sha.trim().to_string();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(cp(format!(
                "the module's sha256 is not 64 hex digits: {sha:?}"
            )));
        }
        Some(sha.to_ascii_lowercase())
    } else {
        None
    };
    Ok(Learned {
        issuer,
        jwks,
        distribution_key,
        module_sha256,
    })
}

/// The operator's choices.
#[derive(Debug, Clone)]
pub struct Choices {
    /// Envoy's listener for protected traffic.
    pub listen: HostPort,
    /// Envoy's admin interface (loopback, please).
    pub admin: HostPort,
    /// The protected service.
    pub upstream: HostPort,
    /// The control plane's sync port as Envoy reaches it.
    pub control_plane: HostPort,
    pub code: Code,
    pub failure_policy: FailurePolicy,
    /// The environment variable that holds the fleet credential.
    pub credential_env: String,
    /// The filter's configuration without issuer, JWKS and sync (those come from the
    /// control plane); routes, audiences, claims to forward... (docs/filter.md).
    pub plugin: Value,
}

/// The plugin configuration when none is given: every route needs a token for `api`.
pub fn default_plugin() -> Value {
    json!({
        "audiences": ["api"],
        "forward_claims": [{ "claim": "sub", "header": "x-meshauth-sub" }],
        "default_route": { "auth": "token" },
    })
}

/// The filter's configuration: the operator's, with the control plane's issuer, JWKS and
/// a `sync` block (the operator's sync tuning kept). Refuses an inline credential: it
/// would sit in the bootstrap file.
pub fn plugin_config(
    learned: &Learned,
    choices: &Choices,
) -> Result<Map<String, Value>, EnvoyConfigError> {
    let bad = |m: &str| EnvoyConfigError::Plugin(m.to_string());
    let mut plugin = choices
        .plugin
        .as_object()
        .cloned()
        .ok_or_else(|| bad("want a JSON object"))?;
    if let Some(issuer) = plugin.get("issuer").and_then(Value::as_str) {
        if issuer != learned.issuer {
            return Err(EnvoyConfigError::Plugin(format!(
                "issuer {issuer:?} is not the control plane's ({:?}): every token would be \
                 refused bad_issuer; leave it out",
                learned.issuer
            )));
        }
    }
    let mut sync = match plugin.remove("sync") {
        None => Map::new(),
        Some(Value::Object(s)) => s,
        Some(_) => return Err(bad("sync: want an object")),
    };
    if sync.contains_key("credential") {
        return Err(bad(
            "sync.credential would write the fleet credential into the bootstrap: leave it \
             out (the filter reads it from the environment, --credential-env)",
        ));
    }
    let env_ok = !choices.credential_env.is_empty()
        && choices
            .credential_env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !env_ok {
        return Err(EnvoyConfigError::Plugin(format!(
            "credential variable {:?}: want letters, digits and _",
            choices.credential_env
        )));
    }
    sync.insert("cluster".into(), json!(CONTROL_PLANE_CLUSTER));
    sync.insert("distribution_key".into(), json!(learned.distribution_key));
    sync.insert("credential_env".into(), json!(choices.credential_env));
    plugin.insert("issuer".into(), json!(learned.issuer));
    plugin.insert("bootstrap_jwks".into(), learned.jwks.clone());
    plugin.insert("sync".into(), Value::Object(sync));
    Ok(plugin)
}

fn cluster(name: &str, at: &HostPort) -> Value {
    json!({
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": at.socket_address() } }] }],
        },
    })
}

/// The whole bootstrap.
pub fn bootstrap(learned: &Learned, choices: &Choices) -> Result<Value, EnvoyConfigError> {
    let plugin = plugin_config(learned, choices)?;
    let code = match &choices.code {
        Code::Local(path) => json!({ "local": { "filename": path } }),
        Code::Remote { sha256 } => json!({ "remote": {
            "http_uri": {
                "uri": format!(
                    "http://{}:{}/filter/meshauth.wasm",
                    url_host(&choices.control_plane.host),
                    choices.control_plane.port
                ),
                "cluster": CONTROL_PLANE_CLUSTER,
                "timeout": "10s",
            },
            "sha256": sha256,
            "retry_policy": { "num_retries": 5 },
        }}),
    };
    let filter = json!({
        "name": "meshauth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "meshauth",
                "root_id": "meshauth",
                "failure_policy": choices.failure_policy.envoy_name(),
                "vm_config": {
                    "vm_id": "meshauth",
                    "runtime": "envoy.wasm.runtime.v8",
                    "environment_variables": { "host_env_keys": [choices.credential_env] },
                    "code": code,
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": Value::Object(plugin).to_string(),
                },
            },
        },
    });
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        // Route rules and the filter see one canonical path: /a/../b, // and %2F
        // spellings never reach a path rule in a form it does not expect.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        // x_meshauth_sub would read as x-meshauth-sub to many upstreams.
        "common_http_protocol_options": { "headers_with_underscores_action": "REJECT_REQUEST" },
        // Oversize Authorization headers reach the filter, which answers 401.
        "max_request_headers_kb": 96,
        "route_config": { "virtual_hosts": [{
            "name": "protected",
            "domains": ["*"],
            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }],
        }]},
        "http_filters": [
            filter,
            { "name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
        ],
    });
    Ok(json!({
        "admin": { "address": choices.admin.socket_address() },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": choices.listen.socket_address(),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": [
                cluster("upstream", &choices.upstream),
                cluster(CONTROL_PLANE_CLUSTER, &choices.control_plane),
            ],
        },
    }))
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests;
