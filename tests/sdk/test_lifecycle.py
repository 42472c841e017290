"""Object lifecycles through the SDK's long-running-operation pollers: soft delete, recover,
purge, create-certificate, and property updates on keys and certificates.

These are the flows tests and demos use to seed and rotate objects; the pollers only finish if
the emulator answers the follow-up GETs (`/deleted*`, `/certificates/{n}/pending`) as Key Vault does.
"""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient, KeyCurveName
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from kvassert import assert_kv_error
from pki import make_chain

# The SDK's own tests shorten poll intervals the same way; the default (2-5 s) only adds waiting.
FAST_POLL = {"_polling_interval": 0.1}


def test_soft_deleted_secret_can_be_read_and_recovered(secret_client: SecretClient, unique):
    name = unique("recover")
    version = secret_client.set_secret(name, "come-back").properties.version

    deleted = secret_client.begin_delete_secret(name, **FAST_POLL).result()
    assert deleted.recovery_id and deleted.deleted_date is not None
    assert secret_client.get_deleted_secret(name).name == name
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret(name)

    poller = secret_client.begin_recover_deleted_secret(name, **FAST_POLL)
    poller.wait(timeout=30)
    assert poller.done()
    got = secret_client.get_secret(name)
    assert (got.value, got.properties.version) == ("come-back", version)


def test_purged_secret_is_gone_and_name_reusable(secret_client: SecretClient, unique):
    name = unique("purge")
    secret_client.set_secret(name, "first life")
    secret_client.begin_delete_secret(name, **FAST_POLL).wait(timeout=30)

    secret_client.purge_deleted_secret(name)

    with pytest.raises(ResourceNotFoundError) as excinfo:
        secret_client.get_deleted_secret(name)
    assert_kv_error(excinfo, 404, "SecretNotFound")
    secret_client.set_secret(name, "second life")
    assert secret_client.get_secret(name).value == "second life"
    assert len(list(secret_client.list_properties_of_secret_versions(name))) == 1


def test_delete_key_and_update_key_properties(key_client: KeyClient, unique):
    name = unique("key-life")
    key = key_client.create_ec_key(name, curve=KeyCurveName.p_256)

    updated = key_client.update_key_properties(name, key.properties.version, tags={"owner": "sdk"})
    assert updated.properties.tags == {"owner": "sdk"}
    assert key_client.get_key(name).properties.tags == {"owner": "sdk"}

    deleted = key_client.begin_delete_key(name, **FAST_POLL).result()
    assert deleted.name == name
    with pytest.raises(ResourceNotFoundError) as excinfo:
        key_client.get_key(name)
    assert_kv_error(excinfo, 404, "KeyNotFound")


def test_create_self_signed_certificate_with_poller(certificate_client: CertificateClient, azure, unique):
    name = unique("created")
    policy = CertificatePolicy.get_default()

    poller = certificate_client.begin_create_certificate(name, policy, **FAST_POLL)
    cert = poller.result(timeout=60)

    assert poller.done()
    assert cert.name == name and cert.cer
    leaf = x509.load_der_x509_certificate(cert.cer)
    assert leaf.subject.rfc4514_string() == "CN=DefaultPolicy"
    secret = azure.secrets(azure.managed_identity()).get_secret(name, cert.properties.version)
    assert secret.properties.content_type == "application/x-pkcs12"
    key, pfx_cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert pfx_cert.public_bytes(serialization.Encoding.DER) == cert.cer
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*fmt) == leaf.public_key().public_bytes(*fmt)


def test_update_and_delete_certificate(certificate_client: CertificateClient, unique):
    leaf_key, leaf, _ = make_chain("life.sdk.local")
    pfx = pkcs12.serialize_key_and_certificates(b"l", leaf_key, leaf, None, serialization.NoEncryption())
    name = unique("cert-life")
    version = certificate_client.import_certificate(name, pfx).properties.version

    updated = certificate_client.update_certificate_properties(name, version, tags={"env": "test"})
    assert updated.properties.tags == {"env": "test"}

    deleted = certificate_client.begin_delete_certificate(name, **FAST_POLL).result()
    assert deleted.name == name
    with pytest.raises(ResourceNotFoundError) as excinfo:
        certificate_client.get_certificate(name)
    assert_kv_error(excinfo, 404, "CertificateNotFound")
