#!/usr/bin/env python3
"""Fleet simulation (`make fleet`, see bench/README.md).

K keyvault-agent sidecars (default 200), each with its own identity (client secret), all
mounting the same SecretProviderClass of N secrets (default 50) from one emulator vault with
Key Vault's throttling on. Agents start over a ramp (pods of a Deployment do not start in the
same millisecond), run for a fixed time, and one secret is rotated through the emulator's
admin API in the middle. The run is done twice: with list-based change detection (the
default) and without it (`--change-detection get`, the reference provider's behaviour), and
one table compares them:

- vault requests per second (mean over the steady state, and the peak 10 s window);
- 429 answers;
- time from the rotation until each agent published it (p50 / p99 / max);
- agent resident memory (mean and max of each agent's peak VmRSS).

Everything listens on 127.0.0.1 with port 0; only the standard library is used.
"""

import argparse
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import common
from common import clean_up

TENANT_SECRET_PREFIX = "fleet-secret-"


def seed_yaml(n_objects: int, k_agents: int, throttle: str) -> str:
    lines = ["vaults:", "  - name: demo", "    secrets:"]
    for i in range(n_objects):
        lines.append(f"      - name: secret-{i:03d}")
        lines.append("        versions:")
        lines.append(f'          - {{ value: "value-{i:03d}-v1" }}')
    lines.append("identities:")
    for a in range(k_agents):
        lines += [
            f"  - name: agent-{a:04d}",
            f"    client_id: {client_id(a)}",
            f"    client_secret: {TENANT_SECRET_PREFIX}{a:04d}",
            "    access: all",
        ]
    if throttle:
        lines.append(f"throttle: {throttle}")
    return "\n".join(lines) + "\n"


def client_id(a: int) -> str:
    return f"00000000-0000-4000-8000-{a:012d}"


def spc_yaml(vault_url: str, tenant: str, n_objects: int) -> str:
    objects = [("secret", f"secret-{i:03d}") for i in range(n_objects)]
    return common.spc_yaml(vault_url, tenant, objects, name="fleet")


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Admin:
    def __init__(self, base: str, ca_file: str):
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


def run_fleet(opts, detection: str) -> dict:
    work = tempfile.mkdtemp(prefix=f"kv-fleet-{detection}-")
    procs = []
    try:
        seed = os.path.join(work, "seed.yaml")
        with open(seed, "w") as f:
            f.write(seed_yaml(opts.objects, opts.agents, opts.throttle))
        emu_log = open(os.path.join(work, "emulator.log"), "w")
        emu = subprocess.Popen(
            [opts.emulator, "serve", "--addr", "127.0.0.1:0", "--seed", seed,
             "--state-dir", os.path.join(work, "state")],
            stdout=subprocess.PIPE, stderr=emu_log, text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        procs.append(emu)
        line = emu.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator did not start; see {work}/emulator.log")
        info = json.loads(line)
        admin = Admin(info["admin_url"].removesuffix("/admin"), info["ca_file"])

        spc = os.path.join(work, "spc.yaml")
        with open(spc, "w") as f:
            f.write(spc_yaml(info["vault_url"], info["tenant_id"], opts.objects))

        # Request counter sampled once a second (total vault requests, 429s).
        samples = []  # (t, vault_requests, throttled)
        stop = threading.Event()

        def vault_requests(c):
            kinds = c.get("kinds", {})
            return int(kinds.get("get", 0)) + int(kinds.get("list", 0))

        def sampler():
            while not stop.is_set():
                try:
                    c = admin.call("GET", "/admin/counts")
                    samples.append((time.monotonic(), vault_requests(c), throttled_count(c)))
                except Exception as e:  # noqa: BLE001 - a missed sample is not fatal
                    print(f"fleet: counter sample failed: {e}", file=sys.stderr)
                stop.wait(1.0)

        threading.Thread(target=sampler, daemon=True).start()

        t0 = time.monotonic()
        agents = []
        ramp_step = opts.ramp / max(1, opts.agents)
        for a in range(opts.agents):
            out = os.path.join(work, f"out-{a:04d}")
            os.mkdir(out)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "AZURE_CLIENT_ID": client_id(a),
                "AZURE_TENANT_ID": info["tenant_id"],
                "AZURE_CLIENT_SECRET": f"{TENANT_SECRET_PREFIX}{a:04d}",
                "AZURE_AUTHORITY_HOST": info["authority_host"],
                "KEYVAULT_AGENT_LOG": "warn",
                "MALLOC_ARENA_MAX": "2",
            }
            args = [opts.agent, "--config", spc, "--dir", out, "--ca-file", info["ca_file"],
                    "--interval", f"{opts.interval}s", "--listen", "off",
                    "--change-detection", detection]
            log = open(os.path.join(work, f"agent-{a:04d}.log"), "w")
            p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)
            procs.append(p)
            agents.append((p, out))
            # Pods of a Deployment start over a ramp, not in one instant.
            next_start = t0 + (a + 1) * ramp_step
            time.sleep(max(0.0, next_start - time.monotonic()))

        watched = "secret-000"

        def current(out):
            try:
                with open(os.path.join(out, watched)) as f:
                    return f.read()
            except OSError:
                return None

        deadline = time.monotonic() + opts.ramp + 120
        while time.monotonic() < deadline:
            if all(current(o) is not None for _, o in agents):
                break
            dead = [p for p, _ in agents if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{len(dead)} agent(s) exited; see {work}/agent-*.log")
            time.sleep(0.2)
        else:
            raise RuntimeError("not every agent published its first set")
        all_ready = time.monotonic() - t0

        # Rotation in the middle of the measured window.
        rotate_at = t0 + opts.ramp + opts.duration / 2
        time.sleep(max(0.0, rotate_at - time.monotonic()))
        new_value = "value-000-rotated"
        admin.call("PUT", f"/admin/vaults/demo/secrets/{watched}", {"value": new_value})
        rotated = time.monotonic()
        seen = {}
        end = t0 + opts.ramp + opts.duration
        limit = max(end, rotated + 3 * opts.interval)
        while len(seen) < len(agents) and time.monotonic() < limit:
            now = time.monotonic()
            for i, (_, out) in enumerate(agents):
                if i not in seen and current(out) == new_value:
                    seen[i] = now - rotated
            time.sleep(0.1)
        time.sleep(max(0.0, end - time.monotonic()))
        stop.set()

        rss = [vm_hwm_kib(p.pid) for p, _ in agents]
        for p, _ in agents:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p, _ in agents]

        # Steady state: from the end of the ramp to the end of the run.
        steady = [s for s in samples if s[0] >= t0 + opts.ramp]
        mean_rps = ((steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
                    if len(steady) > 1 else float("nan"))
        peak10 = 0.0
        for i, (t, n, _) in enumerate(samples):
            for t2, n2, _ in samples[i:]:
                if t2 - t >= 10.0:
                    peak10 = max(peak10, (n2 - n) / (t2 - t))
                    break
        lag = list(seen.values())
        return {
            "detection": detection,
            "agents": len(agents),
            "all_ready_s": all_ready,
            "mean_rps": mean_rps,
            "peak10_rps": peak10,
            "throttled": samples[-1][2] if samples else 0,
            "total_requests": samples[-1][1] if samples else 0,
            "rotated": len(seen),
            "lag_p50": pct(lag, 50),
            "lag_p99": pct(lag, 99),
            "lag_max": max(lag) if lag else float("nan"),
            "rss_mean_mib": statistics.mean(rss) / 1024 if rss else float("nan"),
            "rss_max_mib": max(rss) / 1024 if rss else float("nan"),
            "exit_nonzero": sum(1 for c in codes if c != 0),
        }
    finally:
        clean_up(procs, work, opts.keep, "fleet")


def throttled_count(c) -> int:
    return int(c.get("throttled_total", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", required=True)
    ap.add_argument("--emulator", required=True)
    ap.add_argument("--agents", type=int, default=200, help="K: number of sidecars")
    ap.add_argument("--objects", type=int, default=50, help="N: secrets in the SPC")
    ap.add_argument("--interval", type=int, default=20, help="refresh interval, seconds")
    ap.add_argument("--ramp", type=float, default=20.0, help="start-up ramp, seconds")
    ap.add_argument("--duration", type=float, default=60.0,
                    help="measured window after the ramp, seconds (rotation in the middle)")
    ap.add_argument("--throttle", default="keyvault",
                    help="the emulator's throttle setting (see emulator/README.md)")
    ap.add_argument("--only", choices=["list", "get"], help="run one change-detection mode only")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    opts = ap.parse_args()

    modes = [opts.only] if opts.only else ["list", "get"]
    results = []
    for mode in modes:
        print(f"fleet: {opts.agents} agents x {opts.objects} secrets, change detection {mode} ...",
              file=sys.stderr, flush=True)
        results.append(run_fleet(opts, mode))

    print()
    print(f"fleet: {opts.agents} sidecars, {opts.objects} secrets each, interval {opts.interval}s, "
          f"ramp {opts.ramp:.0f}s, window {opts.duration:.0f}s, throttle {opts.throttle}")
    hdr = ("change detection", "req/s mean", "req/s peak 10s", "429s", "requests",
           "rotation p50", "p99", "max", "rotated", "RSS mean", "RSS max")
    print(" | ".join(hdr))
    print(" | ".join("---" for _ in hdr))
    for r in results:
        print(" | ".join([
            r["detection"],
            f"{r['mean_rps']:.1f}",
            f"{r['peak10_rps']:.1f}",
            str(r["throttled"]),
            str(r["total_requests"]),
            f"{r['lag_p50']:.1f}s",
            f"{r['lag_p99']:.1f}s",
            f"{r['lag_max']:.1f}s",
            f"{r['rotated']}/{r['agents']}",
            f"{r['rss_mean_mib']:.1f} MiB",
            f"{r['rss_max_mib']:.1f} MiB",
        ]))
    # The agents must all exit cleanly; the rotation and 429 goals apply to list detection (the
    # default): `get` is the reference behaviour, shown for comparison.
    ok = all(r["exit_nonzero"] == 0 for r in results)
    on = [r for r in results if r["detection"] == "list"]
    for r in on:
        if r["rotated"] != r["agents"]:
            print(f"fleet: only {r['rotated']}/{r['agents']} agents published the rotation",
                  file=sys.stderr)
            ok = False
    if on and on[0]["throttled"] != 0:
        print("fleet: list detection on still saw 429s", file=sys.stderr)
        ok = False
    for r in on:
        if r["lag_max"] > 2 * opts.interval:
            print(f"fleet: rotation took longer than two intervals with detection {r['detection']}",
                  file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
