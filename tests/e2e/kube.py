"""Rendering and reading the project's Kubernetes manifests (shared by the e2e tests)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
OVERLAYS = ["workload-identity-init", "native-sidecar", "classic-sidecar", "managed-identity", "deployment"]
AGENT_IMAGE_NAME = "keyvault-agent"


def kustomize_cmd() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return ["kustomize", "build"]


def render(path: str | pathlib.Path) -> list[dict]:
    """Renders a kustomization directory (relative to the repository root, or absolute)."""
    p = pathlib.Path(path)
    if not p.is_absolute():
        p = ROOT / p
    out = subprocess.run([*kustomize_cmd(), str(p)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def workload(docs: list[dict]) -> dict:
    (w,) = [d for d in docs if d["kind"] in ("Pod", "Deployment")]
    return w


def pod_spec(w: dict) -> dict:
    return w["spec"]["template"]["spec"] if w["kind"] == "Deployment" else w["spec"]


def all_containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def agent_containers(spec: dict) -> list[dict]:
    return [c for c in all_containers(spec) if c["image"].split("/")[-1].startswith(AGENT_IMAGE_NAME + ":")]
