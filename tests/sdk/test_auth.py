"""Entra, the cluster token issuer, IMDS and the vault's challenge, as the official SDK sees them.

reference: docs/protocol.md §2 (challenge), §3.4 (AADSTS errors), §4 (IMDS), §1.6 (403).
"""

from __future__ import annotations

import json
import time

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, CredentialUnavailableError, DefaultAzureCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from identities import (
    FIRST_POST_VAULT,
    FIRST_PUT_VAULT,
    LIMITED_CLIENT_ID,
    LIMITED_CLIENT_SECRET,
    SP_CLIENT_ID,
    SP_CLIENT_SECRET,
    SYSTEM_ASSIGNED_CLIENT_ID,
    UNKNOWN_CLIENT_ID,
    USER_ASSIGNED_CLIENT_ID,
    WORKLOAD_CLIENT_ID,
    WORKLOAD_SUBJECT,
)
from kvassert import assert_kv_error
from pki import make_chain


def _auth_error(excinfo: pytest.ExceptionInfo, aadsts: str) -> None:
    err = excinfo.value
    assert isinstance(err, ClientAuthenticationError), type(err)
    assert not isinstance(err, CredentialUnavailableError), "Entra rejected the request; that is not 'unavailable'"
    assert f"AADSTS{aadsts}" in err.message, err.message


# --- the 401 challenge and tokens ---------------------------------------------------------------


def test_vault_answers_401_challenge_the_sdk_can_verify(emulator):
    resp = requests.get(emulator.vault_url + "secrets/seeded?api-version=2025-07-01", verify=emulator.ca_file)

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "Unauthorized"
    challenge = emulator.challenge()
    assert challenge["authorization"].rstrip("/").split("/")[-1] == emulator.tenant_id
    assert challenge["authorization"].startswith(emulator.authority_host.rstrip("/"))
    # The SDK's verify_challenge_resource rule: the vault authority ends with "." + resource authority.
    resource = challenge["resource"].split("://", 1)[1].rstrip("/")
    vault = emulator.vault_url.split("://", 1)[1].rstrip("/")
    assert vault.endswith("." + resource), (vault, resource)


@pytest.mark.parametrize("kind", ["workload_identity", "client_secret", "managed_identity"])
def test_each_credential_gets_a_signed_access_token_for_the_vault(azure, emulator, kind):
    scope = emulator.scope()
    token = azure.credential(kind).get_token(scope)

    assert token.expires_on > time.time() + 300
    header = jwt.get_unverified_header(token.token)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert claims["aud"] == scope.removesuffix("/.default")
    assert claims["tid"] == emulator.tenant_id
    assert claims["iss"] == f"https://sts.windows.net/{emulator.tenant_id}/"
    assert claims["exp"] > time.time()
    expected_app = {
        "workload_identity": WORKLOAD_CLIENT_ID,
        "client_secret": SP_CLIENT_ID,
        "managed_identity": USER_ASSIGNED_CLIENT_ID,
    }[kind]
    assert claims.get("appid", claims.get("azp")) == expected_app
    assert claims["oid"]


def test_issuer_tokens_verify_with_pyjwt_against_the_published_jwks(emulator):
    # An implementation that is not ours checks what emulator/src/jwt.rs signs: the cluster
    # issuer's discovery document, its JWKS, a minted service-account token; a changed claim
    # breaks the signature.
    # reference: docs/protocol.md §3 (the federated assertion)
    token = emulator.mint_token(WORKLOAD_SUBJECT).read_text().strip()
    discovery = emulator.issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = requests.get(discovery, verify=emulator.ca_file, timeout=10).json()
    jwks = jwt.PyJWKSet.from_dict(requests.get(doc["jwks_uri"], verify=emulator.ca_file, timeout=10).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)

    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="api://AzureADTokenExchange", issuer=doc["issuer"]
    )
    assert claims["sub"] == WORKLOAD_SUBJECT
    assert claims["exp"] > time.time()

    header, _, signature = token.split(".")
    other = jwt.utils.base64url_encode(
        json.dumps({**claims, "sub": "system:serviceaccount:default:other"}).encode()
    ).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{other}.{signature}", key.key, algorithms=["RS256"], audience="api://AzureADTokenExchange")


def test_vault_rejects_a_token_signed_by_another_key(azure, emulator):
    # A real token's header and claims, re-signed with a key the emulator never issued.
    real = azure.client_secret().get_token(emulator.scope()).token
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": header.get("kid")},
    )
    url = emulator.vault_url + "secrets/seeded?api-version=2025-07-01"

    assert requests.get(url, headers={"Authorization": f"Bearer {real}"}, verify=emulator.ca_file).status_code == 200
    resp = requests.get(url, headers={"Authorization": f"Bearer {forged}"}, verify=emulator.ca_file)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "Unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


def test_missing_api_version_is_bad_parameter(azure, emulator):
    token = azure.client_secret().get_token(emulator.scope()).token
    resp = requests.get(
        emulator.vault_url + "secrets/seeded", headers={"Authorization": f"Bearer {token}"}, verify=emulator.ca_file
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadParameter"


def test_first_request_to_a_vault_may_be_a_write(azure, wi_credential):
    # The challenge policy strips the body of the first request to a host (Content-Length: 0)
    # and replays it with a token after the 401; the vault must challenge before parsing.
    secrets = azure.secrets(wi_credential, azure.emu.vault(FIRST_PUT_VAULT))
    stored = secrets.set_secret("written-first", "hello", content_type="text/plain")
    assert secrets.get_secret("written-first").value == "hello"
    assert stored.properties.content_type == "text/plain"

    certs = azure.certificates(wi_credential, azure.emu.vault(FIRST_POST_VAULT))
    leaf_key, leaf, _ = make_chain("first.sdk.local")
    pfx = pkcs12.serialize_key_and_certificates(b"f", leaf_key, leaf, None, serialization.NoEncryption())
    assert certs.import_certificate("imported-first", pfx).cer == leaf.public_bytes(serialization.Encoding.DER)


def test_default_credential_with_webhook_injected_environment(azure, emulator, monkeypatch):
    # Exactly the variables the AKS workload-identity webhook injects (docs/protocol.md §3.6),
    # authority host with its trailing slash.
    monkeypatch.setenv("AZURE_CLIENT_ID", WORKLOAD_CLIENT_ID)
    monkeypatch.setenv("AZURE_TENANT_ID", emulator.tenant_id)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(emulator.mint_token(WORKLOAD_SUBJECT)))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", emulator.authority_host.rstrip("/") + "/")
    credential = DefaultAzureCredential(connection_verify=emulator.ca_file)

    assert azure.secrets(credential).get_secret("seeded").value == "second"
    claims = jwt.decode(credential.get_token(emulator.scope()).token, options={"verify_signature": False})
    assert claims["appid"] == WORKLOAD_CLIENT_ID


# --- Entra errors, as raised by azure-identity ----------------------------------------------------


def test_workload_identity_unknown_client_is_700016(azure):
    credential = azure.workload_identity(client_id=UNKNOWN_CLIENT_ID)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    _auth_error(excinfo, "700016")


def test_workload_identity_wrong_subject_is_70021(azure, emulator):
    token_file = emulator.mint_token("system:serviceaccount:sdk:someone-else")
    credential = azure.workload_identity(token_file=token_file)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    _auth_error(excinfo, "70021")


def test_workload_identity_wrong_audience_is_70021(azure, emulator):
    token_file = emulator.mint_token(WORKLOAD_SUBJECT, aud="api://SomethingElse")
    credential = azure.workload_identity(token_file=token_file)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        credential.get_token(emulator.scope())
    _auth_error(excinfo, "70021")


def test_workload_identity_expired_assertion_is_700024(azure, emulator):
    credential = azure.workload_identity(token_file=emulator.mint_expired_token(WORKLOAD_SUBJECT))
    with pytest.raises(ClientAuthenticationError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    _auth_error(excinfo, "700024")


def test_client_secret_wrong_secret_is_7000215(azure):
    credential = azure.client_secret(secret="not-the-secret")
    with pytest.raises(ClientAuthenticationError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    _auth_error(excinfo, "7000215")


def test_client_secret_unknown_client_is_700016(azure):
    credential = azure.client_secret(client_id=UNKNOWN_CLIENT_ID)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    _auth_error(excinfo, "700016")


# --- authorization: identities limited by the seed's access grants -------------------------------


def test_identity_without_access_gets_forbidden_by_rbac(azure):
    client = azure.secrets(azure.client_secret(client_id=LIMITED_CLIENT_ID, secret=LIMITED_CLIENT_SECRET))

    assert client.get_secret("limited-only").value == "visible-to-limited"
    with pytest.raises(HttpResponseError) as excinfo:
        client.get_secret("seeded")
    assert not isinstance(excinfo.value, ClientAuthenticationError)
    assert_kv_error(excinfo, 403, "Forbidden", "ForbiddenByRbac")


def test_forbidden_by_rbac_on_keys_and_certificates(azure):
    credential = azure.client_secret(client_id=LIMITED_CLIENT_ID, secret=LIMITED_CLIENT_SECRET)
    with pytest.raises(HttpResponseError) as excinfo:
        azure.keys(credential).get_key("seeded-rsa")
    assert_kv_error(excinfo, 403, "Forbidden", "ForbiddenByRbac")
    with pytest.raises(HttpResponseError) as excinfo:
        azure.certificates(credential).get_certificate("seeded-tls")
    assert_kv_error(excinfo, 403, "Forbidden", "ForbiddenByRbac")


# --- IMDS (ManagedIdentityCredential) ------------------------------------------------------------


def test_imds_system_assigned_identity(azure, emulator):
    credential = azure.managed_identity(client_id=None)
    claims = jwt.decode(credential.get_token(emulator.scope()).token, options={"verify_signature": False})
    assert claims.get("appid", claims.get("azp")) == SYSTEM_ASSIGNED_CLIENT_ID
    client = azure.secrets(credential)
    assert client.get_secret("seeded").value == "second"
    with pytest.raises(HttpResponseError) as excinfo:
        client.get_secret("limited-only")
    assert_kv_error(excinfo, 403, "Forbidden", "ForbiddenByRbac")


def test_imds_unknown_identity_is_credential_unavailable(azure):
    credential = azure.managed_identity(client_id=UNKNOWN_CLIENT_ID)
    with pytest.raises(CredentialUnavailableError) as excinfo:
        azure.secrets(credential).get_secret("seeded")
    # IMDS answers 400 invalid_request "Identity not found" (docs/protocol.md §4); azure-identity
    # reports that as "no identity assigned", i.e. CredentialUnavailableError.
    assert "invalid_request" in excinfo.value.message
    assert "Identity not found" in excinfo.value.message


def test_imds_requires_metadata_header(emulator):
    resp = requests.get(
        emulator.imds_endpoint.rstrip("/") + "/metadata/identity/oauth2/token",
        params={"api-version": "2018-02-01", "resource": emulator.scope().removesuffix("/.default")},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request_102", resp.text
    ok = requests.get(
        emulator.imds_endpoint.rstrip("/") + "/metadata/identity/oauth2/token",
        params={
            "api-version": "2018-02-01",
            "resource": emulator.scope().removesuffix("/.default"),
            "client_id": USER_ASSIGNED_CLIENT_ID,
        },
        headers={"Metadata": "true"},
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    # IMDS sends every number as a string (docs/protocol.md §4).
    assert isinstance(body["expires_on"], str) and isinstance(body["expires_in"], str)
    assert body["token_type"] == "Bearer"


def test_unknown_api_version_is_bad_parameter(azure, emulator):
    token = azure.client_secret().get_token(emulator.scope()).token
    resp = requests.get(
        emulator.vault_url + "secrets/seeded?api-version=1999-01-01",
        headers={"Authorization": f"Bearer {token}"},
        verify=emulator.ca_file,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadParameter"


def test_responses_carry_key_vault_headers(azure, emulator):
    token = azure.client_secret().get_token(emulator.scope()).token
    resp = requests.get(
        emulator.vault_url + "secrets/seeded/?api-version=2025-07-01",
        headers={"Authorization": f"Bearer {token}", "x-ms-client-request-id": "sdk-suite-probe"},
        verify=emulator.ca_file,
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].lower().replace(" ", "") == "application/json;charset=utf-8"
    assert resp.headers.get("x-ms-request-id")
    assert resp.headers.get("x-ms-client-request-id") == "sdk-suite-probe"
    assert resp.headers.get("x-ms-keyvault-service-version")
    assert resp.headers.get("Cache-Control") == "no-cache"
    assert resp.json()["value"] == "second"


# --- a vault in another tenant ------------------------------------------------------------------

GUEST_TENANT = "0000000b-0000-4000-8000-00000000beef"


@pytest.fixture
def guest_vault(emulator):
    """The vault answers as one in a guest tenant: its challenge names that tenant."""
    emulator.admin("PUT", "/tenant", {"tenant_id": GUEST_TENANT})
    try:
        yield GUEST_TENANT
    finally:
        emulator.admin("DELETE", "/tenant")
        # azure-keyvault-secrets caches each vault's challenge process-wide (by host): forget
        # the guest tenant's, or every later client asks for a token there.
        from azure.keyvault.secrets._shared import http_challenge_cache

        http_challenge_cache.clear()


def test_a_vault_in_another_tenant_is_reached_only_by_a_credential_allowed_there(azure, emulator, guest_vault):
    # reference: docs/protocol.md §2 (the challenge names the vault's tenant); issue 11 item 8:
    # the agent follows such a challenge as the SDKs do, so the emulator must answer the SDK the same way.
    challenge = emulator.challenge()
    assert challenge["authorization"].rstrip("/").split("/")[-1] == guest_vault
    allowed = ClientSecretCredential(
        emulator.tenant_id,
        SP_CLIENT_ID,
        SP_CLIENT_SECRET,
        authority=emulator.authority_host,
        disable_instance_discovery=True,
        connection_verify=emulator.ca_file,
        additionally_allowed_tenants=["*"],
    )
    token = allowed.get_token(emulator.scope(), tenant_id=guest_vault)
    assert jwt.decode(token.token, options={"verify_signature": False})["tid"] == guest_vault
    assert azure.secrets(allowed).get_secret("seeded").value

    # The SDK's default: no token for a tenant the credential was not configured for.
    with pytest.raises(ClientAuthenticationError):
        azure.secrets(azure.client_secret()).get_secret("seeded")
