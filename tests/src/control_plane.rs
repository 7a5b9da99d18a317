//! Runs the real `meshauth` binary (control plane and CLI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::process::Process;
use crate::wait::{poll, Retry};

pub use crate::free_port;
/// Redis lives in `crate::redis`; also here for code that imports it beside the control
/// plane (and code written before the move).
pub use crate::redis::Redis;

pub fn meshauth_bin() -> PathBuf {
    crate::required_file(
        "MESHAUTH_BIN",
        crate::workspace_root().join("target/debug/meshauth"),
        "build it: cargo build -p meshauth-control-plane",
    )
}

pub const MASTER_KEY: &str = "5f1d3c0a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060504";

pub enum StoreKind {
    Embedded,
    Redis(String),
    /// A Redis URL and the replica acks each write waits for (`WAIT`).
    RedisReplicated(String, u32),
    /// Sentinel addresses (`host:port`) and the master's name.
    Sentinel(Vec<String>, String),
}

/// `meshauth limits set per-user`, keyed by `claim:sub`, with this rate and burst,
/// then `extra` flags as given.
pub fn per_user_limit<'a>(rate: &'a str, burst: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "limits",
        "set",
        "per-user",
        "--key",
        "claim:sub",
        "--rate",
        rate,
        "--burst",
        burst,
    ];
    args.extend_from_slice(extra);
    args
}

pub struct ControlPlane {
    process: Process,
    pub port: u16,
    pub admin_token: String,
    /// The fleet credential filters present on `/sync/v1/*`.
    pub sync_credential: String,
    dir: tempfile::TempDir,
    store: StoreKind,
    extra_config: String,
    /// Extra environment for `serve` (say, libfaketime's), applied at each (re)start.
    pub env: Vec<(String, String)>,
}

impl ControlPlane {
    /// Starts `meshauth serve` with a fresh data dir; `extra_config` is appended to its TOML.
    pub fn start(store: StoreKind, extra_config: &str) -> ControlPlane {
        let mut cp = ControlPlane {
            process: Process::default(),
            port: crate::free_port(),
            admin_token: format!("admin-{}", rand::random::<u64>()),
            sync_credential: format!("fleet-{:x}", rand::random::<u128>()),
            dir: tempfile::tempdir().expect("tempdir"),
            store,
            extra_config: extra_config.to_string(),
            env: Vec::new(),
        };
        cp.launch()
            .unwrap_or_else(|log| panic!("control plane did not start:\n{log}"));
        cp
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("meshauth.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("meshauth.log")
    }

    pub fn data_file(&self) -> PathBuf {
        self.dir.path().join("data/meshauth.redb")
    }

    fn launch(&mut self) -> Result<(), String> {
        let store = match &self.store {
            StoreKind::Embedded => format!(
                "[store]\nkind = \"embedded\"\npath = \"{}\"\n",
                self.data_file().display()
            ),
            StoreKind::Redis(url) => format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\n"),
            StoreKind::RedisReplicated(url, acks) => {
                format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\nreplica_acks = {acks}\n")
            }
            StoreKind::Sentinel(sentinels, name) => format!(
                "[store]\nkind = \"redis\"\nsentinels = {sentinels:?}\nmaster_name = \"{name}\"\n"
            ),
        };
        let hash = meshauth_wire_sha256_hex(&self.admin_token);
        let sync_hash = meshauth_wire_sha256_hex(&self.sync_credential);
        let cfg = format!(
            "listen = \"127.0.0.1:{}\"\nissuer = \"http://127.0.0.1:{}\"\nadmin_token_sha256 = [\"{hash}\"]\nsync_credential_sha256 = [\"{sync_hash}\"]\n{}\n{store}",
            self.port, self.port, self.extra_config
        );
        std::fs::write(self.config_path(), cfg).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        self.process = Process::spawn(
            Command::new(meshauth_bin())
                .arg("serve")
                .arg("--config")
                .arg(self.config_path())
                .env("MESHAUTH_MASTER_KEY", MASTER_KEY)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log),
        )
        .map_err(|e| e.to_string())?;
        poll(20, || {
            if let Some(st) = self.process.exited() {
                return Err(Retry::Stop(format!("exited with {st}:\n{}", self.log())));
            }
            match ureq::get(&self.url("/readyz")).call() {
                Ok(_) => Ok(()),
                Err(_) => Err(Retry::Again(format!(
                    "not ready after 20s:\n{}",
                    self.log()
                ))),
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn base_url(&self) -> String {
        self.url("")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: nothing is flushed or drained on the way down.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then up to `limit` for the process to exit: its exit status, or None
    /// if it was still running (it is then killed).
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.process.terminate(limit)
    }

    /// Starts it again on the same configuration and data, once it has stopped.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.launch()
    }

    /// Its pid while it runs (to freeze it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch()
            .unwrap_or_else(|log| panic!("control plane did not restart:\n{log}"));
    }

    /// Runs the CLI against this control plane.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(meshauth_bin())
            .args(args)
            .env("MESHAUTH_URL", self.base_url())
            .env("MESHAUTH_ADMIN_TOKEN", &self.admin_token)
            .output()
            .expect("run meshauth")
    }

    /// Runs the CLI and returns stdout, panicking with stderr on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "meshauth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn admin_headers(&self) -> (String, String) {
        (
            "authorization".into(),
            format!("Bearer {}", self.admin_token),
        )
    }

    /// `Authorization` for sync calls, as a filter sends it.
    pub fn sync_auth(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {}", self.sync_credential))
    }

    /// GET a `/sync/v1/*` path with the fleet credential.
    pub fn sync_get(&self, path: &str) -> crate::http::Answer {
        let (k, v) = self.sync_auth();
        crate::http::get(&self.url(path), &[(k, v.as_str())])
    }

    /// The filter's `sync` block for this control plane.
    pub fn filter_sync(&self, distribution_key: &str) -> serde_json::Value {
        serde_json::json!({
            "cluster": "meshauth_control_plane",
            "distribution_key": distribution_key,
            "credential": self.sync_credential,
            "poll_wait_ms": 5000,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn meshauth_wire_sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
