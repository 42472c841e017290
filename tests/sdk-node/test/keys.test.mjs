// Keys through @azure/keyvault-keys, mirroring tests/sdk/test_keys.py and the key half of
// test_lifecycle.py: create RSA/EC, import JWKs, versions, paging, update, the delete/recover/
// purge lifecycle. GETs never carry private members.
// reference: docs/protocol.md §1.3 (KeyBundle), §1.5 (paging), §1.6 (errors).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, it } from "node:test";
import {
  CREDENTIALS,
  FAST_POLL,
  assertKvError,
  clientSecret,
  collect,
  collectPages,
  keys,
  unique,
  vaultUrl,
} from "../lib/env.mjs";
import { unsupported } from "../lib/tally.mjs";

const client = keys(clientSecret());
const PRIVATE_MEMBERS = ["d", "dp", "dq", "p", "q", "qi", "k", "t"];
const CURVES = { "P-256": 32, "P-384": 48, "P-521": 66 };

function assertPublicOnly(jwk) {
  for (const member of PRIVATE_MEMBERS) {
    assert.ok(jwk[member] === undefined || jwk[member].length === 0, `GET returned private member ${member}`);
  }
}

const b64u = (bytes) => Buffer.from(bytes).toString("base64url");

/** The Node public key for a JWK the vault returned (Uint8Array members). */
function nodePublicKey(jwk) {
  const fields =
    jwk.kty.startsWith("EC")
      ? { kty: "EC", crv: jwk.crv, x: b64u(jwk.x), y: b64u(jwk.y) }
      : { kty: "RSA", n: b64u(jwk.n), e: b64u(jwk.e) };
  return crypto.createPublicKey({ key: fields, format: "jwk" });
}

/** A Node JWK (base64url strings) as the SDK's JsonWebKey (bytes). */
function sdkJwk(nodeJwk) {
  const out = { kty: nodeJwk.kty, keyOps: nodeJwk.kty === "EC" ? ["sign", "verify"] : ["sign", "verify", "encrypt", "decrypt"] };
  if (nodeJwk.crv) out.crv = nodeJwk.crv;
  for (const m of ["n", "e", "d", "dp", "dq", "p", "q", "qi", "x", "y"]) {
    if (nodeJwk[m]) out[m] = Buffer.from(nodeJwk[m], "base64url");
  }
  return out;
}

describe("keys", () => {
  it("create an RSA 2048 key", async () => {
    const name = unique("rsa");
    const key = await client.createRsaKey(name, { keySize: 2048 });
    assert.equal(key.keyType, "RSA");
    assert.equal(key.name, name);
    assert.equal(nodePublicKey(key.key).asymmetricKeyDetails.modulusLength, 2048);
    assert.equal(b64u(key.key.e), "AQAB");
    assert.equal(key.id, `${vaultUrl.replace(/\/$/, "")}/keys/${name}/${key.properties.version}`);
    assert.equal(key.key.kid, key.id);
    assert.ok(key.keyOperations?.length, "key_ops missing");
    assertPublicOnly(key.key);
  });

  for (const [curve, size] of Object.entries(CURVES)) {
    it(`create an EC key on ${curve}`, async () => {
      const key = await client.createEcKey(unique("ec"), { curve });
      assert.equal(key.keyType, "EC");
      assert.equal(key.key.crv, curve);
      assert.equal(key.key.x.length, size);
      assert.equal(key.key.y.length, size);
      // Node refuses a point that is not on the curve.
      assert.equal(nodePublicKey(key.key).asymmetricKeyDetails.namedCurve, { "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1" }[curve]);
      assertPublicOnly(key.key);
    });
  }

  it("import an EC JWK, then verify a local signature with the key the vault returns", async () => {
    const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = privateKey.export({ format: "jwk" });
    const name = unique("imported-ec");

    const imported = await client.importKey(name, sdkJwk(jwk));
    const got = await client.getKey(name);

    assert.equal(got.id, imported.id);
    assert.deepEqual([b64u(got.key.x), b64u(got.key.y)], [jwk.x, jwk.y]);
    assertPublicOnly(got.key);
    const message = Buffer.from("signed locally, verified with the vault's copy");
    const signature = crypto.sign("sha256", message, privateKey);
    assert.ok(crypto.verify("sha256", message, nodePublicKey(got.key), signature));
  });

  it("import an RSA JWK and keep its modulus", async () => {
    const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = privateKey.export({ format: "jwk" });
    const name = unique("imported-rsa");
    await client.importKey(name, sdkJwk(jwk), { enabled: true, tags: { source: "node" } });
    const got = await client.getKey(name);
    assert.deepEqual([b64u(got.key.n), b64u(got.key.e)], [jwk.n, jwk.e]);
    assert.deepEqual(got.properties.tags, { source: "node" });
    assertPublicOnly(got.key);
  });

  it("get by version and list versions paged", async () => {
    const name = unique("key-versions");
    const created = [];
    for (let i = 0; i < 3; i++) created.push(await client.createEcKey(name, { curve: "P-256" }));
    for (const key of created) {
      const got = await client.getKey(name, { version: key.properties.version });
      assert.deepEqual([b64u(got.key.x), b64u(got.key.y)], [b64u(key.key.x), b64u(key.key.y)]);
    }
    assert.equal((await client.getKey(name)).properties.version, created.at(-1).properties.version);

    const { items, pages } = await collectPages(client.listPropertiesOfKeyVersions(name), 1);
    assert.deepEqual(new Set(items.map((p) => p.version)), new Set(created.map((k) => k.properties.version)));
    assert.ok(pages.length >= 3);
    assert.ok(pages.slice(0, -1).every((p) => p.nextLink) && !pages.at(-1).nextLink, JSON.stringify(pages));
  });

  for (const [kind, make] of Object.entries(CREDENTIALS)) {
    it(`seeded keys are readable with ${kind}`, async () => {
      const c = keys(make());
      const rsa = await c.getKey("seeded-rsa");
      const ec = await c.getKey("seeded-ec");
      assert.equal(rsa.keyType, "RSA");
      assert.equal(nodePublicKey(rsa.key).asymmetricKeyDetails.modulusLength, 2048);
      assert.deepEqual([ec.keyType, ec.key.crv], ["EC", "P-384"]);
      assertPublicOnly(rsa.key);
      assertPublicOnly(ec.key);
    });
  }

  it("list keys includes created and seeded, versionless", async () => {
    const name = unique("listed-key");
    await client.createEcKey(name, { curve: "P-256" });
    const { items } = await collectPages(client.listPropertiesOfKeys(), 2);
    const byName = new Map(items.map((p) => [p.name, p]));
    for (const n of [name, "seeded-rsa", "seeded-ec"]) assert.ok(byName.has(n), n);
    assert.equal(byName.get(name).version, undefined);
  });

  it("a missing key is 404 KeyNotFound", async () => {
    await assertKvError(client.getKey(unique("no-such-key")), 404, "KeyNotFound");
  });
});

describe("key lifecycle", () => {
  it("update tags, delete with the poller, read deleted, recover, delete and purge", async () => {
    const name = unique("key-life");
    const key = await client.createEcKey(name, { curve: "P-256" });

    const updated = await client.updateKeyProperties(name, key.properties.version, { tags: { owner: "sdk" } });
    assert.deepEqual(updated.properties.tags, { owner: "sdk" });
    assert.deepEqual((await client.getKey(name)).properties.tags, { owner: "sdk" });

    const deleted = await (await client.beginDeleteKey(name, FAST_POLL)).pollUntilDone();
    assert.equal(deleted.name, name);
    assert.ok(deleted.properties.recoveryId);
    await assertKvError(client.getKey(name), 404, "KeyNotFound");
    assert.equal((await client.getDeletedKey(name)).name, name);
    assert.ok((await collect(client.listDeletedKeys())).some((d) => d.name === name));

    await (await client.beginRecoverDeletedKey(name, FAST_POLL)).pollUntilDone();
    assert.equal((await client.getKey(name)).properties.version, key.properties.version);

    await (await client.beginDeleteKey(name, FAST_POLL)).pollUntilDone();
    await client.purgeDeletedKey(name);
    await assertKvError(client.getDeletedKey(name), 404, "KeyNotFound");
  });

  it("backup and rotation policy answer in Key Vault's error shape (not implemented)", async () => {
    const name = unique("key-unsupported");
    await client.createEcKey(name, { curve: "P-256" });
    unsupported("KeyClient.backupKey");
    await assertKvError(client.backupKey(name), 501, "NotImplemented");
    unsupported("KeyClient.getKeyRotationPolicy");
    await assertKvError(client.getKeyRotationPolicy(name), 501, "NotImplemented");
  });
});
