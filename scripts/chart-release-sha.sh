#!/usr/bin/env bash
# Release step: records in the chart (k8s/meshauth/values.yaml, filter.releaseSha256) the
# sha256 of the filter module that the image of the chart's appVersion carries, so that
# `helm install` with the default image pins the right module without a --set.
# Run it on the release commit, from which the image is built: the module build is
# reproducible (scripts/build-filter.sh), so this sha256 is the image's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/build-filter.sh -q
sha=$(sha256sum target/wasm32-wasip1/release/meshauth_filter.wasm | cut -d' ' -f1)
values=k8s/meshauth/values.yaml
grep -q '^  releaseSha256: ' "$values" || { echo "chart-release-sha: no filter.releaseSha256 in $values" >&2; exit 1; }
sed -i "s/^  releaseSha256: .*/  releaseSha256: \"$sha\"/" "$values"
echo "chart-release-sha: filter.releaseSha256=$sha for appVersion $(sed -n 's/^appVersion: //p' k8s/meshauth/Chart.yaml)"
