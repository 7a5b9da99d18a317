#!/usr/bin/env bash
# meshauth demo, on a fresh machine: installs what is missing, builds, then runs
#   - the control plane on 127.0.0.1:8080 (embedded store under .demo/)
#   - Envoy with the meshauth filter on 127.0.0.1:10000 (admin on 127.0.0.1:9901)
#   - a sample upstream on 127.0.0.1:10080 that echoes the headers it received
# and writes .demo/env for `source`. Routes: /public/... anonymous, /admin/... needs
# scope `admin`, everything else a valid token. Stays in the foreground; Ctrl-C stops all.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"

demo="$root/.demo"
mkdir -p "$demo"
echo "demo: building (release)…" >&2
cargo build -q --release -p meshauth-control-plane --bin meshauth
cargo build -q --release -p meshauth-tests --bin meshauth-dev
cargo build -q --release -p meshauth-filter --target wasm32-wasip1
bin="$root/target/release"

for port in 8080 10000 9901 10080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is in use; stop what uses it first" >&2
    exit 1
  fi
done

# Secrets made once and kept, so keys and clients survive demo restarts.
[ -s "$demo/master.key" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/master.key")
[ -s "$demo/admin-token" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/admin-token")
admin_token=$(cat "$demo/admin-token")
admin_hash=$(printf '%s' "$admin_token" | sha256sum | cut -d' ' -f1)
# The fleet credential: filters present it on every sync call; the control plane keeps
# only its hash.
[ -s "$demo/sync-credential" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/sync-credential")
sync_hash=$(tr -d '\n' < "$demo/sync-credential" | sha256sum | cut -d' ' -f1)

cat > "$demo/meshauth.toml" <<TOML
listen = "127.0.0.1:8080"
issuer = "http://127.0.0.1:8080"
master_key_file = "$demo/master.key"
admin_token_sha256 = ["$admin_hash"]
sync_credential_sha256 = ["$sync_hash"]
[store]
kind = "embedded"
path = "$demo/data/meshauth.redb"
TOML

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: stopped" >&2
}
trap cleanup EXIT INT TERM

"$bin/meshauth" serve --config "$demo/meshauth.toml" >"$demo/control-plane.log" 2>&1 &
pids+=($!)
"$bin/meshauth-dev" echo --port 10080 >"$demo/upstream.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs http://127.0.0.1:8080/readyz >/dev/null || { echo "demo: control plane did not start:" >&2; cat "$demo/control-plane.log" >&2; exit 1; }

# The filter syncs keys and revocations from the control plane; it pins the control
# plane's distribution key, which signs every snapshot, and sends the fleet credential.
(umask 077; python3 - "$root/envoy/demo-filter.json" "$demo/filter.json" "$demo/sync-credential" <<'PY'
import json, sys, urllib.request
cfg = json.load(open(sys.argv[1]))
key = json.load(urllib.request.urlopen("http://127.0.0.1:8080/sync/v1/distribution-key"))["public_key"]
cfg["sync"] = dict(cfg.get("sync", {}), distribution_key=key, credential=open(sys.argv[3]).read().strip())
json.dump(cfg, open(sys.argv[2], "w"))
PY
)
"$bin/meshauth-dev" envoy-config --template "$root/envoy/meshauth.yaml" --plugin-config "$demo/filter.json" \
  --set ADMIN_PORT=9901 --set LISTEN_PORT=10000 --set UPSTREAM_PORT=10080 --set CP_PORT=8080 \
  --set "WASM_PATH=$root/target/wasm32-wasip1/release/meshauth_filter.wasm" > "$demo/envoy.yaml"
chmod 600 "$demo/envoy.yaml"
"$root/.venv/bin/envoy" -c "$demo/envoy.yaml" --concurrency 2 --disable-hot-restart -l warning \
  --log-path "$demo/envoy.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs http://127.0.0.1:9901/ready >/dev/null || { echo "demo: envoy did not start:" >&2; cat "$demo/envoy.log" >&2; exit 1; }
# Wait for the first snapshot (before it, the filter answers 503).
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:10000/hello)" = 401 ] && break
  sleep 0.1
done

cat > "$demo/env" <<ENV
export MESHAUTH_URL=http://127.0.0.1:8080
export MESHAUTH_ADMIN_TOKEN=$admin_token
export PATH="$bin:\$PATH"
ENV

cat <<MSG

meshauth demo is running (Ctrl-C stops it).
  control plane  http://127.0.0.1:8080   (logs: .demo/control-plane.log)
  envoy + filter http://127.0.0.1:10000  (admin http://127.0.0.1:9901)
  upstream echo  http://127.0.0.1:10080

In another shell:
  source .demo/env
  TOKEN=\$(meshauth token issue --sub alice --scope "read admin")
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:10000/hello     # 200, echoes x-meshauth-sub: alice
  curl -si http://127.0.0.1:10000/hello                                       # 401 missing token
  curl -s http://127.0.0.1:10000/public/info                                  # 200 without a token
MSG
echo "demo: ready" >&2
wait -n "${pids[@]}"
echo "demo: a process exited; see .demo/*.log" >&2
exit 1
