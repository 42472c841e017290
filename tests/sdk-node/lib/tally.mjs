// The operation tally: every SDK method a test calls through `traced()` is appended to the
// JSONL file named by SDK_NODE_TALLY (one file for all test processes), and run.mjs prints
// the distinct operations at the end. An operation the emulator deliberately does not
// implement is recorded through `unsupported()` and listed apart, so the tally never counts
// it as answered the way Azure would.
import fs from "node:fs";

function record(op, kind) {
  const file = process.env.SDK_NODE_TALLY;
  if (!file) return;
  fs.appendFileSync(file, `${JSON.stringify({ op, kind })}\n`);
}

/** `target` whose method calls are recorded as `<label>.<method>`. */
export function traced(target, label = target.constructor.name) {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== "function" || typeof prop !== "string" || prop === "constructor") return value;
      return (...args) => {
        record(`${label}.${prop}`, "called");
        return value.apply(obj, args);
      };
    },
  });
}

/** Marks `<label>.<method>` as a Key Vault operation the emulator answers 501 NotImplemented. */
export function unsupported(op) {
  record(op, "unsupported");
}

export function summarize(file, passed) {
  let lines = [];
  try {
    lines = fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return "sdk-node tally: no operations recorded";
  }
  const calls = new Map();
  const notImplemented = new Set();
  for (const { op, kind } of lines) {
    if (kind === "unsupported") notImplemented.add(op);
    else calls.set(op, (calls.get(op) ?? 0) + 1);
  }
  const supported = [...calls.keys()].filter((op) => !notImplemented.has(op)).sort();
  const out = [
    `sdk-node tally: ${calls.size} distinct SDK operations, ${[...calls.values()].reduce((a, b) => a + b, 0)} calls`,
    passed
      ? `  ${supported.length} answered as Azure would (each asserted by a passing test):`
      : `  ${supported.length} called (the run FAILED: see the failing tests above):`,
    ...supported.map((op) => `    ${op} x${calls.get(op)}`),
  ];
  if (notImplemented.size) {
    out.push(`  ${notImplemented.size} not implemented by the emulator (Key Vault error shape, 501 NotImplemented):`);
    out.push(...[...notImplemented].sort().map((op) => `    ${op}`));
  }
  return out.join("\n");
}
