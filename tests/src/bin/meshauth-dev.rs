//! Developer tools for the demo, benchmarks and tests: an echoing upstream, Envoy
//! bootstrap rendering, and dev keys/tokens (never for production signing).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use meshauth_tests::tokens::{claims, DevKey};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "meshauth-dev", about = "meshauth developer tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the echoing sample upstream on 127.0.0.1:PORT.
    Echo {
        #[arg(long)]
        port: u16,
    },
    /// Render an Envoy bootstrap template.
    EnvoyConfig {
        #[arg(long)]
        template: PathBuf,
        /// Plugin configuration JSON file.
        #[arg(long)]
        plugin_config: PathBuf,
        /// NAME=VALUE for each @NAME@ placeholder.
        #[arg(long = "set")]
        vars: Vec<String>,
    },
    /// Make a dev signing key: writes SEED_FILE (hex) and prints its JWKS.
    Keygen {
        #[arg(long)]
        seed_file: PathBuf,
    },
    /// Measure revoke-API-call → first 403 at the edge, over COUNT revocations.
    RevocationLatency {
        /// Control plane that takes the revocations.
        #[arg(long)]
        cp: String,
        /// Control plane that issues tokens (defaults to --cp).
        #[arg(long)]
        issuer_cp: Option<String>,
        #[arg(long)]
        edge: String,
        #[arg(long, env = "MESHAUTH_ADMIN_TOKEN")]
        admin_token: String,
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// `token` (by jti: Bloom + confirmation) or `sub` (an exact rule).
        #[arg(long, default_value = "token")]
        by: String,
    },
    /// Revoke COUNT random jtis (live for an hour) through the admin API, from THREADS
    /// clients; for the memory benchmark.
    RevokeMany {
        #[arg(long)]
        cp: String,
        #[arg(long, env = "MESHAUTH_ADMIN_TOKEN")]
        admin_token: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Print tokens signed by a dev key, one a line.
    Tokens {
        #[arg(long)]
        seed_file: PathBuf,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value = "dev-user")]
        sub: String,
        #[arg(long, default_value = "read")]
        scope: String,
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

fn read_seed(path: &PathBuf) -> Result<DevKey, String> {
    let hex = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or("seed file is not hex")?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| "seed must be 32 bytes")?;
    Ok(DevKey::from_seed(seed))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Echo { port } => {
            let listener =
                std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            eprintln!("echo upstream on 127.0.0.1:{port}");
            meshauth_tests::echo::serve(listener);
        }
        Cmd::EnvoyConfig {
            template,
            plugin_config,
            vars,
        } => {
            let tpl = std::fs::read_to_string(&template)
                .map_err(|e| format!("{}: {e}", template.display()))?;
            let cfg_text = std::fs::read_to_string(&plugin_config)
                .map_err(|e| format!("{}: {e}", plugin_config.display()))?;
            let cfg: Value =
                serde_json::from_str(&cfg_text).map_err(|e| format!("plugin config: {e}"))?;
            let vars: Vec<(&str, String)> = vars
                .iter()
                .map(|v| {
                    v.split_once('=')
                        .map(|(k, v)| (k, v.to_string()))
                        .ok_or(format!("--set {v}: want NAME=VALUE"))
                })
                .collect::<Result<_, _>>()?;
            print!("{}", meshauth_tests::envoy::render(&tpl, &vars, &cfg));
        }
        Cmd::Keygen { seed_file } => {
            let key = DevKey::random();
            let hex: String = key.seed().iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&seed_file, hex).map_err(|e| e.to_string())?;
            println!("{}", json!(DevKey::jwks(&[&key])));
        }
        Cmd::RevocationLatency {
            cp,
            issuer_cp,
            edge,
            admin_token,
            count,
            by,
        } => {
            revocation_latency(
                &cp,
                issuer_cp.as_deref().unwrap_or(&cp),
                &edge,
                &admin_token,
                count,
                &by,
            )?;
        }
        Cmd::RevokeMany {
            cp,
            admin_token,
            count,
            threads,
        } => revoke_many(&cp, &admin_token, count, threads.max(1))?,
        Cmd::Tokens {
            seed_file,
            count,
            sub,
            scope,
            ttl,
        } => {
            let key = read_seed(&seed_file)?;
            let now = meshauth_tests::tokens::now();
            for i in 0..count {
                let subject = if count > 1 {
                    format!("{sub}-{i}")
                } else {
                    sub.clone()
                };
                let c = claims(
                    &subject,
                    json!({"scope": scope, "exp": now + ttl, "aud": ["api"]}),
                );
                println!("{}", key.sign(&c));
            }
        }
    }
    Ok(())
}

fn status_of(r: Result<ureq::Response, ureq::Error>) -> u16 {
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(_) => 0,
    }
}

/// One POST written in a single send with TCP_NODELAY: a client that sends headers and
/// body separately meets Nagle and delayed ACKs (~40 ms) and would time itself, not us.
fn post_once(base: &str, path: &str, auth: &str, body: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let hostport = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {hostport}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // The revocation is committed before the answer starts: the status line is enough
    // (waiting for the server to close would time its connection teardown).
    let mut buf = [0u8; 512];
    let mut answer = Vec::new();
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let answer = String::from_utf8_lossy(&answer);
    if answer.starts_with("HTTP/1.1 2") {
        Ok(())
    } else {
        Err(format!(
            "revocation refused: {}",
            answer.lines().next().unwrap_or_default()
        ))
    }
}

/// Bounded: `count` rounds, each waiting at most 10 s for the edge.
fn revocation_latency(
    cp: &str,
    issuer: &str,
    edge: &str,
    admin: &str,
    count: usize,
    by: &str,
) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let auth = format!("Bearer {admin}");
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let issued: Value = agent
            .post(&format!("{issuer}/admin/tokens"))
            .set("authorization", &auth)
            .send_json(json!({"sub": format!("latency-{i}")}))
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        let token = issued["access_token"]
            .as_str()
            .ok_or("no token")?
            .to_string();
        let bearer = format!("Bearer {token}");
        let edge_status = || {
            status_of(
                agent
                    .get(&format!("{edge}/api"))
                    .set("authorization", &bearer)
                    .call(),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while edge_status() != 200 {
            if Instant::now() > deadline {
                return Err("a fresh token never reached 200 at the edge".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let t0 = Instant::now();
        let what = match by {
            "sub" => json!({"kind": "sub", "value": format!("latency-{i}")}),
            _ => json!({"kind": "token", "value": token}),
        };
        post_once(cp, "/admin/revocations", &auth, &what.to_string())?;
        loop {
            if edge_status() == 403 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("a revoked token was still accepted after 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{count}\t{:.1}\t{:.1}\t{:.1}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    Ok(())
}

fn revoke_many(cp: &str, admin: &str, count: usize, threads: usize) -> Result<(), String> {
    let exp = meshauth_tests::tokens::now() + 3600;
    let auth = format!("Bearer {admin}");
    let url = format!("{}/admin/revocations", cp.trim_end_matches('/'));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (auth, url) = (&auth, &url);
                s.spawn(move || -> Result<(), String> {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(std::time::Duration::from_secs(30))
                        .build();
                    for i in (t..count).step_by(threads) {
                        let body = serde_json::json!({"kind": "jti", "value": format!("bench-{i}-{}", rand::random::<u64>()), "exp": exp});
                        agent
                            .post(url)
                            .set("authorization", auth)
                            .send_json(body)
                            .map_err(|e| format!("revocation {i}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| "a client thread panicked".to_string())?
        })
    })
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("meshauth-dev: {e}");
        std::process::exit(1);
    }
}
