"""The shipped manifests as real pods (`podman kube play --network host`) against the emulator.

Each test renders a pattern from manifests/overlays with the e2e overlay (overlay.py: images,
endpoints and the workload-identity webhook's injections only), applies the podman 4.3
compatibility rewrite (podman.py) and checks what the operator's manual promises.
reference: docs/protocol.md §3.6 (webhook injection), docs/reference-provider.md §3 and §6.
"""

from __future__ import annotations

import hashlib
import re
import urllib.request

import pytest
import yaml

from conftest import SEED, free_port
from kube import OVERLAYS, agent_containers, all_containers, pod_spec, render, workload
from overlay import write_overlay
from podman import KubePlay, podman_compat, wait_for

pytestmark = pytest.mark.usefixtures("emulator")

SEED_DOC = yaml.safe_load(SEED.read_text())


def latest_secret(name: str, vault: str = "demo") -> bytes:
    v = next(x for x in SEED_DOC["vaults"] if x["name"] == vault)
    s = next(x for x in v.get("secrets", []) if x["name"] == name)
    enabled = [ver for ver in s["versions"] if ver.get("enabled", True)]
    return enabled[-1]["value"].encode()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def listing(logs: str, label: str) -> dict[str, str]:
    """{path: sha256} of the demo app's listing `label` (e.g. "start", "reload 1")."""
    m = re.search(rf"demo-app: {re.escape(label)}: files under .*?\n(.*?)demo-app: {re.escape(label)}: end", logs, re.S)
    assert m, f"no '{label}' listing in:\n{logs}"
    return dict(re.findall(r"demo-app:\s+(\S+) size=\d+ sha256=([0-9a-f]{64})", m.group(1)))


def play(pattern, work, emulator, token_dir, *, listen_port=None, spc_edit=None) -> KubePlay:
    kdir = write_overlay(pattern, work / "overlay", emu=emulator.info, token_dir=token_dir,
                         ca_dir=emulator.ca_dir, listen_port=listen_port, spc_edit=spc_edit)
    return KubePlay(podman_compat(render(kdir)), work / "pod.yaml")


def expected_files(pattern: str) -> set[str]:
    cm = next(d for d in render(f"manifests/overlays/{pattern}") if d["kind"] == "ConfigMap")
    objects = yaml.safe_load(yaml.safe_load(cm["data"]["secretproviderclass.yaml"])["spec"]["parameters"]["objects"])
    return {yaml.safe_load(o).get("objectAlias") or yaml.safe_load(o)["objectName"] for o in objects["array"]}


def rotate(emulator, name: str, value: str) -> None:
    emulator.set_secret("demo", name, value)


def assert_hardened(pod: KubePlay, container: str) -> None:
    info = pod.inspect(container)
    assert info["Config"]["User"] in ("65532", "65532:65532"), info["Config"]["User"]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    pid = info["State"]["Pid"]
    status = open(f"/proc/{pid}/status").read()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    assert set(uids) == {"65532"}, f"{container} runs as {uids}"
    caps = re.search(r"^CapEff:\s+(\S+)$", status, re.M).group(1)
    assert int(caps, 16) == 0, f"{container} has capabilities {caps}"
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), container


def test_e2e_overlay_changes_only_images_endpoints_and_injections(emulator, token_dir, work):
    allowed_env = {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE",
                   "SSL_CERT_FILE", "KEYVAULT_AGENT_IMDS_ENDPOINT"}
    for pattern in OVERLAYS:
        base = render(f"manifests/overlays/{pattern}")
        kdir = write_overlay(pattern, work / pattern, emu=emulator.info, token_dir=token_dir,
                             ca_dir=emulator.ca_dir, listen_port=free_port())
        e2e = render(kdir)

        def normalise(docs, is_e2e):
            out = []
            for d in docs:
                d = yaml.safe_load(yaml.safe_dump(d))
                if d["kind"] == "ConfigMap":
                    spc = yaml.safe_load(d["data"]["secretproviderclass.yaml"])
                    if is_e2e:
                        assert spc["spec"]["parameters"].pop("keyvaultURL") == emulator["vault_url"]
                    d["data"]["secretproviderclass.yaml"] = spc
                if d["kind"] in ("Pod", "Deployment"):
                    spec = pod_spec(d)
                    spec["volumes"] = [v for v in spec["volumes"] if not (is_e2e and v["name"] in ("azure-identity-token", "keyvault-e2e-ca"))]
                    for c in all_containers(spec):
                        c["image"] = c["image"].split("/")[-1].split(":")[0]
                        if is_e2e:
                            c["env"] = [e for e in c.get("env", []) if e["name"] not in allowed_env]
                            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] not in ("azure-identity-token", "keyvault-e2e-ca")]
                            c["args"] = [re.sub(r"^--listen=127\.0\.0\.1:\d+$", "--listen=0.0.0.0:9090", a) for a in c.get("args", [])]
                        c.setdefault("env", [])
                        c.setdefault("args", [])
                out.append(d)
            return out

        assert normalise(e2e, True) == normalise(base, False), pattern


def test_init_pattern_delivers_every_object_before_the_app_starts(emulator, token_dir, work):
    with play("workload-identity-init", work, emulator, token_dir) as pod:
        assert pod.ok, pod.result.stderr
        wait_for("the app's first listing", lambda: "demo-app: start: end" in pod.logs("app"))
        files = listing(pod.logs("app"), "start")
        # The app's very first look at /secrets already has every object: the init container ran
        # to completion before the app was started.
        assert set(files) == expected_files("workload-identity-init")
        assert files["db-password"] == sha(latest_secret("db-password"))
        assert_hardened(pod, "app")
        # Files are readable by the app through the read-only mount; nothing can be written there.
        r = pod.exec("app", "sh", "-c", "touch /secrets/x", check=False)
        assert r.returncode != 0
        r = pod.exec("app", "sh", "-c", "touch /etc/x", check=False)
        assert r.returncode != 0, "root filesystem must be read-only"
        modes = pod.exec("app", "sh", "-c", "stat -L -c '%a %u' /secrets/db-password").stdout.split()
        assert modes == ["644", "65532"]


def test_bad_secret_provider_class_fails_the_init_container_and_the_app_never_starts(emulator, token_dir, work):
    def missing_object(spc):
        objs = yaml.safe_load(spc["spec"]["parameters"]["objects"])
        objs["array"].append(yaml.safe_dump({"objectName": "no-such-secret", "objectType": "secret"}))
        spc["spec"]["parameters"]["objects"] = yaml.safe_dump(objs)

    with play("workload-identity-init", work, emulator, token_dir, spc_edit=missing_object) as pod:
        assert not pod.ok
        init = pod.inspect("keyvault-agent")
        assert init["State"]["ExitCode"] == 5, init["State"]  # Key Vault refused an object
        log = pod.logs("keyvault-agent")
        assert "no-such-secret" in log, log
        assert len([l for l in log.splitlines() if "no-such-secret" in l]) >= 1
        app = pod.inspect("app")
        assert app["State"]["Status"] in ("created", "configured"), app["State"]
        assert not app["State"]["StartedAt"] or app["State"]["StartedAt"].startswith("0001-"), app["State"]


def test_invalid_configuration_is_reported_with_the_object_and_exit_code_3(emulator, token_dir, work):
    def bad_type(spc):
        objs = yaml.safe_load(spc["spec"]["parameters"]["objects"])
        objs["array"].append(yaml.safe_dump({"objectName": "db-password", "objectType": "sekret", "objectAlias": "x"}))
        spc["spec"]["parameters"]["objects"] = yaml.safe_dump(objs)

    with play("workload-identity-init", work, emulator, token_dir, spc_edit=bad_type) as pod:
        assert not pod.ok
        assert pod.inspect("keyvault-agent")["State"]["ExitCode"] == 3
        log = pod.logs("keyvault-agent")
        assert "sekret" in log, log


def test_classic_sidecar_delivers_a_rotated_secret_and_signals_the_app_once(emulator, token_dir, work):
    with play("classic-sidecar", work, emulator, token_dir, listen_port=(port := free_port())) as pod:
        assert pod.ok, pod.result.stderr
        wait_for("the app's first listing", lambda: "demo-app: start: end" in pod.logs("app"))
        before = listing(pod.logs("app"), "start")
        assert set(before) == expected_files("classic-sidecar")
        wait_for("sidecar ready", lambda: http_status(port, "/readyz") == 200)
        assert_hardened(pod, "keyvault-agent")
        assert_hardened(pod, "app")

        new = b"rotated-by-e2e"
        rotate(emulator, "db-password", new.decode())
        # The manifest refreshes every 2m; SIGHUP asks the agent for an immediate refresh.
        pod.kill("keyvault-agent", "HUP")
        wait_for("the app's reload listing", lambda: "demo-app: reload 1: end" in pod.logs("app"), timeout=60)
        after = listing(pod.logs("app"), "reload 1")
        assert after["db-password"] == sha(new)
        assert {k: v for k, v in after.items() if k != "db-password"} == {k: v for k, v in before.items() if k != "db-password"}
        marker = pod.exec("app", "cat", "/tmp/demo-app/reloads").stdout.splitlines()
        assert len(marker) == 1, marker  # one signal for one refresh
        metrics = http_get(port, "/metrics")
        assert "keyvault" in metrics


def test_native_sidecar_pattern_rotates_files_in_place(emulator, token_dir, work):
    with play("native-sidecar", work, emulator, token_dir, listen_port=(port := free_port())) as pod:
        assert pod.ok, pod.result.stderr
        wait_for("sidecar ready (what the startup probe waits for)", lambda: http_status(port, "/readyz") == 200)
        read = lambda: pod.exec("app", "sh", "-c", "sha256sum /secrets/db-password | cut -d' ' -f1").stdout.strip()  # noqa: E731
        wait_for("first sync visible to the app", lambda: read() != "")
        new = b"rotated-again-by-e2e"
        rotate(emulator, "db-password", new.decode())
        pod.kill("keyvault-agent", "HUP")
        wait_for("rotated file visible to the app", lambda: read() == sha(new))
        assert_hardened(pod, "keyvault-agent")


def test_managed_identity_pattern(emulator, token_dir, work):
    with play("managed-identity", work, emulator, token_dir) as pod:
        assert pod.ok, pod.result.stderr
        wait_for("the app's first listing", lambda: "demo-app: start: end" in pod.logs("app"))
        assert set(listing(pod.logs("app"), "start")) == expected_files("managed-identity")


def test_deployment_pattern(emulator, token_dir, work):
    with play("deployment", work, emulator, token_dir, listen_port=(port := free_port())) as pod:
        assert pod.ok, pod.result.stderr
        wait_for("sidecar ready", lambda: http_status(port, "/readyz") == 200)
        wait_for("files visible to the app",
                 lambda: pod.exec("app", "sh", "-c", "ls /secrets", check=False).stdout.split()
                 and set(pod.exec("app", "sh", "-c", "ls /secrets").stdout.split()) == expected_files("deployment"))


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
