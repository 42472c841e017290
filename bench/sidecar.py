#!/usr/bin/env python3
"""Sidecar benchmark driver (see bench/run.sh).

Starts the emulator with a 50-object seed (40 secrets, 5 keys, 5 certificates), runs
keyvault-agent as a sidecar against it with a long refresh interval, and measures:

- VmRSS of the agent right after its first sync is published (/proc/<pid>/status);
- utime+stime of the agent over an idle window between refreshes (/proc/<pid>/stat).

Only the standard library is used; everything listens on 127.0.0.1 with port 0.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import common
from common import clean_up, status_kib, wait_for

RSS_TARGET_KIB = 10 * 1024
CPU_TARGET_MS = 20.0

N_SECRETS, N_KEYS, N_CERTS = 40, 5, 5
CLIENT_ID = "11111111-1111-1111-1111-111111111111"
CLIENT_SECRET = "bench-secret"


def seed_yaml() -> str:
    lines = ["vaults:", "  - name: demo", "    secrets:"]
    for i in range(N_SECRETS):
        lines.append(f"      - name: secret-{i:02d}")
        lines.append("        versions:")
        lines.append(f'          - {{ value: "value-{i:02d}-{"x" * 48}" }}')
    lines.append("    keys:")
    for i in range(N_KEYS):
        if i < 3:
            lines.append(f"      - {{ name: key-{i}, kty: EC, curve: P-256 }}")
        else:
            lines.append(f"      - {{ name: key-{i}, kty: RSA, size: 2048 }}")
    lines.append("    certificates:")
    for i in range(N_CERTS):
        lines.append(f"      - name: cert-{i}")
        lines.append(
            f'        generate: {{ subject: "CN=cert-{i}.bench.local", content_type: application/x-pem-file }}'
        )
    lines += [
        "identities:",
        "  - name: bench",
        f"    client_id: {CLIENT_ID}",
        f"    client_secret: {CLIENT_SECRET}",
        "    access: all",
    ]
    return "\n".join(lines) + "\n"


def spc_yaml(vault_url: str, tenant: str) -> str:
    objects = [("secret", f"secret-{i:02d}") for i in range(N_SECRETS)]
    objects += [("key", f"key-{i}") for i in range(N_KEYS)]
    objects += [("cert", f"cert-{i}") for i in range(N_CERTS)]
    return common.spc_yaml(vault_url, tenant, objects, client_id=CLIENT_ID)


def proc_fields(pid: int):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Field 2 (comm) may contain spaces: split after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])
    return utime, stime


def sched_ns(pid: int) -> dict:
    """On-CPU nanoseconds per thread (/proc/<pid>/task/*/schedstat), finer than the clock
    ticks of /proc/<pid>/stat."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def sched_delta_ms(before: dict, after: dict) -> float:
    """CPU used in the window by threads alive at its end (a thread that exited inside the
    window, e.g. an idle blocking-pool thread, takes its last few microseconds with it)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items()) / 1e6




def vm_rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--idle", type=float, default=60.0, help="idle window in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--agent-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment for the agent (e.g. MALLOC_ARENA_MAX=2)",
    )
    opts = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kv-bench-")
    procs = []
    try:
        seed = os.path.join(work, "seed.yaml")
        with open(seed, "w") as f:
            f.write(seed_yaml())
        emu_log = open(os.path.join(work, "emulator.log"), "w")
        emu = subprocess.Popen(
            [
                opts.emulator,
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--seed",
                seed,
                "--state-dir",
                os.path.join(work, "state"),
            ],
            stdout=subprocess.PIPE,
            stderr=emu_log,
            text=True,
        )
        procs.append(emu)
        line = emu.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator did not start; see {work}/emulator.log")
        info = json.loads(line)

        spc = os.path.join(work, "spc.yaml")
        with open(spc, "w") as f:
            f.write(spc_yaml(info["vault_url"], info["tenant_id"]))
        out = os.path.join(work, "out")
        os.mkdir(out)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZURE_TENANT_ID": info["tenant_id"],
            "AZURE_CLIENT_SECRET": CLIENT_SECRET,
            "AZURE_AUTHORITY_HOST": info["authority_host"],
            "KEYVAULT_AGENT_LOG": "info",
        }
        for kv in opts.agent_env:
            k, _, v = kv.partition("=")
            env[k] = v
        agent_log = open(os.path.join(work, "agent.log"), "w")
        started = time.monotonic()
        agent = subprocess.Popen(
            [
                opts.agent,
                "--config",
                spc,
                "--dir",
                out,
                "--ca-file",
                info["ca_file"],
                # Long enough that no refresh falls inside the idle window (jitter ±10%).
                "--interval",
                f"{int(max(300, opts.idle * 3))}s",
                "--listen",
                "127.0.0.1:0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=agent_log,
        )
        procs.append(agent)
        status_file = os.path.join(out, "..status.json")

        def published():
            if not os.path.islink(os.path.join(out, "..data")):
                return False
            try:
                with open(status_file) as f:
                    return json.load(f).get("ready") is True
            except (OSError, ValueError):
                return False

        wait_for(published, 120, "the first sync", agent)
        first_sync_s = time.monotonic() - started
        with open(status_file) as f:
            n_objects = len(json.load(f)["objects"])
        # Let allocator and runtime settle after the burst.
        time.sleep(1.0)
        rss = vm_rss_kib(agent.pid)
        rss_anon = status_kib(agent.pid, "RssAnon")
        rss_file = status_kib(agent.pid, "RssFile")
        threads = len(os.listdir(f"/proc/{agent.pid}/task"))

        clk = os.sysconf("SC_CLK_TCK")
        u0, s0 = proc_fields(agent.pid)
        n0 = sched_ns(agent.pid)
        t0 = time.monotonic()
        time.sleep(opts.idle)
        u1, s1 = proc_fields(agent.pid)
        n1 = sched_ns(agent.pid)
        sched_ms = sched_delta_ms(n0, n1)
        window = time.monotonic() - t0
        cpu_ms = ((u1 - u0) + (s1 - s0)) * 1000.0 / clk
        if agent.poll() is not None:
            raise RuntimeError("agent exited during the idle window")

        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=30)

        rss_ok = rss < RSS_TARGET_KIB
        cpu_ok = cpu_ms < CPU_TARGET_MS
        print(f"objects mounted:            {n_objects}")
        print(f"first sync (incl. startup): {first_sync_s * 1000:.0f} ms")
        print(
            f"RSS after first sync:       {rss / 1024:.2f} MiB  (target < {RSS_TARGET_KIB // 1024} MiB)  {'OK' if rss_ok else 'MISSED'}"
        )
        print(f"  of which anonymous/file:  {rss_anon / 1024:.2f} / {rss_file / 1024:.2f} MiB")
        print(
            f"CPU during {window:.0f} s idle:     {cpu_ms:.0f} ms  (target < {CPU_TARGET_MS:.0f} ms, resolution {1000 / clk:.0f} ms)  {'OK' if cpu_ok else 'MISSED'}"
        )
        print(f"  on-CPU time (schedstat):  {sched_ms:.3f} ms")
        print(f"threads:                    {threads}")
        print(f"exit code on SIGTERM:       {code}")
        return 0 if (rss_ok and cpu_ok and code == 0) else 1
    finally:
        clean_up(procs, work, opts.keep, "sidecar")


if __name__ == "__main__":
    sys.exit(main())
