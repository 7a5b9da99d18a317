//! Harness for meshauth's end-to-end tests: starts the real processes (Envoy with the
//! built filter, the control plane, an echoing upstream) on loopback and talks to them.

pub mod chaos;
pub mod control_plane;
pub mod echo;
pub mod envoy;
pub mod fake_sync;
pub mod http;
pub mod idp;
pub mod process;
pub mod redis;
pub mod relay;
pub mod tokens;
pub mod wait;

use std::path::PathBuf;

/// The workspace root, where scripts/setup.sh puts `.venv` and cargo puts `target`.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A loopback port free right now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A file the tests need, from an env var or its default place; a clear panic if absent.
pub fn required_file(var: &str, default: PathBuf, hint: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{} not found at {} ({hint})",
        var,
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    required_file(
        "ENVOY_BIN",
        workspace_root().join(".venv/bin/envoy"),
        "run scripts/setup.sh",
    )
}

pub fn filter_wasm() -> PathBuf {
    required_file(
        "MESHAUTH_WASM",
        workspace_root().join("target/wasm32-wasip1/release/meshauth_filter.wasm"),
        "build it: scripts/build-filter.sh",
    )
}
