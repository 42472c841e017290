"""Fixtures that run Microsoft's official Azure SDK for Python against a fresh keyvault-emulator.

One emulator process serves the whole session (`keyvault-emulator serve --addr 127.0.0.1:0`,
temp state dir, `tests/sdk/seed.yaml`). Everything the SDK needs to talk to it is plain
configuration a real user could apply, not a patch of SDK behaviour:

* `*.localhost` names resolve to loopback (RFC 6761 §6.3): `socket.getaddrinfo` is wrapped for
  the session, because the system resolver here does not implement that rule.
* TLS trusts the emulator's CA through `connection_verify=<ca_file>` on every client and
  credential (the stock transport keeps verifying certificates and host names).
* Entra: `authority=<authority_host>` plus `disable_instance_discovery=True` on the MSAL-backed
  `ClientSecretCredential` (MSAL would otherwise ask login.microsoftonline.com whether the
  authority is known; that switch is the documented one for private clouds / Azure Stack).
* IMDS: `AZURE_POD_IDENTITY_AUTHORITY_HOST=<imds_endpoint>`; both azure-identity
  (`_credentials/imds.py::_get_request`) and MSAL (`managed_identity.py::_obtain_token_on_azure_vm`)
  read it at request time in place of `http://169.254.169.254`.
* Key Vault challenge-resource verification stays ON (the SDK default).
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import jwt
import pytest
import requests
from azure.identity import ClientSecretCredential, ManagedIdentityCredential, WorkloadIdentityCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from identities import (
    OTHER_VAULT,
    SP_CLIENT_ID,
    SP_CLIENT_SECRET,
    TENANT_ID,
    USER_ASSIGNED_CLIENT_ID,
    VAULT,
    WORKLOAD_CLIENT_ID,
    WORKLOAD_SUBJECT,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEED = HERE / "seed.yaml"
READY_TIMEOUT_S = 120.0

CREDENTIAL_KINDS = ("workload_identity", "client_secret", "managed_identity")

_stderr_path: Path | None = None


def emulator_binary() -> Path:
    override = os.environ.get("KEYVAULT_EMULATOR_BIN")
    if override:
        return Path(override)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "keyvault-emulator"


def _stderr_tail(lines: int = 60) -> str:
    if _stderr_path is None or not _stderr_path.exists():
        return "(no emulator stderr captured)"
    text = _stderr_path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


# --- *.localhost -> loopback (RFC 6761) -------------------------------------------------------

_real_getaddrinfo = socket.getaddrinfo


def _is_localhost_name(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _loopback_getaddrinfo(host, port, *args, **kwargs):
    if _is_localhost_name(host):
        # The emulator listens on 127.0.0.1 only; never fall through to DNS or to ::1.
        host = "127.0.0.1"
    return _real_getaddrinfo(host, port, *args, **kwargs)


# --- the emulator process ---------------------------------------------------------------------


@dataclass
class Emulator:
    """What `keyvault-emulator serve` printed on its ready line, plus the paths we gave it."""

    info: dict
    state_dir: Path
    work_dir: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def vault_url(self) -> str:
        return self.info["vault_urls"][VAULT]

    @property
    def other_vault_url(self) -> str:
        return self.info["vault_urls"][OTHER_VAULT]

    def vault(self, name: str) -> str:
        return self.info["vault_urls"][name]

    @property
    def authority_host(self) -> str:
        return self.info["authority_host"]

    @property
    def imds_endpoint(self) -> str:
        return self.info["imds_endpoint"]

    @property
    def issuer(self) -> str:
        return self.info["issuer"]

    @property
    def ca_file(self) -> str:
        return self.info["ca_file"]

    @property
    def tenant_id(self) -> str:
        return self.info.get("tenant_id", TENANT_ID)

    def mint_token(self, sub: str, aud: str | None = None, ttl: str | None = None) -> Path:
        """`keyvault-emulator token`: a projected service-account JWT, as the kubelet writes it."""
        out = self.work_dir / f"sa-token-{uuid.uuid4().hex[:8]}"
        cmd = [
            str(emulator_binary()),
            "token",
            "--sub",
            sub,
            "--state-dir",
            str(self.state_dir),
            "--issuer",
            self.issuer,
            "--out",
            str(out),
        ]
        if aud is not None:
            cmd += ["--aud", aud]
        if ttl is not None:
            cmd += ["--ttl", ttl]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"keyvault-emulator token failed ({done.returncode}): {done.stderr.strip()}")
        return out

    def mint_expired_token(self, sub: str) -> Path:
        """A token signed by the issuer's real key whose `exp` is an hour in the past.

        The CLI mints live tokens only, so take one, find the issuer's private key in the state
        dir (the one whose public half the JWKS publishes under the token's `kid`) and re-sign
        the same claims with past times. Only the validity window differs from a good token.
        """
        good = self.mint_token(sub).read_text().strip()
        header = jwt.get_unverified_header(good)
        claims = jwt.decode(good, options={"verify_signature": False})
        jwks = requests.get(self.jwks_uri(), verify=self.ca_file, timeout=10).json()
        jwk = next(k for k in jwks["keys"] if k.get("kid") == header.get("kid"))
        key = _private_key_for_jwk(self.state_dir, jwk)
        now = int(time.time())
        claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
        token = jwt.encode(claims, key, algorithm=header["alg"], headers={"kid": header["kid"]})
        out = self.work_dir / f"sa-token-expired-{uuid.uuid4().hex[:8]}"
        out.write_text(token)
        return out

    def admin(self, method: str, path: str, body: dict | None = None):
        """The emulator's loopback-only admin API (faults, counters)."""
        resp = requests.request(
            method, self.info["admin_url"].rstrip("/") + path, json=body, verify=self.ca_file, timeout=10
        )
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def jwks_uri(self) -> str:
        discovery = requests.get(
            self.issuer.rstrip("/") + "/.well-known/openid-configuration", verify=self.ca_file, timeout=10
        )
        discovery.raise_for_status()
        return discovery.json()["jwks_uri"]

    def challenge(self) -> dict:
        """The 401 challenge parameters of the vault (what the SDK's challenge policy parses)."""
        resp = requests.get(
            self.vault_url.rstrip("/") + "/secrets/challenge-probe?api-version=7.6", verify=self.ca_file, timeout=10
        )
        assert resp.status_code == 401, resp.text
        header = resp.headers["WWW-Authenticate"]
        assert header.startswith("Bearer "), header
        params = {}
        for part in header[len("Bearer ") :].split(","):
            name, _, value = part.strip().partition("=")
            params[name.strip()] = value.strip().strip('"')
        return params

    def scope(self) -> str:
        return self.challenge()["resource"].rstrip("/") + "/.default"


def _b64url_uint(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _private_key_for_jwk(state_dir: Path, jwk: dict):
    for path in sorted(state_dir.rglob("*")):
        if not path.is_file() or path.stat().st_size > 64 * 1024:
            continue
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        if isinstance(key, rsa.RSAPrivateKey) and jwk.get("kty") == "RSA":
            pub = key.public_key().public_numbers()
            if pub.n == _b64url_uint(jwk["n"]) and pub.e == _b64url_uint(jwk["e"]):
                return key
        if isinstance(key, ec.EllipticCurvePrivateKey) and jwk.get("kty") == "EC":
            pub = key.public_key().public_numbers()
            if pub.x == _b64url_uint(jwk["x"]) and pub.y == _b64url_uint(jwk["y"]):
                return key
    raise LookupError(f"no private key in {state_dir} matches the issuer JWK {jwk.get('kid')!r}")


def _read_ready_line(proc: subprocess.Popen, timeout: float) -> str:
    """Read the single JSON line the emulator prints once listening, or fail with its stderr."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"emulator printed no ready line within {timeout:.0f}s")
            if not selector.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"emulator exited before its ready line (exit code {proc.wait(5)})")
            buf += chunk
    finally:
        selector.close()
    return buf.split(b"\n", 1)[0].decode()


def _drain(stream) -> None:
    # Keep the pipe from filling if the emulator ever writes more to stdout.
    for _ in iter(lambda: stream.read(4096), b""):
        pass


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    global _stderr_path
    binary = emulator_binary()
    if not binary.exists():
        pytest.exit(f"{binary} is missing: build it with `cargo build -p keyvault-emulator --locked`", returncode=2)

    state_dir = tmp_path_factory.mktemp("emulator-state")
    work_dir = tmp_path_factory.mktemp("sdk-work")
    _stderr_path = work_dir / "emulator.stderr"
    stderr = open(_stderr_path, "wb")
    proc = subprocess.Popen(
        [
            str(binary),
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--state-dir",
            str(state_dir),
            "--seed",
            str(SEED),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "NO_COLOR": "1"},  # plain log text for the failure summary
    )
    try:
        try:
            info = json.loads(_read_ready_line(proc, READY_TIMEOUT_S))
        except Exception as err:
            pytest.exit(f"keyvault-emulator serve did not start: {err}\n--- stderr tail ---\n{_stderr_tail()}", 3)
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()

        socket.getaddrinfo = _loopback_getaddrinfo
        saved_env = {k: os.environ.get(k) for k in ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "NO_PROXY", "no_proxy")}
        os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = info["imds_endpoint"]
        # A proxy configured on the machine must never see loopback traffic.
        for var in ("NO_PROXY", "no_proxy"):
            extra = "localhost,.localhost,127.0.0.1"
            os.environ[var] = f"{os.environ[var]},{extra}" if os.environ.get(var) else extra
        try:
            yield Emulator(info=info, state_dir=state_dir, work_dir=work_dir, process=proc)
        finally:
            socket.getaddrinfo = _real_getaddrinfo
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        stderr.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if exitstatus != 0 and _stderr_path is not None:
        terminalreporter.write_sep("-", "keyvault-emulator stderr (tail)")
        terminalreporter.write_line(_stderr_tail())


# --- credentials and clients ------------------------------------------------------------------


@dataclass
class Azure:
    """Builds credentials and SDK clients wired to the emulator the way a user would."""

    emu: Emulator

    def workload_identity(self, client_id: str = WORKLOAD_CLIENT_ID, token_file: Path | None = None):
        token_file = token_file or self.emu.mint_token(WORKLOAD_SUBJECT)
        return WorkloadIdentityCredential(
            tenant_id=self.emu.tenant_id,
            client_id=client_id,
            token_file_path=str(token_file),
            authority=self.emu.authority_host,
            connection_verify=self.emu.ca_file,
        )

    def client_secret(self, client_id: str = SP_CLIENT_ID, secret: str = SP_CLIENT_SECRET):
        return ClientSecretCredential(
            self.emu.tenant_id,
            client_id,
            secret,
            authority=self.emu.authority_host,
            disable_instance_discovery=True,
            connection_verify=self.emu.ca_file,
        )

    def managed_identity(self, client_id: str | None = USER_ASSIGNED_CLIENT_ID):
        # IMDS is plain HTTP (as on Azure); AZURE_POD_IDENTITY_AUTHORITY_HOST points it here.
        if client_id is None:
            return ManagedIdentityCredential()
        return ManagedIdentityCredential(client_id=client_id)

    def credential(self, kind: str):
        return {
            "workload_identity": self.workload_identity,
            "client_secret": self.client_secret,
            "managed_identity": self.managed_identity,
        }[kind]()

    def secrets(self, credential, vault_url: str | None = None) -> SecretClient:
        return SecretClient(vault_url or self.emu.vault_url, credential, connection_verify=self.emu.ca_file)

    def keys(self, credential, vault_url: str | None = None) -> KeyClient:
        return KeyClient(vault_url or self.emu.vault_url, credential, connection_verify=self.emu.ca_file)

    def certificates(self, credential, vault_url: str | None = None) -> CertificateClient:
        return CertificateClient(vault_url or self.emu.vault_url, credential, connection_verify=self.emu.ca_file)


@pytest.fixture(scope="session")
def azure(emulator: Emulator) -> Azure:
    return Azure(emulator)


@pytest.fixture(scope="session", params=CREDENTIAL_KINDS)
def credential(request, azure: Azure):
    """Each test using it runs once per credential type: workload identity, client secret, IMDS."""
    return azure.credential(request.param)


@pytest.fixture(scope="session")
def wi_credential(azure: Azure):
    return azure.workload_identity()


@pytest.fixture(scope="session")
def secret_client(azure: Azure, wi_credential) -> SecretClient:
    return azure.secrets(wi_credential)


@pytest.fixture(scope="session")
def key_client(azure: Azure) -> KeyClient:
    return azure.keys(azure.client_secret())


@pytest.fixture(scope="session")
def certificate_client(azure: Azure) -> CertificateClient:
    return azure.certificates(azure.managed_identity())


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Object names that never collide across tests sharing the one emulator."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


class PageRecorder:
    """`raw_response_hook` that records every page a pager fetched (URL and nextLink)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.next_links: list[str | None] = []

    def __call__(self, response) -> None:
        if response.http_response.status_code != 200:
            return  # e.g. the 401 challenge round trip before the first authorized page
        self.urls.append(response.http_request.url)
        body = json.loads(response.http_response.text())
        self.next_links.append(body.get("nextLink"))


@pytest.fixture
def pages() -> PageRecorder:
    return PageRecorder()
