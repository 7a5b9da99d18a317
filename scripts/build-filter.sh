#!/usr/bin/env bash
# Builds the filter module (target/wasm32-wasip1/release/meshauth_filter.wasm)
# reproducibly: the same sources and Cargo.lock give the same bytes, hence the same
# sha256, whatever CARGO_HOME, checkout directory or target directory the build uses.
# rustc records source paths in panic messages and debug info; the registry's sources
# live under $CARGO_HOME, so they are remapped to fixed prefixes here. (Cargo's
# `trim-paths` would do it from a committed config, but it is not stable yet, and a
# config file cannot name a per-machine path.) The flags apply to the wasm target only:
# native builds and the fuzz workspace are untouched.
# Extra arguments go to cargo (e.g. --target-dir DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
# When several prefixes match, rustc applies the last one: the most specific goes last.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="--remap-path-prefix=$root=/meshauth --remap-path-prefix=$target=/target --remap-path-prefix=$cargo_home=/cargo"
exec cargo build -p meshauth-filter --target wasm32-wasip1 --release --locked "$@"
