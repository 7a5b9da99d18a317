#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `meshauth envoy-config` against a live control plane: the bootstrap it writes passes
//! `envoy --mode validate`, and a real Envoy started on it fetches the module from the
//! control plane, syncs (a revoked token is refused) and hardens its listener.

use std::path::Path;
use std::process::{Command, Stdio};

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::http::{get, raw_get};
use meshauth_tests::process::Process;
use meshauth_tests::wait::wait_until;

fn envoy(config: &Path, cp: &ControlPlane) -> Command {
    let mut cmd = Command::new(meshauth_tests::envoy_bin());
    cmd.arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .env("MESHAUTH_SYNC_CREDENTIAL", &cp.sync_credential)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn the_generated_bootstrap_runs_envoy_with_live_sync() {
    let wasm = meshauth_tests::filter_wasm();
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        &format!("filter_wasm = \"{}\"", wasm.display()),
    );
    let upstream = meshauth_tests::echo::spawn().unwrap();
    let (listen, admin) = (meshauth_tests::free_port(), meshauth_tests::free_port());
    let config = cp.dir().join("envoy.json");
    let made = cp.cli(&[
        "envoy-config",
        "--upstream",
        &format!("127.0.0.1:{upstream}"),
        "--listen",
        &format!("127.0.0.1:{listen}"),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--out",
        config.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{said}");
    // It tells the operator the issuer the plugin must carry and the module it pins.
    let served = get(
        &format!("{}/filter/meshauth.wasm.sha256", cp.base_url()),
        &[],
    )
    .body;
    assert!(
        said.contains(&format!("issuer {:?} ", cp.base_url())),
        "{said}"
    );
    assert!(
        said.contains(&format!("module sha256 {}", served.trim())),
        "{said}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(served.trim()),
        "the bootstrap pins the served sha256"
    );
    assert!(
        !text.contains(&cp.sync_credential),
        "the credential stays in the environment"
    );
    let out = envoy(&config, &cp)
        .args(["--mode", "validate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy refused the bootstrap:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A local module validates too.
    let local = cp.dir().join("envoy-local.json");
    cp.cli_ok(&[
        "envoy-config",
        "--upstream",
        "localhost:8000",
        "--wasm",
        wasm.to_str().unwrap(),
        "--out",
        local.to_str().unwrap(),
    ]);
    assert!(envoy(&local, &cp)
        .args(["--mode", "validate"])
        .output()
        .unwrap()
        .status
        .success());

    let log = cp.dir().join("envoy.log");
    let _envoy = Process::spawn(
        envoy(&config, &cp)
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{listen}/orders");
    let envoy_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let token = cp
        .cli_ok(&["token", "issue", "--sub", "alice"])
        .trim()
        .to_string();
    let bearer = format!("Bearer {token}");
    wait_until("Envoy to be ready", 30, || {
        match ureq::get(&format!("http://127.0.0.1:{admin}/ready")).call() {
            Ok(r) if r.status() == 200 => Ok(()),
            _ => Err(envoy_log()),
        }
    });
    // The module is fetched from the control plane and the first snapshot arrives.
    wait_until("a token to pass through Envoy", 30, || {
        let a = get(&url, &[("authorization", &bearer)]);
        match a.status {
            200 => Ok(a),
            s => Err(format!("{s} {}\n{}", a.body, envoy_log())),
        }
    });
    assert_eq!(get(&url, &[]).status, 401);
    // The module came over HTTP from the control plane, not from a local file.
    let stats = get(
        &format!("http://127.0.0.1:{admin}/stats?filter=wasm.remote_load_fetch_successes"),
        &[],
    );
    let fetched: u64 = stats
        .body
        .lines()
        .find_map(|l| l.strip_prefix("wasm.remote_load_fetch_successes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(fetched >= 1, "{}", stats.body);
    // Revoked at the control plane, refused at the edge: the filter syncs.
    cp.cli_ok(&["revoke", "subject", "alice"]);
    wait_until("the revoked token to be refused", 30, || {
        let a = get(&url, &[("authorization", &bearer)]);
        match a.status {
            403 => Ok(()),
            s => Err(format!("{s} {}", a.body)),
        }
    });
    // The listener is hardened: an escaped slash is redirected, an underscore refused.
    let a = raw_get(listen, "/public%2F..%2Forders", &[]);
    assert_eq!(a.status, 307, "{a:?}");
    let a = raw_get(listen, "/orders", &[("x_meshauth_sub", "mallory")]);
    assert_eq!(a.status, 400, "{a:?}");
}

/// A bootstrap whose remote module sha256 is not the served module's (a control plane
/// upgraded under an Envoy that restarts with the old sha, or a sha typed by hand): Envoy
/// gives up fetching, goes LIVE anyway and answers every request 503 with an empty body,
/// saying so only in its stats and log; `meshauth envoy-config` run again pins the served
/// sha and the same Envoy setup works. docs/operations.md describes this.
#[test]
fn a_wrong_module_sha256_leaves_envoy_live_refusing_every_request() {
    let wasm = meshauth_tests::filter_wasm();
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        &format!("filter_wasm = \"{}\"", wasm.display()),
    );
    let upstream = meshauth_tests::echo::spawn().unwrap();
    let (listen, admin) = (meshauth_tests::free_port(), meshauth_tests::free_port());
    let config = cp.dir().join("envoy.json");
    let generate = || {
        cp.cli_ok(&[
            "envoy-config",
            "--upstream",
            &format!("127.0.0.1:{upstream}"),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--out",
            config.to_str().unwrap(),
        ])
    };
    generate();
    let served = get(
        &format!("{}/filter/meshauth.wasm.sha256", cp.base_url()),
        &[],
    )
    .body;
    let served = served.trim().to_string();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&served));
    std::fs::write(&config, text.replace(&served, &"0".repeat(64))).unwrap();
    let token = cp
        .cli_ok(&["token", "issue", "--sub", "alice"])
        .trim()
        .to_string();
    let bearer = format!("Bearer {token}");
    let url = format!("http://127.0.0.1:{listen}/orders");
    let start = |name: &str| {
        let log = cp.dir().join(name);
        let process = Process::spawn(
            envoy(&config, &cp)
                .arg("--log-path")
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
        let envoy_log = move || std::fs::read_to_string(&log).unwrap_or_default();
        // LIVE once it has given up fetching (after its retries), not before.
        wait_until("Envoy to be LIVE", 60, || {
            match ureq::get(&format!("http://127.0.0.1:{admin}/ready")).call() {
                Ok(r) if r.status() == 200 => Ok(()),
                _ => Err(envoy_log()),
            }
        });
        (process, envoy_log)
    };
    let (wrong, envoy_log) = start("envoy-wrong.log");
    let a = get(&url, &[("authorization", &bearer)]);
    assert_eq!((a.status, a.body.as_str()), (503, ""), "{a:?}");
    assert_eq!(
        get(&url, &[]).status,
        503,
        "no 401 either: the filter is not there"
    );
    let stats = get(
        &format!("http://127.0.0.1:{admin}/stats?filter=wasm.remote_load"),
        &[],
    )
    .body;
    assert!(
        stats.contains("wasm.remote_load_fetch_failures: 1"),
        "{stats}"
    );
    assert!(
        stats.contains("wasm.remote_load_fetch_successes: 0"),
        "{stats}"
    );
    wait_until("Envoy's log to say the plugin failed to load", 30, || {
        let log = envoy_log();
        match log.contains("Plugin meshauth failed to load") {
            true => Ok(()),
            false => Err(log),
        }
    });
    drop(wrong);
    // The fix: envoy-config again writes the sha the control plane serves.
    generate();
    assert!(std::fs::read_to_string(&config).unwrap().contains(&served));
    let (_right, envoy_log) = start("envoy-right.log");
    wait_until("a token to pass through Envoy", 30, || {
        let a = get(&url, &[("authorization", &bearer)]);
        match a.status {
            200 => Ok(()),
            s => Err(format!("{s} {}\n{}", a.body, envoy_log())),
        }
    });
}

/// What envoy-config prints about the control plane's answers comes from an
/// unauthenticated HTTP call: an issuer holding terminal escapes or line breaks (a
/// hostile server at `--url`, or one in between) reaches the operator's terminal quoted,
/// never raw.
#[test]
fn a_hostile_issuer_reaches_the_terminal_escaped() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer =
        "http://cp\r\n\u{1b}[2K\u{1b}[1Aenvoy-config: issuer \\\"https://auth.example.com\\\"";
    let meta = format!(
        r#"{{"issuer":"{}"}}"#,
        issuer
            .replace('\r', "\\r")
            .replace('\n', "\\n")
            .replace('\u{1b}', "\\u001b")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            while let Ok(n) = reader.read_line(&mut String::new()) {
                if n <= 2 {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_string();
            let body = match path.as_str() {
                "/.well-known/oauth-authorization-server" => meta.clone(),
                "/.well-known/jwks.json" => r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#.to_string(),
                "/sync/v1/distribution-key" => r#"{"public_key":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#.to_string(),
                "/filter/meshauth.wasm.sha256" => "ab".repeat(32),
                _ => String::new(),
            };
            let mut s = &stream;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(meshauth_tests::control_plane::meshauth_bin())
        .args(["envoy-config", "--upstream", "127.0.0.1:1", "--out"])
        .arg(dir.path().join("envoy.json"))
        .env("MESHAUTH_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains('\u{1b}') && !said.contains('\r'), "{said:?}");
    assert!(said.contains(r#"issuer "http://cp\r\n\u{1b}[2K"#), "{said}");
}
