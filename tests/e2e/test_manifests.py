"""Policy checks on every rendered manifest (no cluster, no podman needed).

Schema validation is done by kubernetes-validate in `make validate-manifests`; these tests check
what a schema cannot: the hardening and the shape each pattern promises in the README.
reference: docs/reference-provider.md §3 (identity modes), issue 5 (manifests list).
"""

from __future__ import annotations

import pytest
import yaml

from kube import OVERLAYS, agent_containers, all_containers, pod_spec, render, workload

HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(f"manifests/overlays/{request.param}")


def test_every_overlay_is_tested():
    import pathlib

    on_disk = sorted(p.name for p in (pathlib.Path(__file__).parents[2] / "manifests/overlays").iterdir())
    assert on_disk == sorted(OVERLAYS)


def test_containers_are_hardened(rendered):
    name, docs = rendered
    spec = pod_spec(workload(docs))
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532, name
    assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
    assert spec.get("automountServiceAccountToken") is False, name
    for c in all_containers(spec):
        sc = c["securityContext"]
        for k, v in HARDENED.items():
            assert sc.get(k) == v, f"{name}/{c['name']}: securityContext.{k} should be {v}"
        assert sc["capabilities"]["drop"] == ["ALL"], f"{name}/{c['name']}"
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", f"{name}/{c['name']}"
        req = c["resources"]["requests"]
        assert set(req) == {"cpu", "memory"}, f"{name}/{c['name']}: small requests for cpu and memory"
        assert "memory" in c["resources"]["limits"], f"{name}/{c['name']}"


def test_secrets_volume_is_memory_and_read_only_for_the_app(rendered):
    name, docs = rendered
    spec = pod_spec(workload(docs))
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["secrets"]["emptyDir"]["medium"] == "Memory", name
    for c in all_containers(spec):
        for m in c.get("volumeMounts", []):
            if m["name"] != "secrets":
                continue
            # subPath mounts never see a rotated file.
            assert "subPath" not in m, f"{name}/{c['name']}"
            is_agent = c in agent_containers(spec)
            assert m.get("readOnly", False) is (not is_agent), f"{name}/{c['name']}"


def test_config_map_holds_a_secret_provider_class(rendered):
    name, docs = rendered
    cms = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(cms) == 1, name
    spc = yaml.safe_load(cms[0]["data"]["secretproviderclass.yaml"])
    assert spc["apiVersion"] == "secrets-store.csi.x-k8s.io/v1"
    assert spc["kind"] == "SecretProviderClass"
    assert spc["spec"]["provider"] == "azure"
    objects = yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]
    assert objects, name
    vols = {v["name"]: v for v in pod_spec(workload(docs))["volumes"]}
    assert vols["keyvault-agent-config"]["configMap"]["name"] == cms[0]["metadata"]["name"]


def _args(c):
    return c.get("args", []) + c.get("command", [])


def test_workload_identity_wiring():
    for name in ("workload-identity-init", "native-sidecar", "classic-sidecar", "deployment"):
        docs = render(f"manifests/overlays/{name}")
        sa = next(d for d in docs if d["kind"] == "ServiceAccount")
        assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
        w = workload(docs)
        labels = w["spec"]["template"]["metadata"]["labels"] if w["kind"] == "Deployment" else w["metadata"]["labels"]
        assert labels["azure.workload.identity/use"] == "true", name
        assert pod_spec(w)["serviceAccountName"] == sa["metadata"]["name"], name


def test_init_pattern():
    spec = pod_spec(workload(render("manifests/overlays/workload-identity-init")))
    (agent,) = spec["initContainers"]
    assert "--once" in _args(agent)
    assert "restartPolicy" not in agent


@pytest.mark.parametrize("name", ["native-sidecar", "deployment"])
def test_native_sidecar_pattern(name):
    docs = render(f"manifests/overlays/{name}")
    spec = pod_spec(workload(docs))
    (agent,) = spec["initContainers"]
    assert agent["restartPolicy"] == "Always"
    assert "--once" not in _args(agent)
    assert agent["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    if name == "deployment":
        assert workload(docs)["kind"] == "Deployment"


def test_classic_sidecar_pattern():
    spec = pod_spec(workload(render("manifests/overlays/classic-sidecar")))
    assert spec["shareProcessNamespace"] is True
    sidecar = next(c for c in spec["containers"] if c["name"] == "keyvault-agent")
    args = _args(sidecar)
    assert "--on-change-signal=HUP" in args
    assert "--signal-process=demo-app" in args
    assert all("--once" in _args(c) for c in spec["initContainers"])


def test_managed_identity_pattern():
    docs = render("manifests/overlays/managed-identity")
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    w = workload(docs)
    assert "azure.workload.identity/use" not in w["metadata"].get("labels", {})
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    params = yaml.safe_load(cm["data"]["secretproviderclass.yaml"])["spec"]["parameters"]
    assert params["useVMManagedIdentity"] == "true"
    assert params["userAssignedIdentityID"]
    assert "clientID" not in params
