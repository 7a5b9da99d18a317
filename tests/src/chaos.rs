//! Faults under load: steady traffic through a real Envoy with the filter, against the
//! real control plane on Redis (master, replica, three sentinels), while faults are
//! injected one at a time and then together. Each fault yields one `Row`; the invariants
//! (no revoked token admitted, no valid token refused outside the documented fail-closed
//! window, no acknowledged revocation lost, no worker VM crash, the rate limit held) are
//! checked by `Row::broken`. Used by `meshauth-chaos` (scripts/chaos.sh) and a short test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::control_plane::{ControlPlane, StoreKind};
use crate::envoy::{Envoy, Options};
use crate::redis::{cli_at, Redis, Sentinel, SENTINEL_MASTER_NAME};

/// Valid users' tokens (each its own subject) and tokens revoked before the load starts.
const VALID: usize = 8;
const REVOKED: usize = 8;
/// The greedy user's limit (per second, burst): `GREEDY_RATE + GREEDY_RATE·d` in `d` s.
const GREEDY_RATE: u64 = 20;
/// Pool tokens the writer leaves for the convergence probes.
const POOL_RESERVE: usize = 40;
/// Filter counters reported per phase (as notes).
const FILTER_COUNTERS: &[&str] = &[
    "meshauth_sync_poll_failures",
    "meshauth_sync_snapshots_rejected",
    "meshauth_sync_snapshots_too_old",
    "meshauth_revocation_confirmations",
];
/// libfaketime as the Debian package installs it.
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// What the load saw during one phase.
#[derive(Default)]
pub struct Counts {
    pub requests: u64,
    pub valid_ok: u64,
    /// Valid tokens answered 503 `not_ready`: a filter without its first snapshot
    /// (`before_first_snapshot: deny`, docs/filter.md), the documented fail-closed window.
    pub valid_not_ready: u64,
    /// Valid tokens refused any other way: an invariant breaks.
    pub valid_refused: u64,
    pub revoked_admitted: u64,
    /// No answer at all (Envoy down): reported, not a refusal.
    pub conn_errors: u64,
    pub greedy_admitted: u64,
    /// The greedy user's 429s: the limit was reached, so "limit held" saw it work.
    pub greedy_limited: u64,
    /// Revocations answered 2xx: (token, jti).
    pub acked: Vec<(String, String)>,
    pub write_failures: u64,
    pub examples: Vec<String>,
}

impl Counts {
    fn example(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

pub struct Row {
    pub fault: String,
    pub counts: Counts,
    pub seconds: f64,
    pub lost: usize,
    pub converge: Option<Duration>,
    pub crashes: u64,
    /// Whether `valid_not_ready` is the documented window (the phase started an Envoy).
    pub window_allowed: bool,
    /// False when the fault could not be injected (no libfaketime, or it did not take):
    /// the row then shows "skipped", not that the invariants held under the fault.
    pub applied: bool,
    pub limit_bound: u64,
    pub notes: Vec<String>,
}

impl Row {
    pub fn broken(&self) -> Vec<String> {
        let c = &self.counts;
        let mut why = Vec::new();
        if c.revoked_admitted > 0 {
            why.push(format!("{} revoked tokens admitted", c.revoked_admitted));
        }
        if c.valid_refused > 0 {
            why.push(format!("{} valid tokens refused", c.valid_refused));
        }
        if c.valid_not_ready > 0 && !self.window_allowed {
            why.push(format!(
                "{} valid tokens got 503 not_ready without an Envoy start",
                c.valid_not_ready
            ));
        }
        if self.lost > 0 {
            why.push(format!("{} acknowledged revocations lost", self.lost));
        }
        if self.converge.is_none() {
            why.push("did not converge".into());
        }
        if self.crashes > 0 {
            why.push(format!("{} worker VM crashes", self.crashes));
        }
        if c.greedy_admitted > self.limit_bound {
            why.push(format!(
                "rate limit exceeded: {} admitted, bound {}",
                c.greedy_admitted, self.limit_bound
            ));
        }
        why
    }

    pub fn header() -> String {
        "| fault | s | requests | revoked admitted | valid refused | 503 not_ready (window) | no answer (Envoy down) | revocations acked | not acked (refused/timed out) | acked lost | converged after | VM crashes | limit held | ok |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into()
    }

    pub fn line(&self) -> String {
        let c = &self.counts;
        let window = if c.valid_not_ready == 0 {
            "0".to_string()
        } else if self.window_allowed {
            format!("{} (documented)", c.valid_not_ready)
        } else {
            format!("{} (NOT expected)", c.valid_not_ready)
        };
        format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.fault,
            self.seconds,
            c.requests,
            c.revoked_admitted,
            c.valid_refused,
            window,
            c.conn_errors,
            c.acked.len(),
            c.write_failures,
            self.lost,
            self.converge
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into()),
            self.crashes,
            if c.greedy_admitted <= self.limit_bound {
                format!("yes ({}/{})", c.greedy_admitted, self.limit_bound)
            } else {
                format!("NO ({}/{})", c.greedy_admitted, self.limit_bound)
            },
            if !self.broken().is_empty() {
                "NO"
            } else if self.applied {
                "yes"
            } else {
                "skipped"
            },
        )
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build()
}

/// An answer's status and `error.code`, or `None` if nothing answered.
fn ask(agent: &ureq::Agent, url: &str, token: &str) -> Option<(u16, String)> {
    let resp = match agent
        .get(url)
        .set("authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return None,
    };
    let status = resp.status();
    let body = resp.into_string().unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Some((status, code))
}

/// Sleeps until `next + period` (the next request's slot); a caller behind schedule
/// goes at once and starts counting from now, so it never bursts to catch up.
fn pace(next: &mut Instant, period: Duration) {
    *next += period;
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

fn jti_of(token: &str) -> String {
    token
        .split('.')
        .nth(1)
        .and_then(|p| meshauth_wire::b64::decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["jti"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The listener lives in a file Envoy watches (file-based LDS), so it can be replaced
/// while Envoy runs; the bootstrap holds the admin endpoint and the clusters.
struct Listener {
    dir: tempfile::TempDir,
    /// The listener section of envoy/meshauth.yaml, placeholders filled but the plugin
    /// configuration's.
    block: String,
    bootstrap: String,
    version: u32,
}

impl Listener {
    fn new(port: u16, upstream: u16, cp_port: u16) -> Listener {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = crate::envoy::template()
            .replace("@UPSTREAM_PORT@", &upstream.to_string())
            .replace("@CP_PORT@", &cp_port.to_string())
            .replace("@WASM_PATH@", &crate::filter_wasm().display().to_string())
            .replace("@LISTEN_PORT@", &port.to_string());
        let (head, rest) = template
            .split_once("static_resources:\n  listeners:\n")
            .expect("envoy/meshauth.yaml has static listeners");
        let (listeners, clusters) = rest
            .split_once("  clusters:\n")
            .expect("envoy/meshauth.yaml has clusters");
        let lds = dir.path().join("lds.yaml");
        let bootstrap = format!(
            "{head}node: {{ id: meshauth-chaos, cluster: meshauth-chaos }}\ndynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: {}\n      watched_directory: {{ path: {} }}\nstatic_resources:\n  clusters:\n{clusters}",
            lds.display(),
            dir.path().display()
        );
        let block = listeners.replacen(
            "  - name: ingress\n",
            "  - \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n    name: ingress\n",
            1,
        );
        Listener {
            dir,
            block,
            bootstrap,
            version: 0,
        }
    }

    /// Writes the listener with `plugin_config`, atomically (Envoy reloads on the move);
    /// each version differs (`server_name`) so Envoy really replaces the filter chain.
    fn write(&mut self, plugin_config: &Value) {
        self.version += 1;
        let body = self
            .block
            .replace(
                "          stat_prefix: ingress\n",
                &format!(
                    "          stat_prefix: ingress\n          server_name: meshauth-r{}\n",
                    self.version
                ),
            )
            .replace(
                "@PLUGIN_CONFIG@",
                &Value::String(plugin_config.to_string()).to_string(),
            );
        let tmp = self.dir.path().join(".lds.yaml.tmp");
        std::fs::write(&tmp, format!("resources:\n{body}")).expect("write lds");
        std::fs::rename(&tmp, self.dir.path().join("lds.yaml")).expect("move lds");
    }
}

pub struct Settings {
    /// How long each fault lasts.
    pub seconds: u64,
    /// Faults to run (names as in `FAULTS`); empty: all.
    pub only: Vec<String>,
    /// Request rate per load thread (three threads, plus the greedy user's).
    pub rate_per_thread: u64,
}

pub const FAULTS: &[&str] = &[
    "cp-sigkill",
    "cp-sigstop",
    "redis-kill9-aof",
    "redis-slow",
    "sentinel-failover",
    "clock-forward",
    "clock-back",
    "envoy-restart",
    "reload-same",
    "reload-broken",
    "revocation-storm",
    "key-rotation",
    "all-together",
];

/// What injecting a fault did.
struct Injected {
    /// It started an Envoy (its first-snapshot window is then documented).
    envoy_started: bool,
    applied: bool,
    notes: Vec<String>,
}

struct Shared {
    counts: Mutex<Counts>,
    stop: AtomicBool,
    /// Tokens issued up front for the writer to revoke.
    pool: Mutex<Vec<String>>,
    /// Envoy starts since the phase began (for the limit's bound).
    envoy_starts: AtomicU32,
}

pub struct Chaos {
    settings: Settings,
    sentinel: Sentinel,
    cp: ControlPlane,
    envoy: Option<Envoy>,
    listener: Listener,
    port: u16,
    plugin: Value,
    valid: Vec<String>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    faketime: Option<PathBuf>,
    _faketime_dir: tempfile::TempDir,
    crash_marks: u64,
}

fn say(what: &str) {
    eprintln!("chaos: {what}");
}

impl Chaos {
    pub fn start(settings: Settings) -> Chaos {
        let sentinel = Sentinel::start();
        let faketime_dir = tempfile::tempdir().expect("tempdir");
        let mut cp = ControlPlane::start(
            StoreKind::Sentinel(sentinel.addresses(), SENTINEL_MASTER_NAME.into()),
            "",
        );
        let faketime = std::path::Path::new(FAKETIME_LIB).exists().then(|| {
            let file = faketime_dir.path().join("offset");
            std::fs::write(&file, "+0\n").expect("faketime file");
            // Only the wall clock steps (as NTP steps it); re-read once a second.
            cp.env = vec![
                ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
                ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
                ("FAKETIME_CACHE_DURATION".into(), "1".into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ];
            cp.restart();
            file
        });
        let key = crate::http::get(&cp.url("/sync/v1/distribution-key"), &[]).json()["public_key"]
            .as_str()
            .expect("distribution key")
            .to_string();
        let plugin = json!({
            "issuer": cp.base_url(),
            "audiences": ["api"],
            "forward_claims": [{"claim": "sub", "header": "x-meshauth-sub"}],
            "rate_limits": {"policies": [{
                "name": "per-user", "key": ["claim:sub"], "rate": 1000, "window_seconds": 1,
                "burst": 1000, "match": {"path_prefix": "/api/"},
                "overrides": {"greedy": {"rate": GREEDY_RATE, "window_seconds": 1, "burst": GREEDY_RATE}}
            }]},
            "sync": cp.filter_sync(&key),
        });
        let upstream = crate::echo::spawn().expect("echo upstream");
        let port = crate::free_port();
        let mut listener = Listener::new(port, upstream, cp.port);
        listener.write(&plugin);
        let shared = Arc::new(Shared {
            counts: Mutex::new(Counts::default()),
            stop: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
            envoy_starts: AtomicU32::new(0),
        });
        let mut chaos = Chaos {
            settings,
            sentinel,
            cp,
            envoy: None,
            listener,
            port,
            plugin,
            valid: Vec::new(),
            shared,
            threads: Vec::new(),
            faketime,
            _faketime_dir: faketime_dir,
            crash_marks: 0,
        };
        chaos.start_envoy();
        chaos.valid = (0..VALID).map(|i| chaos.issue(&format!("v{i}"))).collect();
        let revoked: Vec<String> = (0..REVOKED)
            .map(|i| chaos.issue(&format!("r{i}")))
            .collect();
        for t in &revoked {
            assert!(chaos.revoke(t), "revoking a token before the load");
        }
        let pool: Vec<String> = (0..settings_pool(&chaos.settings))
            .map(|i| chaos.issue(&format!("w{i}")))
            .collect();
        *chaos.shared.pool.lock().expect("pool") = pool;
        let greedy = chaos.issue("greedy");
        // The edge is ready when valid tokens pass and revoked ones are refused.
        let ready = chaos.converge(Instant::now(), 60);
        assert!(ready.is_some(), "the edge never became ready");
        for t in &revoked {
            assert!(chaos.edge_refuses(t, Duration::from_secs(10)));
        }
        chaos.spawn_load(revoked, greedy);
        chaos
    }

    fn issue(&self, sub: &str) -> String {
        let body = json!({"sub": sub, "scope": "read", "ttl": "1h"}).to_string();
        let (k, v) = self.cp.admin_headers();
        crate::wait::wait_until(&format!("a token for {sub}"), 30, || {
            let a = crate::http::request(
                "POST",
                &self.cp.url("/admin/tokens"),
                &[(&k, &v), ("content-type", "application/json")],
                Some(&body),
            );
            a.json()["access_token"]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("{} {}", a.status, a.body))
        })
    }

    /// `POST /admin/revocations` for the token's `jti`: true if acknowledged (2xx).
    fn revoke(&self, token: &str) -> bool {
        revoke_jti(&self.cp.base_url(), &self.cp.admin_token, &jti_of(token))
    }

    fn start_envoy(&mut self) {
        self.envoy = None;
        let opts = Options {
            template: Some(self.listener.bootstrap.clone()),
            ..Options::default()
        };
        let envoy = Envoy::start(&self.plugin, opts).unwrap_or_else(|log| panic!("envoy: {log}"));
        assert_eq!(envoy.port, self.port, "the listener from the LDS file");
        self.shared.envoy_starts.fetch_add(1, Ordering::SeqCst);
        self.envoy = Some(envoy);
    }

    fn envoy(&self) -> &Envoy {
        self.envoy.as_ref().expect("envoy running")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls until the edge refuses `token` (not 200, and an answer): false on timeout.
    fn edge_refuses(&self, token: &str, within: Duration) -> bool {
        let agent = agent();
        let deadline = Instant::now() + within;
        loop {
            if let Some((s, _)) = ask(&agent, &self.url("/api/check"), token) {
                if s != 200 {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// From `since`: until a revocation made now is enforced at the edge and every valid
    /// token passes again. `None` if not within `secs`.
    fn converge(&self, since: Instant, secs: u64) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let agent = agent();
        let probe = loop {
            let t = self.shared.pool.lock().ok()?.pop()?;
            if self.revoke(&t) {
                break t;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        loop {
            let revoked = matches!(ask(&agent, &self.url("/api/probe"), &probe), Some((403, _)));
            let valid = revoked
                && self
                    .valid
                    .iter()
                    .all(|t| matches!(ask(&agent, &self.url("/api/probe"), t), Some((200, _))));
            if valid {
                return Some(since.elapsed());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn_load(&mut self, revoked: Vec<String>, greedy: String) {
        let period = Duration::from_micros(1_000_000 / self.settings.rate_per_thread.max(1));
        for k in 0..3usize {
            let shared = self.shared.clone();
            let valid = self.valid.clone();
            let revoked = revoked.clone();
            let url = self.url("/api/v");
            self.threads.push(std::thread::spawn(move || {
                let agent = agent();
                let mut i = k;
                let mut next = Instant::now();
                while !shared.stop.load(Ordering::Relaxed) {
                    i += 1;
                    let is_revoked = i % 5 == 0;
                    let token = if is_revoked {
                        &revoked[i % revoked.len()]
                    } else {
                        &valid[i % valid.len()]
                    };
                    let answer = ask(&agent, &url, token);
                    let mut c = shared.counts.lock().expect("counts");
                    c.requests += 1;
                    match answer {
                        None => c.conn_errors += 1,
                        Some((200, _)) if is_revoked => {
                            c.revoked_admitted += 1;
                            c.example(format!("revoked token admitted ({})", i % revoked.len()));
                        }
                        Some(_) if is_revoked => {}
                        Some((200, _)) => c.valid_ok += 1,
                        Some((503, code)) if code == "not_ready" => c.valid_not_ready += 1,
                        Some((s, code)) => {
                            c.valid_refused += 1;
                            c.example(format!("valid token refused: {s} {code}"));
                        }
                    }
                    drop(c);
                    pace(&mut next, period);
                }
            }));
        }
        // The greedy user asks three times its rate.
        let shared = self.shared.clone();
        let url = self.url("/api/greedy");
        self.threads.push(std::thread::spawn(move || {
            let agent = agent();
            let period = Duration::from_micros(1_000_000 / (3 * GREEDY_RATE));
            let mut next = Instant::now();
            while !shared.stop.load(Ordering::Relaxed) {
                match ask(&agent, &url, &greedy) {
                    Some((200, _)) => shared.counts.lock().expect("counts").greedy_admitted += 1,
                    Some((429, _)) => shared.counts.lock().expect("counts").greedy_limited += 1,
                    _ => {}
                }
                pace(&mut next, period);
            }
        }));
        // The writer: revocations all along, about four a second.
        let shared = self.shared.clone();
        let base = self.cp.base_url();
        let admin = self.cp.admin_token.clone();
        self.threads.push(std::thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                let token = {
                    let mut pool = shared.pool.lock().expect("pool");
                    // Keep some for the convergence probes.
                    if pool.len() <= POOL_RESERVE {
                        None
                    } else {
                        pool.pop()
                    }
                };
                let Some(t) = token else {
                    break;
                };
                let jti = jti_of(&t);
                let ok = revoke_jti(&base, &admin, &jti);
                let mut c = shared.counts.lock().expect("counts");
                if ok {
                    c.acked.push((t, jti));
                } else {
                    c.write_failures += 1;
                }
                drop(c);
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }

    /// Worker VM failures so far: panics or VM failures in Envoy's log and the `wasm`
    /// failure counters on its admin endpoint. Added to `crash_marks` before a restart.
    fn crashes_now(&self) -> u64 {
        let Some(envoy) = &self.envoy else {
            return 0;
        };
        let log = envoy.log();
        let in_log: Vec<&str> = log
            .lines()
            .filter(|l| {
                // A refused configuration is logged as "Wasm VM failed Failed to
                // configure": Envoy refusing the plugin, not a worker VM failing.
                l.contains("panicked")
                    || (l.contains("Wasm VM failed") && !l.contains("Failed to configure"))
                    || l.contains("wasm trap")
                    || (l.contains("wasm") && l.contains("crash"))
            })
            .collect();
        let prom = envoy.prometheus();
        // FAIL_RELOAD (envoy/meshauth.yaml) counts every failed VM's reload here; without
        // these counters in the answer the sum below would read nothing and say 0.
        assert!(
            prom.contains("envoy_wasm_meshauth_vm_reload"),
            "Envoy's stats lack the VM reload counters: {}",
            prom.chars().take(300).collect::<String>()
        );
        let stat_lines: Vec<&str> = prom
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("wasm"))
            .filter(|l| l.contains("fail") || l.contains("crash") || l.contains("vm_reload"))
            .collect();
        if std::env::var_os("CHAOS_DEBUG").is_some() {
            say(&format!("crash lines: {in_log:?} {stat_lines:?}"));
        }
        let in_log = in_log.len() as u64;
        let stats: u64 = stat_lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum();
        in_log + stats
    }

    /// Stops Envoy, keeping the crashes it saw: read after the drop, they would be lost.
    fn stop_envoy(&mut self) {
        self.crash_marks += self.crashes_now();
        self.envoy = None;
    }

    fn restart_envoy(&mut self) {
        self.stop_envoy();
        self.start_envoy();
    }

    /// Restores Sentinel's 1 s failure detection once every sentinel has heard from the
    /// master again: restored earlier, the master's last reply (from before the fault)
    /// is already too old and Sentinel fails over at once.
    fn restore_down_after(&self) {
        let ports: Vec<u16> = self
            .sentinel
            .addresses()
            .iter()
            .filter_map(|a| a.rsplit(':').next()?.parse().ok())
            .collect();
        let _ = crate::wait::poll(15, || {
            let fresh = ports.iter().all(|p| {
                let info = cli_at(*p, &["sentinel", "master", SENTINEL_MASTER_NAME]);
                let mut lines = info.lines();
                let mut reply = None;
                while let Some(l) = lines.next() {
                    if l.trim() == "last-ok-ping-reply" {
                        reply = lines.next().and_then(|v| v.trim().parse::<u64>().ok());
                    }
                }
                reply.is_some_and(|ms| ms < 500)
            });
            fresh
                .then_some(())
                .ok_or(crate::wait::Retry::Again(String::new()))
        });
        self.set_down_after(1000);
    }

    fn set_down_after(&self, ms: u64) {
        for a in self.sentinel.addresses() {
            let port: u16 = a
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            cli_at(
                port,
                &[
                    "sentinel",
                    "set",
                    SENTINEL_MASTER_NAME,
                    "down-after-milliseconds",
                    &ms.to_string(),
                ],
            );
            if std::env::var_os("CHAOS_DEBUG").is_some() {
                let seen = cli_at(port, &["sentinel", "master", SENTINEL_MASTER_NAME]);
                let after: Vec<&str> = seen
                    .lines()
                    .skip_while(|l| !l.contains("down-after"))
                    .take(2)
                    .collect();
                say(&format!("sentinel {port}: {after:?}"));
            }
        }
    }

    fn master(&mut self) -> &mut Redis {
        if self.sentinel.master_port() == Some(self.sentinel.replica.port) {
            &mut self.sentinel.replica
        } else {
            &mut self.sentinel.master
        }
    }

    fn hold(&self, secs: u64) {
        std::thread::sleep(Duration::from_secs(secs));
    }

    fn freeze_cp(&self, frozen: bool) {
        if let Some(pid) = self.cp.pid() {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    fn step_clock(&self, offset: &str) {
        if let Some(file) = &self.faketime {
            std::fs::write(file, format!("{offset}\n")).expect("faketime file");
        }
    }

    /// The control plane's clock offset as its tokens show it (iat minus now).
    fn cp_clock_offset(&self) -> Option<i64> {
        let t = self.issue("clock-probe");
        let claims: Value = t
            .split('.')
            .nth(1)
            .and_then(|p| meshauth_wire::b64::decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        Some(claims["iat"].as_i64()? - crate::tokens::now())
    }

    /// Runs the fault.
    fn inject(&mut self, fault: &str) -> Injected {
        let s = self.settings.seconds;
        let mut notes = Vec::new();
        let mut envoy_started = false;
        let mut applied = true;
        match fault {
            "cp-sigkill" => {
                self.cp.kill();
                self.hold(s);
                self.cp.restart();
            }
            "cp-sigstop" => {
                self.freeze_cp(true);
                self.hold(s.min(30));
                self.freeze_cp(false);
            }
            "redis-kill9-aof" => {
                // Sentinel must not fail over: this fault is the restart from AOF.
                self.set_down_after(600_000);
                let m = self.master();
                if std::env::var_os("CHAOS_DEBUG").is_some() {
                    say(&format!("killing the master on {}", m.port));
                }
                m.stop();
                std::thread::sleep(Duration::from_secs(s.min(5)));
                m.start_again();
                self.restore_down_after();
            }
            "redis-slow" => {
                // Frozen master: connections accepted, nothing answered, far past the
                // filter's 2 s callout deadline; Sentinel told not to fail over.
                self.set_down_after(600_000);
                self.master().freeze(true);
                self.hold(s);
                self.master().freeze(false);
                self.restore_down_after();
            }
            "sentinel-failover" => {
                // The writer thread keeps revoking while the master dies.
                self.sentinel.fail_master();
                self.hold(s / 2);
                self.sentinel.restart_old_master_as_replica();
            }
            "clock-forward" | "clock-back" => {
                if self.faketime.is_none() {
                    notes.push(format!(
                        "skipped: {FAKETIME_LIB} missing (apt-get install libfaketime)"
                    ));
                    return Injected {
                        envoy_started,
                        applied: false,
                        notes,
                    };
                }
                let offset = if fault == "clock-forward" { 600 } else { -600 };
                self.step_clock(&format!("{offset:+}"));
                // libfaketime re-reads the file once its cache (1 s) expires, per thread.
                let seen = crate::wait::poll(10, || {
                    let seen = self.cp_clock_offset();
                    match seen {
                        Some(o) if (o - offset).abs() <= 5 => Ok(seen),
                        _ => Err(crate::wait::Retry::Again(format!("{seen:?}"))),
                    }
                });
                match seen.ok().flatten() {
                    Some(seen) if (seen - offset).abs() <= 5 => {
                        notes.push(format!("control plane clock stepped {offset:+} s"))
                    }
                    _ => {
                        applied = false;
                        notes.push(
                            "libfaketime did not take effect within 10 s: fault not applied".into(),
                        )
                    }
                }
                self.hold(s);
                self.step_clock("+0");
                std::thread::sleep(Duration::from_millis(1500));
            }
            "envoy-restart" => {
                self.stop_envoy();
                std::thread::sleep(Duration::from_secs(1));
                self.start_envoy();
                envoy_started = true;
            }
            "reload-same" => {
                let plugin = self.plugin.clone();
                self.listener.write(&plugin);
                self.hold(s);
            }
            "reload-broken" => {
                let before = self
                    .envoy()
                    .counter("envoy_listener_manager_lds_update_rejected");
                let mut broken = self.plugin.clone();
                broken["no_such_field"] = json!(true);
                self.listener.write(&broken);
                let rejected = crate::wait::poll(10, || {
                    let n = self
                        .envoy()
                        .counter("envoy_listener_manager_lds_update_rejected");
                    (n > before)
                        .then_some(n)
                        .ok_or(crate::wait::Retry::Again(String::new()))
                });
                match rejected {
                    Ok(_) => notes
                        .push("Envoy rejected the broken listener (lds.update_rejected)".into()),
                    Err(_) => notes
                        .push("FINDING: Envoy did not reject the broken listener update".into()),
                }
                self.hold(s);
                let plugin = self.plugin.clone();
                self.listener.write(&plugin);
            }
            "revocation-storm" => {
                let n = storm(self, 10_000, 100);
                notes.push(n);
            }
            "key-rotation" => {
                let (k, v) = self.cp.admin_headers();
                let a = crate::http::request(
                    "POST",
                    &self.cp.url("/admin/keys/rotate"),
                    &[(&k, &v)],
                    None,
                );
                notes.push(format!("rotate answered {}", a.status));
                self.hold(s);
                // A token issued after the rotation passes too.
                let fresh = self.issue("after-rotation");
                if !self.edge_admits(&fresh, Duration::from_secs(30)) {
                    notes.push("FINDING: a token issued after the rotation was refused".into());
                    self.shared.counts.lock().expect("counts").valid_refused += 1;
                }
            }
            "all-together" => {
                // Control plane killed, Redis frozen and Envoy restarted at once: the new
                // Envoy has no snapshot until the control plane is back (503 not_ready).
                self.set_down_after(600_000);
                self.cp.kill();
                self.master().freeze(true);
                self.restart_envoy();
                envoy_started = true;
                let plugin = self.plugin.clone();
                self.listener.write(&plugin);
                self.hold(s);
                self.master().freeze(false);
                self.restore_down_after();
                self.cp.restart();
                notes.push(storm(self, 2_000, 20));
                let (k, v) = self.cp.admin_headers();
                let a = crate::http::request(
                    "POST",
                    &self.cp.url("/admin/keys/rotate"),
                    &[(&k, &v)],
                    None,
                );
                notes.push(format!("rotate answered {}", a.status));
            }
            other => panic!("unknown fault {other}"),
        }
        Injected {
            envoy_started,
            applied,
            notes,
        }
    }

    fn edge_admits(&self, token: &str, within: Duration) -> bool {
        let agent = agent();
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, _)) = ask(&agent, &self.url("/api/fresh"), token) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn run(&mut self, fault: &str) -> Row {
        say(&format!("{fault}: start"));
        let started = Instant::now();
        self.shared.envoy_starts.store(0, Ordering::SeqCst);
        *self.shared.counts.lock().expect("counts") = Counts::default();
        let crashes_before = self.crash_marks + self.crashes_now();
        let counters_before: Vec<u64> = FILTER_COUNTERS
            .iter()
            .map(|c| self.envoy().counter(c))
            .collect();
        // A little steady load before the fault.
        std::thread::sleep(Duration::from_secs(2));
        let Injected {
            envoy_started,
            applied,
            notes,
        } = self.inject(fault);
        let ended = Instant::now();
        let converge = self.converge(ended, 90);
        std::thread::sleep(Duration::from_secs(1));
        let counts = std::mem::take(&mut *self.shared.counts.lock().expect("counts"));
        let seconds = started.elapsed().as_secs_f64();
        // Every acknowledged revocation is enforced at the edge and listed.
        let listed = {
            let (k, v) = self.cp.admin_headers();
            crate::http::get(&self.cp.url("/admin/revocations"), &[(&k, &v)]).body
        };
        let lost = counts
            .acked
            .iter()
            .filter(|(t, jti)| {
                !listed.contains(jti.as_str())
                    || (!t.is_empty() && !self.edge_refuses(t, Duration::from_secs(5)))
            })
            .count();
        let crashes = self.crash_marks + self.crashes_now() - crashes_before;
        let starts = u64::from(self.shared.envoy_starts.load(Ordering::SeqCst));
        let mut notes = notes;
        if starts == 0 {
            let moved: Vec<String> = FILTER_COUNTERS
                .iter()
                .zip(&counters_before)
                .map(|(c, before)| (c, self.envoy().counter(c).saturating_sub(*before)))
                .filter(|(_, d)| *d > 0)
                .map(|(c, d)| format!("{c} +{d}"))
                .collect();
            if !moved.is_empty() {
                notes.push(format!("filter: {}", moved.join(", ")));
            }
        }
        let limit_bound =
            GREEDY_RATE * (starts + 1) + (GREEDY_RATE as f64 * seconds).ceil() as u64 + 2;
        let row = Row {
            fault: fault.into(),
            counts,
            seconds,
            lost,
            converge,
            crashes,
            window_allowed: envoy_started,
            applied,
            limit_bound,
            notes,
        };
        if std::env::var_os("CHAOS_DEBUG").is_some() {
            let log = self.cp.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            say(&format!(
                "control plane log (last lines, newest first):\n{}",
                tail.join("\n")
            ));
        }
        say(&row.line());
        for n in &row.notes {
            say(&format!("  {n}"));
        }
        for e in &row.counts.examples {
            say(&format!("  e.g. {e}"));
        }
        row
    }

    pub fn faults(&self) -> Vec<String> {
        if self.settings.only.is_empty() {
            FAULTS.iter().map(|s| s.to_string()).collect()
        } else {
            self.settings.only.clone()
        }
    }

    pub fn cp_log(&self) -> String {
        self.cp.log()
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.freeze_cp(false);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn settings_pool(s: &Settings) -> usize {
    // About four writes a second over every phase, plus the convergence probes.
    let faults: Vec<&str> = if s.only.is_empty() {
        FAULTS.to_vec()
    } else {
        s.only.iter().map(String::as_str).collect()
    };
    let storms = faults
        .iter()
        .filter(|f| matches!(**f, "revocation-storm" | "all-together"))
        .count();
    // The writer takes four a second all along (a storm phase lasts about a minute).
    let per_phase = (s.seconds as usize * 2 + 30) * 4;
    per_phase * faults.len() + storms * 400 + POOL_RESERVE
}

fn revoke_jti(base: &str, admin: &str, jti: &str) -> bool {
    let body = json!({"kind": "jti", "value": jti}).to_string();
    agent()
        .post(&format!("{base}/admin/revocations"))
        .set("authorization", &format!("Bearer {admin}"))
        .set("content-type", "application/json")
        .send_string(&body)
        .map(|r| (200..300).contains(&r.status()))
        .unwrap_or(false)
}

/// `n` revocations from four threads at once, `real` of them of issued tokens (checked
/// at the edge afterwards with the rest of the phase's acknowledged writes).
fn storm(chaos: &Chaos, n: usize, real: usize) -> String {
    let started = Instant::now();
    let real_tokens: Vec<String> = {
        let mut pool = chaos.shared.pool.lock().expect("pool");
        let at = pool.len().saturating_sub(real);
        pool.split_off(at)
    };
    let acked = Arc::new(AtomicU32::new(0));
    let failed = Arc::new(AtomicU32::new(0));
    let jobs: Vec<(Option<String>, String)> = (0..n)
        .map(|i| match real_tokens.get(i) {
            Some(t) => (Some(t.clone()), jti_of(t)),
            None => (None, format!("storm-{i}-{:x}", rand::random::<u64>())),
        })
        .collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let deadline = Instant::now() + Duration::from_secs(180);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let jobs = jobs.clone();
            let acked = acked.clone();
            let failed = failed.clone();
            let shared = chaos.shared.clone();
            let base = chaos.cp.base_url();
            let admin = chaos.cp.admin_token.clone();
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let Some((token, jti)) = jobs.lock().expect("jobs").pop() else {
                        break;
                    };
                    if revoke_jti(&base, &admin, &jti) {
                        acked.fetch_add(1, Ordering::SeqCst);
                        // Storm jtis without a token are checked in the list only.
                        let t = token.unwrap_or_default();
                        shared.counts.lock().expect("counts").acked.push((t, jti));
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    format!(
        "storm: {} of {n} revocations acknowledged, {} refused, in {:.1} s",
        acked.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    )
}
