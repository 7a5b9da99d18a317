"""Offline tests of the Helm chart: lint, render with several value sets, validate against
the Kubernetes, Istio and prometheus-operator schemas, assert the invariants that matter
(security context, probes, labels, single replica for the embedded store, the WasmPlugin
pinned to the built filter), refuse bad values, scan with checkov, and keep the chart
README in step with the values."""

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# MESHAUTH_CHART: another copy of the chart (e.g. an older one, to see a test fail on it).
CHART = pathlib.Path(os.environ.get("MESHAUTH_CHART", ROOT / "k8s" / "meshauth"))
HELM = os.environ.get("HELM", "helm")
WASM = pathlib.Path(os.environ.get("MESHAUTH_WASM", ROOT / "target/wasm32-wasip1/release/meshauth_filter.wasm"))
SHA = hashlib.sha256(WASM.read_bytes()).hexdigest()
API_VERSIONS = [
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "extensions.istio.io/v1alpha1/WasmPlugin",
]

# `helm template` cannot see a cluster: every set names the existing Secret (GitOps), and
# the Istio sets name the protected namespaces and workloads.
# BASE renders a WasmPlugin without live sync, which the chart refuses unless asked for.
ISTIO = [f"filter.sha256={SHA}", "secrets.existingSecret=meshauth-secrets", "filter.namespaces={shop}", "filter.selector.app=api"]
BASE = [*ISTIO, "filter.bootstrapOnly=true"]
CREDENTIAL = "c" * 40
DIST_KEY = "A" * 43

VALUE_SETS = {
    "defaults": BASE,
    "redis": [
        *BASE,
        "store.kind=redis",
        "store.redis.url=redis://redis.data:6379",
        "store.redis.passwordSecret.name=redis-auth",
        "replicas=3",
        "autoscaling.enabled=true",
    ],
    "sentinel": [
        *BASE,
        "store.kind=redis",
        "store.redis.sentinels={redis-sentinel-0.data:26379,redis-sentinel-1.data:26379,redis-sentinel-2.data:26379}",
        "store.redis.masterName=meshauth",
        "store.redis.replicaAcks=2",
        "store.redis.passwordSecret.name=redis-auth",
        "store.redis.sentinelPasswordSecret.name=sentinel-auth",
        "replicas=3",
    ],
    "istio": [
        *BASE,
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
    ],
    "envoy": ["filter.mode=envoy", f"filter.sha256={SHA}", "secrets.existingSecret=meshauth-secrets"],
    "syncing": [*ISTIO, f"filter.distributionKey={DIST_KEY}", f"syncCredential.value={CREDENTIAL}", "filter.namespaces={shop,billing}"],
}


def helm(*args):
    return subprocess.run([HELM, *args], capture_output=True, text=True)


def template(sets, ok=True):
    args = ["template", "meshauth", str(CHART), "-n", "meshauth", "--kube-version", "1.33.0"]
    for a in API_VERSIONS:
        args += ["--api-versions", a]
    for s in sets:
        args += ["--set", s]
    p = helm(*args)
    if not ok:
        assert p.returncode != 0, f"rendered although it should not: {sets}"
        return p.stderr
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint(name):
    args = ["lint", "--strict", str(CHART)]
    for s in VALUE_SETS[name]:
        args += ["--set", s]
    p = helm(*args)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_core_kinds_validate_against_kubernetes_schemas(name, tmp_path):
    docs = template(VALUE_SETS[name])
    core = [d for d in docs if "monitoring.coreos.com" not in d["apiVersion"] and "istio.io" not in d["apiVersion"]]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(core))
    p = subprocess.run(
        [str(ROOT / ".venv/bin/kubernetes-validate"), "--strict", "-k", "1.33.0", str(path)],
        capture_output=True, text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def meshauth_init(out):
    """Runs the real `meshauth init --kubernetes`; returns (its two Secrets' data, its values)."""
    binary = pathlib.Path(os.environ.get("MESHAUTH_BIN", ROOT / "target/debug/meshauth"))
    p = subprocess.run([str(binary), "init", "--kubernetes", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    secrets = [d["stringData"] for d in yaml.safe_load_all((out / "secrets.yaml").read_text())]
    return secrets, yaml.safe_load((out / "values.yaml").read_text())


def template_with_files(files, sets):
    args = ["template", "meshauth", str(CHART), "-n", "meshauth", "--kube-version", "1.33.0"]
    for f in files:
        args += ["-f", str(f)]
    for a in API_VERSIONS:
        args += ["--api-versions", a]
    for st in sets:
        args += ["--set", st]
    r = helm(*args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def test_meshauth_init_values_render_and_its_secrets_validate(tmp_path):
    """`meshauth init --kubernetes`: its Secret manifest validates, and the chart renders
    with its values file (no --set of a secret), the control plane reading both Secrets."""
    binary = pathlib.Path(os.environ.get("MESHAUTH_BIN", ROOT / "target/debug/meshauth"))
    out = tmp_path / "init"
    secrets_data, _ = meshauth_init(out)
    secrets = list(yaml.safe_load_all((out / "secrets.yaml").read_text()))
    v = subprocess.run(
        [str(ROOT / ".venv/bin/kubernetes-validate"), "--strict", "-k", "1.33.0", str(out / "secrets.yaml")],
        capture_output=True, text=True,
    )
    assert v.returncode == 0, v.stdout + v.stderr
    main, sync = secrets_data
    assert hashlib.sha256(main["admin-token"].encode()).hexdigest() == main["admin-token-sha256"]
    assert hashlib.sha256(sync["sync-credential"].encode()).hexdigest() == sync["sync-credential-sha256"]
    assert len(bytes.fromhex(main["master-key"])) == 32
    # The values carry the fleet credential: as private as the Secrets.
    assert (out / "values.yaml").stat().st_mode & 0o077 == 0
    # A second run never replaces them.
    again = subprocess.run([str(binary), "init", "--kubernetes", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "never replaces" in again.stderr, again.stderr
    assert list(yaml.safe_load_all((out / "secrets.yaml").read_text())) == secrets
    docs = template_with_files([out / "values.yaml"], [f"filter.sha256={SHA}", "filter.namespaces={shop}", "filter.selector.app=api"])
    assert not [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] in ("meshauth-secrets", "meshauth-sync")], "the chart does not re-create them"
    (deploy,) = by_kind(docs, "Deployment")
    refs = json.dumps(deploy)
    assert '"meshauth-secrets"' in refs and '"meshauth-sync"' in refs, refs


def free_ports(n):
    import socket

    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def test_one_install_with_init_values_syncs_from_the_first_request(tmp_path):
    """The values `meshauth init --kubernetes` writes make one `helm install` enough: the
    WasmPlugin pins the distribution key, the control-plane pod mounts its private half
    from the Secret init wrote, and the real control plane, started on the rendered
    configuration with that Secret's files, signs with exactly the key the filters pin."""
    import time
    import urllib.request

    out = tmp_path / "init"
    (main, sync), values = meshauth_init(out)
    key = values["filter"]["distributionKey"]
    assert len(key) == 43
    public, sync_port, admin, metrics = free_ports(4)
    docs = template_with_files([out / "values.yaml"], [
        f"filter.sha256={SHA}", "filter.namespaces={shop}", "filter.selector.app=api",
        f"service.port={public}", f"service.syncPort={sync_port}", f"service.adminPort={admin}", f"service.metricsPort={metrics}"])
    (plugin,) = by_kind(docs, "WasmPlugin")
    assert plugin["spec"]["pluginConfig"]["sync"] == {
        "cluster": f"outbound|{sync_port}||meshauth.meshauth.svc.cluster.local",
        "authority": "meshauth.meshauth.svc.cluster.local",
        "distribution_key": key,
        "credential_env": "MESHAUTH_SYNC_CREDENTIAL",
    }
    assert plugin["spec"]["vmConfig"]["env"] == [{"name": "MESHAUTH_SYNC_CREDENTIAL", "valueFrom": "INLINE", "value": sync["sync-credential"]}]
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert vol["secret"]["secretName"] == "meshauth-secrets"
    assert {"key": "distribution-key", "path": "distribution-key"} in vol["secret"]["items"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "meshauth.toml" in d["data"]]
    toml = cm["data"]["meshauth.toml"]
    assert f'distribution_key_file = "{mounts["secrets"]}/distribution-key"' in toml
    # The Secret's files where the pod would see them, and the real control plane on them.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for item in vol["secret"]["items"]:
        (secrets / item["path"]).write_text(main[item["key"]])
    toml = toml.replace("0.0.0.0:", "127.0.0.1:").replace(mounts["secrets"], str(secrets)).replace(mounts["data"], str(tmp_path))
    toml = toml.replace("/opt/meshauth/meshauth_filter.wasm", str(WASM))
    (tmp_path / "meshauth.toml").write_text(toml)
    binary = pathlib.Path(os.environ.get("MESHAUTH_BIN", ROOT / "target/debug/meshauth"))
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen([str(binary), "serve", "--config", str(tmp_path / "meshauth.toml")],
                                stdout=log, stderr=log, env={"PATH": os.environ["PATH"]})
        try:
            deadline = time.time() + 30
            while True:
                assert proc.poll() is None, (tmp_path / "log").read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{sync_port}/sync/v1/distribution-key", timeout=10) as r:
                        served = json.load(r)["public_key"]
                    break
                except OSError:
                    assert time.time() < deadline, (tmp_path / "log").read_text()
                    time.sleep(0.1)
            assert served == key, "the control plane signs with the key the filters pin"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_a_wasmplugin_without_live_sync_is_refused_unless_asked_for():
    # Without a distribution key every filter refuses tokens of keys not in
    # bootstrap_jwks and never learns a revocation: a first install must not do that by default.
    # However the key is left out: unset, empty, null (helm drops the key), with
    # bootstrapOnly false or null.
    for extra in [[], ["filter.distributionKey="], ["filter.distributionKey=null"],
                  ["filter.bootstrapOnly=false"], ["filter.bootstrapOnly=null"]]:
        err = template([*ISTIO, *extra], ok=False)
        assert "filter.distributionKey is empty" in err and "filter.bootstrapOnly=true" in err, (extra, err)
    # Blanks and look-alikes of true are not a key, nor a bootstrapOnly: the schema refuses them.
    for extra in ["filter.distributionKey= ", "filter.bootstrapOnly=1", "filter.bootstrapOnly=yes"]:
        assert "schema" in template([*ISTIO, extra], ok=False)
    (plugin,) = by_kind(template(BASE), "WasmPlugin")
    assert "sync" not in plugin["spec"]["pluginConfig"]
    assert "contradict" in template([*ISTIO, "filter.bootstrapOnly=true", f"filter.distributionKey={DIST_KEY}", f"syncCredential.value={CREDENTIAL}"], ok=False)
    err = template(["filter.mode=none", "secrets.distributionKey=true"], ok=False)
    assert "secrets.distributionKey=true needs secrets.existingSecret" in err, err
    # mode=none and mode=envoy render no WasmPlugin: no distribution key needed.
    template(["filter.mode=none", "secrets.existingSecret=s"])
    template(VALUE_SETS["envoy"])


def roundtrip(model, doc):
    parsed = model.model_validate(doc)
    return json.loads(json.dumps(parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")))


def test_wasmplugin_validates_against_istio_schema_and_pins_the_built_filter():
    from cloudcoil.models.istio.extensions.v1alpha1 import WasmPlugin

    docs = template(VALUE_SETS["istio"])
    (plugin,) = by_kind(docs, "WasmPlugin")
    # The models ignore unknown fields: a typo shows up as a difference after the round trip.
    assert roundtrip(WasmPlugin, plugin) == json.loads(json.dumps(plugin))
    spec = plugin["spec"]
    assert spec["sha256"] == SHA
    assert spec["url"] == "http://meshauth.meshauth.svc.cluster.local:8081/filter/meshauth.wasm"
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["selector"]["matchLabels"] == {"app": "api"}
    assert spec["pluginConfig"]["issuer"] == "http://meshauth.meshauth.svc.cluster.local:8080"
    assert "sync" not in spec["pluginConfig"], "no distribution key, no sync"
    plugins = by_kind(template(VALUE_SETS["syncing"]), "WasmPlugin")
    for plugin in plugins:
        assert roundtrip(WasmPlugin, plugin) == json.loads(json.dumps(plugin))
        assert plugin["spec"]["pluginConfig"]["sync"] == {
            "cluster": "outbound|8081||meshauth.meshauth.svc.cluster.local",
            "authority": "meshauth.meshauth.svc.cluster.local",
            "distribution_key": DIST_KEY,
            "credential_env": "MESHAUTH_SYNC_CREDENTIAL",
        }


def test_monitoring_resources_validate():
    from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

    docs = template(VALUE_SETS["istio"])
    (sm,) = by_kind(docs, "ServiceMonitor")
    (rule,) = by_kind(docs, "PrometheusRule")
    assert roundtrip(ServiceMonitor, sm) == json.loads(json.dumps(sm))
    assert roundtrip(PrometheusRule, rule) == json.loads(json.dumps(rule))
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "MeshauthControlPlaneDown", "MeshauthDenialsHigh", "MeshauthKeyRotationOverdue",
        "MeshauthKeyScheduleFailing", "MeshauthFilterStale", "MeshauthFilterLagging",
        "MeshauthKeyActivatedPastLaggingFilters", "MeshauthFederatedIssuerUnreachable",
    }
    assert "1.5 * 86400" in alerts["MeshauthKeyRotationOverdue"]
    assert "meshauth_federation_circuit_open{" in alerts["MeshauthFederatedIssuerUnreachable"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_are_hardened(name):
    docs = template(VALUE_SETS[name])
    pods = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in by_kind(docs, "Deployment")]
    assert pods
    for name_, spec in pods:
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name_
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"] and c["resources"]["requests"]
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_resource_is_labelled(name):
    for d in template(VALUE_SETS[name]):
        labels = d["metadata"].get("labels", {})
        for k in ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"]:
            assert k in labels, f"{d['kind']} {d['metadata']['name']} lacks {k}"


def test_embedded_store_is_one_replica():
    docs = template(VALUE_SETS["defaults"])
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    assert by_kind(docs, "PersistentVolumeClaim")
    err = template(VALUE_SETS["defaults"] + ["replicas=2"], ok=False)
    assert "store.kind=embedded keeps its data in one file" in err
    err = template(VALUE_SETS["defaults"] + ["autoscaling.enabled=true"], ok=False)
    assert "autoscaling needs store.kind=redis" in err


def test_redis_store_takes_its_password_from_a_secret():
    docs = template(VALUE_SETS["redis"])
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    # Spliced into the URL, a password with `@ / # %` broke it: it goes on its own, and
    # the control plane escapes it (config.rs redis_password_from_env_joins_a_url_escaped).
    assert env["MESHAUTH_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
    assert env["MESHAUTH_REDIS_URL"]["value"] == "redis://redis.data:6379"
    assert "REDIS_PASSWORD" not in env
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    assert by_kind(docs, "HorizontalPodAutoscaler")
    assert not by_kind(docs, "PersistentVolumeClaim")
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_redis_sentinel_settings():
    docs = template(VALUE_SETS["sentinel"])
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MESHAUTH_REDIS_SENTINELS"]["value"] == (
        "redis-sentinel-0.data:26379,redis-sentinel-1.data:26379,redis-sentinel-2.data:26379"
    )
    assert env["MESHAUTH_REDIS_MASTER_NAME"]["value"] == "meshauth"
    assert env["MESHAUTH_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
    assert env["MESHAUTH_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "sentinel-auth"
    assert "MESHAUTH_REDIS_URL" not in env
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "meshauth.toml" in d["data"]]
    toml = cm["data"]["meshauth.toml"]
    assert 'kind = "redis"' in toml and "replica_acks = 2" in toml and 'namespace = "meshauth"' in toml
    # Passwords never reach the ConfigMap; url and sentinels together are refused.
    assert "redis-auth" not in toml
    err = template(VALUE_SETS["sentinel"] + ["store.redis.url=redis://r:6379"], ok=False)
    assert "not both" in err
    err = template([f"filter.sha256={SHA}", "store.kind=redis"], ok=False)
    assert "needs store.redis.url or store.redis.sentinels" in err


def test_secrets_stay_out_of_configmaps():
    docs = template(VALUE_SETS["syncing"])
    (secret,) = by_kind(docs, "Secret")
    assert secret["metadata"]["name"] == "meshauth-sync"
    assert base64.b64decode(secret["data"]["sync-credential"]).decode() == CREDENTIAL
    assert base64.b64decode(secret["data"]["sync-credential-sha256"]).decode() == hashlib.sha256(CREDENTIAL.encode()).hexdigest()
    for cm in by_kind(docs, "ConfigMap"):
        assert CREDENTIAL not in json.dumps(cm)
    # With an existing Secret the chart makes none.
    docs = template(VALUE_SETS["defaults"] + ["secrets.existingSecret=mine"])
    assert not by_kind(docs, "Secret")
    (dep,) = by_kind(docs, "Deployment")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["secrets"]["secret"]["secretName"] == "mine"


def test_generated_master_key_is_refused_where_the_cluster_cannot_be_read():
    # The attack on GitOps: `helm template` (Argo CD, Flux post-render, CI) has no
    # cluster, so `lookup` is empty and the old chart made a new master key on every
    # render; the control plane then refuses to start (or the old key is lost).
    sets = [s for s in VALUE_SETS["defaults"] if not s.startswith("secrets.existingSecret")]
    err = template(sets, ok=False)
    assert "cannot read the cluster" in err and "secrets.existingSecret" in err, err


def test_plain_envoy_snippet():
    docs = template(VALUE_SETS["envoy"])
    assert not by_kind(docs, "WasmPlugin")
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("envoy-snippet")]
    (flt,) = yaml.safe_load(cm["data"]["http_filter.yaml"])
    remote = flt["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert remote["sha256"] == SHA
    assert remote["http_uri"]["cluster"] == "meshauth_control_plane"
    cfg = json.loads(flt["typed_config"]["config"]["configuration"]["value"])
    assert cfg["default_route"] == {"auth": "token"}
    (cluster,) = yaml.safe_load(cm["data"]["cluster.yaml"])
    assert cluster["name"] == "meshauth_control_plane"
    # The filter's calls go to the sync port.
    addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert addr["port_value"] == 8081
    assert remote["http_uri"]["uri"] == "http://meshauth.meshauth.svc.cluster.local:8081/filter/meshauth.wasm"


def test_plain_envoy_snippet_hardens_the_connection_manager():
    # Without these, /a/..%2Fadmin, //admin, %2F-encoded and x_user-style variants reach
    # the filter's path rules and header checks in a spelling they do not expect.
    docs = template(VALUE_SETS["envoy"])
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("envoy-snippet")]
    hcm = yaml.safe_load(cm["data"]["http_connection_manager.yaml"])
    assert hcm["normalize_path"] is True
    assert hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "UNESCAPE_AND_REDIRECT"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"


def test_module_reference_needs_a_sha256_in_every_mode():
    # `sha256: ""` in the Envoy snippet is refused by Envoy at load time, far from the cause.
    # (A released chart carries filter.releaseSha256: emptied here, as on an unreleased one.)
    err = template(["filter.mode=envoy", "secrets.existingSecret=s", "filter.releaseSha256="], ok=False)
    assert "filter.mode=envoy needs filter.sha256" in err, err
    err = template([s for s in VALUE_SETS["defaults"] if not s.startswith("filter.sha256")] + ["filter.releaseSha256="], ok=False)
    assert "filter.mode=istio needs filter.sha256" in err, err
    # mode=none references no module.
    template(["filter.mode=none", "secrets.existingSecret=s"])


@pytest.mark.parametrize(
    "bad, why",
    [
        ("replicas=0", "/replicas"),
        ("store.kind=mongo", "/store/kind"),
        ("filter.sha256=xyz", "/filter/sha256"),
        ("filter.releaseSha256=xyz", "/filter/releaseSha256"),
        ("filter.failStrategy=MAYBE", "/filter/failStrategy"),
        ("tokens.accessTtl=ten", "/tokens/accessTtl"),
        ("bogus=1", "bogus"),
        ("store.redis.url=redis://user:pw@host:6379", "/store/redis/url"),
        ("store.redis.sentinels={sentinel-0}", "/store/redis/sentinels"),
        ("store.redis.replicaAcks=-1", "/store/redis/replicaAcks"),
        ("filter.distributionKey=short", "/filter/distributionKey"),
        ("networkPolicy.extraIngressFrom[0].namespaceSelector.x=y", "extraIngressFrom"),
        ("service.syncPort=0", "/service/syncPort"),
        ("filter.namespaces={Bad_Namespace}", "/filter/namespaces"),
        ("networkPolicy.metrics.namespaces={Bad_Namespace}", "/networkPolicy/metrics/namespaces"),
        ("syncCredential.fromProxyEnv=maybe", "/syncCredential/fromProxyEnv"),
    ],
)
def test_schema_refuses_bad_values(bad, why):
    err = template(VALUE_SETS["defaults"] + [bad], ok=False)
    assert why in err, err


def envoy_snippet_sha256(docs):
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("envoy-snippet")]
    (flt,) = yaml.safe_load(cm["data"]["http_filter.yaml"])
    return flt["typed_config"]["config"]["vm_config"]["code"]["remote"]["sha256"]


def test_release_sha256_pins_the_release_image_and_no_other():
    release = "b" * 64
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    envoy = [s for s in VALUE_SETS["envoy"] if not s.startswith("filter.sha256")] + [f"filter.releaseSha256={release}"]
    istio = [s for s in VALUE_SETS["defaults"] if not s.startswith("filter.sha256")] + [f"filter.releaseSha256={release}"]
    # The chart's own image (no tag, or its appVersion): the release's sha256, every mode.
    for tag in ["", app_version]:
        assert envoy_snippet_sha256(template(envoy + [f"image.tag={tag}"])) == release
        (plugin,) = by_kind(template(istio + [f"image.tag={tag}"]), "WasmPlugin")
        assert plugin["spec"]["sha256"] == release
    # Another image carries another module: the chart does not know its sha256.
    for sets in (envoy, istio):
        err = template(sets + ["image.tag=9.9.9"], ok=False)
        assert 'image.tag "9.9.9" is not the chart\'s release' in err and "needs filter.sha256" in err, err
    # filter.sha256 pins whatever the image.
    assert envoy_snippet_sha256(template(VALUE_SETS["envoy"] + [f"filter.releaseSha256={release}", "image.tag=9.9.9"])) == SHA
    assert envoy_snippet_sha256(template(VALUE_SETS["envoy"] + [f"filter.releaseSha256={release}"])) == SHA


def test_istio_mode_needs_the_filter_sha256():
    err = template(["secrets.existingSecret=s", "filter.releaseSha256="], ok=False)
    assert "filter.mode=istio needs filter.sha256" in err


def leaf_paths(schema, prefix=""):
    for key, node in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if node.get("properties"):
            yield from leaf_paths(node, path + ".")
        else:
            yield path


def test_readme_values_and_schema_agree():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")}
    paths = set(leaf_paths(schema))
    for p in paths:
        node = values
        for part in p.split("."):
            assert part in node, f"{p} is in the schema but has no default in values.yaml"
            node = node[part]
    assert paths == documented, f"README lacks {paths - documented}, or documents unknown {documented - paths}"


def test_checkov_finds_nothing_serious(tmp_path):
    env = dict(os.environ, PATH=f"{pathlib.Path(HELM).parent}:{os.environ['PATH']}")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "filter": {"sha256": SHA, "namespaces": ["shop"], "selector": {"app": "api"}, "bootstrapOnly": True},
        "secrets": {"existingSecret": "meshauth-secrets"},
    }))
    p = subprocess.run(
        [os.environ.get("CHECKOV", str(ROOT / ".tools/checkov/bin/checkov")), "-d", str(CHART), "--framework", "helm", "--skip-download",
         "--quiet", "--compact", "-o", "json", "--var-file", str(values)],
        capture_output=True, text=True, env=env,
    )
    report = json.loads(p.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 50, f"checkov scanned almost nothing: {p.stderr[-2000:]}"
    # Accepted findings, each with its reason; (check, resource substring).
    accepted = {
        ("CKV_K8S_43", ""): "image by tag, not digest: the digest is known only when the image is published",
        ("CKV_K8S_15", ""): "pull policy IfNotPresent: tags are immutable releases",
        ("CKV_K8S_21", ""): "checkov renders into `default`; the namespace is the installer's choice (-n)",
        ("CKV_K8S_8", "meshauth-test"): "the helm test pod runs one curl and exits: no probes",
        ("CKV_K8S_9", "meshauth-test"): "the helm test pod runs one curl and exits: no probes",
        ("CKV2_K8S_6", "meshauth-test"): "the helm test pod only connects out, to the control plane",
    }
    serious = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in failed
        if not any(c["check_id"] == cid and sub in c["resource"] for cid, sub in accepted)
    ]
    assert not serious, "\n".join(serious)


def rules_by_port(policy):
    """{port name: [peers]} of an ingress NetworkPolicy; a rule without ports is "*"."""
    out = {}
    for rule in policy["spec"].get("ingress") or []:
        for port in rule.get("ports") or [{"port": "*"}]:
            out.setdefault(port["port"], []).extend(rule.get("from") or [{}])
    return out


def selects_all(selector):
    return not (selector or {}).get("matchLabels") and not (selector or {}).get("matchExpressions")


def admits_everyone(peer):
    ip = peer.get("ipBlock")
    if ip:
        return ip.get("cidr") in ("0.0.0.0/0", "::/0")
    if "namespaceSelector" in peer:
        # Every namespace: whoever can label a pod anywhere matches a podSelector.
        return selects_all(peer["namespaceSelector"])
    return selects_all(peer.get("podSelector"))


@pytest.mark.parametrize("name", ["defaults", "istio", "syncing", "envoy", "redis"])
def test_network_policy_gives_each_port_its_own_audience(name):
    # The attack: any pod in the cluster reached the one port that served /admin, /sync
    # and /metrics (namespaceSelector: {}). Now each has its port, and its own peers.
    docs = template(VALUE_SETS[name])
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "sync": 8081, "admin": 8082, "metrics": 9090}
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "meshauth.toml" in d["data"]]
    toml = cm["data"]["meshauth.toml"]
    for line in ['listen = "0.0.0.0:8080"', 'sync_listen = "0.0.0.0:8081"', 'admin_listen = "0.0.0.0:8082"', 'metrics_listen = "0.0.0.0:9090"']:
        assert line in toml
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = rules_by_port(policy)
    assert "*" not in rules, "a rule without ports opens every port"
    assert "admin" not in rules, "no admin peers by default: only kubectl port-forward"
    for port in ("sync", "metrics"):
        for peer in rules.get(port, []):
            assert not admits_everyone(peer), f"{port}: {peer}"
    assert rules["metrics"] == [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]}}]
    if name == "envoy":
        assert "sync" not in rules, "no filter namespaces named: nobody reaches the sync port"
    else:
        namespaces = ["shop", "billing"] if name == "syncing" else ["shop"]
        assert rules["sync"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}, "podSelector": {"matchLabels": {"app": "api"}}}
            for ns in namespaces
        ]
    (svc,) = by_kind(docs, "Service")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8080, "sync": 8081, "admin": 8082, "metrics": 9090}
    for sm in by_kind(docs, "ServiceMonitor"):
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]


def test_ports_must_differ():
    # One port for two audiences would put both behind the same NetworkPolicy rule.
    err = template(VALUE_SETS["defaults"] + ["service.adminPort=8080"], ok=False)
    assert "must differ" in err, err


def test_network_policy_allow_lists_and_refuses_open_peers():
    admins = '[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ops"}},"podSelector":{"matchLabels":{"app":"meshauth-cli"}}}]'
    p = helm("template", "meshauth", str(CHART), "-n", "meshauth", *sum((["--set", s] for s in VALUE_SETS["defaults"]), []),
             "--set-json", f"networkPolicy.admin.from={admins}")
    assert p.returncode == 0, p.stderr
    (policy,) = by_kind([d for d in yaml.safe_load_all(p.stdout) if d], "NetworkPolicy")
    assert rules_by_port(policy)["admin"] == json.loads(admins)
    for value, why in [
        ('networkPolicy.admin.from=[{"namespaceSelector":{}}]', "admits every namespace"),
        ('networkPolicy.sync.extraFrom=[{"namespaceSelector":{}}]', "admits every namespace"),
        ('networkPolicy.admin.from=[{"namespaceSelector":{"matchLabels":{}},"podSelector":{"matchLabels":{"app":"cli"}}}]', "admits every namespace"),
        ('networkPolicy.admin.from=[{"namespaceSelector":{"matchExpressions":[]}}]', "admits every namespace"),
        ('networkPolicy.admin.from=[{"ipBlock":{"cidr":"0.0.0.0/0"}}]', "admits too many addresses"),
        ('networkPolicy.admin.from=[{"podSelector":{}}]', "admits every pod"),
        ('networkPolicy.sync.extraFrom=[{"podSelector":{"matchLabels":{}}}]', "admits every pod"),
    ]:
        p = helm("template", "meshauth", str(CHART), "-n", "meshauth", *sum((["--set", s] for s in VALUE_SETS["defaults"]), []),
                 "--set-json", value)
        assert p.returncode != 0 and why in p.stderr, (value, p.stderr)


def test_network_policy_refuses_peers_that_are_open_in_effect():
    # The check is semantic, not a string match: address ranges broader than /8 (IPv4) or
    # /32 (IPv6), IPv4 written as IPv6, and selectors that name nothing are refused.
    def render(value):
        return helm("template", "meshauth", str(CHART), "-n", "meshauth",
                    *sum((["--set", s] for s in VALUE_SETS["defaults"]), []), "--set-json", value)

    def peer(field, p):
        return f"networkPolicy.{field}={json.dumps([p])}"

    ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}
    bad = [
        ({"ipBlock": {"cidr": "0.0.0.0/1"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "128.0.0.0/1", "except": ["10.0.0.0/8"]}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "10.0.0.0/7"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "::/0"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "0::0/0"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "8000::/1"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "2001:db8::/31"}}, "admits too many addresses"),
        ({"ipBlock": {"cidr": "::ffff:0:0/96"}}, "IPv4 written as IPv6"),
        ({"ipBlock": {"cidr": "::FFFF:0.0.0.0/97"}}, "IPv4 written as IPv6"),
        ({"ipBlock": {"cidr": "0:0:0:0:0:ffff:0:0/96"}}, "IPv4 written as IPv6"),
        ({"ipBlock": {"cidr": "64:ff9b::/96"}}, "IPv4 written as IPv6"),
        ({"ipBlock": {"cidr": "10.0.0.0"}}, "not an address range"),
        ({"ipBlock": {"cidr": "10.0.0.0/x"}}, "not an address range"),
        ({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}}, "admits every namespace"),
        ({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}}, "admits every namespace"),
        ({"namespaceSelector": {"matchExpressions": [{"key": "quarantine", "operator": "DoesNotExist"}]}}, "admits every namespace"),
        ({"namespaceSelector": {"matchLabels": {}, "matchExpressions": []}}, "admits every namespace"),
        ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}, "admits every pod"),
        ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}}, "admits every pod"),
        ({**ns, "podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}, "ipBlock with a selector"),
    ]
    for field in ["admin.from", "sync.extraFrom"]:
        for p, why in bad:
            r = render(peer(field, p))
            assert r.returncode != 0 and why in r.stderr, (field, p, r.stderr)
    good = [
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
        {"ipBlock": {"cidr": "192.168.10.0/24"}},
        {"ipBlock": {"cidr": "2001:db8::/32"}},
        {"ipBlock": {"cidr": "fd00:1:2:3::/64"}},
        {"ipBlock": {"cidr": "::ffff:10.1.0.0/112"}},
        ns,
        {**ns, "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["cli"]}]}},
        {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ops"]},
                                                    {"key": "tier", "operator": "Exists"}]}},
        {"podSelector": {"matchLabels": {"app": "cli"}, "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}},
    ]
    for p in good:
        r = render(peer("admin.from", p))
        assert r.returncode == 0, (p, r.stderr)
        (policy,) = by_kind([d for d in yaml.safe_load_all(r.stdout) if d], "NetworkPolicy")
        assert rules_by_port(policy)["admin"] == [p]


def test_network_policy_refuses_ranges_that_are_open_together():
    # Each range may pass on its own while the list admits everything: 256 IPv4 /8s, or
    # the same as IPv4-mapped /104s, cover every IPv4 address. A list may hold at most
    # one /8 worth of IPv4 addresses and one /32 worth of IPv6 ones.
    def render(field, cidrs):
        peers = json.dumps([{"ipBlock": {"cidr": c}} for c in cidrs])
        return helm("template", "meshauth", str(CHART), "-n", "meshauth",
                    *sum((["--set", s] for s in VALUE_SETS["defaults"]), []),
                    "--set-json", f"networkPolicy.{field}={peers}")

    bad = [
        [f"{i}.0.0.0/8" for i in range(256)],
        ["10.0.0.0/8", "11.0.0.0/8"],
        ["10.0.0.0/8", "192.168.1.0/24"],
        [f"::ffff:{i}.0.0.0/104" for i in range(256)],
        ["10.0.0.0/8", "::ffff:11.0.0.0/104"],
        ["2001:db8::/32", "2001:db9::/32"],
        ["2001:db8::/32", "fd00::/64"],
    ]
    for field in ["admin.from", "sync.extraFrom"]:
        for cidrs in bad:
            r = render(field, cidrs)
            assert r.returncode != 0 and "together admit" in r.stderr, (field, cidrs[:3], r.stderr[-300:])
    for cidrs in [["10.0.0.0/9", "10.128.0.0/9"], ["192.168.1.0/24", "192.168.2.0/24", "2001:db8::/33", "2001:db8:8000::/33"],
                  ["fd00::/64"] * 3, ["10.0.0.0/8", "2001:db8::/32"]]:
        r = render("admin.from", cidrs)
        assert r.returncode == 0, (cidrs, r.stderr)


def test_wasmplugin_cannot_lock_out_the_control_plane():
    from cloudcoil.models.istio.extensions.v1alpha1 import WasmPlugin

    docs = template(VALUE_SETS["syncing"])
    plugins = by_kind(docs, "WasmPlugin")
    # One per protected namespace: a selector matches only pods of its own namespace.
    assert sorted(p["metadata"]["namespace"] for p in plugins) == ["billing", "shop"]
    for plugin in plugins:
        assert roundtrip(WasmPlugin, plugin) == json.loads(json.dumps(plugin))
        spec = plugin["spec"]
        # Inbound only: not on the workloads' own calls to the token or sync endpoints.
        assert spec["match"] == [{"mode": "SERVER"}]
        assert spec["selector"]["matchLabels"] == {"app": "api"}
    # The control plane never gets a sidecar, so no WasmPlugin can attach to it.
    (dep,) = by_kind(docs, "Deployment")
    meta = dep["spec"]["template"]["metadata"]
    assert meta["labels"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    # An empty selector (every workload of the namespace), or one that matches the
    # control plane's labels, is refused.
    no_selector = [s for s in VALUE_SETS["defaults"] if not s.startswith("filter.selector")]
    assert "filter.selector is empty" in template(no_selector, ok=False)
    for sel in ["filter.selector.app\\.kubernetes\\.io/name=meshauth", "filter.selector.app\\.kubernetes\\.io/part-of=meshauth"]:
        err = template(no_selector + [sel, "filter.namespaces={meshauth}"], ok=False)
        assert "matches the control plane's own labels" in err, err
    # No protected namespaces named: nothing to render into.
    no_ns = [s for s in VALUE_SETS["defaults"] if not s.startswith("filter.namespaces")]
    assert "needs filter.namespaces" in template(no_ns, ok=False)
    # A Gateway through targetRefs needs no selector.
    docs = template(no_selector + ["filter.targetRefs[0].kind=Gateway", "filter.targetRefs[0].name=edge", "filter.targetRefs[0].group=gateway.networking.k8s.io"])
    (plugin,) = by_kind(docs, "WasmPlugin")
    assert "selector" not in plugin["spec"] and plugin["spec"]["match"] == [{"mode": "SERVER"}]


def test_sync_credential_reaches_the_control_plane_and_the_filters():
    # Without a fleet credential any pod could long-poll /sync and read every revocation
    # and key; with sync on, the chart must wire one to both ends or refuse.
    docs = template(VALUE_SETS["syncing"])
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MESHAUTH_SYNC_CREDENTIAL_SHA256"]["valueFrom"]["secretKeyRef"] == {"name": "meshauth-sync", "key": "sync-credential-sha256"}
    for plugin in by_kind(docs, "WasmPlugin"):
        assert plugin["spec"]["vmConfig"]["env"] == [{"name": "MESHAUTH_SYNC_CREDENTIAL", "valueFrom": "INLINE", "value": CREDENTIAL}]
    # From the proxies' environment instead, with the hash from an existing Secret.
    sets = [s for s in VALUE_SETS["syncing"] if not s.startswith("syncCredential")] + [
        "syncCredential.existingSecret=fleet", "syncCredential.fromProxyEnv=true"]
    docs = template(sets)
    assert not by_kind(docs, "Secret")
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MESHAUTH_SYNC_CREDENTIAL_SHA256"]["valueFrom"]["secretKeyRef"]["name"] == "fleet"
    for plugin in by_kind(docs, "WasmPlugin"):
        assert plugin["spec"]["vmConfig"]["env"] == [{"name": "MESHAUTH_SYNC_CREDENTIAL", "valueFrom": "HOST"}]
        assert CREDENTIAL not in json.dumps(plugin)
    # Plain Envoy: the credential comes from Envoy's environment, never the ConfigMap.
    docs = template(VALUE_SETS["envoy"] + [f"filter.distributionKey={DIST_KEY}", f"syncCredential.value={CREDENTIAL}"])
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("envoy-snippet")]
    (flt,) = yaml.safe_load(cm["data"]["http_filter.yaml"])
    vm = flt["typed_config"]["config"]["vm_config"]
    assert vm["environment_variables"] == {"host_env_keys": ["MESHAUTH_SYNC_CREDENTIAL"]}
    cfg = json.loads(flt["typed_config"]["config"]["configuration"]["value"])
    assert cfg["sync"]["credential_env"] == "MESHAUTH_SYNC_CREDENTIAL"
    assert CREDENTIAL not in json.dumps(cm)
    # Sync on without a credential, or a short one: refused.
    no_cred = [s for s in VALUE_SETS["syncing"] if not s.startswith("syncCredential")]
    assert "no sync credential" in template(no_cred, ok=False)
    assert "get no credential" in template(no_cred + ["syncCredential.existingSecret=fleet"], ok=False)
    assert "32 or more" in template(no_cred + ["syncCredential.value=short"], ok=False)


def test_image_build_context_and_bases_are_pinned():
    # The build context was the whole repository: .demo (an admin token, a master key),
    # .git, target/, .venv went into it. The .dockerignore admits only the sources.
    ignore = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ignore[0] == "*", "deny by default"
    admitted = [l[1:] for l in ignore if l.startswith("!")]
    for secret in [".demo", ".git", "target", ".venv", ".tools", ".bench", "k8s"]:
        assert not any(a == secret or a.startswith(secret + "/") for a in admitted), secret
    for needed in ["Cargo.toml", "Cargo.lock", "control-plane", "filter", "wire", "tests"]:
        assert needed in admitted, needed
    # Every base image is pinned by digest, or says which digest to pin.
    lines = (ROOT / "k8s" / "Dockerfile").read_text().splitlines()
    froms = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
    assert froms
    for i in froms:
        image = lines[i].split()[1]
        pinned = "@sha256:" in image
        noted = lines[i - 1].startswith("# digest: ")
        assert pinned or noted, f"unpinned base image: {lines[i]}"


def test_rendered_config_runs_the_real_control_plane_with_its_ports_apart(tmp_path):
    """The chart's meshauth.toml, loaded by the real binary (its file keys are checked
    strictly): each route group answers on its own port and nowhere else."""
    import socket
    import time
    import urllib.error
    import urllib.request

    binary = pathlib.Path(os.environ.get("MESHAUTH_BIN", ROOT / "target/debug/meshauth"))
    assert binary.exists(), f"build it: cargo build -p meshauth-control-plane ({binary})"
    ports = []
    for _ in range(4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    public, sync, admin, metrics = ports
    docs = template(VALUE_SETS["defaults"] + [f"service.port={public}", f"service.syncPort={sync}",
                                              f"service.adminPort={admin}", f"service.metricsPort={metrics}"])
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "meshauth.toml" in d["data"]]
    (dep,) = by_kind(docs, "Deployment")
    mounts = {m["name"]: m["mountPath"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    toml = cm["data"]["meshauth.toml"].replace("0.0.0.0:", "127.0.0.1:")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    token = "t" * 48
    (secrets / "master-key").write_text("ab" * 32)
    (secrets / "admin-token-sha256").write_text(hashlib.sha256(token.encode()).hexdigest())
    toml = toml.replace(mounts["secrets"], str(secrets)).replace(mounts["data"], str(tmp_path))
    toml = toml.replace("/opt/meshauth/meshauth_filter.wasm", str(WASM))
    (tmp_path / "meshauth.toml").write_text(toml)
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([str(binary), "serve", "--config", str(tmp_path / "meshauth.toml")],
                            stdout=log, stderr=log, env={"PATH": os.environ["PATH"]})

    def status(port, path, auth=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if auth:
            req.add_header("Authorization", f"Bearer {auth}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            try:
                if status(public, "/readyz") == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.1)
        assert status(public, "/admin/status", token) == 404
        assert status(admin, "/admin/status", token) == 200
        assert status(public, "/metrics") == 404
        assert status(metrics, "/metrics") == 200
        assert status(public, "/filter/meshauth.wasm.sha256") == 404
        assert status(sync, "/sync/v1/distribution-key") != 404
        assert status(sync, "/admin/status", token) == 404
        assert status(public, "/.well-known/jwks.json") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_plain_envoy_snippet_is_accepted_by_envoy(tmp_path):
    """The three snippets, put together as the install guide says, pass the real Envoy's
    validation (`sha256: ""`, a mistyped hardening field or environment block would not)."""
    envoy = pathlib.Path(os.environ.get("ENVOY_BIN", ROOT / ".venv/bin/envoy"))
    assert envoy.exists(), f"scripts/setup.sh installs Envoy ({envoy})"
    docs = template(VALUE_SETS["envoy"] + [f"filter.distributionKey={DIST_KEY}", f"syncCredential.value={CREDENTIAL}"])
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("envoy-snippet")]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
        "http_filters": yaml.safe_load(cm["data"]["http_filter.yaml"]) + [
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        **yaml.safe_load(cm["data"]["http_connection_manager.yaml"]),
    }
    bootstrap = {"static_resources": {
        "listeners": [{"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
        "clusters": yaml.safe_load(cm["data"]["cluster.yaml"]),
    }}
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    p = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "OK" in p.stdout + p.stderr, p.stdout + p.stderr
