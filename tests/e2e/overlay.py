"""The e2e overlay: what changes between the shipped manifests and the pods the tests run.

Only three kinds of change, generated as a kustomize overlay on top of a shipped overlay:
- images: the shipped names (`keyvault-agent:0.1.0`, ...) become the locally built
  `localhost/...:dev` images, with `imagePullPolicy: Never` semantics left to podman;
- endpoints: the SecretProviderClass gets `keyvaultURL` (the emulator's vault), the agent gets the
  emulator's CA (`SSL_CERT_FILE`, a hostPath holding only `ca.pem`), the managed-identity agent gets
  `KEYVAULT_AGENT_IMDS_ENDPOINT`, and `--listen` moves from 0.0.0.0:9090 to a free loopback port
  (pods share the host network here);
- what the azure-workload-identity webhook injects into pods labelled
  `azure.workload.identity/use: "true"` (reference: docs/protocol.md §3.6): AZURE_CLIENT_ID
  (from the ServiceAccount annotation), AZURE_TENANT_ID, AZURE_AUTHORITY_HOST,
  AZURE_FEDERATED_TOKEN_FILE and the token volume, here a hostPath with a token minted by
  `keyvault-emulator token` instead of a projected service-account token.
`test_pods.py::test_e2e_overlay_changes_only_images_endpoints_and_injections` checks this list.
"""

from __future__ import annotations

import os
import pathlib

import yaml

from kube import ROOT, agent_containers, all_containers, pod_spec, render, workload

TOKEN_DIR = "/var/run/secrets/azure/tokens"
TOKEN_FILE = f"{TOKEN_DIR}/azure-identity-token"
CA_DIR = "/etc/keyvault-e2e-ca"

AGENT_IMAGE = os.environ.get("AGENT_IMAGE", "localhost/keyvault-agent:dev")
DEMO_IMAGE = os.environ.get("DEMO_IMAGE", "localhost/keyvault-demo-app:dev")


def _split(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    return name, tag


def write_overlay(
    pattern: str,
    work: pathlib.Path,
    *,
    emu: dict,
    token_dir: pathlib.Path,
    ca_dir: pathlib.Path,
    listen_port: int | None = None,
    spc_edit=None,
) -> pathlib.Path:
    """Writes the e2e kustomization for `manifests/overlays/<pattern>` into `work`; returns it.

    `spc_edit(spc: dict) -> None` may change the SecretProviderClass further (negative tests).
    """
    base = render(f"manifests/overlays/{pattern}")
    w = workload(base)
    spec = pod_spec(w)
    prefix = "/spec/template/spec" if w["kind"] == "Deployment" else "/spec"
    labels = (w["spec"]["template"]["metadata"] if w["kind"] == "Deployment" else w["metadata"]).get("labels", {})
    webhook = labels.get("azure.workload.identity/use") == "true"
    cm = next(d for d in base if d["kind"] == "ConfigMap")
    spc = yaml.safe_load(cm["data"]["secretproviderclass.yaml"])
    params = spc["spec"]["parameters"]
    managed_identity = str(params.get("useVMManagedIdentity", "")).lower() == "true"

    webhook_env = []
    if webhook:
        sa = next(d for d in base if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == spec["serviceAccountName"])
        webhook_env = [
            {"name": "AZURE_CLIENT_ID", "value": sa["metadata"]["annotations"]["azure.workload.identity/client-id"]},
            {"name": "AZURE_TENANT_ID", "value": emu["tenant_id"]},
            {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": TOKEN_FILE},
            {"name": "AZURE_AUTHORITY_HOST", "value": emu["authority_host"]},
        ]
    agents = agent_containers(spec)
    ops = []
    for list_name in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(list_name, [])):
            path = f"{prefix}/{list_name}/{i}"
            env = list(webhook_env)
            mounts = []
            if webhook:
                mounts.append({"name": "azure-identity-token", "mountPath": TOKEN_DIR, "readOnly": True})
            if c in agents:
                env.append({"name": "SSL_CERT_FILE", "value": f"{CA_DIR}/ca.pem"})
                mounts.append({"name": "keyvault-e2e-ca", "mountPath": CA_DIR, "readOnly": True})
                if managed_identity:
                    env.append({"name": "KEYVAULT_AGENT_IMDS_ENDPOINT", "value": emu["imds_endpoint"]})
                for j, a in enumerate(c.get("args", [])):
                    if a.startswith("--listen="):
                        assert listen_port, f"{pattern}/{c['name']} listens: give listen_port"
                        ops.append({"op": "replace", "path": f"{path}/args/{j}", "value": f"--listen=127.0.0.1:{listen_port}"})
            for key, items in (("env", env), ("volumeMounts", mounts)):
                if not items:
                    continue
                if key in c:
                    ops += [{"op": "add", "path": f"{path}/{key}/-", "value": v} for v in items]
                else:
                    ops.append({"op": "add", "path": f"{path}/{key}", "value": items})
    volumes = [{"name": "keyvault-e2e-ca", "hostPath": {"path": str(ca_dir), "type": "Directory"}}]
    if webhook:
        volumes.append({"name": "azure-identity-token", "hostPath": {"path": str(token_dir), "type": "Directory"}})
    ops += [{"op": "add", "path": f"{prefix}/volumes/-", "value": v} for v in volumes]

    params["keyvaultURL"] = emu["vault_url"]
    if spc_edit:
        spc_edit(spc)
    work.mkdir(parents=True, exist_ok=True)
    (work / "secretproviderclass.yaml").write_text(yaml.safe_dump(spc, sort_keys=False))
    (work / "webhook-and-endpoints.yaml").write_text(yaml.safe_dump(ops, sort_keys=False))
    agent_name, agent_tag = _split(AGENT_IMAGE)
    demo_name, demo_tag = _split(DEMO_IMAGE)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests/overlays" / pattern, work)],
        "images": [
            {"name": "keyvault-agent", "newName": agent_name, "newTag": agent_tag},
            {"name": "keyvault-demo-app", "newName": demo_name, "newTag": demo_tag},
        ],
        "configMapGenerator": [
            {"name": cm["metadata"]["name"], "behavior": "merge", "files": ["secretproviderclass.yaml"]}
        ],
        "generatorOptions": {"disableNameSuffixHash": True},
        "patches": [{"path": "webhook-and-endpoints.yaml", "target": {"kind": w["kind"], "name": w["metadata"]["name"]}}],
    }
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return work


def all_agent_and_app_containers(docs: list[dict]) -> list[dict]:
    return all_containers(pod_spec(workload(docs)))
