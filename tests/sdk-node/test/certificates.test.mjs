// Certificates through @azure/keyvault-certificates and their backing secret and key,
// mirroring tests/sdk/test_certificates.py and the certificate half of test_lifecycle.py.
// Inputs are made with the openssl command line (lib/pki.mjs).
// reference: docs/protocol.md §1.3 (CertificateBundle), §1.4 (a certificate read as a secret
// and as a key), §1.6 (errors); issue 13 item 5 (PFX password conventions, unsupported routes).
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, it } from "node:test";
import { DefaultCertificatePolicy } from "@azure/keyvault-certificates";
import {
  CREDENTIALS,
  FAST_POLL,
  assertKvError,
  certificates,
  collect,
  keys,
  managedIdentity,
  secrets,
  unique,
  vaultUrl,
} from "../lib/env.mjs";
import { makeChain, pemCertificates, pfx, pfxToPem } from "../lib/pki.mjs";
import { unsupported } from "../lib/tally.mjs";

const credential = managedIdentity();
const client = certificates(credential);
const secretClient = secrets(credential);
const keyClient = keys(credential);
const PASSWORD = "pfx-test-password";
const base = vaultUrl.replace(/\/$/, "");

const sha1 = (bytes) => crypto.createHash("sha1").update(bytes).digest();

function nameAndVersion(id) {
  const parts = new URL(id).pathname.split("/").filter(Boolean);
  assert.equal(parts.length, 3, id);
  return [parts[1], parts[2]];
}

function checkBundle(cert, name, leaf) {
  assert.equal(cert.name, name);
  assert.deepEqual(Buffer.from(cert.cer), leaf.raw);
  assert.deepEqual(Buffer.from(cert.properties.x509Thumbprint), sha1(leaf.raw));
  const version = cert.properties.version;
  assert.equal(cert.properties.id, `${base}/certificates/${name}/${version}`);
  // The addressable key and secret share the certificate's name and version (docs/protocol.md §1.4).
  assert.equal(cert.keyId, `${base}/keys/${name}/${version}`);
  assert.equal(cert.secretId, `${base}/secrets/${name}/${version}`);
  assert.equal(cert.properties.notBefore.getTime(), new Date(leaf.validFrom).getTime());
  assert.equal(cert.properties.expiresOn.getTime(), new Date(leaf.validTo).getTime());
}

/** The backing secret: a password-less PFX with the key and the chain, leaf first. */
async function checkPfxSecret(cert, chain) {
  const secret = await secretClient.getSecret(...nameAndVersion(cert.secretId));
  assert.equal(secret.properties.contentType, "application/x-pkcs12");
  assert.equal(secret.properties.managed, true);
  assert.equal(secret.properties.certificateKeyId, cert.keyId);
  const pem = pfxToPem(Buffer.from(secret.value, "base64"));
  const certs = pemCertificates(pem);
  assert.deepEqual(certs[0].raw, chain.leaf.raw);
  assert.ok(certs.some((c) => c.raw.equals(chain.ca.raw)), "CA missing from the backing PFX");
  const key = crypto.createPrivateKey(pem.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/)[0]);
  assert.ok(chain.leaf.checkPrivateKey(key), "the backing PFX's key is not the leaf's");
}

/** The backing key: public part only, flagged managed. */
async function checkBackingKey(cert, chain, kty) {
  const backing = await keyClient.getKey(...nameAndVersion(cert.keyId));
  assert.equal(backing.keyType, kty);
  assert.equal(backing.properties.managed, true);
  assert.equal(backing.key.d, undefined);
  if (kty === "RSA") {
    const n = chain.leaf.publicKey.export({ format: "jwk" }).n;
    assert.equal(Buffer.from(backing.key.n).toString("base64url"), n);
  }
}

describe("certificate import", () => {
  const cases = {
    "unencrypted PFX": ["none", undefined],
    "AES-256 (PBES2) PFX with a password": ["aes256", PASSWORD],
    "legacy 3DES (PBES1) PFX with a password": ["3des", PASSWORD],
    // openssl -passout pass: (AES + MAC under the empty password); the SDK sends no password.
    "PFX under the empty password, imported without one": ["empty", undefined],
    "PFX under the empty password, imported with password ''": ["empty", ""],
    "PFX without a MAC": ["nomac", undefined],
  };
  for (const [title, [protection, password]] of Object.entries(cases)) {
    it(`${title}: certificate, backing secret and backing key`, async () => {
      const chain = makeChain("pfx.sdk.local");
      const name = unique("pfx");
      const options = { policy: { contentType: "application/x-pkcs12" } };
      if (password !== undefined) options.password = password;

      const imported = await client.importCertificate(name, pfx(chain, protection, password ?? ""), options);

      checkBundle(imported, name, chain.leaf);
      const got = await client.getCertificate(name);
      checkBundle(got, name, chain.leaf);
      assert.equal(got.policy.contentType, "application/x-pkcs12");
      await checkPfxSecret(got, chain);
      await checkBackingKey(got, chain, "RSA");
    });
  }

  it("a PFX with the wrong password is 400 BadParameter", async () => {
    const chain = makeChain("wrong.sdk.local");
    const bytes = pfx(chain, "aes256", PASSWORD);
    await assertKvError(client.importCertificate(unique("wrong"), bytes, { password: "not-it" }), 400, "BadParameter");
  });

  it("PEM (EC key, leaf, CA): the backing secret is PEM", async () => {
    const chain = makeChain("pem.sdk.local", { keyType: "ec" });
    const name = unique("pem");
    const text = chain.keyPem + chain.leafPem + chain.caPem;

    const imported = await client.importCertificate(name, Buffer.from(text), {
      policy: { contentType: "application/x-pem-file" },
    });

    checkBundle(imported, name, chain.leaf);
    assert.equal((await client.getCertificate(name)).policy.contentType, "application/x-pem-file");
    const secret = await secretClient.getSecret(...nameAndVersion(imported.secretId));
    assert.equal(secret.properties.contentType, "application/x-pem-file");
    assert.equal(secret.properties.managed, true);
    const certs = pemCertificates(secret.value);
    assert.deepEqual(certs.map((c) => c.raw), [chain.leaf.raw, chain.ca.raw]);
    assert.ok(chain.leaf.checkPrivateKey(crypto.createPrivateKey(secret.value)));
    const backing = await keyClient.getKey(...nameAndVersion(imported.keyId));
    assert.deepEqual([backing.keyType, backing.key.crv], ["EC", "P-256"]);
  });

  it("versions by get and by a paged list", async () => {
    const name = unique("cert-versions");
    const leaves = [];
    for (let i = 0; i < 3; i++) {
      const chain = makeChain(`v${i}.sdk.local`);
      leaves.push([await client.importCertificate(name, pfx(chain, "none")), chain.leaf]);
    }
    for (const [imported, leaf] of leaves) {
      const got = await client.getCertificateVersion(name, imported.properties.version);
      assert.deepEqual(Buffer.from(got.cer), leaf.raw);
    }
    assert.deepEqual(Buffer.from((await client.getCertificate(name)).cer), leaves.at(-1)[1].raw);

    // This SDK's certificate pagers do not send maxresults (byPage's maxPageSize is not
    // forwarded), so paging itself is asserted with secrets and keys.
    const items = await collect(client.listPropertiesOfCertificateVersions(name));
    assert.deepEqual(new Set(items.map((p) => p.version)), new Set(leaves.map(([c]) => c.properties.version)));
    assert.deepEqual(
      new Set(items.map((p) => Buffer.from(p.x509Thumbprint).toString("hex"))),
      new Set(leaves.map(([, leaf]) => sha1(leaf.raw).toString("hex"))),
    );
  });

  it("policy of an imported certificate, and the collection list", async () => {
    const chain = makeChain("policy.sdk.local");
    const name = unique("policy");
    await client.importCertificate(name, pfx(chain, "none"));

    const policy = await client.getCertificatePolicy(name);
    const items = await collect(client.listPropertiesOfCertificates());
    const listed = new Map(items.map((p) => [p.name, p]));

    assert.equal(policy.contentType, "application/x-pkcs12");
    assert.equal(policy.subject, "CN=policy.sdk.local");
    assert.ok(listed.has(name) && listed.has("seeded-tls"));
    assert.deepEqual(Buffer.from(listed.get(name).x509Thumbprint), sha1(chain.leaf.raw));
  });

  for (const [kind, make] of Object.entries(CREDENTIALS)) {
    it(`the seeded generated certificate with ${kind}`, async () => {
      const cred = make();
      const got = await certificates(cred).getCertificate("seeded-tls");
      const leaf = new crypto.X509Certificate(Buffer.from(got.cer));
      assert.equal(leaf.subject, "CN=seeded.sdk.local");
      const secret = await secrets(cred).getSecret(...nameAndVersion(got.secretId));
      assert.equal(secret.properties.contentType, "application/x-pkcs12");
      const pem = pfxToPem(Buffer.from(secret.value, "base64"));
      assert.deepEqual(pemCertificates(pem)[0].raw, leaf.raw);
    });
  }

  it("a missing certificate is 404 CertificateNotFound", async () => {
    await assertKvError(client.getCertificate(unique("no-such-cert")), 404, "CertificateNotFound");
  });
});

describe("certificate lifecycle", () => {
  it("create with the default policy through the poller (pending operation), PFX secret matches", async () => {
    const name = unique("created");
    const poller = await client.beginCreateCertificate(name, DefaultCertificatePolicy, FAST_POLL);
    const cert = await poller.pollUntilDone();

    assert.equal(cert.name, name);
    const operation = (await client.getCertificateOperation(name, FAST_POLL)).getOperationState();
    assert.equal(operation.certificateOperation.status, "completed");
    const leaf = new crypto.X509Certificate(Buffer.from(cert.cer));
    const secret = await secretClient.getSecret(...nameAndVersion(cert.secretId));
    const pem = pfxToPem(Buffer.from(secret.value, "base64"));
    assert.deepEqual(pemCertificates(pem)[0].raw, leaf.raw);
  });

  it("create with a policy (EC P-256, PEM, subject and DNS names), then read the policy back", async () => {
    const name = unique("created-policy");
    const policy = {
      issuerName: "Self",
      subject: "CN=policy-created.sdk.local",
      subjectAlternativeNames: { dnsNames: ["policy-created.sdk.local", "alt.sdk.local"] },
      contentType: "application/x-pem-file",
      keyType: "EC",
      keyCurveName: "P-256",
      exportable: true,
      validityInMonths: 12,
    };

    const cert = await (await client.beginCreateCertificate(name, policy, FAST_POLL)).pollUntilDone();

    const leaf = new crypto.X509Certificate(Buffer.from(cert.cer));
    assert.equal(leaf.subject, "CN=policy-created.sdk.local");
    assert.match(leaf.subjectAltName, /DNS:policy-created\.sdk\.local/);
    assert.match(leaf.subjectAltName, /DNS:alt\.sdk\.local/);
    assert.equal(leaf.publicKey.asymmetricKeyDetails.namedCurve, "prime256v1");
    const got = await client.getCertificatePolicy(name);
    assert.equal(got.subject, "CN=policy-created.sdk.local");
    assert.equal(got.contentType, "application/x-pem-file");
    assert.deepEqual([got.keyType, got.keyCurveName], ["EC", "P-256"]);
    assert.deepEqual(got.subjectAlternativeNames?.dnsNames, ["policy-created.sdk.local", "alt.sdk.local"]);
    const secret = await secretClient.getSecret(...nameAndVersion(cert.secretId));
    assert.equal(secret.properties.contentType, "application/x-pem-file");
    assert.ok(leaf.checkPrivateKey(crypto.createPrivateKey(secret.value)));
  });

  it("update tags, delete, read deleted, recover, delete and purge", async () => {
    const chain = makeChain("life.sdk.local");
    const name = unique("cert-life");
    const imported = await client.importCertificate(name, pfx(chain, "none"));

    const updated = await client.updateCertificateProperties(name, imported.properties.version, { tags: { owner: "sdk" } });
    assert.deepEqual(updated.properties.tags, { owner: "sdk" });

    const deleted = await (await client.beginDeleteCertificate(name, FAST_POLL)).pollUntilDone();
    assert.equal(deleted.name, name);
    assert.ok(deleted.recoveryId);
    await assertKvError(client.getCertificate(name), 404, "CertificateNotFound");
    assert.equal((await client.getDeletedCertificate(name)).name, name);
    assert.ok((await collect(client.listDeletedCertificates())).some((d) => d.name === name));

    await (await client.beginRecoverDeletedCertificate(name, FAST_POLL)).pollUntilDone();
    assert.deepEqual(Buffer.from((await client.getCertificate(name)).cer), chain.leaf.raw);
    // Recovery brings back the backing secret too (docs/protocol.md §1.4).
    assert.equal((await secretClient.getSecret(name)).properties.contentType, "application/x-pkcs12");

    await (await client.beginDeleteCertificate(name, FAST_POLL)).pollUntilDone();
    await client.purgeDeletedCertificate(name);
    await assertKvError(client.getDeletedCertificate(name), 404, "CertificateNotFound");
  });
});

describe("certificate routes the emulator does not implement", () => {
  // Key Vault has these operations; the emulator answers them in Key Vault's error envelope
  // (501 NotImplemented, naming the operation) instead of reading "contacts" or "issuers" as a
  // certificate name (which would be 404 CertificateNotFound).
  const calls = {
    getContacts: () => client.getContacts(),
    setContacts: () => client.setContacts([{ email: "ops@example.com", name: "ops" }]),
    deleteContacts: () => client.deleteContacts(),
    getIssuer: () => client.getIssuer("issuer1"),
  };
  for (const [method, call] of Object.entries(calls)) {
    it(`CertificateClient.${method}`, async () => {
      unsupported(`CertificateClient.${method}`);
      const err = await assertKvError(call(), 501, "NotImplemented");
      assert.doesNotMatch(err.message, /CertificateNotFound|not found/i);
    });
  }

  it("CertificateClient.listPropertiesOfIssuers", async () => {
    unsupported("CertificateClient.listPropertiesOfIssuers");
    await assertKvError(collect(client.listPropertiesOfIssuers()), 501, "NotImplemented");
  });
});
