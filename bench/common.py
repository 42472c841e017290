"""Helpers the bench drivers share (fleet.py, rss.py, sidecar.py): the SecretProviderClass
they write, /proc readings, a bounded wait on a condition, and the clean-up of their
processes and work directory. Standard library only."""

import shutil
import sys
import time


def spc_yaml(vault_url: str, tenant: str, objects, name: str = "bench", client_id: str = "") -> str:
    """A SecretProviderClass for vault `demo` with `objects`, (objectType, objectName) pairs."""
    items = "\n".join(
        f"          - |\n            objectName: {obj}\n            objectType: {kind}"
        for kind, obj in objects
    )
    client = f'    clientID: "{client_id}"\n' if client_id else ""
    return f"""apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: {name}
spec:
  provider: azure
  parameters:
    keyvaultName: demo
    keyvaultURL: "{vault_url}"
    tenantID: "{tenant}"
{client}    objects: |
      array:
{items}
"""


def status_kib(pid: int, field: str) -> int:
    """A KiB field of /proc/<pid>/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def wait_for(cond, timeout, what, proc=None):
    """Polls `cond` every 50 ms for at most `timeout` seconds; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def clean_up(procs, work: str, keep: bool, who: str):
    """Kills what still runs of `procs`, then removes `work` unless `keep`."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if keep:
        print(f"{who}: work directory kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
