"""Secrets through azure-keyvault-secrets: the calls keyvault-agent makes, and the ones tests seed with.

reference: docs/protocol.md §1.2 (URL shapes), §1.3 (SecretBundle), §1.5 (paging), §1.6 (errors),
§1.7 (disabled objects).
"""

from __future__ import annotations

import datetime as dt

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from kvassert import assert_kv_error


def test_set_then_get_latest_with_each_credential(azure, credential, unique):
    client = azure.secrets(credential)
    name = unique("roundtrip")

    stored = client.set_secret(name, "p@ss w0rd/ü", content_type="text/plain", tags={"team": "sdk"})
    got = client.get_secret(name)

    assert got.value == "p@ss w0rd/ü"
    assert got.properties.content_type == "text/plain"
    assert got.properties.tags == {"team": "sdk"}
    assert got.properties.version == stored.properties.version
    assert len(got.properties.version) == 32 and int(got.properties.version, 16) >= 0
    assert got.id == f"{azure.emu.vault_url.rstrip('/')}/secrets/{name}/{got.properties.version}"
    assert got.properties.vault_url.rstrip("/") == azure.emu.vault_url.rstrip("/")
    assert got.properties.enabled is True
    assert isinstance(got.properties.created_on, dt.datetime)
    assert got.properties.managed in (None, False)


def test_get_by_version_returns_that_version(secret_client: SecretClient, unique):
    name = unique("versioned")
    v1 = secret_client.set_secret(name, "one").properties.version
    v2 = secret_client.set_secret(name, "two").properties.version

    assert v1 != v2
    assert secret_client.get_secret(name, v1).value == "one"
    assert secret_client.get_secret(name, v2).value == "two"
    assert secret_client.get_secret(name).value == "two"
    assert secret_client.get_secret(name).properties.version == v2


def test_list_versions_follows_next_link_across_pages(secret_client: SecretClient, unique, pages):
    name = unique("paged")
    versions = {secret_client.set_secret(name, f"value-{i}").properties.version for i in range(7)}

    listed = list(secret_client.list_properties_of_secret_versions(name, max_page_size=2, raw_response_hook=pages))

    assert {p.version for p in listed} == versions
    assert all(p.name == name and p.enabled for p in listed)
    # 7 items at 2 per page: at least 4 pages, each but the last pointing at the next one.
    assert len(pages.urls) >= 4, pages.urls
    assert all(link for link in pages.next_links[:-1]), pages.next_links
    assert not pages.next_links[-1]
    assert "maxresults=2" in pages.urls[0]
    for link in pages.next_links[:-1]:
        assert link.startswith("https://"), f"nextLink must be absolute: {link}"


def test_list_secrets_pages_and_has_no_values(secret_client: SecretClient, unique, pages):
    names = {unique("listed") for _ in range(4)}
    for name in names:
        secret_client.set_secret(name, "v")

    listed = list(secret_client.list_properties_of_secrets(max_page_size=3, raw_response_hook=pages))

    by_name = {p.name: p for p in listed}
    assert names <= set(by_name)
    assert "seeded" in by_name
    assert len(pages.urls) >= 2
    # GetSecrets items are versionless ids (docs/protocol.md §1.3 SecretItem).
    assert by_name[next(iter(names))].version is None


def test_update_properties_changes_attributes_not_value(secret_client: SecretClient, unique):
    name = unique("updated")
    version = secret_client.set_secret(name, "keep-me", content_type="text/plain").properties.version

    updated = secret_client.update_secret_properties(
        name, version, content_type="application/json", tags={"rotated": "yes"}
    )

    assert updated.version == version
    assert updated.content_type == "application/json"
    assert updated.tags == {"rotated": "yes"}
    assert updated.updated_on >= updated.created_on
    got = secret_client.get_secret(name, version)
    assert got.value == "keep-me"
    assert got.properties.content_type == "application/json"


def test_disabled_version_is_forbidden_but_listed(secret_client: SecretClient, unique):
    name = unique("disabled")
    old = secret_client.set_secret(name, "old").properties.version
    new = secret_client.set_secret(name, "new").properties.version

    props = secret_client.update_secret_properties(name, old, enabled=False)
    assert props.enabled is False

    with pytest.raises(HttpResponseError) as excinfo:
        secret_client.get_secret(name, old)
    assert not isinstance(excinfo.value, ResourceNotFoundError)
    assert_kv_error(excinfo, 403, "Forbidden", "SecretDisabled")

    assert secret_client.get_secret(name).value == "new"
    enabled = {p.version: p.enabled for p in secret_client.list_properties_of_secret_versions(name)}
    assert enabled == {old: False, new: True}


def test_disabling_latest_version_forbids_get_latest(secret_client: SecretClient, unique):
    name = unique("disabled-latest")
    version = secret_client.set_secret(name, "v").properties.version
    secret_client.update_secret_properties(name, version, enabled=False)

    with pytest.raises(HttpResponseError) as excinfo:
        secret_client.get_secret(name)
    assert_kv_error(excinfo, 403, "Forbidden", "SecretDisabled")

    secret_client.update_secret_properties(name, version, enabled=True)
    assert secret_client.get_secret(name).value == "v"


def test_delete_with_poller_then_get_is_not_found(secret_client: SecretClient, unique):
    name = unique("deleted")
    secret_client.set_secret(name, "bye")

    poller = secret_client.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait(timeout=30)

    assert poller.done()
    assert deleted.name == name
    with pytest.raises(ResourceNotFoundError) as excinfo:
        secret_client.get_secret(name)
    assert_kv_error(excinfo, 404, "SecretNotFound")
    assert name not in {p.name for p in secret_client.list_properties_of_secrets()}


def test_missing_secret_and_missing_version_are_not_found(secret_client: SecretClient, unique):
    with pytest.raises(ResourceNotFoundError) as excinfo:
        secret_client.get_secret(unique("never-set"))
    assert_kv_error(excinfo, 404, "SecretNotFound")

    name = unique("has-one-version")
    secret_client.set_secret(name, "v")
    with pytest.raises(ResourceNotFoundError) as excinfo:
        secret_client.get_secret(name, "0" * 32)
    assert_kv_error(excinfo, 404, "SecretNotFound")


def test_invalid_name_is_bad_parameter(secret_client: SecretClient):
    # Names are ^[0-9a-zA-Z-]+$ (docs/protocol.md §1.1); the service answers 400 BadParameter.
    with pytest.raises(HttpResponseError) as excinfo:
        secret_client.set_secret("not_a_valid_name", "v")
    assert_kv_error(excinfo, 400, "BadParameter")


def test_seeded_secret_versions_and_attributes(azure, credential):
    client = azure.secrets(credential)
    got = client.get_secret("seeded")
    assert got.value == "second"
    assert got.properties.content_type == "text/plain"

    versions = sorted(client.list_properties_of_secret_versions("seeded"), key=lambda p: p.created_on)
    assert len(versions) == 2
    first, second = versions
    assert first.created_on == dt.datetime.fromtimestamp(1700000000, tz=dt.timezone.utc)
    assert (first.enabled, second.enabled) == (False, True)
    assert second.version == got.properties.version
    with pytest.raises(HttpResponseError) as excinfo:
        client.get_secret("seeded", first.version)
    assert_kv_error(excinfo, 403, "Forbidden", "SecretDisabled")


def test_vault_is_chosen_by_host_name(azure, wi_credential):
    other = azure.secrets(wi_credential, azure.emu.other_vault_url)
    assert other.get_secret("other-only").value == "from-the-other-vault"
    with pytest.raises(ResourceNotFoundError):
        other.get_secret("seeded")
    with pytest.raises(ResourceNotFoundError):
        azure.secrets(wi_credential).get_secret("other-only")


@pytest.mark.parametrize("api_version", ["7.0", "7.2", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"])
def test_every_sdk_api_version_reads_and_pages(azure, wi_credential, api_version, pages):
    client = SecretClient(
        azure.emu.vault_url, wi_credential, api_version=api_version, connection_verify=azure.emu.ca_file
    )

    assert client.get_secret("seeded").value == "second"
    versions = list(client.list_properties_of_secret_versions("seeded", max_page_size=1, raw_response_hook=pages))

    assert len(versions) == 2
    assert all(f"api-version={api_version}" in url for url in pages.urls), pages.urls
