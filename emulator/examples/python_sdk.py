"""Point the official Azure SDK for Python at a running keyvault-emulator.

    keyvault-emulator serve --addr 127.0.0.1:0 --state-dir .kve --seed emulator/examples/seed.yaml > ready.json &
    pip install azure-identity azure-keyvault-secrets azure-keyvault-keys azure-keyvault-certificates
    python emulator/examples/python_sdk.py ready.json .kve

The three things the SDK needs: `*.localhost` resolving to loopback, the emulator CA
(`connection_verify`), and `disable_instance_discovery=True` on credentials (MSAL would otherwise
ask login.microsoftonline.com to validate the authority).
"""

import json
import os
import socket
import subprocess
import sys

ready = json.loads(open(sys.argv[1]).readline())
state_dir = sys.argv[2]

_getaddrinfo = socket.getaddrinfo


def _resolve_localhost(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve_localhost

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: E402
from azure.identity import (  # noqa: E402
    ClientSecretCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from azure.keyvault.certificates import CertificateClient  # noqa: E402
from azure.keyvault.keys import KeyClient  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402

ca = ready["ca_file"]
tenant = ready["tenant_id"]
client_id = "11111111-1111-1111-1111-111111111111"
vault = ready["vault_url"]

secret_cred = ClientSecretCredential(
    tenant, client_id, "dev-secret", authority=ready["authority_host"],
    connection_verify=ca, disable_instance_discovery=True,
)
secrets = SecretClient(vault, secret_cred, connection_verify=ca)
print("db-password:", secrets.get_secret("db-password").properties.version)
print("versions:", len(list(secrets.list_properties_of_secret_versions("db-password"))))
try:
    secrets.get_secret("missing")
except ResourceNotFoundError:
    print("missing secret -> ResourceNotFoundError")
disabled = [p for p in secrets.list_properties_of_secret_versions("db-password") if not p.enabled][0]
try:
    secrets.get_secret("db-password", disabled.version)
except HttpResponseError as e:
    print("disabled version ->", e.status_code, e.error.code)

keys = KeyClient(vault, secret_cred, connection_verify=ca)
print("ec-key:", keys.get_key("ec-key").key.crv)
certs = CertificateClient(vault, secret_cred, connection_verify=ca)
print("web-tls x5t:", certs.get_certificate("web-tls").properties.x509_thumbprint.hex())

# Workload identity: a projected service-account token minted with the emulator's issuer key.
token_file = os.path.join(state_dir, "sa-token")
subprocess.run(
    ["keyvault-emulator", "token", "--sub", "system:serviceaccount:default:app",
     "--state-dir", state_dir, "--out", token_file],
    check=True,
)
wi = WorkloadIdentityCredential(
    tenant_id=tenant, client_id=client_id, token_file_path=token_file,
    authority=ready["authority_host"], connection_verify=ca, disable_instance_discovery=True,
)
print("workload identity:", SecretClient(vault, wi, connection_verify=ca).get_secret("hex-secret").value)

# Managed identity through the plain-HTTP IMDS listener.
os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = ready["imds_endpoint"]
mi = ManagedIdentityCredential(client_id=client_id)
print("managed identity:", SecretClient(vault, mi, connection_verify=ca).get_secret("b64-secret").value)
