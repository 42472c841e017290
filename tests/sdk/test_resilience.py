"""The SDK's retry behaviour against the emulator's injected faults (admin API).

Proves the fault shapes are ones the official SDK recognises as transient: 429 `Throttled`
with `Retry-After` (honoured), 503, and a dropped connection, on the vault, on Entra's token
endpoint and on IMDS. reference: docs/protocol.md §1.8, §3.5, §4.
"""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from kvassert import assert_kv_error


@pytest.fixture
def faults(emulator):
    emulator.admin("DELETE", "/faults")
    yield lambda route, kind, times: emulator.admin("POST", "/faults", {"route": route, "kind": kind, "times": times})
    emulator.admin("DELETE", "/faults")


def _count(emulator, route: str) -> int:
    return emulator.admin("GET", "/counts")["routes"].get(route, 0)


def test_throttled_secret_get_is_retried_after_retry_after(secret_client, emulator, faults):
    secret_client.get_secret("seeded")  # token and challenge cached: only the GET is left
    before = _count(emulator, "secret_get")
    faults("secret_get", {"throttle": {"retry_after": 1}}, 1)

    started = time.monotonic()
    assert secret_client.get_secret("seeded").value == "second"

    assert time.monotonic() - started >= 0.9, "Retry-After: 1 was not honoured"
    assert _count(emulator, "secret_get") - before == 2


def test_throttle_without_retry_after_is_key_vault_throttled(secret_client, faults):
    secret_client.get_secret("seeded")
    faults("secret_get", {"throttle": {"retry_after": None}}, 1)

    with pytest.raises(HttpResponseError) as excinfo:
        secret_client.get_secret("seeded", retry_total=0)  # observe the raw 429 once

    assert_kv_error(excinfo, 429, "Throttled")
    assert "Retry-After" not in excinfo.value.response.headers


def test_service_unavailable_and_dropped_connection_are_retried(secret_client, emulator, faults):
    secret_client.get_secret("seeded")
    before = _count(emulator, "secret_get")
    faults("secret_get", {"status": 503}, 1)
    faults("secret_get", "drop", 1)

    assert secret_client.get_secret("seeded").value == "second"
    assert _count(emulator, "secret_get") - before >= 3


def test_entra_throttle_is_retried_by_the_credential(azure, emulator, faults):
    credential = azure.workload_identity()
    faults("token", {"throttle": {"retry_after": 1}}, 1)

    token = credential.get_token(emulator.scope())

    assert token.token.count(".") == 2


def test_imds_transient_error_is_retried_by_managed_identity(azure, emulator, faults):
    credential = azure.managed_identity()
    before = _count(emulator, "imds")
    faults("imds", {"status": 503}, 1)

    token = credential.get_token(emulator.scope())

    assert token.token.count(".") == 2
    assert _count(emulator, "imds") - before == 2
