#!/usr/bin/env bash
# Runs docs/install-envoy.md as a new user would: every ```bash block, in order, in one
# shell (then docs/operations.md's rate-limit commands and restore drill), in a fresh directory (on free loopback ports), with the meshauth binary, Envoy
# and the filter module this checkout built; then checks what they printed. The guide's
# ```sh block (the build) is not run: scripts/test.sh builds first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin_dir=$(dirname "${MESHAUTH_BIN:-$root/target/debug/meshauth}")
envoy_dir=$(dirname "${ENVOY_BIN:-$root/.venv/bin/envoy}")
export MESHAUTH_WASM=${MESHAUTH_WASM:-$root/target/wasm32-wasip1/release/meshauth_filter.wasm}
[ -x "$bin_dir/meshauth" ] && [ -x "$envoy_dir/envoy" ] && [ -s "$MESHAUTH_WASM" ] ||
  { echo "install-envoy-check: build meshauth, the filter (scripts/build-filter.sh) and install envoy first" >&2; exit 1; }
export PATH="$bin_dir:$envoy_dir:$PATH"

block=$(awk '/^```bash$/{f=1;next} /^```$/{f=0} f' docs/install-envoy.md)
[ -n "$block" ] || { echo "install-envoy-check: no bash blocks in docs/install-envoy.md" >&2; exit 1; }
# Then docs/operations.md's command blocks, which start where the guide's step 9 ends
# (everything stopped): the restore drill's first block starts the control plane again,
# the rate-limit commands run against it, then the rest of the drill. Together they are
# every bash block of that page (checked), so none drifts unrun.
ops_blocks() { awk -v want="$1" '$0 ~ want {d=1;next} /^##/{d=0} d' docs/operations.md | awk -v n="$2" '/^```bash$/{f=1;c++;next} /^```$/{f=0} f && (n == 0 || (n > 0 && c == n) || (n < 0 && c > -n))'; }
limits=$(ops_blocks '^## Rate limits' 0)
drill_start=$(ops_blocks '^### A restore drill' 1)
drill_rest=$(ops_blocks '^### A restore drill' -1)
[ -n "$limits" ] && [ -n "$drill_start" ] && [ -n "$drill_rest" ] ||
  { echo "install-envoy-check: no rate-limit block or restore drill in docs/operations.md" >&2; exit 1; }
all_ops=$(awk '/^```bash$/{f=1;next} /^```$/{f=0} f' docs/operations.md)
[ "$all_ops" = "$limits
$drill_start
$drill_rest" ] || { echo "install-envoy-check: docs/operations.md has bash blocks outside 'Rate limits' and the restore drill; run them here" >&2; exit 1; }
block="$block
$drill_start
$limits
$drill_rest"
work=$(mktemp -d)
free_ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(4)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
read -r CP_PORT ENVOY_PORT ENVOY_ADMIN_PORT APP_PORT <<<"$free_ports"
export CP_PORT ENVOY_PORT ENVOY_ADMIN_PORT APP_PORT
out="$work/out.txt"
# Its own process group, so whatever the guide started is stopped however it ends.
setsid bash -c "set -euo pipefail; cd '$work'; $block" >"$out" 2>&1 &
guide=$!
cleanup() { kill -TERM -- -"$guide" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
status=0
wait "$guide" || status=$?
cat "$out"
dir="$work/meshauth-local"
if [ "$status" -ne 0 ]; then
  echo "install-envoy-check: the guide's commands failed (exit $status)" >&2
  for log in control-plane.log envoy.log; do [ -f "$dir/$log" ] && { echo "== $log" >&2; tail -30 "$dir/$log" >&2; }; done
  exit 1
fi
fail=0
expect() { grep -qF -- "$1" "$out" || { echo "install-envoy-check: expected the guide to print: $1" >&2; fail=1; }; }
# The issuer as a line of its own (`meshauth status | jq -r .issuer`): an error message
# naming the URL (`cannot reach http://…`) must not pass for it.
grep -qxF -- "http://127.0.0.1:$CP_PORT" "$out" ||
  { echo "install-envoy-check: expected the guide to print the issuer http://127.0.0.1:$CP_PORT on a line" >&2; fail=1; }
expect "HTTP/1.1 401 Unauthorized"
expect 'www-authenticate: Bearer realm="meshauth"'
expect "with a token: 200"
expect "revoked: 403"
expect "200 200 200 429"
expect "rotated: a new key signs"
expect "after the rotation: 200"
# docs/operations.md's rate limits: the policy and its override were listed, then deleted.
expect '"per-user"'
expect '"alice"'
# The restore drill: the backup's anchor holds, the newest one names the lost tail, and
# the client made after the backup is gone.
expect "audit chain ok:"
expect "the restore lost the entries after"
grep -qx 0 "$out" || { echo "install-envoy-check: expected the restored store to lack the client made after the backup (a line 0)" >&2; fail=1; }
# The guide stops what it started.
for p in envoy app control-plane; do
  pid=$(cat "$dir/$p.pid")
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "install-envoy-check: $p still runs after the guide" >&2; fail=1; }
done
[ "$fail" -eq 0 ] || exit 1
echo "install-envoy-check: docs/install-envoy.md works as written"
