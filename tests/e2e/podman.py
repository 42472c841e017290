"""Running rendered manifests as real pods with `podman kube play --network host`.

Podman 4.3 (Debian 12) runs Pods and Deployments with their initContainers, emptyDirs, ConfigMaps,
hostPath volumes and securityContexts, but it predates native sidecars: an initContainer with
`restartPolicy: Always` is waited for like any init container, so the pod would never start.
`podman_compat` is the only rewrite applied on top of the e2e overlay, and only for that engine
limit: a native sidecar becomes a regular container (the test then waits for its /readyz itself,
which is what the startup probe does in Kubernetes), probes are dropped (podman would run them
through systemd timers, absent here) and Deployments get one replica (pods share the host network).
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import time
from typing import Callable

import yaml

from kube import pod_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "tests/e2e/containers.conf"))

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def podman(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True, timeout=timeout)


def podman_compat(docs: list[dict]) -> list[dict]:
    out = []
    for d in copy.deepcopy(docs):
        if d["kind"] == "Deployment":
            d["spec"]["replicas"] = 1
        if d["kind"] in ("Pod", "Deployment"):
            spec = pod_spec(d)
            spec["restartPolicy"] = "Never"
            natives = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
            spec["initContainers"] = [c for c in spec.get("initContainers", []) if c not in natives]
            if not spec["initContainers"]:
                del spec["initContainers"]
            for c in natives:
                del c["restartPolicy"]
            # A native sidecar starts before the app: keep it first.
            spec["containers"] = natives + spec["containers"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                for p in PROBES:
                    c.pop(p, None)
                c.pop("ports", None)
        out.append(d)
    return out


def wait_for(what: str, cond: Callable[[], object], timeout: float = 60, interval: float = 0.2):
    """Polls `cond` until it returns something truthy; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - reported if the deadline passes
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class KubePlay:
    """`podman kube play --network host` of a list of documents; `podman kube down` on exit."""

    def __init__(self, docs: list[dict], path: pathlib.Path):
        self.docs = docs
        self.path = path
        self.result: subprocess.CompletedProcess | None = None

    def __enter__(self) -> "KubePlay":
        self.path.write_text(yaml.safe_dump_all(self.docs, sort_keys=False))
        # A pod left by an interrupted run would hold the name.
        podman("pod", "rm", "-f", self.pod_name(), check=False)
        self._remove_config_map_volumes()
        self.result = podman("kube", "play", "--network", "host", str(self.path), check=False, timeout=300)
        return self

    def __exit__(self, *exc) -> None:
        podman("kube", "down", str(self.path), check=False)
        self._remove_config_map_volumes()

    def _remove_config_map_volumes(self) -> None:
        # podman keeps a ConfigMap as a named volume after `kube down`; a stale one must not
        # leak into the next pod that uses the same name.
        for d in self.docs:
            if d["kind"] == "ConfigMap":
                podman("volume", "rm", "-f", d["metadata"]["name"], check=False)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.returncode == 0

    def pod_name(self) -> str:
        w = next(d for d in self.docs if d["kind"] in ("Pod", "Deployment"))
        # podman names a Deployment's pods <name>-pod-<index>.
        return w["metadata"]["name"] + ("-pod-0" if w["kind"] == "Deployment" else "")

    def container(self, name: str) -> str:
        return f"{self.pod_name()}-{name}"

    def logs(self, name: str) -> str:
        r = podman("logs", self.container(name), check=False)
        return r.stdout + r.stderr

    def inspect(self, name: str) -> dict:
        return json.loads(podman("inspect", self.container(name)).stdout)[0]

    def exec(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman("exec", self.container(name), *cmd, check=check)

    def kill(self, name: str, signal: str) -> None:
        podman("kill", "--signal", signal, self.container(name))
