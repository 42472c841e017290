"""The images `make image` builds: small, non-root, nothing but the binary (and a CA bundle).

Done-when of issue 5: `podman image inspect` shows the agent image under 15 MB, user 65532, one binary.
"""

from __future__ import annotations

import io
import pathlib
import json
import os
import subprocess
import tarfile

import pytest

from podman import podman

AGENT_IMAGE = os.environ.get("AGENT_IMAGE", "localhost/keyvault-agent:dev")
EMULATOR_IMAGE = os.environ.get("EMULATOR_IMAGE", "localhost/keyvault-emulator:dev")
DEMO_IMAGE = os.environ.get("DEMO_IMAGE", "localhost/keyvault-demo-app:dev")


def inspect(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]


def files_in(image: str) -> dict[str, tarfile.TarInfo]:
    """Every regular file and symlink of the image's filesystem (export of a created container)."""
    cid = podman("create", image).stdout.strip()
    try:
        tar = subprocess.run(["podman", "export", cid], check=True, capture_output=True).stdout
    finally:
        podman("rm", "-f", cid)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {m.name.lstrip("./"): m for m in t.getmembers() if not m.isdir()}


def test_agent_image_is_small_non_root_and_holds_one_binary():
    info = inspect(AGENT_IMAGE)
    assert info["Size"] < 15 * 1000 * 1000, f"agent image is {info['Size']} bytes"
    assert info["Config"]["User"] == "65532:65532"
    assert info["Config"]["Entrypoint"] == ["/keyvault-agent"]
    files = files_in(AGENT_IMAGE)
    # podman adds empty mount points for /etc/hosts, /etc/resolv.conf, /run/.containerenv.
    added_by_podman = {"etc/hosts", "etc/resolv.conf", "etc/hostname", "run/.containerenv"}
    assert set(files) - added_by_podman == {"keyvault-agent", "etc/ssl/certs/ca-certificates.crt"}
    binary = files["keyvault-agent"]
    assert binary.mode & 0o111, "the binary is executable"
    assert binary.size > 100_000


def test_agent_binary_is_static_and_runs_on_a_read_only_root(tmp_path):
    r = podman("run", "--rm", "--read-only", "--network", "none", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", AGENT_IMAGE, "--version", check=False)
    assert r.returncode == 0, r.stderr
    assert "keyvault-agent" in r.stdout


def test_emulator_and_demo_images_are_non_root():
    for image in (EMULATOR_IMAGE, DEMO_IMAGE):
        info = inspect(image)
        assert info["Config"]["User"] == "65532:65532", image
        assert info["Size"] < 15 * 1000 * 1000, image


def test_demo_app_lists_files_and_counts_reloads(tmp_path):
    secrets = tmp_path / "secrets"
    (secrets / "..2026_01_01_00_00_00.1").mkdir(parents=True)
    (secrets / "..2026_01_01_00_00_00.1" / "a").write_text("hello")
    (secrets / "..data").symlink_to("..2026_01_01_00_00_00.1")
    (secrets / "a").symlink_to("..data/a")
    for p in (tmp_path, secrets, secrets / "..2026_01_01_00_00_00.1"):
        p.chmod(0o755)
    (secrets / "..2026_01_01_00_00_00.1" / "a").chmod(0o644)
    name = f"kv-e2e-demo-{os.getpid()}"
    podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--network", "none",
           "-v", f"{secrets}:/secrets:ro", DEMO_IMAGE)
    try:
        from podman import wait_for

        wait_for("demo-app start listing", lambda: "start: end" in podman("logs", name).stdout)
        podman("kill", "--signal", "HUP", name)
        wait_for("reload marker", lambda: podman("exec", name, "cat", "/tmp/demo-app/reloads", check=False).stdout.startswith("reload 1 "))
        out = podman("logs", name).stdout
        # sha256("hello"); the content itself is never printed.
        assert "a size=5 sha256=2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" in out
        assert "hello" not in out
        assert podman("exec", name, "id", "-u").stdout.strip() == "65532"
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_static_agent_resolves_names_in_a_scratch_image(tmp_path):
    """glibc's getaddrinfo, linked statically, still reads /etc/hosts (and /etc/resolv.conf) in a
    scratch image: its `files` and `dns` sources are built into libc since glibc 2.34.

    A vault name only /etc/hosts knows (`--add-host`) must resolve: the agent then completes TLS
    with the emulator (which has that name on its certificate) and stops at the 401 challenge,
    whose resource (vault.localhost) does not cover the host: proof that resolution and TLS
    worked. resolv.conf points at loopback so that no query can leave the machine.
    """
    from conftest import SEED, Emulator, target_dir, world_readable_dir

    work = world_readable_dir("kv-e2e-dns.")
    emu = Emulator(target_dir() / "debug/keyvault-emulator", work / "state", SEED, ("--hostname", "kv-e2e.test"))
    try:
        port = emu["addr"].rsplit(":", 1)[1]
        (work / "ca.pem").write_bytes(pathlib.Path(emu["ca_file"]).read_bytes())
        (work / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (work / "spc.yaml").write_text(
            f'keyvaultName: demo\nkeyvaultURL: "https://demo.vault.kv-e2e.test:{port}/"\n'
            'clientID: "11111111-1111-1111-1111-111111111111"\ntenantID: "00000000-0000-0000-0000-0000000000aa"\n'
            "objects: |\n  array:\n    - |\n      objectName: db-password\n      objectType: secret\n"
        )
        for f in ("ca.pem", "resolv.conf", "spc.yaml"):
            (work / f).chmod(0o644)
        r = podman(
            "run", "--rm", "--network", "host", "--read-only",
            "--add-host", "demo.vault.kv-e2e.test:127.0.0.1", "--add-host", "kv-e2e.test:127.0.0.1",
            "-v", f"{work / 'resolv.conf'}:/etc/resolv.conf:ro", "-v", f"{work}:/cfg:ro",
            "--tmpfs", "/out:rw,mode=1777",
            "-e", "SSL_CERT_FILE=/cfg/ca.pem", "-e", "AZURE_CLIENT_SECRET=dev-secret",
            "-e", f"AZURE_AUTHORITY_HOST=https://kv-e2e.test:{port}/",
            AGENT_IMAGE, "--config", "/cfg/spc.yaml", "--dir", "/out", "--once", "--timeout", "20s",
            "--request-timeout", "5s", check=False,
        )
        assert r.returncode == 5, r.stderr
        assert "challenge for resource host vault.localhost" in r.stderr, r.stderr
        assert "lookup" not in r.stderr and "resolve" not in r.stderr, r.stderr
    finally:
        emu.stop()
