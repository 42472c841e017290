"""Fixtures for the end-to-end suite: the emulator on loopback, work directories, free ports.

The emulator runs as a host process (debug build, `keyvault-emulator serve --addr 127.0.0.1:0`);
pods reach it through `podman kube play --network host`. Nothing listens beyond loopback.
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pytest

from kube import ROOT

SEED = ROOT / "emulator/examples/seed.yaml"
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    # RFC 6761: *.localhost is loopback. glibc does not map subdomains, so do it here, as the
    # agent's own resolver does (EMULATOR-CONTRACT "Names and hosts").
    if isinstance(host, str) and (host == "localhost" or host.endswith(".localhost")):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo


def target_dir() -> pathlib.Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return pathlib.Path(os.environ["CARGO_TARGET_DIR"])
    return ROOT / "target"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_readable_dir(prefix: str) -> pathlib.Path:
    """A temp dir the containers' user 65532 can read (pytest's tmp_path is 0700 root)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


class Emulator:
    def __init__(self, binary: pathlib.Path, state: pathlib.Path, seed: pathlib.Path, extra: tuple[str, ...] = ()):
        self.binary = binary
        self.state = state
        self.log = open(state.parent / "emulator.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--addr", "127.0.0.1:0", "--state-dir", str(state), "--seed", str(seed), *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"emulator printed no ready line; log: {(state.parent / 'emulator.log').read_text()}")
        self.info = json.loads(line)
        self.ssl = ssl.create_default_context(cafile=self.info["ca_file"])
        # A directory holding only the CA certificate, for the pods' hostPath (not the CA key).
        self.ca_dir = world_readable_dir("kv-e2e-ca.")
        shutil.copy(self.info["ca_file"], self.ca_dir / "ca.pem")
        (self.ca_dir / "ca.pem").chmod(0o644)

    def __getitem__(self, key: str):
        return self.info[key]

    def mint_token(self, sub: str, out_dir: pathlib.Path, name: str = "azure-identity-token") -> pathlib.Path:
        out = out_dir / name
        subprocess.run(
            [str(self.binary), "token", "--sub", sub, "--aud", "api://AzureADTokenExchange", "--ttl", "1h",
             "--state-dir", str(self.state), "--issuer", self.info["issuer"], "--out", str(out)],
            check=True, capture_output=True, text=True,
        )
        out.chmod(0o644)
        return out

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        url = self.info["admin_url"].rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else {}

    def set_secret(self, vault: str, name: str, value: str) -> str:
        """Adds a new version of a secret through the admin API; returns the version id."""
        return self.admin("PUT", f"/vaults/{vault}/secrets/{name}", {"value": value}).get("version", "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def emulator():
    binary = target_dir() / "debug/keyvault-emulator"
    assert binary.exists(), f"{binary} missing: run `cargo build -p keyvault-emulator` (tests/e2e/run.sh does)"
    work = world_readable_dir("kv-e2e-emu.")
    emu = Emulator(binary, work / "state", SEED)
    yield emu
    emu.stop()


@pytest.fixture
def token_dir(emulator):
    d = world_readable_dir("kv-e2e-token.")
    emulator.mint_token("system:serviceaccount:default:app", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def work(tmp_path):
    return tmp_path
