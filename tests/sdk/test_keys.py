"""Keys through azure-keyvault-keys: create RSA and EC, import a JWK, get, list versions.

reference: docs/protocol.md §1.3 (KeyBundle: public JWK only, base64url members).
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyCurveName, KeyType
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kvassert import assert_kv_error

CURVES = {
    KeyCurveName.p_256: (ec.SECP256R1(), 32),
    KeyCurveName.p_384: (ec.SECP384R1(), 48),
    KeyCurveName.p_521: (ec.SECP521R1(), 66),
}
PRIVATE_MEMBERS = ("d", "dp", "dq", "qi", "p", "q", "k")


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _assert_public_only(jwk: JsonWebKey) -> None:
    for member in PRIVATE_MEMBERS:
        assert getattr(jwk, member, None) in (None, b""), f"GET returned private member {member!r}"


def _ec_public_key(jwk: JsonWebKey):
    curve, size = CURVES[KeyCurveName(jwk.crv)]
    assert len(jwk.x) == size and len(jwk.y) == size, (len(jwk.x), len(jwk.y))
    # Raises if the point is not on the curve.
    return ec.EllipticCurvePublicNumbers(_int(jwk.x), _int(jwk.y), curve).public_key()


def test_create_rsa_key(key_client: KeyClient, unique):
    name = unique("rsa")
    key = key_client.create_rsa_key(name, size=2048)

    assert key.key_type == KeyType.rsa
    assert key.name == name
    assert _int(key.key.n).bit_length() == 2048
    assert _int(key.key.e) == 65537
    assert key.id == f"{key_client.vault_url.rstrip('/')}/keys/{name}/{key.properties.version}"
    assert key.key.kid == key.id
    assert key.key_operations, "key_ops missing"
    _assert_public_only(key.key)


@pytest.mark.parametrize("curve", list(CURVES), ids=lambda c: c.value)
def test_create_ec_key_on_each_curve(key_client: KeyClient, unique, curve):
    key = key_client.create_ec_key(unique("ec"), curve=curve)

    assert key.key_type == KeyType.ec
    assert key.key.crv == curve
    _ec_public_key(key.key)
    _assert_public_only(key.key)


def test_import_ec_jwk_and_verify_with_returned_public_key(key_client: KeyClient, unique):
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.private_numbers()
    jwk = JsonWebKey(
        kty=KeyType.ec,
        crv=KeyCurveName.p_256,
        x=numbers.public_numbers.x.to_bytes(32, "big"),
        y=numbers.public_numbers.y.to_bytes(32, "big"),
        d=numbers.private_value.to_bytes(32, "big"),
        key_ops=["sign", "verify"],
    )
    name = unique("imported-ec")

    imported = key_client.import_key(name, jwk)
    got = key_client.get_key(name)

    assert got.id == imported.id
    assert got.key.x == jwk.x and got.key.y == jwk.y
    _assert_public_only(got.key)
    signature = private.sign(b"agent", ec.ECDSA(hashes.SHA256()))
    _ec_public_key(got.key).verify(signature, b"agent", ec.ECDSA(hashes.SHA256()))


def test_import_rsa_jwk_keeps_modulus(key_client: KeyClient, unique):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = private.private_numbers()
    size = 256

    def b(v: int) -> bytes:
        return v.to_bytes((v.bit_length() + 7) // 8, "big")

    jwk = JsonWebKey(
        kty=KeyType.rsa,
        n=n.public_numbers.n.to_bytes(size, "big"),
        e=b(n.public_numbers.e),
        d=b(n.d),
        p=b(n.p),
        q=b(n.q),
        dp=b(n.dmp1),
        dq=b(n.dmq1),
        qi=b(n.iqmp),
    )
    name = unique("imported-rsa")

    key_client.import_key(name, jwk)
    got = key_client.get_key(name)

    assert _int(got.key.n) == n.public_numbers.n and _int(got.key.e) == 65537
    _assert_public_only(got.key)
    public = rsa.RSAPublicNumbers(_int(got.key.e), _int(got.key.n)).public_key()
    signature = private.sign(b"agent", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"agent", padding.PKCS1v15(), hashes.SHA256())


def test_get_key_by_version_and_list_versions_paged(key_client: KeyClient, unique, pages):
    name = unique("key-versions")
    created = [key_client.create_ec_key(name, curve=KeyCurveName.p_256) for _ in range(3)]

    for key in created:
        got = key_client.get_key(name, key.properties.version)
        assert got.key.x == key.key.x and got.key.y == key.key.y
    assert key_client.get_key(name).properties.version == created[-1].properties.version

    listed = list(key_client.list_properties_of_key_versions(name, max_page_size=1, raw_response_hook=pages))
    assert {p.version for p in listed} == {k.properties.version for k in created}
    assert len(pages.urls) >= 3, pages.urls
    assert all(pages.next_links[:-1]) and not pages.next_links[-1]


def test_seeded_keys_readable_with_each_credential(azure, credential):
    client = azure.keys(credential)
    rsa_key = client.get_key("seeded-rsa")
    ec_key = client.get_key("seeded-ec")

    assert rsa_key.key_type == KeyType.rsa and _int(rsa_key.key.n).bit_length() == 2048
    assert ec_key.key_type == KeyType.ec and ec_key.key.crv == KeyCurveName.p_384
    _ec_public_key(ec_key.key)


def test_list_keys_includes_created_and_seeded(key_client: KeyClient, unique):
    name = unique("listed-key")
    key_client.create_ec_key(name, curve=KeyCurveName.p_256)

    listed = {p.name: p for p in key_client.list_properties_of_keys(max_page_size=2)}

    assert {name, "seeded-rsa", "seeded-ec"} <= set(listed)
    assert listed[name].version is None  # collection items are versionless


def test_missing_key_is_not_found(key_client: KeyClient, unique):
    with pytest.raises(ResourceNotFoundError) as excinfo:
        key_client.get_key(unique("no-such-key"))
    assert_kv_error(excinfo, 404, "KeyNotFound")
