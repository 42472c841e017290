// Secrets through @azure/keyvault-secrets: the calls keyvault-agent makes and the ones tests
// seed with, mirroring tests/sdk/test_secrets.py and the secret half of test_lifecycle.py.
// reference: docs/protocol.md §1.2 (URL shapes), §1.3 (SecretBundle), §1.5 (paging),
// §1.6 (errors), §1.7 (disabled objects).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CREDENTIALS,
  FAST_POLL,
  assertKvError,
  collect,
  collectPages,
  otherVaultUrl,
  secrets,
  unique,
  vaultUrl,
  workloadIdentity,
} from "../lib/env.mjs";
import { unsupported } from "../lib/tally.mjs";

const client = secrets(workloadIdentity());

describe("secrets", () => {
  for (const [kind, make] of Object.entries(CREDENTIALS)) {
    it(`set then get latest with ${kind}`, async () => {
      const c = secrets(make());
      const name = unique("roundtrip");
      const stored = await c.setSecret(name, "p@ss w0rd/ü", { contentType: "text/plain", tags: { team: "sdk" } });
      const got = await c.getSecret(name);

      assert.equal(got.value, "p@ss w0rd/ü");
      assert.equal(got.properties.contentType, "text/plain");
      assert.deepEqual(got.properties.tags, { team: "sdk" });
      assert.equal(got.properties.version, stored.properties.version);
      assert.match(got.properties.version, /^[0-9a-f]{32}$/);
      assert.equal(got.properties.id, `${vaultUrl.replace(/\/$/, "")}/secrets/${name}/${got.properties.version}`);
      assert.equal(got.properties.vaultUrl.replace(/\/$/, ""), vaultUrl.replace(/\/$/, ""));
      assert.equal(got.properties.enabled, true);
      assert.ok(got.properties.createdOn instanceof Date);
    });

    it(`seeded secret's versions and attributes with ${kind}`, async () => {
      const c = secrets(make());
      const got = await c.getSecret("seeded");
      assert.equal(got.value, "second");
      assert.equal(got.properties.contentType, "text/plain");

      const versions = (await collect(c.listPropertiesOfSecretVersions("seeded"))).sort(
        (a, b) => a.createdOn - b.createdOn,
      );
      assert.equal(versions.length, 2);
      const [first, second] = versions;
      assert.equal(first.createdOn.getTime(), 1_700_000_000_000);
      assert.deepEqual([first.enabled, second.enabled], [false, true]);
      assert.equal(second.version, got.properties.version);
      await assertKvError(c.getSecret("seeded", { version: first.version }), 403, "Forbidden", "SecretDisabled");
    });
  }

  it("get by version returns that version", async () => {
    const name = unique("versioned");
    const v1 = (await client.setSecret(name, "one")).properties.version;
    const v2 = (await client.setSecret(name, "two")).properties.version;
    assert.notEqual(v1, v2);
    assert.equal((await client.getSecret(name, { version: v1 })).value, "one");
    assert.equal((await client.getSecret(name, { version: v2 })).value, "two");
    assert.equal((await client.getSecret(name)).properties.version, v2);
  });

  it("list versions follows nextLink across pages", async () => {
    const name = unique("paged");
    const versions = new Set();
    for (let i = 0; i < 7; i++) versions.add((await client.setSecret(name, `value-${i}`)).properties.version);

    const { items, pages } = await collectPages(client.listPropertiesOfSecretVersions(name), 2);

    assert.deepEqual(new Set(items.map((p) => p.version)), versions);
    assert.ok(items.every((p) => p.name === name && p.enabled));
    // 7 items at 2 per page: 4 pages, each but the last pointing at the next one.
    assert.ok(pages.length >= 4, JSON.stringify(pages));
    assert.ok(pages.slice(0, -1).every((p) => p.nextLink?.startsWith("https://")), JSON.stringify(pages));
    assert.ok(pages.every((p) => p.size <= 2));
    assert.match(pages[0].url, /maxresults=2/);
    assert.equal(pages.at(-1).nextLink, undefined);
  });

  it("list secrets pages and carries no values", async () => {
    const names = new Set([unique("listed"), unique("listed"), unique("listed"), unique("listed")]);
    for (const name of names) await client.setSecret(name, "v");

    const { items, pages } = await collectPages(client.listPropertiesOfSecrets(), 3);

    const byName = new Map(items.map((p) => [p.name, p]));
    for (const name of names) assert.ok(byName.has(name), name);
    assert.ok(byName.has("seeded"));
    assert.ok(pages.length >= 2);
    // GetSecrets items are versionless ids (docs/protocol.md §1.3 SecretItem).
    assert.equal(byName.get([...names][0]).version, undefined);
    assert.ok(items.every((p) => !("value" in p)));
  });

  it("update properties changes attributes, not the value", async () => {
    const name = unique("updated");
    const { version } = (await client.setSecret(name, "keep-me", { contentType: "text/plain" })).properties;

    const updated = await client.updateSecretProperties(name, version, {
      contentType: "application/json",
      tags: { rotated: "yes" },
    });

    assert.equal(updated.version, version);
    assert.equal(updated.contentType, "application/json");
    assert.deepEqual(updated.tags, { rotated: "yes" });
    assert.ok(updated.updatedOn >= updated.createdOn);
    const got = await client.getSecret(name, { version });
    assert.equal(got.value, "keep-me");
    assert.equal(got.properties.contentType, "application/json");
  });

  it("a disabled version is forbidden but still listed", async () => {
    const name = unique("disabled");
    const old = (await client.setSecret(name, "old")).properties.version;
    const fresh = (await client.setSecret(name, "new")).properties.version;

    assert.equal((await client.updateSecretProperties(name, old, { enabled: false })).enabled, false);

    await assertKvError(client.getSecret(name, { version: old }), 403, "Forbidden", "SecretDisabled");
    assert.equal((await client.getSecret(name)).value, "new");
    const enabled = Object.fromEntries(
      (await collect(client.listPropertiesOfSecretVersions(name))).map((p) => [p.version, p.enabled]),
    );
    assert.deepEqual(enabled, { [old]: false, [fresh]: true });
  });

  it("missing secret and missing version are 404 SecretNotFound", async () => {
    await assertKvError(client.getSecret(unique("never-set")), 404, "SecretNotFound");
    const name = unique("has-one-version");
    await client.setSecret(name, "v");
    await assertKvError(client.getSecret(name, { version: "0".repeat(32) }), 404, "SecretNotFound");
  });

  it("an invalid name is 400 BadParameter", async () => {
    // Names are ^[0-9a-zA-Z-]+$ (docs/protocol.md §1.1).
    await assertKvError(client.setSecret("not_a_valid_name", "v"), 400, "BadParameter");
  });

  it("the vault is chosen by host name", async () => {
    const other = secrets(workloadIdentity(), otherVaultUrl);
    assert.equal((await other.getSecret("other-only")).value, "from-the-other-vault");
    await assertKvError(other.getSecret("seeded"), 404, "SecretNotFound");
    await assertKvError(client.getSecret("other-only"), 404, "SecretNotFound");
  });

  for (const serviceVersion of ["7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"]) {
    it(`serviceVersion ${serviceVersion} reads and pages`, async () => {
      const c = secrets(workloadIdentity(), vaultUrl, { serviceVersion });
      assert.equal((await c.getSecret("seeded")).value, "second");
      const { items, pages } = await collectPages(c.listPropertiesOfSecretVersions("seeded"), 1);
      assert.equal(items.length, 2);
      assert.equal(pages.length, 2);
      // The first request spells it `api%2Dversion`; the nextLink keeps the service's spelling.
      assert.ok(
        pages.every((p) => new URL(p.url).searchParams.get("api-version") === serviceVersion),
        JSON.stringify(pages),
      );
    });
  }
});

describe("secret lifecycle", () => {
  it("delete with the poller, read it deleted, recover the same version", async () => {
    const name = unique("recover");
    const { version } = (await client.setSecret(name, "come-back")).properties;

    const poller = await client.beginDeleteSecret(name, FAST_POLL);
    const deleted = await poller.pollUntilDone();
    assert.equal(deleted.name, name);
    assert.ok(deleted.properties.recoveryId);
    assert.ok(deleted.properties.deletedOn instanceof Date);
    await assertKvError(client.getSecret(name), 404, "SecretNotFound");
    assert.equal((await client.getDeletedSecret(name)).name, name);
    const listed = await collect(client.listDeletedSecrets());
    assert.ok(listed.some((d) => d.name === name));
    assert.ok(!(await collect(client.listPropertiesOfSecrets())).some((p) => p.name === name));

    const recover = await client.beginRecoverDeletedSecret(name, FAST_POLL);
    await recover.pollUntilDone();
    const got = await client.getSecret(name);
    assert.deepEqual([got.value, got.properties.version], ["come-back", version]);
  });

  it("purge, then the deleted secret is gone and the name reusable", async () => {
    const name = unique("purge");
    await client.setSecret(name, "first life");
    await (await client.beginDeleteSecret(name, FAST_POLL)).pollUntilDone();

    await client.purgeDeletedSecret(name);

    await assertKvError(client.getDeletedSecret(name), 404, "SecretNotFound");
    await client.setSecret(name, "second life");
    assert.equal((await client.getSecret(name)).value, "second life");
    assert.equal((await collect(client.listPropertiesOfSecretVersions(name))).length, 1);
  });

  it("backup is answered in Key Vault's error shape (not implemented), never as an object name", async () => {
    const name = unique("backup");
    await client.setSecret(name, "v");
    unsupported("SecretClient.backupSecret");
    await assertKvError(client.backupSecret(name), 501, "NotImplemented");
  });
});
