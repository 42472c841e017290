// Starts one keyvault-emulator (`serve --addr 127.0.0.1:0`, throw-away state dir, the seed of
// tests/sdk/seed.yaml), then runs `node --test` over test/*.test.mjs with the environment a user
// would set to point the official SDKs at it:
//   NODE_EXTRA_CA_CERTS                the emulator's generated CA (certificates stay verified)
//   AZURE_POD_IDENTITY_AUTHORITY_HOST  its IMDS endpoint, in place of http://169.254.169.254
//   NODE_OPTIONS=--import localhost.mjs  *.localhost -> 127.0.0.1 (RFC 6761)
// NODE_EXTRA_CA_CERTS is read once when a process starts, which is why the emulator is started
// here and the tests run in child processes. Prints the tally of SDK operations at the end.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { summarize } from "./lib/tally.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const READY_TIMEOUT_MS = 120_000;

function emulatorBinary() {
  if (process.env.KEYVAULT_EMULATOR_BIN) return process.env.KEYVAULT_EMULATOR_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repo, "target");
  return path.join(target, "debug", "keyvault-emulator");
}

function tail(file, lines = 60) {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no emulator stderr captured)";
  }
}

function readyLine(proc) {
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(
      () => reject(new Error(`emulator printed no ready line within ${READY_TIMEOUT_MS / 1000}s`)),
      READY_TIMEOUT_MS,
    );
    const onData = (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      proc.stdout.off("data", onData);
      proc.stdout.resume(); // keep draining so the pipe never fills
      resolve(buf.slice(0, nl));
    };
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", onData);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`emulator exited before its ready line (exit code ${code})`));
    });
  });
}

const binary = emulatorBinary();
if (!fs.existsSync(binary)) {
  console.error(`${binary} is missing: build it with \`cargo build -p keyvault-emulator --locked\``);
  process.exit(2);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "sdk-node-"));
const stateDir = path.join(work, "state");
const stderrPath = path.join(work, "emulator.stderr");
const tallyPath = path.join(work, "tally.jsonl");
fs.mkdirSync(stateDir);
const stderr = fs.openSync(stderrPath, "w");
const started = Date.now();
const emulator = spawn(
  binary,
  ["serve", "--addr", "127.0.0.1:0", "--state-dir", stateDir, "--seed", path.join(repo, "tests/sdk/seed.yaml")],
  { stdio: ["ignore", "pipe", stderr], env: { ...process.env, NO_COLOR: "1" } },
);

let status = 1;
try {
  let info;
  try {
    info = JSON.parse(await readyLine(emulator));
  } catch (err) {
    console.error(`keyvault-emulator serve did not start: ${err.message}\n--- stderr tail ---\n${tail(stderrPath)}`);
    process.exit(3);
  }
  const noProxy = ["localhost", ".localhost", "127.0.0.1"].join(",");
  const env = {
    ...process.env,
    EMULATOR_INFO: JSON.stringify(info),
    EMULATOR_STATE_DIR: stateDir,
    EMULATOR_BIN: binary,
    SDK_NODE_WORK: work,
    SDK_NODE_TALLY: tallyPath,
    NODE_EXTRA_CA_CERTS: info.ca_file,
    AZURE_POD_IDENTITY_AUTHORITY_HOST: info.imds_endpoint,
    NO_PROXY: process.env.NO_PROXY ? `${process.env.NO_PROXY},${noProxy}` : noProxy,
    no_proxy: process.env.no_proxy ? `${process.env.no_proxy},${noProxy}` : noProxy,
    NODE_OPTIONS: [process.env.NODE_OPTIONS, `--import=${pathToFileURL(path.join(here, "lib/localhost.mjs"))}`]
      .filter(Boolean)
      .join(" "),
  };
  const files = fs
    .readdirSync(path.join(here, "test"))
    .filter((f) => f.endsWith(".test.mjs"))
    .sort()
    .map((f) => path.join("test", f));
  const runner = spawn(process.execPath, ["--test", ...process.argv.slice(2), ...files], {
    cwd: here,
    env,
    stdio: "inherit",
  });
  status = await new Promise((resolve) => runner.once("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
  console.log(summarize(tallyPath, status === 0));
  console.log(`sdk-node: ${((Date.now() - started) / 1000).toFixed(1)} s (emulator start to last test)`);
  if (status !== 0) console.error(`--- keyvault-emulator stderr (tail) ---\n${tail(stderrPath)}`);
} finally {
  emulator.kill("SIGTERM");
  await new Promise((resolve) => {
    if (emulator.exitCode !== null || emulator.signalCode !== null) return resolve();
    const force = setTimeout(() => emulator.kill("SIGKILL"), 10_000);
    emulator.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
  });
  fs.closeSync(stderr);
  if (status === 0) fs.rmSync(work, { recursive: true, force: true });
}
process.exit(status);
