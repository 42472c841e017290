#!/usr/bin/env python3
"""Peak resident memory of the agent at scale (issue 10 item 6; run by bench/run.sh).

Starts the emulator (`serve`, throttling off: this measures the agent, not the vault's
budget) with a vault of N secrets (default 5,000), and runs the release agent against one
SecretProviderClass naming all of them:

- `--once`: the agent's peak RSS over the whole run (GNU time's %M; see GNU_TIME below);
- sidecar: VmHWM after the first sync, then after a few more refreshes, one of which is a
  full sweep (`--full-sweep-every 3`, so every object is fetched again while the previous
  set is cached) and one of which follows a rotation of 1% of the secrets.

Each mode runs with the allocator defaults the shipped image uses (no MALLOC_* variable is
set in Containerfile or manifests) and with MALLOC_ARENA_MAX=2 for comparison. Target:
peak <= 25 MiB with the defaults. Only the standard library is used; everything listens
on 127.0.0.1 with port 0.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl

import common
from common import clean_up, status_kib, wait_for

TARGET_KIB = 25 * 1024
CLIENT_ID = "11111111-1111-1111-1111-111111111111"
CLIENT_SECRET = "bench-secret"
CREATED = 1700000000


def value(i: int) -> str:
    # About the size of a generated password or connection string.
    return f"value-{i:05d}-{'x' * 48}"


def seed_yaml(n: int) -> str:
    lines = ["vaults:", "  - name: demo", "    secrets:"]
    for i in range(n):
        lines.append(f"      - name: s{i}")
        lines.append(f'        versions: [{{ value: "{value(i)}", created: {CREATED} }}]')
    lines += [
        "identities:",
        "  - name: bench",
        f"    client_id: {CLIENT_ID}",
        f"    client_secret: {CLIENT_SECRET}",
        "    access: all",
    ]
    return "\n".join(lines) + "\n"








class Emulator:
    def __init__(self, binary: str, work: str, n: int):
        self.work = work
        seed = os.path.join(work, "seed.yaml")
        with open(seed, "w") as f:
            f.write(seed_yaml(n))
        self.log = open(os.path.join(work, "emulator.log"), "w")
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--seed",
                seed,
                "--state-dir",
                os.path.join(work, "state"),
                "--throttle",
                "off",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator did not start; see {work}/emulator.log")
        self.info = json.loads(line)

    def rotate(self, names):
        """New versions through the admin API (the emulator's own test seam)."""
        ctx = ssl.create_default_context(cafile=self.info["ca_file"])
        for name in names:
            req = urllib.request.Request(
                f"{self.info['admin_url'].rstrip('/')}/vaults/demo/secrets/{name}",
                data=json.dumps({"value": f"rotated-{name}"}).encode(),
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                r.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def agent_env(emu: Emulator, extra: dict) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_TENANT_ID": emu.info["tenant_id"],
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AZURE_AUTHORITY_HOST": emu.info["authority_host"],
        "KEYVAULT_AGENT_LOG": "info",
    }
    env.update(extra)
    return env


def reap(proc) -> tuple:
    """(exit code, ru_maxrss in KiB) of a finished child."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


# ru_maxrss of a child started from Python is not the child's own peak: Linux records the
# high-water mark of the address space the child had before exec, which for a (v)forked
# Python is Python's (~20 MiB here; an agent syncing 50 objects "peaked" at 21.4 MiB that
# way while its own VmHWM was 9.5 MiB). GNU time forks from a ~2 MiB process, so its %M is
# the agent's peak (Debian package `time`).
GNU_TIME = "/usr/bin/time"


def run_once(agent: str, emu: Emulator, work: str, extra: dict, timeout: float) -> dict:
    out = tempfile.mkdtemp(prefix="out-", dir=work)
    spc = os.path.join(work, "spc.yaml")
    log_path = os.path.join(work, "once.log")
    started = time.monotonic()
    peak_path = os.path.join(work, "once.maxrss")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [GNU_TIME, "-o", peak_path, "-f", "%M",
             agent, "--once", "--config", spc, "--dir", out, "--ca-file", emu.info["ca_file"],
             "--timeout", f"{int(timeout)}s"],
            env=agent_env(emu, extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        code, _ = reap(proc)
    with open(peak_path) as f:
        peak = int(f.read().split()[-1])
    elapsed = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"--once exited {code}; see {log_path}")
    files = len(json.load(open(os.path.join(out, "..status.json")))["objects"])
    shutil.rmtree(out, ignore_errors=True)
    return {"peak_kib": peak, "seconds": elapsed, "files": files}


def run_sidecar(agent: str, emu: Emulator, work: str, extra: dict, n: int, refreshes: int,
                timeout: float) -> dict:
    out = tempfile.mkdtemp(prefix="out-", dir=work)
    spc = os.path.join(work, "spc.yaml")
    log_path = os.path.join(work, "sidecar.log")
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [agent, "--config", spc, "--dir", out, "--ca-file", emu.info["ca_file"],
         # Refreshes follow each other closely; the third is a full sweep.
         "--interval", "1s", "--jitter", "0", "--full-sweep-every", "3",
         "--timeout", f"{int(timeout)}s", "--listen", "off"],
        env=agent_env(emu, extra),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        def count(what):
            with open(log_path) as f:
                return len(re.findall(what, f.read()))

        wait_for(lambda: count("first sync published") >= 1, timeout, "the first sync", proc)
        first = status_kib(proc.pid, "VmHWM")
        for k in range(1, refreshes + 1):
            if k == 2:
                # A rotation of 1% of the objects before the second refresh.
                emu.rotate([f"s{i}" for i in range(0, n, 100)])
            wait_for(lambda: count("refresh done") >= k, timeout, f"refresh {k}", proc)
        hwm = status_kib(proc.pid, "VmHWM")
        rss = status_kib(proc.pid, "VmRSS")
        proc.send_signal(signal.SIGTERM)
        code, _ = reap(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        log.close()
    if code != 0:
        raise RuntimeError(f"the sidecar exited {code} on SIGTERM; see {log_path}")
    rotated = open(os.path.join(out, "s0")).read()
    if rotated != "rotated-s0":
        raise RuntimeError("the rotation was not published")
    shutil.rmtree(out, ignore_errors=True)
    # VmHWM read from /proc before SIGTERM: the agent's own peak (see GNU_TIME for why not
    # ru_maxrss); nothing after the last refresh allocates more.
    return {"first_kib": first, "peak_kib": hwm, "rss_kib": rss}


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main() -> int:
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"rss.py: {GNU_TIME} (GNU time) is needed to measure the --once peak: apt-get install time")
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--refreshes", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120.0, help="per sync, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kv-rss-")
    emu = None
    rows = []
    ok = True
    try:
        emu = Emulator(opts.emulator, work, opts.objects)
        with open(os.path.join(work, "spc.yaml"), "w") as f:
            objects = [("secret", f"s{i}") for i in range(opts.objects)]
            f.write(common.spc_yaml(emu.info["vault_url"], emu.info["tenant_id"], objects,
                                    client_id=CLIENT_ID))
        for label, extra in (("defaults (as shipped)", {}),
                             ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"})):
            once = run_once(opts.agent, emu, work, extra, opts.timeout)
            side = run_sidecar(opts.agent, emu, work, extra, opts.objects, opts.refreshes,
                               opts.timeout)
            rows.append((label, once, side))
            if not extra:
                ok = once["peak_kib"] <= TARGET_KIB and side["peak_kib"] <= TARGET_KIB
    finally:
        if emu is not None:
            emu.stop()
        clean_up([], work, opts.keep, "rss")

    print(f"peak RSS, {opts.objects} secrets (release build, emulator --throttle off):")
    print("| allocator | --once peak | --once time | sidecar after first sync | "
          f"sidecar peak over {opts.refreshes} refreshes (sweep, rotation) | sidecar RSS at end |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, once, side in rows:
        print(f"| {label} | {mib(once['peak_kib'])} | {once['seconds']:.1f} s | "
              f"{mib(side['first_kib'])} | {mib(side['peak_kib'])} | {mib(side['rss_kib'])} |")
    print(f"target: <= {TARGET_KIB // 1024} MiB with the defaults: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
