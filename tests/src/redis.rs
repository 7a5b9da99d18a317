//! A real redis-server (and Sentinel) on free loopback ports, with AOF.

use std::process::{Command, Stdio};

use crate::process::Process;
use crate::wait::{poll, wait_until, Retry};

/// `redis-cli -p port args...`: its stdout, empty if it could not run.
pub fn cli_at(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// Waits until `port`'s `INFO replication` shows the link to its master up.
fn wait_linked(port: u16, what: &str, secs: u64) {
    wait_until(what, secs, || {
        let info = cli_at(port, &["info", "replication"]);
        info.contains("master_link_status:up")
            .then_some(())
            .ok_or(info)
    });
}

/// A real redis-server on a free loopback port with AOF (`appendfsync always`).
pub struct Redis {
    process: Process,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis::unstarted();
        r.launch();
        r
    }

    fn unstarted() -> Redis {
        Redis {
            process: Process::default(),
            port: crate::free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn launch(&mut self) {
        self.launch_with(&[]);
    }

    fn launch_with(&mut self, extra: &[&str]) {
        self.process = Process::spawn(
            Command::new("redis-server")
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
                .stderr(Stdio::null()),
        )
        .expect("redis-server (run scripts/setup.sh)");
        let port = self.port;
        if let Err(why) = poll(10, || {
            let pong = cli_at(port, &["ping"]);
            pong.contains("PONG")
                .then_some(())
                .ok_or(Retry::Again(pong))
        }) {
            panic!("redis did not start: {why}");
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A replica of `master`, once it has synced.
    pub fn start_replica_of(master: &Redis) -> Redis {
        let mut r = Redis::unstarted();
        r.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        r.wait_synced();
        r
    }

    /// Waits until this replica's link to its master is up.
    pub fn wait_synced(&self) {
        wait_linked(self.port, "replica link up", 20);
    }

    pub fn crash_and_restart(&mut self) {
        self.process.kill();
        self.launch();
    }

    /// SIGKILL, without starting again (see `start_again`).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts again on the same port and data after `stop`.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing.
    pub fn freeze(&self, frozen: bool) {
        if let Some(pid) = self.process.id() {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        cli_at(self.port, args)
    }
}

/// A master, one replica and three sentinels (quorum 2) on free loopback ports, all with
/// AOF; a failover after `kill -9` of the master takes about two seconds.
pub struct Sentinel {
    pub master: Redis,
    pub replica: Redis,
    sentinels: Vec<(Process, u16)>,
    /// Holds the sentinels' configuration files while they run.
    _dir: tempfile::TempDir,
}

pub const SENTINEL_MASTER_NAME: &str = "mymaster";

impl Sentinel {
    pub fn start() -> Sentinel {
        let master = Redis::start();
        let mut replica = Redis::unstarted();
        replica.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = crate::free_port();
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
            let process = Process::spawn(
                Command::new("redis-sentinel")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .expect("redis-sentinel (run scripts/setup.sh)");
            sentinels.push((process, port));
        }
        let s = Sentinel {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        wait_linked(s.replica.port, "the replica to link", 20);
        for (_, port) in &s.sentinels {
            wait_until(
                "the sentinels to see each other and the replica",
                30,
                || {
                    let quorum = cli_at(*port, &["sentinel", "ckquorum", SENTINEL_MASTER_NAME]);
                    let replicas = cli_at(*port, &["sentinel", "replicas", SENTINEL_MASTER_NAME]);
                    (quorum.starts_with("OK 3 usable") && replicas.contains("slave"))
                        .then_some(())
                        .ok_or(quorum)
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
        self.master.process.kill();
        let replica = self.replica.port;
        wait_until("the failover", 30, || {
            let now = self.master_port();
            (now == Some(replica))
                .then_some(())
                .ok_or(format!("master {now:?}"))
        });
    }

    /// Starts the old master again; Sentinel turns it into a replica of the new one.
    pub fn restart_old_master_as_replica(&mut self) {
        let new_master = self.replica.port;
        self.master
            .launch_with(&["--replicaof", "127.0.0.1", &new_master.to_string()]);
        wait_linked(self.master.port, "the old master to replicate", 30);
    }
}
