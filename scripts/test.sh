#!/usr/bin/env bash
# Runs every meshauth test on a fresh machine: installs what is missing, then
# fmt, clippy (native and wasm), unit and property tests, and the end-to-end tests
# against a real Envoy, the real control plane and a real Redis.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

step() { echo "== $*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (wasm32-wasip1)"
cargo clippy -p meshauth-filter --target wasm32-wasip1 --locked -- -D warnings

step "build the filter (wasm32-wasip1, release, reproducible) and check it names no local path"
scripts/build-filter.sh
scripts/wasm-paths-check.sh
step "build the control plane (meshauth)"
cargo build -p meshauth-control-plane --bin meshauth --locked
export MESHAUTH_WASM="$root/target/wasm32-wasip1/release/meshauth_filter.wasm"
export MESHAUTH_BIN="$root/target/debug/meshauth"
export ENVOY_BIN="$root/.venv/bin/envoy"

step "tests: unit, property and end-to-end"
log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$log"
test "${PIPESTATUS[0]}" -eq 0

step "Helm chart: lint, render, schema validation, invariants, checkov (offline)"
scripts/chart-test.sh 2>&1 | tee -a "$log"
test "${PIPESTATUS[0]}" -eq 0

step "fuzzing: every target for 20 s from its seeds (scripts/fuzz.sh; long runs are separate)"
scripts/fuzz.sh "${MESHAUTH_CI_FUZZ_SECONDS:-20}"

step "demo: scripts/demo.sh and the README's commands"
scripts/demo-check.sh

step "docs/install-envoy.md followed literally on loopback"
scripts/install-envoy-check.sh

# One closing line for the whole run: the tests cargo and pytest counted, then the
# scripted checks (each passed, or `set -e` had stopped the run before this line).
awk -v scripted="wasm-paths-check fuzz demo-check install-envoy-check" \
  '/^test result:|^[0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed[;,]?$/) p += $i; if ($(i+1) ~ /^failed[;,]?$/) f += $i } }
     END { printf "%d passed, %d failed; scripted checks passed: %s\n", p, f, scripted }' "$log"
