"""compose.yaml end to end with ENGINE=podman (podman-compose) or ENGINE=docker (Compose v2).

`make compose-test ENGINE=...` (tests/e2e/compose-test.sh) runs this module; `make test` runs it
with both engines. Started through scripts/compose.sh (what `make compose-up` runs) with free
loopback ports, then: the app started after its secrets were in place (its very first listing
has every object), a secret rotated through the emulator's admin API reaches the app through the
sidecar, the sidecar's /readyz and /status answer, and `compose-down` removes everything.

reference: issue 12 item 3 (Docker as a first-class engine; the app never starts before its
secrets are in place, under either engine).
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
from podman import wait_for
from test_pods import listing, sha

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = "keyvault-agent-dev"
ENGINE = os.environ.get("ENGINE", "podman")


def engine(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([ENGINE, *args], check=check, capture_output=True, text=True, timeout=180)


def compose(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/compose.sh", *args], cwd=ROOT, env=env, check=check,
                          capture_output=True, text=True, timeout=300)


def project_containers() -> list[str]:
    out = engine("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}")
    return [n for n in out.stdout.split() if n]


def container(service: str) -> str:
    """The container of `service`: compose v2 names it p-s-1, podman-compose and 1.29 p_s_1."""
    out = engine("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}",
                 "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}").stdout.split()
    assert out, f"no container for service {service}: {project_containers()}"
    return out[0]


@pytest.fixture
def stack(tmp_path):
    port, agent_port = free_port(), free_port()
    spc = yaml.safe_load((ROOT / "examples/compose/secretproviderclass.yaml").read_text())
    spc["spec"]["parameters"]["keyvaultURL"] = f"https://demo.vault.localhost:{port}/"
    spc_file = tmp_path / "spc.yaml"
    spc_file.write_text(yaml.safe_dump(spc))
    spc_file.chmod(0o644)
    tmp_path.chmod(0o755)
    env = dict(os.environ, ENGINE=ENGINE, KV_EMULATOR_PORT=str(port), KV_AGENT_PORT=str(agent_port),
               KV_SPC=str(spc_file), KV_INTERVAL="2s")
    # From a clean state: nothing of an interrupted earlier run.
    compose("down", env=env, check=False)
    assert project_containers() == [], "containers left by an earlier run"
    try:
        up = compose("up", env=env, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"port": port, "agent_port": agent_port, "env": env}
    finally:
        down = compose("down", env=env, check=False)
        assert down.returncode == 0, down.stderr
        left = project_containers()
        assert left == [], f"containers left after compose-down: {left}"
        volumes = engine("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert not [v for v in volumes if v.startswith(f"{PROJECT}_")], volumes


def app_logs() -> str:
    return engine("logs", container("app"), check=False).stdout


def test_compose_delivers_and_rotates(stack):
    # The app's first listing: it started once the sidecar was healthy, so every object is there
    # (under Docker, an init container's tmpfs would be gone by now: the old failure mode).
    wait_for("the app's first listing", lambda: "demo-app: start: end" in app_logs())
    files = listing(app_logs(), "start")
    assert set(files) == {"db-password", "tls/web.pem", "tls/web.crt", "rsa-key"}
    assert files["db-password"] == sha(b"s3cr3t")

    vol = json.loads(engine("volume", "inspect", f"{PROJECT}_emulator-state").stdout)[0]["Mountpoint"]
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
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['agent_port']}/status", timeout=5) as r:
        status = r.read().decode()
    assert "db-password" in status and "rotated-in-compose" not in status
    info = json.loads(engine("inspect", container("agent")).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "65532:65532"
    assert info["State"]["Health"]["Status"] == "healthy"


def test_compose_file_stays_on_loopback():
    """Every service shares the host network and talks to loopback only: the emulator binds
    127.0.0.1, the agent's Entra endpoint and vault are the emulator's (a missing
    AZURE_AUTHORITY_HOST would send it to login.microsoftonline.com)."""
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"emulator", "agent", "app"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        assert svc["read_only"] is True and svc["user"] == "65532:65532", name
        assert svc["cap_drop"] == ["ALL"], name
    assert any(a.startswith("--addr=127.0.0.1:") for a in services["emulator"]["command"])
    env = services["agent"]["environment"]
    assert env["AZURE_AUTHORITY_HOST"].startswith("https://localhost:")
    assert env["KEYVAULT_AGENT_LISTEN"].startswith("127.0.0.1:")
    spc = yaml.safe_load((ROOT / "examples/compose/secretproviderclass.yaml").read_text())
    assert spc["spec"]["parameters"]["keyvaultURL"].startswith("https://demo.vault.localhost:")


def test_compose_file_works_with_every_compose():
    """reference: issue 12 item 3. Debian's docker-compose 1.29 rejects a top-level `name:`;
    the app is gated on the sidecar's health (no init service whose tmpfs Docker would unmount
    when it exits), and the health check needs nothing but the agent binary."""
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert "name" not in doc and "version" not in doc
    assert doc["services"]["app"]["depends_on"] == {"agent": {"condition": "service_healthy"}}
    assert doc["services"]["agent"]["healthcheck"]["test"] == ["CMD", "/keyvault-agent", "probe"]
