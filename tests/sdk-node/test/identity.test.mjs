// The credentials of @azure/identity against the emulator's Entra, token issuer and IMDS,
// mirroring tests/sdk/test_auth.py: each credential gets a signed token for the vault; Entra
// and IMDS errors surface as the SDK's own error types.
// reference: docs/protocol.md §2 (challenge), §3.4 (AADSTS errors), §4 (IMDS), §1.6 (403).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AuthenticationError, AuthenticationRequiredError, CredentialUnavailableError } from "@azure/identity";
import {
  LIMITED_CLIENT_ID,
  LIMITED_CLIENT_SECRET,
  SP_CLIENT_ID,
  TENANT_ID,
  UNKNOWN_CLIENT_ID,
  USER_ASSIGNED_CLIENT_ID,
  WORKLOAD_CLIENT_ID,
  assertKvError,
  certificates,
  clientSecret,
  defaultCredential,
  info,
  keys,
  managedIdentity,
  mintToken,
  secrets,
  workloadIdentity,
} from "../lib/env.mjs";

/** The vault's 401 challenge parameters (what the SDK's challenge policy parses). */
async function challenge() {
  const resp = await fetch(`${info.vault_url}secrets/challenge-probe?api-version=7.6`);
  assert.equal(resp.status, 401);
  assert.equal((await resp.json()).error.code, "Unauthorized");
  const header = resp.headers.get("www-authenticate");
  assert.match(header, /^Bearer /);
  return Object.fromEntries(
    header
      .slice("Bearer ".length)
      .split(",")
      .map((part) => part.trim().split("="))
      .map(([k, v]) => [k.trim(), v.trim().replace(/^"|"$/g, "")]),
  );
}

/** Entra refused the request: the SDK's authentication error with the AADSTS code, not "unavailable". */
function assertEntraError(err, aadsts) {
  // MSAL-backed credentials surface Entra's refusal as AuthenticationRequiredError (a subclass
  // of neither of the others), with Entra's AADSTS text in the message.
  assert.ok(err instanceof AuthenticationError || err instanceof AuthenticationRequiredError, `${err.name}: ${err.message}`);
  assert.ok(!(err instanceof CredentialUnavailableError), "Entra rejected the request; that is not 'unavailable'");
  assert.match(err.message, new RegExp(`AADSTS${aadsts}\\b`));
}

function claims(token) {
  const [header, payload] = token.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url")));
  return { header, payload };
}

describe("identity", () => {
  it("the vault's challenge names the emulator's tenant and a resource the SDK accepts", async () => {
    const c = await challenge();
    assert.ok(c.authorization.startsWith(info.authority_host.replace(/\/$/, "")), c.authorization);
    assert.equal(c.authorization.replace(/\/$/, "").split("/").at(-1), TENANT_ID);
    // keyvault-common's verifyChallengeResource: the vault host ends with "." + resource host.
    assert.ok(new URL(info.vault_url).hostname.endsWith(`.${new URL(c.resource).hostname}`));
  });

  const expected = {
    "workload identity (token file)": [() => workloadIdentity(), WORKLOAD_CLIENT_ID],
    "client secret (authorityHost)": [() => clientSecret(), SP_CLIENT_ID],
    "managed identity, user-assigned (IMDS)": [() => managedIdentity(), USER_ASSIGNED_CLIENT_ID],
  };
  for (const [title, [make, appId]] of Object.entries(expected)) {
    it(`${title} gets a signed token for the vault`, async () => {
      const scope = `${(await challenge()).resource.replace(/\/$/, "")}/.default`;
      const token = await make().getToken(scope);
      assert.ok(token.expiresOnTimestamp > Date.now() + 300_000);
      const { header, payload } = claims(token.token);
      assert.equal(header.alg, "RS256");
      assert.equal(payload.aud, scope.replace(/\/\.default$/, ""));
      assert.equal(payload.tid, TENANT_ID);
      assert.equal(payload.iss, `https://sts.windows.net/${TENANT_ID}/`);
      assert.equal(payload.appid ?? payload.azp, appId);
      assert.ok(payload.oid);
    });
  }

  it("managed identity, system-assigned (IMDS) reads the one secret it is granted", async () => {
    const c = secrets(managedIdentity(null));
    assert.equal((await c.getSecret("seeded")).value, "second");
    await assertKvError(c.getSecret("limited-only"), 403, "Forbidden", "ForbiddenByRbac");
  });

  it("DefaultAzureCredential with the environment the AKS workload-identity webhook injects", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AZURE_TENANT_ID: TENANT_ID,
      AZURE_CLIENT_ID: WORKLOAD_CLIENT_ID,
      AZURE_FEDERATED_TOKEN_FILE: mintToken(),
      AZURE_AUTHORITY_HOST: info.authority_host,
    });
    try {
      const c = secrets(defaultCredential({ disableInstanceDiscovery: true }));
      assert.equal((await c.getSecret("seeded")).value, "second");
    } finally {
      for (const k of ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it("an identity without a grant is 403 ForbiddenByRbac on secrets, keys and certificates", async () => {
    const cred = clientSecret({ clientId: LIMITED_CLIENT_ID, secret: LIMITED_CLIENT_SECRET });
    assert.equal((await secrets(cred).getSecret("limited-only")).value, "visible-to-limited");
    await assertKvError(secrets(cred).getSecret("seeded"), 403, "Forbidden", "ForbiddenByRbac");
    await assertKvError(keys(cred).getKey("seeded-rsa"), 403, "Forbidden", "ForbiddenByRbac");
    await assertKvError(certificates(cred).getCertificate("seeded-tls"), 403, "Forbidden", "ForbiddenByRbac");
  });

  it("an unknown client is AADSTS700016 for workload identity and client secret", async () => {
    for (const cred of [
      workloadIdentity({ clientId: UNKNOWN_CLIENT_ID }),
      clientSecret({ clientId: UNKNOWN_CLIENT_ID }),
    ]) {
      const err = await cred.getToken("https://vault.azure.net/.default").then(assert.fail, (e) => e);
      assertEntraError(err, "700016");
    }
  });

  it("a wrong client secret is AADSTS7000215", async () => {
    const err = await clientSecret({ secret: "not-the-secret" })
      .getToken("https://vault.azure.net/.default")
      .then(assert.fail, (e) => e);
    assertEntraError(err, "7000215");
  });

  it("a token file with the wrong subject is AADSTS70021", async () => {
    const err = await workloadIdentity({ tokenFilePath: mintToken("system:serviceaccount:sdk:other") })
      .getToken("https://vault.azure.net/.default")
      .then(assert.fail, (e) => e);
    assertEntraError(err, "70021");
  });

  it("IMDS with an unknown identity is CredentialUnavailableError (Identity not found)", async () => {
    const err = await managedIdentity(UNKNOWN_CLIENT_ID)
      .getToken("https://vault.azure.net/.default")
      .then(assert.fail, (e) => e);
    assert.ok(err instanceof CredentialUnavailableError || err instanceof AuthenticationError, err.name);
    assert.match(err.message, /Identity not found|invalid_request/);
  });
});
