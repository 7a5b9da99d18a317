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

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("meshauth-dev: {e}");
        std::process::exit(1);
    }
}
