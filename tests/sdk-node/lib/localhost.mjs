// Preloaded into every test process (`node --import`): `*.localhost` resolves to 127.0.0.1,
// as RFC 6761 §6.3 says it should, because the system resolver here does not implement that
// rule and the vault URLs are `https://<vault>.vault.localhost:<port>/`. Only the name
// lookup changes; TLS still verifies the certificate against the host name.
import dns from "node:dns";

const realLookup = dns.lookup;

function isLocalhostName(host) {
  if (typeof host !== "string") return false;
  const name = host.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
}

dns.lookup = function lookup(hostname, options, callback) {
  if (!isLocalhostName(hostname)) return realLookup.call(dns, hostname, options, callback);
  if (typeof options === "function") {
    callback = options;
    options = {};
  }
  const opts = typeof options === "number" ? { family: options } : options ?? {};
  // The emulator listens on 127.0.0.1 only: never ::1, never DNS.
  process.nextTick(() => {
    if (opts.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
    else callback(null, "127.0.0.1", 4);
  });
};
