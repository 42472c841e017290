// What every test needs: the emulator run.mjs started (its ready line in EMULATOR_INFO), the
// identities of tests/sdk/seed.yaml, credentials and SDK clients built with user-facing options
// only, and Key Vault error assertions. No SDK internals are patched.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
} from "@azure/identity";
import { CertificateClient } from "@azure/keyvault-certificates";
import { KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { traced } from "./tally.mjs";

if (!process.env.EMULATOR_INFO) {
  throw new Error("EMULATOR_INFO is not set: run the suite with `bash tests/sdk-node/run.sh`");
}

/** The emulator's ready line. */
export const info = JSON.parse(process.env.EMULATOR_INFO);
export const work = process.env.SDK_NODE_WORK;

// tests/sdk/seed.yaml (test-only values of a throw-away emulator, not credentials).
export const TENANT_ID = info.tenant_id;
export const WORKLOAD_CLIENT_ID = "11111111-1111-1111-1111-111111111111";
export const WORKLOAD_SUBJECT = "system:serviceaccount:sdk:app";
export const SP_CLIENT_ID = "22222222-2222-2222-2222-222222222222";
export const SP_CLIENT_SECRET = "sdk-suite-client-secret";
export const USER_ASSIGNED_CLIENT_ID = "33333333-3333-3333-3333-333333333333";
export const SYSTEM_ASSIGNED_CLIENT_ID = "44444444-4444-4444-4444-444444444444";
export const LIMITED_CLIENT_ID = "55555555-5555-5555-5555-555555555555";
export const LIMITED_CLIENT_SECRET = "sdk-suite-limited-secret";
export const UNKNOWN_CLIENT_ID = "99999999-9999-9999-9999-999999999999";

export const vaultUrl = info.vault_urls.sdk;
export const otherVaultUrl = info.vault_urls.other;

/** Poll intervals for the SDK's long-running operations (the default 2 s only adds waiting). */
export const FAST_POLL = { updateIntervalInMs: 50 };

/** Object names that never collide across tests sharing the one emulator. */
export function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(5).toString("hex")}`;
}

/** `keyvault-emulator token`: a projected service-account JWT, as the kubelet writes it. */
export function mintToken(sub = WORKLOAD_SUBJECT, { aud } = {}) {
  const out = path.join(work, `sa-token-${crypto.randomBytes(4).toString("hex")}`);
  const args = ["token", "--sub", sub, "--state-dir", process.env.EMULATOR_STATE_DIR, "--issuer", info.issuer];
  if (aud) args.push("--aud", aud);
  execFileSync(process.env.EMULATOR_BIN, [...args, "--out", out], { stdio: ["ignore", "ignore", "pipe"] });
  return out;
}

// --- credentials ----------------------------------------------------------------------------

export function workloadIdentity({ clientId = WORKLOAD_CLIENT_ID, tokenFilePath = mintToken() } = {}) {
  return traced(
    new WorkloadIdentityCredential({
      tenantId: TENANT_ID,
      clientId,
      tokenFilePath,
      authorityHost: info.authority_host,
      // MSAL would ask login.microsoftonline.com whether the authority is known; this is the
      // documented switch for private clouds and Azure Stack.
      disableInstanceDiscovery: true,
    }),
  );
}

export function clientSecret({ clientId = SP_CLIENT_ID, secret = SP_CLIENT_SECRET } = {}) {
  return traced(
    new ClientSecretCredential(TENANT_ID, clientId, secret, {
      authorityHost: info.authority_host,
      disableInstanceDiscovery: true,
    }),
  );
}

/** IMDS through AZURE_POD_IDENTITY_AUTHORITY_HOST (set by run.mjs); `null` = system-assigned. */
export function managedIdentity(clientId = USER_ASSIGNED_CLIENT_ID) {
  if (clientId === null) return traced(new ManagedIdentityCredential(), "ManagedIdentityCredential(system)");
  return traced(new ManagedIdentityCredential({ clientId }), "ManagedIdentityCredential(user)");
}

export function defaultCredential(options) {
  return traced(new DefaultAzureCredential(options));
}

export const CREDENTIALS = {
  "workload identity": () => workloadIdentity(),
  "client secret": () => clientSecret(),
  "managed identity": () => managedIdentity(),
};

// --- clients --------------------------------------------------------------------------------

/**
 * Every data-plane response the clients of this process received (method, URL, status,
 * body text), through the SDK's documented `additionalPolicies` option: the JavaScript
 * counterpart of Python's `raw_response_hook`. Tests read pages' nextLinks and error bodies here.
 */
export const responses = [];

const recorder = {
  name: "sdkNodeRecorder",
  async sendRequest(request, next) {
    const response = await next(request);
    responses.push({ method: request.method, url: request.url, status: response.status, body: response.bodyAsText });
    return response;
  },
};

function withRecorder(options = {}) {
  return {
    ...options,
    additionalPolicies: [...(options.additionalPolicies ?? []), { policy: recorder, position: "perRetry" }],
  };
}

export function secrets(credential, url = vaultUrl, options) {
  return traced(new SecretClient(url, credential, withRecorder(options)));
}

export function keys(credential, url = vaultUrl, options) {
  return traced(new KeyClient(url, credential, withRecorder(options)));
}

export function certificates(credential, url = vaultUrl, options) {
  return traced(new CertificateClient(url, credential, withRecorder(options)));
}

// --- assertions -----------------------------------------------------------------------------

/**
 * Awaits `promise`, expects the SDK's RestError carrying Key Vault's error envelope
 * (`{"error": {"code", "message", "innererror"}}`) with `status` and `code`, and returns it.
 */
export async function assertKvError(promise, status, code, inner) {
  const err = await promise.then(
    () => assert.fail(`expected ${status} ${code}, the call succeeded`),
    (e) => e,
  );
  assert.equal(err.name, "RestError", `${err.name}: ${err.message}`);
  assert.equal(err.statusCode, status, err.message);
  assert.equal(err.code, code, err.message);
  const last = responses.at(-1);
  assert.equal(last?.status, status, `last response ${JSON.stringify(last)}`);
  const body = JSON.parse(last.body ?? "{}");
  assert.equal(body.error?.code, code, `error body ${last.body}`);
  assert.ok(body.error?.message, "error.message missing");
  if (inner !== undefined) assert.equal(body.error?.innererror?.code, inner);
  // Every Key Vault response carries a request id (docs/protocol.md §1.6).
  assert.ok(err.response.headers.get("x-ms-request-id"), "x-ms-request-id missing");
  return err;
}

/**
 * Collects every item of an SDK pager page by page, with each page's request URL and the
 * nextLink its body carried (from the recorded responses).
 */
export async function collectPages(pager, maxPageSize) {
  const items = [];
  const pages = [];
  for await (const page of pager.byPage(maxPageSize ? { maxPageSize } : undefined)) {
    items.push(...page);
    const last = responses.at(-1);
    pages.push({ size: page.length, url: last.url, nextLink: JSON.parse(last.body).nextLink ?? undefined });
  }
  return { items, pages };
}

export async function collect(pager) {
  const items = [];
  for await (const item of pager) items.push(item);
  return items;
}

export function readFile(p) {
  return fs.readFileSync(p);
}
