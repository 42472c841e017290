"""compose.yaml with podman-compose: emulator + agent (init) + agent (sidecar) + demo app.

Started through scripts/compose.sh (what `make compose-up` runs) with free loopback ports, then:
the app's first listing has every object, a secret rotated in the emulator reaches the app
through the sidecar, and `compose-down` removes everything.
"""

from __future__ import annotations

import json
import os
import pathlib
import ssl
import subprocess
import urllib.request

import pytest
import yaml

from conftest import free_port
from podman import podman, wait_for
from test_pods import listing, sha

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = "keyvault-agent-dev"


def compose(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/compose.sh", *args], cwd=ROOT, env=env, check=check,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def stack(tmp_path):
    port, agent_port = free_port(), free_port()
    spc = yaml.safe_load((ROOT / "examples/compose/secretproviderclass.yaml").read_text())
    spc["spec"]["parameters"]["keyvaultURL"] = f"https://demo.vault.localhost:{port}/"
    spc_file = tmp_path / "spc.yaml"
    spc_file.write_text(yaml.safe_dump(spc))
    spc_file.chmod(0o644)
    tmp_path.chmod(0o755)
    env = dict(os.environ, KV_EMULATOR_PORT=str(port), KV_AGENT_PORT=str(agent_port), KV_SPC=str(spc_file),
               KV_INTERVAL="2s")
    try:
        up = compose("up", env=env, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"port": port, "agent_port": agent_port, "env": env}
    finally:
        down = compose("down", env=env, check=False)
        assert down.returncode == 0, down.stderr
        left = podman("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}").stdout
        assert left.strip() == "", f"containers left after compose-down: {left}"


def app_logs() -> str:
    return podman("logs", f"{PROJECT}_app_1", check=False).stdout


def test_compose_delivers_and_rotates(stack):
    wait_for("the app's first listing", lambda: "demo-app: start: end" in app_logs())
    files = listing(app_logs(), "start")
    assert set(files) == {"db-password", "tls/web.pem", "tls/web.crt", "rsa-key"}
    assert files["db-password"] == sha(b"s3cr3t")

    vol = json.loads(podman("volume", "inspect", f"{PROJECT}_emulator-state").stdout)[0]["Mountpoint"]
    ctx = ssl.create_default_context(cafile=str(pathlib.Path(vol) / "ca.pem"))
    req = urllib.request.Request(f"https://localhost:{stack['port']}/admin/vaults/demo/secrets/db-password",
                                 data=json.dumps({"value": "rotated-in-compose"}).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, context=ctx, timeout=10).read()
    # The sidecar refreshes every 2s here (KV_INTERVAL); the app sees the new ..data and re-lists.
    wait_for("the app's change listing", lambda: "demo-app: change 1: end" in app_logs(), timeout=60)
    assert listing(app_logs(), "change 1")["db-password"] == sha(b"rotated-in-compose")
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['agent_port']}/readyz", timeout=5) as r:
        assert r.status == 200
    info = json.loads(podman("inspect", f"{PROJECT}_agent_1").stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "65532:65532"


def test_compose_file_stays_on_loopback():
    """Every service shares the host network and talks to loopback only: the emulator binds
    127.0.0.1, the agents' Entra endpoint and vault are the emulator's (a missing
    AZURE_AUTHORITY_HOST would send them to login.microsoftonline.com)."""
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"emulator", "agent-init", "agent", "app"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        assert svc["read_only"] is True and svc["user"] == "65532:65532", name
        assert svc["cap_drop"] == ["ALL"], name
    assert any(a.startswith("--addr=127.0.0.1:") for a in services["emulator"]["command"])
    for name in ("agent-init", "agent"):
        env = services[name]["environment"]
        assert env["AZURE_AUTHORITY_HOST"].startswith("https://localhost:"), name
        assert env["KEYVAULT_AGENT_LISTEN"].startswith("127.0.0.1:") if name == "agent" else True
    spc = yaml.safe_load((ROOT / "examples/compose/secretproviderclass.yaml").read_text())
    assert spc["spec"]["parameters"]["keyvaultURL"].startswith("https://demo.vault.localhost:")
