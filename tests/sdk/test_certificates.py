"""Certificates through azure-keyvault-certificates, and their backing secret and key.

Inputs are built with `cryptography` (PFX unencrypted, AES-256/PBES2 and legacy 3DES/PBES1;
PEM key + chain). reference: docs/protocol.md §1.3 (CertificateBundle), §1.4 (a
certificate read as a secret and as a key).
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlparse

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificateContentType, CertificatePolicy
from azure.keyvault.keys import KeyType
from azure.keyvault.secrets import ContentType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kvassert import assert_kv_error
from pki import make_chain

PASSWORD = "pfx-test-password"


PFX_ENCRYPTIONS = {
    "unencrypted": lambda: (serialization.NoEncryption(), None),
    "aes256-pbes2": lambda: (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode()),
        PASSWORD,
    ),
    "legacy-3des-pbes1": lambda: (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(PASSWORD.encode()),
        PASSWORD,
    ),
}


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _same_public_key(a, b) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_key().public_bytes(*fmt) == b.public_key().public_bytes(*fmt)


def _name_and_version(object_id: str) -> tuple[str, str]:
    parts = urlparse(object_id).path.strip("/").split("/")
    assert len(parts) == 3, object_id
    return parts[1], parts[2]


@pytest.fixture(scope="module")
def mi_clients(azure):
    credential = azure.managed_identity()
    return azure.secrets(credential), azure.keys(credential)


def _check_certificate_bundle(cert, name: str, leaf: x509.Certificate, vault_url: str) -> None:
    assert cert.name == name
    assert cert.cer == _der(leaf)
    assert cert.properties.x509_thumbprint == hashlib.sha1(_der(leaf)).digest()
    base = vault_url.rstrip("/")
    version = cert.properties.version
    assert cert.id == f"{base}/certificates/{name}/{version}"
    # The addressable key and secret share the certificate's name and version (docs/protocol.md §1.4).
    assert cert.key_id == f"{base}/keys/{name}/{version}"
    assert cert.secret_id == f"{base}/secrets/{name}/{version}"
    assert cert.properties.not_before == leaf.not_valid_before_utc
    assert cert.properties.expires_on == leaf.not_valid_after_utc


@pytest.mark.parametrize("encryption", list(PFX_ENCRYPTIONS))
def test_import_pfx_then_read_certificate_secret_and_key(
    certificate_client: CertificateClient, mi_clients, unique, encryption
):
    secrets, keys = mi_clients
    leaf_key, leaf, ca = make_chain("pfx.sdk.local")
    algorithm, password = PFX_ENCRYPTIONS[encryption]()
    pfx = pkcs12.serialize_key_and_certificates(b"pfx", leaf_key, leaf, [ca], algorithm)
    name = unique("pfx")

    imported = certificate_client.import_certificate(
        name, pfx, password=password, policy=CertificatePolicy(content_type=CertificateContentType.pkcs12)
    )
    _check_certificate_bundle(imported, name, leaf, certificate_client.vault_url)
    got = certificate_client.get_certificate(name)
    _check_certificate_bundle(got, name, leaf, certificate_client.vault_url)
    assert got.policy.content_type == CertificateContentType.pkcs12

    # The backing secret: a password-less PFX with key and chain.
    secret_name, version = _name_and_version(got.secret_id)
    secret = secrets.get_secret(secret_name, version)
    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    assert secret.properties.key_id == got.key_id
    key, cert, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert cert is not None and _der(cert) == _der(leaf)
    assert key is not None and _same_public_key(key, leaf_key)
    assert [_der(c) for c in extra] == [_der(ca)]

    # The backing key: public part only, flagged managed.
    key_name, key_version = _name_and_version(got.key_id)
    backing = keys.get_key(key_name, key_version)
    assert backing.key_type in (KeyType.rsa, KeyType.rsa_hsm)
    assert int.from_bytes(backing.key.n, "big") == leaf_key.public_key().public_numbers().n
    assert backing.properties.managed is True
    assert backing.key.d in (None, b"")


def test_import_pem_with_chain_backing_secret_is_pem(certificate_client: CertificateClient, mi_clients, unique):
    secrets, keys = mi_clients
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key, leaf, ca = make_chain("pem.sdk.local", leaf_key=leaf_key)
    pem = (
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    name = unique("pem")

    imported = certificate_client.import_certificate(
        name, pem, policy=CertificatePolicy(content_type=CertificateContentType.pem)
    )

    _check_certificate_bundle(imported, name, leaf, certificate_client.vault_url)
    assert certificate_client.get_certificate(name).policy.content_type == CertificateContentType.pem
    secret = secrets.get_secret(*_name_and_version(imported.secret_id))
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.properties.managed is True
    text = secret.value.encode()
    key = serialization.load_pem_private_key(text, password=None)
    assert _same_public_key(key, leaf_key)
    certs = x509.load_pem_x509_certificates(text)
    assert [_der(c) for c in certs] == [_der(leaf), _der(ca)]

    backing = keys.get_key(*_name_and_version(imported.key_id))
    assert backing.key_type in (KeyType.ec, KeyType.ec_hsm)
    assert backing.key.crv == "P-256"
    assert int.from_bytes(backing.key.x, "big") == leaf_key.public_key().public_numbers().x


def test_out_content_type_converts_pfx_secret_to_pem(certificate_client: CertificateClient, mi_clients, unique):
    secrets, _ = mi_clients
    leaf_key, leaf, ca = make_chain("convert.sdk.local")
    pfx = pkcs12.serialize_key_and_certificates(b"c", leaf_key, leaf, [ca], serialization.NoEncryption())
    name = unique("convert")
    imported = certificate_client.import_certificate(name, pfx)

    secret = secrets.get_secret(*_name_and_version(imported.secret_id), out_content_type=ContentType.PEM)

    assert secret.properties.content_type == "application/x-pem-file"
    key = serialization.load_pem_private_key(secret.value.encode(), password=None)
    assert _same_public_key(key, leaf_key)
    assert _der(x509.load_pem_x509_certificates(secret.value.encode())[0]) == _der(leaf)


def test_certificate_versions_get_and_list_paged(certificate_client: CertificateClient, unique, pages):
    name = unique("cert-versions")
    leaves = []
    for i in range(3):
        leaf_key, leaf, _ = make_chain(f"v{i}.sdk.local")
        pfx = pkcs12.serialize_key_and_certificates(b"v", leaf_key, leaf, None, serialization.NoEncryption())
        leaves.append((certificate_client.import_certificate(name, pfx), leaf))

    for imported, leaf in leaves:
        assert certificate_client.get_certificate_version(name, imported.properties.version).cer == _der(leaf)
    assert certificate_client.get_certificate(name).cer == _der(leaves[-1][1])

    listed = list(
        certificate_client.list_properties_of_certificate_versions(name, max_page_size=1, raw_response_hook=pages)
    )
    assert {p.version for p in listed} == {c.properties.version for c, _ in leaves}
    assert {p.x509_thumbprint for p in listed} == {hashlib.sha1(_der(leaf)).digest() for _, leaf in leaves}
    assert len(pages.urls) >= 3 and all(pages.next_links[:-1]) and not pages.next_links[-1]


def test_seeded_generated_certificate_with_each_credential(azure, credential):
    certs = azure.certificates(credential)
    got = certs.get_certificate("seeded-tls")

    leaf = x509.load_der_x509_certificate(got.cer)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "seeded.sdk.local"
    secret = azure.secrets(credential).get_secret(*_name_and_version(got.secret_id))
    assert secret.properties.content_type == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert _der(cert) == got.cer
    assert _same_public_key(key, leaf)


def test_certificate_policy_and_collection_list(certificate_client: CertificateClient, unique):
    leaf_key, leaf, _ = make_chain("policy.sdk.local")
    pfx = pkcs12.serialize_key_and_certificates(b"p", leaf_key, leaf, None, serialization.NoEncryption())
    name = unique("policy")
    certificate_client.import_certificate(name, pfx)

    policy = certificate_client.get_certificate_policy(name)
    listed = {p.name: p for p in certificate_client.list_properties_of_certificates(max_page_size=2)}

    assert policy.content_type == CertificateContentType.pkcs12
    assert policy.subject == "CN=policy.sdk.local"
    assert name in listed and "seeded-tls" in listed
    assert listed[name].x509_thumbprint == hashlib.sha1(_der(leaf)).digest()


def test_missing_certificate_is_not_found(certificate_client: CertificateClient, unique):
    with pytest.raises(ResourceNotFoundError) as excinfo:
        certificate_client.get_certificate(unique("no-such-cert"))
    assert_kv_error(excinfo, 404, "CertificateNotFound")
