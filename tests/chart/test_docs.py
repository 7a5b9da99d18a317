"""The Helm install guides as a new user follows them: every ```bash block of
docs/install-istio.md and k8s/meshauth/README.md, in order, in one shell, in a fresh
directory, with the meshauth binary and the filter module this checkout built. There is no
cluster and no Docker engine here, so some commands stand in for others (see STAND_INS):
`helm install` renders with `helm template` (same arguments) and the result is validated
against the Kubernetes and Istio schemas, `kubectl apply -f` validates the manifest, and
the commands that need a cluster or Docker are recorded, not run. The test then asserts
exactly which were not run: a new one in a guide must be looked at here. A guide whose
values drift from the chart (a renamed value, a wrong key) fails the render."""

import json
import os
import pathlib
import re
import subprocess

import pytest
import yaml

from test_chart import API_VERSIONS, CHART, HELM, ROOT, SHA, WASM, by_kind, roundtrip

MESHAUTH_BIN = pathlib.Path(os.environ.get("MESHAUTH_BIN", ROOT / "target/debug/meshauth"))
VALIDATE = ROOT / ".venv/bin/kubernetes-validate"

# What each guide command becomes here, and why.
STAND_INS = r"""
not_run() { printf '%s\n' "$*" >>"$NOT_RUN"; }
# No Docker engine on the build machines: the image is built and pushed elsewhere.
docker() { not_run docker "$@"; }
# No cluster: `apply -f` validates the manifest against the Kubernetes schemas; the rest
# (create namespace, port-forward, get secret) needs a cluster and is not run.
kubectl() {
  if [ "$1" = apply ] && [ "$2" = -f ]; then
    "$VALIDATE" --strict -k 1.33.0 "$3" >&2 && printf '%s\n' "$3" >>"$APPLIED"
  else
    not_run kubectl "$@"
  fi
}
# `helm install` and `upgrade` render the same arguments with `helm template` (validated
# afterwards); `helm test` needs the release running in a cluster.
helm() {
  case "$1" in
    install|upgrade)
      shift
      local out="$RENDERED/$(ls "$RENDERED" | wc -l).yaml"
      "$HELM" template "$@" --kube-version 1.33.0 $API_VERSION_ARGS >"$out"
      ;;
    *) not_run helm "$@" ;;
  esac
}
# `meshauth init` runs for real; the other subcommands talk to a running control plane.
meshauth() {
  if [ "$1" = init ]; then "$MESHAUTH_BIN" "$@"; else not_run meshauth "$@"; fi
}
"""


def bash_blocks(markdown):
    """The ```bash blocks of a markdown file, indented ones (in list items) included."""
    blocks = []
    for m in re.finditer(r"^( *)```bash\n(.*?)^\1```$", markdown, re.S | re.M):
        indent = len(m.group(1))
        blocks.append("\n".join(line[indent:] for line in m.group(2).splitlines()))
    return blocks


def run_guide(path, tmp_path):
    """Runs the guide's bash blocks; returns (rendered docs per helm install, the manifests
    applied, the commands not run, the working directory)."""
    blocks = bash_blocks(path.read_text())
    assert blocks, f"no bash blocks in {path}"
    work = tmp_path / "work"
    (work / "scripts").mkdir(parents=True)
    # The guide runs from a checkout: the chart, and the module this checkout built.
    (work / "k8s").symlink_to(ROOT / "k8s")
    (work / "target" / "wasm32-wasip1" / "release").mkdir(parents=True)
    (work / "target" / "wasm32-wasip1" / "release" / "meshauth_filter.wasm").symlink_to(WASM)
    # scripts/build-filter.sh is not run: the module is already built (scripts/chart-test.sh
    # builds it the same way), and a rebuild takes minutes.
    stub = work / "scripts" / "build-filter.sh"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "scripts/build-filter.sh $*" >>"$NOT_RUN"\n')
    stub.chmod(0o755)
    rendered, applied, not_run = tmp_path / "rendered", tmp_path / "applied", tmp_path / "not_run"
    rendered.mkdir()
    applied.touch()
    not_run.touch()
    env = dict(
        os.environ,
        HELM=HELM, MESHAUTH_BIN=str(MESHAUTH_BIN), VALIDATE=str(VALIDATE),
        RENDERED=str(rendered), APPLIED=str(applied), NOT_RUN=str(not_run),
        API_VERSION_ARGS=" ".join(f"--api-versions {a}" for a in API_VERSIONS),
    )
    script = "set -euo pipefail\n" + STAND_INS + "\n".join(blocks) + "\n"
    p = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{path.name}: the guide's commands failed\n{p.stdout}\n{p.stderr}"
    docs = [
        [d for d in yaml.safe_load_all(f.read_text()) if d]
        for f in sorted(rendered.iterdir(), key=lambda f: int(f.stem))
    ]
    return docs, applied.read_text().split(), not_run.read_text().splitlines(), work


def validate_render(docs, tmp_path):
    from cloudcoil.models.istio.extensions.v1alpha1 import WasmPlugin

    core = [d for d in docs if "istio.io" not in d["apiVersion"] and "monitoring.coreos.com" not in d["apiVersion"]]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    v = subprocess.run([str(VALIDATE), "--strict", "-k", "1.33.0", str(path)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    for plugin in by_kind(docs, "WasmPlugin"):
        assert roundtrip(WasmPlugin, plugin) == json.loads(json.dumps(plugin))


def test_install_istio_guide_installs_with_one_helm_install(tmp_path):
    docs, applied, not_run, work = run_guide(ROOT / "docs/install-istio.md", tmp_path)
    assert len(docs) == 1, "one helm install, no upgrade"
    (rendered,) = docs
    validate_render(rendered, tmp_path)
    assert applied == ["meshauth-init/secrets.yaml"]
    values = yaml.safe_load((work / "meshauth-init/values.yaml").read_text())
    secrets = list(yaml.safe_load_all((work / "meshauth-init/secrets.yaml").read_text()))
    # Live sync from the first request: the filters pin the key whose private half the
    # control plane mounts from the Secret the guide applied.
    (plugin,) = by_kind(rendered, "WasmPlugin")
    spec = plugin["spec"]
    assert spec["sha256"] == SHA, "the sha256 the guide computed pins the module"
    assert spec["pluginConfig"]["sync"]["distribution_key"] == values["filter"]["distributionKey"]
    assert plugin["metadata"]["namespace"] == "shop" and spec["selector"]["matchLabels"] == {"app": "api"}
    (dep,) = by_kind(rendered, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("registry.example.com/meshauth:")
    (vol,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert vol["secret"]["secretName"] == secrets[0]["metadata"]["name"]
    assert {"key": "distribution-key", "path": "distribution-key"} in vol["secret"]["items"]
    assert "distribution-key" in secrets[0]["stringData"]
    # What could not run here, and nothing else (in any order: the port-forward runs in the
    # background).
    assert sorted(not_run) == sorted([
        "docker build -f k8s/Dockerfile -t registry.example.com/meshauth:0.1.0 .",
        "docker push registry.example.com/meshauth:0.1.0",
        "scripts/build-filter.sh ",
        "kubectl create namespace meshauth",
        "helm test meshauth -n meshauth",
        "kubectl -n meshauth port-forward svc/meshauth 8082:8082",
        "kubectl -n meshauth get secret meshauth-secrets -o jsonpath={.data.admin-token}",
        "meshauth status",
    ]), not_run


def test_install_istio_guide_yaml_blocks_validate():
    """The mesh settings the guide asks for: the EnvoyFilter is a valid Istio object that
    sets what the filter relies on."""
    from cloudcoil.models.istio.networking.v1alpha3 import EnvoyFilter

    text = (ROOT / "docs/install-istio.md").read_text()
    blocks = [yaml.safe_load("\n".join(l[len(m.group(1)):] for l in m.group(2).splitlines()))
              for m in re.finditer(r"^( *)```yaml\n(.*?)^\1```$", text, re.S | re.M)]
    (ef,) = [b for b in blocks if b.get("kind") == "EnvoyFilter"]
    assert roundtrip(EnvoyFilter, ef) == json.loads(json.dumps(ef))
    patch = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
    assert patch["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    (mesh,) = [b for b in blocks if "meshConfig" in b]
    assert mesh["meshConfig"]["pathNormalization"]["normalization"] in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")


def test_chart_readme_install_renders(tmp_path):
    docs, applied, not_run, _ = run_guide(CHART / "README.md", tmp_path)
    assert len(docs) == 1
    (rendered,) = docs
    validate_render(rendered, tmp_path)
    assert applied == ["meshauth-init/secrets.yaml"]
    (plugin,) = by_kind(rendered, "WasmPlugin")
    assert plugin["spec"]["sha256"] == SHA
    assert "sync" in plugin["spec"]["pluginConfig"]
    assert [c.split(" --from-literal")[0] for c in not_run] == [
        "kubectl create namespace meshauth",
        # The GitOps recipe: a Secret made by hand, in the cluster.
        "kubectl -n meshauth create secret generic meshauth-secrets",
    ], not_run


@pytest.mark.parametrize("drift", [
    ("filter.sha256=", "filter.sha265="),
    ("-f meshauth-init/values.yaml", "-f meshauth-init/value.yaml"),
])
def test_a_guide_that_drifts_from_the_chart_fails(tmp_path, drift):
    old, new = drift
    guide = tmp_path / "install-istio.md"
    text = (ROOT / "docs/install-istio.md").read_text()
    assert old in text
    guide.write_text(text.replace(old, new))
    with pytest.raises(AssertionError, match="the guide's commands failed"):
        run_guide(guide, tmp_path)
