#!/usr/bin/env bash
# Runs scripts/demo.sh, executes the README's demo commands verbatim (the block between
# <!-- demo:begin --> and <!-- demo:end -->), checks what they print, then stops the
# demo with Ctrl-C (SIGINT) and checks that everything it started is gone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Build first (what demo.sh builds), so the readiness wait below times the start-up, not a
# cold release build with LTO, which alone can take minutes on two cores.
cargo build -q --release -p meshauth-control-plane --bin meshauth
cargo build -q --release -p meshauth-tests --bin meshauth-dev
cargo build -q --release -p meshauth-filter --target wasm32-wasip1
out=$(mktemp)
setsid scripts/demo.sh >"$out" 2>&1 &
demo_pid=$!
stop() { kill -INT -- -"$demo_pid" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 600); do
  grep -q "demo: ready" "$out" && break
  if ! kill -0 "$demo_pid" 2>/dev/null; then cat "$out" >&2; echo "demo-check: demo.sh exited early" >&2; exit 1; fi
  sleep 0.5
done
grep -q "demo: ready" "$out" || { cat "$out" >&2; echo "demo-check: demo not ready" >&2; exit 1; }

block=$(awk '/<!-- demo:begin -->/{f=1;next} /<!-- demo:end -->/{f=0} f' README.md | sed '/^```/d')
[ -n "$block" ] || { echo "demo-check: no demo block in README.md" >&2; exit 1; }
got=$(bash -c "set -e; $block" 2>&1)
printf '%s\n' "$got"
fail=0
expect() { grep -qF -- "$1" <<<"$got" || { echo "demo-check: expected output to contain: $1" >&2; fail=1; }; }
expect '"x-meshauth-sub":"alice"'
expect 'HTTP/1.1 401 Unauthorized'
expect 'www-authenticate: Bearer realm="meshauth"'
expect '"path":"/public/info"'
expect '"code":"insufficient_scope"'
expect '"code":"token_revoked"'
expect '200 200 200 429'
expect 'ratelimit-policy: "per-user";q=5;w=60'
expect 'retry-after: '
[ "$fail" -eq 0 ] || exit 1

stop
trap - EXIT
for _ in $(seq 100); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$demo_pid" 2>/dev/null; then echo "demo-check: demo.sh did not stop on SIGINT" >&2; exit 1; fi
for port in 8080 10000 9901 10080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "demo-check: port $port still open after stop" >&2; exit 1; fi
done
grep -q "demo: stopped" "$out" || { echo "demo-check: no clean stop" >&2; exit 1; }
echo "demo-check: ok"
