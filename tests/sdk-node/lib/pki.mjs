// Test certificates and PKCS#12 files made with the `openssl` command line (Node has no X.509
// or PKCS#12 writer): a CA, a leaf it signs, and PFX files with the protections the service
// accepts. Everything lives in a per-call temp dir under the run's work dir.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

function openssl(args, cwd) {
  return execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
}

/** A CA and a leaf certificate for `cn` signed by it; `keyType` "rsa" (2048) or "ec" (P-256). */
export function makeChain(cn, { keyType = "rsa" } = {}) {
  const dir = fs.mkdtempSync(path.join(process.env.SDK_NODE_WORK, "pki-"));
  const newKey = keyType === "ec" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"];
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=SDK Node Test CA", "-days", "30",
    "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE"], dir);
  openssl(["req", "-new", ...newKey, "-nodes", "-subj", `/CN=${cn}`, "-keyout", "leaf.key", "-out", "leaf.csr"], dir);
  fs.writeFileSync(path.join(dir, "leaf.ext"), `subjectAltName=DNS:${cn}\nbasicConstraints=CA:FALSE\n`);
  openssl(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "10",
    "-extfile", "leaf.ext", "-out", "leaf.pem"], dir);
  const read = (f) => fs.readFileSync(path.join(dir, f), "utf8");
  return {
    dir,
    keyPem: read("leaf.key"),
    leafPem: read("leaf.pem"),
    caPem: read("ca.pem"),
    leaf: new crypto.X509Certificate(read("leaf.pem")),
    ca: new crypto.X509Certificate(read("ca.pem")),
  };
}

/**
 * The chain as PKCS#12 bytes. `protection`:
 *   "none"        no encryption, MAC with the empty password (openssl -keypbe/-certpbe NONE)
 *   "aes256"      PBES2 AES-256-CBC + SHA-256 MAC with `password`
 *   "3des"        legacy PBES1 SHA1-3DES + SHA-1 MAC with `password`
 *   "empty"       AES-256 and MAC under the empty password "" (what `-passout pass:` writes)
 *   "nomac"       no encryption and no MAC at all
 */
export function pfx(chain, protection, password = "") {
  const base = ["pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", "ca.pem", "-name", "leaf"];
  const out = `out-${crypto.randomBytes(3).toString("hex")}.pfx`;
  const extra = {
    none: ["-keypbe", "NONE", "-certpbe", "NONE", "-passout", "pass:"],
    aes256: ["-keypbe", "AES-256-CBC", "-certpbe", "AES-256-CBC", "-macalg", "sha256", "-passout", `pass:${password}`],
    "3des": ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1", "-passout", `pass:${password}`],
    empty: ["-passout", "pass:"],
    nomac: ["-keypbe", "NONE", "-certpbe", "NONE", "-nomac", "-passout", "pass:"],
  }[protection];
  if (!extra) throw new Error(`unknown PFX protection ${protection}`);
  openssl([...base, ...extra, "-out", out], chain.dir);
  return fs.readFileSync(path.join(chain.dir, out));
}

/** DER bytes of a PEM certificate. */
export function der(x509) {
  return x509.raw;
}

/** Opens PKCS#12 bytes with `openssl pkcs12` (empty password) and returns the PEM it holds. */
export function pfxToPem(bytes) {
  const dir = fs.mkdtempSync(path.join(process.env.SDK_NODE_WORK, "pfx-"));
  fs.writeFileSync(path.join(dir, "in.pfx"), bytes);
  return openssl(["pkcs12", "-in", "in.pfx", "-nodes", "-passin", "pass:"], dir).toString("utf8");
}

/** Every certificate in PEM text, in order. */
export function pemCertificates(text) {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (m) => new crypto.X509Certificate(m[0]),
  );
}
