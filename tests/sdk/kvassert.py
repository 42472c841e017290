"""Assertions on the errors the SDK raises: exception type first, then Key Vault's error codes.

Key Vault errors are `{"error": {"code", "message", "innererror": {"code"}}}`; azure-core parses
them into `HttpResponseError.error` (ODataV4Format: `.code`, `.innererror`).
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError


def assert_kv_error(excinfo: pytest.ExceptionInfo, status: int, code: str, inner: str | None = None) -> None:
    err = excinfo.value
    assert isinstance(err, HttpResponseError), type(err)
    assert err.status_code == status, f"status {err.status_code}: {err.message}"
    assert err.error is not None, f"no Key Vault error body: {err.message}"
    assert err.error.code == code, f"error.code {err.error.code!r}: {err.message}"
    if inner is not None:
        assert (err.error.innererror or {}).get("code") == inner, f"innererror {err.error.innererror!r}"
    # Every Key Vault response carries a request id (docs/protocol.md §1.6).
    assert err.response.headers.get("x-ms-request-id"), "x-ms-request-id missing"
