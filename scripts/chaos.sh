#!/usr/bin/env bash
# Faults under load (not run by CI: it takes minutes; tests/tests/chaos.rs is its short
# form). Steady traffic through Envoy with the filter (valid tokens, revoked tokens, a
# user over its rate limit) against the release build of the control plane on Redis
# (master, replica, three sentinels; AOF, appendfsync always), all on loopback, while
# faults are injected one at a time and then together: control plane SIGKILL and SIGSTOP,
# Redis kill -9 and restart from AOF, Redis frozen past the callout deadlines, a Sentinel
# failover with writes in flight, the control plane's clock stepped ±600 s (libfaketime),
# Envoy restarted, the listener reloaded (file-based LDS) with the same and with a broken
# filter configuration, a storm of 10,000 revocations, a key rotation.
#
#   scripts/chaos.sh [SECONDS_PER_FAULT] [FAULT...]    default: 20 s per fault
#
# Prints one row per fault (see docs/security.md, "Faults under load") and exits 1 if an
# invariant broke: a revoked token admitted, a valid token refused outside the documented
# fail-closed window, an acknowledged revocation not enforced or not listed afterwards,
# no convergence within 90 s, a worker VM failure, the rate limit exceeded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

# The clock faults need libfaketime; without it they print a "skipped" line.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  echo "chaos: installing libfaketime" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends libfaketime faketime >/dev/null; } ||
    echo "chaos: could not install libfaketime; the clock faults will be skipped" >&2
fi

cargo build -q --release -p meshauth-control-plane --bin meshauth
cargo build -q -p meshauth-filter --target wasm32-wasip1 --release
cargo build -q -p meshauth-tests --bin meshauth-chaos
export MESHAUTH_BIN="$root/target/release/meshauth"
export MESHAUTH_WASM="$root/target/wasm32-wasip1/release/meshauth_filter.wasm"
export ENVOY_BIN="$root/.venv/bin/envoy"
# The whole run is bounded: every wait inside has its own deadline, this is the backstop.
exec timeout --kill-after=30 3600 "$root/target/debug/meshauth-chaos" "$@"
