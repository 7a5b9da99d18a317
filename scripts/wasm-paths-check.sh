#!/usr/bin/env bash
# Checks that a built filter module names no machine-specific path (a home directory,
# CARGO_HOME's registry, this checkout): such a path changes the module's sha256 from
# one machine to the next (see scripts/build-filter.sh, scripts/repro-check.sh).
# Usage: scripts/wasm-paths-check.sh [MODULE]  (default: the release build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wasm=${1:-$root/target/wasm32-wasip1/release/meshauth_filter.wasm}
[ -s "$wasm" ] || { echo "wasm-paths-check: no module at $wasm (run scripts/build-filter.sh)" >&2; exit 1; }
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)
# strings on its own line: inside the grep's `|| true` a missing `strings` read as "no
# path found".
text=$(strings -n 6 "$wasm")
[ -n "$text" ] || { echo "wasm-paths-check: strings found no text in $wasm" >&2; exit 1; }
found=$(grep -F -e /home/ -e /root/ -e .cargo/registry -e "$cargo_home" -e "$root" <<<"$text" || true)
if [ -n "$found" ]; then
  echo "wasm-paths-check: $wasm embeds machine-specific paths (build it with scripts/build-filter.sh):" >&2
  printf '%s\n' "$found" | sort -u | head -20 >&2
  exit 1
fi
echo "wasm-paths-check: $wasm names no machine-specific path"
