//! Runs the real `meshauth` binary (control plane and CLI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn meshauth_bin() -> PathBuf {
    crate::required_file(
        "MESHAUTH_BIN",
        crate::workspace_root().join("target/debug/meshauth"),
        "build it: cargo build -p meshauth-control-plane",
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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

pub struct ControlPlane {
    child: Option<Child>,
    pub port: u16,
    pub admin_token: String,
    /// The fleet credential filters present on `/sync/v1/*`.
    pub sync_credential: String,
    dir: tempfile::TempDir,
    store: StoreKind,
    extra_config: String,
}

impl ControlPlane {
    /// Starts `meshauth serve` with a fresh data dir; `extra_config` is appended to its TOML.
    pub fn start(store: StoreKind, extra_config: &str) -> ControlPlane {
        let mut cp = ControlPlane {
            child: None,
            port: free_port(),
            admin_token: format!("admin-{}", rand::random::<u64>()),
            sync_credential: format!("fleet-{:x}", rand::random::<u128>()),
            dir: tempfile::tempdir().expect("tempdir"),
            store,
            extra_config: extra_config.to_string(),
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
        let child = Command::new(meshauth_bin())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("MESHAUTH_MASTER_KEY", MASTER_KEY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("exited with {st}:\n{}", self.log()));
                }
            }
            if ureq::get(&self.url("/readyz")).call().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 20s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

fn meshauth_wire_sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A real redis-server on a free loopback port with AOF (`appendfsync always`).
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        self.launch_with(&[]);
    }

    fn launch_with(&mut self, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output();
            if pong
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false)
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A replica of `master`, once it has synced.
    pub fn start_replica_of(master: &Redis) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        r.wait_synced();
        r
    }

    /// Waits until this replica's link to its master is up.
    pub fn wait_synced(&self) {
        wait_for("replica link up", 20, || {
            self.cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
    }

    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.launch();
    }

    /// SIGKILL, without starting again (see `start_again`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data after `stop`.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A master, one replica and three sentinels (quorum 2) on free loopback ports, all with
/// AOF; a failover after `kill -9` of the master takes about two seconds.
pub struct Sentinel {
    pub master: Redis,
    pub replica: Redis,
    sentinels: Vec<(Child, u16)>,
    /// Holds the sentinels' configuration files while they run.
    _dir: tempfile::TempDir,
}

pub const SENTINEL_MASTER_NAME: &str = "mymaster";

fn cli_at(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// Retries `attempt` every 50 ms until it is `Ok`, or panics after `secs` with `what`
/// and the last error.
pub fn wait_until(what: &str, secs: u64, mut attempt: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match attempt() {
            Ok(()) => return,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    wait_until(what, secs, || ok().then_some(()).ok_or_else(String::new));
}

impl Sentinel {
    pub fn start() -> Sentinel {
        let master = Redis::start();
        let mut replica = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        replica.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER_NAME} 5000\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel (run scripts/setup.sh)");
            sentinels.push((child, port));
        }
        let s = Sentinel {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        wait_for("the replica to link", 20, || {
            cli_at(s.replica.port, &["info", "replication"]).contains("master_link_status:up")
        });
        for (_, port) in &s.sentinels {
            wait_for(
                "the sentinels to see each other and the replica",
                30,
                || {
                    cli_at(*port, &["sentinel", "ckquorum", SENTINEL_MASTER_NAME])
                        .starts_with("OK 3 usable")
                        && cli_at(*port, &["sentinel", "replicas", SENTINEL_MASTER_NAME])
                            .contains("slave")
                },
            );
        }
        s
    }

    /// `host:port` of each sentinel, comma-separated.
    pub fn addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(_, p)| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The master's port as the sentinels see it.
    pub fn master_port(&self) -> Option<u16> {
        let port = self.sentinels.first()?.1;
        let out = cli_at(
            port,
            &["sentinel", "get-master-addr-by-name", SENTINEL_MASTER_NAME],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// `kill -9` of the master; returns once the sentinels have promoted the replica.
    pub fn fail_master(&mut self) {
        if let Some(mut c) = self.master.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let replica = self.replica.port;
        wait_for("the failover", 30, || self.master_port() == Some(replica));
    }

    /// Starts the old master again; Sentinel turns it into a replica of the new one.
    pub fn restart_old_master_as_replica(&mut self) {
        let new_master = self.replica.port;
        self.master
            .launch_with(&["--replicaof", "127.0.0.1", &new_master.to_string()]);
        let port = self.master.port;
        wait_for("the old master to replicate", 30, || {
            cli_at(port, &["info", "replication"]).contains("master_link_status:up")
        });
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        for (c, _) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
