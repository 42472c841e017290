//! Conformance: the reference provider's vectors (docs/reference-provider.md §1.5, §2, §7) run end
//! to end. The real agent (`run_once` in-process, or the built binary) talks to the
//! in-process emulator over TLS with a real workload identity exchange (a minted service
//! account token file, `AZURE_FEDERATED_TOKEN_FILE`, and the rest passed as an `Env` value,
//! never the process environment), and the written files are compared byte for byte, with
//! their modes.
//!
//! Expected bytes come from the committed fixtures in `fixtures/convert/` (written by OpenSSL)
//! or from what the emulator serves (read independently over REST with another identity), never
//! from the agent's own converter.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyvault_agent::error::{EXIT_CONFIG, EXIT_CONVERT, EXIT_OBJECT};
use serde_json::Value;

use crate::util::{Harness, LogCapture, SA_SUBJECT};

/// Workload identity used by the agent in every test.
const WI_CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
/// A client-secret identity the tests use to read what the emulator serves.
const READER_CLIENT_ID: &str = "55555555-5555-5555-5555-555555555555";
const READER_SECRET: &str = "conformance-reader-secret-7c1d";
const API: &str = "2025-07-01";

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/convert/",
            $name
        ))
        .as_slice()
    };
}

/// Plain values of §2.1 / §2.5 / §2.11 (name, stored value).
const TRAILING_WS: &str = "line one\n  padded value  \n\n";
const UNICODE: &str = "unicodé ✓ 🔑\ttab\u{0}nul";
const HIST_A: &str = "history-value-a-1700000000";
const HIST_B: &str = "history-value-b-1700000100";
const HIST_C_DISABLED: &str = "history-value-c-disabled";
const HIST_D: &str = "history-value-d-1700000300";
const HIST_V_A: &str = "a0000000000000000000000000000001";
const HIST_V_B: &str = "a0000000000000000000000000000002";
const HIST_V_C: &str = "a0000000000000000000000000000003";
const HIST_V_D: &str = "a0000000000000000000000000000004";

const P256_GX: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
const P256_GY: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
const RFC7517_A1_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

// reference: docs/reference-provider.md §2.10 (EC P-256 generator point)
const P256_GEN_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt\n\
6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==\n\
-----END PUBLIC KEY-----\n";

// reference: docs/reference-provider.md §2.10 (RFC 7517 A.1 RSA modulus, e=AQAB)
const RFC7517_A1_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0vx7agoebGcQSuuPiLJX\n\
ZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS\n\
oc/BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ/2W+5JsGY4Hc5n9yBXArwl93lqt\n\
7/RN5w6Cf0h4QyQ5v+65YGjQR0/FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0\n\
zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt+bFTWhAI4vMQFh6WeZu0f\n\
M4lFd2NcRwr3XPksINHaQ+G/xBniIqbw0Ls1jF44+csFCur+kEgU8awapJzKnqDK\n\
gwIDAQAB\n\
-----END PUBLIC KEY-----\n";

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A YAML scalar for any string (JSON strings are YAML double-quoted scalars).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `PUBLIC KEY` PEM → (x, y) base64url of the uncompressed EC point, via the RustCrypto
/// parsers (independent of the agent's converter).
fn ec_xy_p384(pem: &str) -> (String, String) {
    use spki::DecodePublicKey;
    let k = p384::PublicKey::from_public_key_pem(pem).unwrap();
    let pt = p384::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&k, false);
    (
        URL_SAFE_NO_PAD.encode(pt.x().unwrap()),
        URL_SAFE_NO_PAD.encode(pt.y().unwrap()),
    )
}

fn ec_xy_p521(pem: &str) -> (String, String) {
    use spki::DecodePublicKey;
    let k = p521::PublicKey::from_public_key_pem(pem).unwrap();
    let pt = p521::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&k, false);
    (
        URL_SAFE_NO_PAD.encode(pt.x().unwrap()),
        URL_SAFE_NO_PAD.encode(pt.y().unwrap()),
    )
}

fn rsa_ne(pem: &str) -> (String, String) {
    use rsa::traits::PublicKeyParts;
    use spki::DecodePublicKey;
    let k = rsa::PublicKey::from_public_key_pem(pem).unwrap();
    (
        URL_SAFE_NO_PAD.encode(k.n().to_be_bytes_trimmed_vartime()),
        URL_SAFE_NO_PAD.encode(k.e().to_be_bytes_trimmed_vartime()),
    )
}

/// A `|` block scalar body indented for the seed.
fn block(s: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    s.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The 3-certificate EC chain of §2.6 PFX case (2), leaf first (its key is `foo-pkcs8.key`).
const FOO_CHAIN: [&[u8]; 3] = [
    fixture!("foo-leaf.pem"),
    fixture!("foo-int.pem"),
    fixture!("foo-root.pem"),
];
/// Every input order of a 3-certificate chain (indexes into [`FOO_CHAIN`]).
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// A seed certificate from PEM text (key + certificates in the given order) served as a PFX.
fn pem_certificate(name: &str, pem: &[u8]) -> String {
    format!(
        "      - name: {name}\n        content_type: application/x-pkcs12\n        pem: |\n{}",
        block(text(pem), 10)
    )
}

/// The conformance seed: every reference vector that can live in a vault.
fn seed() -> String {
    let (p384x, p384y) = ec_xy_p384(text(fixture!("p384.pub")));
    let (p521x, p521y) = ec_xy_p521(text(fixture!("p521.pub")));
    let (rn, re) = rsa_ne(text(fixture!("rsa4096.pub")));
    let pfx = |b: &[u8]| STANDARD.encode(b);
    // §2.6 (a): the chain in all 6 orders, with its own key. The emulator builds each PFX with
    // the bags in the PEM's order (the test checks what is really served).
    let mut orders = String::new();
    for (i, perm) in ORDERS.iter().enumerate() {
        let mut parts = vec![fixture!("foo-pkcs8.key")];
        parts.extend(perm.iter().map(|&j| FOO_CHAIN[j]));
        orders.push_str(&pem_certificate(&format!("foo-order-{i}"), &cat(&parts)));
    }
    // §2.6 (c): the intermediate missing.
    orders.push_str(&pem_certificate(
        "foo-incomplete",
        &cat(&[
            fixture!("foo-pkcs8.key"),
            fixture!("foo-leaf.pem"),
            fixture!("foo-root.pem"),
        ]),
    ));
    // §2.6 step 5: an unrelated extra certificate also makes the chain incomplete; the
    // original order (with the root before its intermediate) is kept.
    orders.push_str(&pem_certificate(
        "foo-extra",
        &cat(&[
            fixture!("foo-pkcs8.key"),
            fixture!("foo-leaf.pem"),
            fixture!("ec-root.pem"),
            fixture!("foo-root.pem"),
            fixture!("foo-int.pem"),
        ]),
    ));
    let binary: Vec<u8> = (0u8..=255).collect();
    format!(
        r#"
vaults:
  - name: demo
    secrets:
      - {{ name: trailing-ws, value: {trailing} }}
      - {{ name: secret1, value: "secret1value" }}
      - {{ name: unicode, value: {unicode} }}
      - {{ name: large, value: {large} }}
      - {{ name: abcdefg, value: "abcdefg" }}
      - {{ name: utf8, value: "TestSecret1" }}
      - {{ name: b64, value: "QmFzZTY0RW5jb2RlZFN0cmluZw==" }}
      - {{ name: b64-binary, value: {binary} }}
      - {{ name: hex-upper, value: "486578456E636F646564537472696E67" }}
      - {{ name: hex-lower, value: "486578456e636f646564537472696e67" }}
      - {{ name: bad-b64, value: "not*base64!" }}
      - {{ name: b64-wrapped, value: "QmFzZTY0RW5j\r\nb2RlZFN0cmluZw==\n" }}
      - {{ name: b64-nopad, value: "QmFzZTY0RW5jb2RlZFN0cmluZw" }}
      - {{ name: b64-urlsafe, value: "-_8=" }}
      - {{ name: hex-odd, value: "48657" }}
      - {{ name: hex-bad, value: "48zz" }}
      - {{ name: pfx-as-plain, value: {pfx_plain}, content_type: application/x-pkcs12 }}
      - name: hist
        versions:
          - {{ value: {ha}, created: 1700000000, version: {HIST_V_A} }}
          - {{ value: {hb}, created: 1700000100, version: {HIST_V_B} }}
          - {{ value: {hc}, created: 1700000200, version: {HIST_V_C}, enabled: false }}
          - {{ value: {hd}, created: 1700000300, version: {HIST_V_D} }}
    keys:
      - {{ name: ec-generator, jwk: {{ kty: EC, crv: P-256, x: {P256_GX}, y: {P256_GY} }} }}
      - {{ name: rsa-rfc7517, jwk: {{ kty: RSA, n: {RFC7517_A1_N}, e: AQAB }} }}
      - {{ name: ec-p384, jwk: {{ kty: EC, crv: P-384, x: {p384x}, y: {p384y} }} }}
      - {{ name: ec-p521, jwk: {{ kty: EC-HSM, crv: P-521, x: {p521x}, y: {p521y} }} }}
      - {{ name: rsa-4096, jwk: {{ kty: RSA-HSM, n: {rn}, e: {re} }} }}
    certificates:
      - {{ name: demo-legacy, pfx_base64: {demo_legacy} }}
      - {{ name: demo-aes, pfx_base64: {demo_aes} }}
      - {{ name: foo-aes, pfx_base64: {foo_aes} }}
      - {{ name: foo-legacy, pfx_base64: {foo_legacy} }}
      - name: foo-pem
        pem: |
{foo_kv}
      - name: demo-pem
        pem: |
{demo_pem}
{orders}identities:
  - name: app
    client_id: {WI_CLIENT_ID}
    federated_credentials:
      - {{ subject: "{SA_SUBJECT}", audience: api://AzureADTokenExchange }}
    access: all
  - name: reader
    client_id: {READER_CLIENT_ID}
    client_secret: {READER_SECRET}
    access: all
"#,
        trailing = q(TRAILING_WS),
        unicode = q(UNICODE),
        large = q(&large_value()),
        binary = q(&STANDARD.encode(&binary)),
        pfx_plain = q(&pfx(fixture!("demo-aes.pfx"))),
        ha = q(HIST_A),
        hb = q(HIST_B),
        hc = q(HIST_C_DISABLED),
        hd = q(HIST_D),
        demo_legacy = pfx(fixture!("demo-legacy.pfx")),
        demo_aes = pfx(fixture!("demo-aes.pfx")),
        foo_aes = pfx(fixture!("foo-aes.pfx")),
        foo_legacy = pfx(fixture!("foo-legacy.pfx")),
        foo_kv = block(text(fixture!("foo-kv.pem")), 10),
        // Certificate first, PKCS#1 key last: the emulator normalises, the agent must not.
        demo_pem = block(
            text(&cat(&[fixture!("demo.pem"), fixture!("demo-pkcs1.key")])),
            10
        ),
    )
}

/// A 25 KiB value (Key Vault's maximum secret size) with every printable ASCII character.
fn large_value() -> String {
    (0..25 * 1024)
        .map(|i| char::from(b' ' + (i % 95) as u8))
        .collect()
}

async fn start() -> Harness {
    Harness::with_seed(&seed()).await
}

/// The objects of a fully successful sync over the whole seed (output path → expectation is
/// checked by the individual tests; this list feeds the binary log test).
fn all_good_objects() -> Vec<&'static str> {
    vec![
        "objectName: trailing-ws\nobjectType: secret",
        "objectName: secret1\nobjectType: secret",
        "objectName: unicode\nobjectType: secret",
        "objectName: large\nobjectType: secret",
        "objectName: abcdefg\nobjectType: secret",
        "objectName: utf8\nobjectType: secret\nobjectEncoding: utf-8",
        "objectName: b64\nobjectType: secret\nobjectEncoding: base64",
        "objectName: b64-binary\nobjectType: secret\nobjectEncoding: BasE64",
        "objectName: hex-upper\nobjectType: secret\nobjectEncoding: hex",
        "objectName: hex-lower\nobjectType: secret\nobjectEncoding: HEX",
        "objectName: pfx-as-plain\nobjectType: secret\nobjectFormat: pfx",
        "objectName: hist\nobjectType: secret\nobjectVersionHistory: 2",
        "objectName: ec-generator\nobjectType: key",
        "objectName: rsa-rfc7517\nobjectType: key",
        "objectName: ec-p384\nobjectType: key",
        "objectName: ec-p521\nobjectType: key",
        "objectName: rsa-4096\nobjectType: key",
        "objectName: demo-legacy\nobjectType: secret",
        "objectName: demo-aes\nobjectType: secret\nobjectFormat: PEM",
        "objectName: foo-aes\nobjectType: secret",
        "objectName: foo-legacy\nobjectType: secret\nobjectAlias: foo-legacy.pem",
        "objectName: foo-aes\nobjectType: secret\nobjectFormat: pfx\nobjectAlias: foo-aes.pfx.b64",
        "objectName: foo-aes\nobjectType: secret\nobjectFormat: pfx\nobjectEncoding: base64\nobjectAlias: foo-aes.pfx",
        "objectName: foo-pem\nobjectType: secret",
        "objectName: demo-pem\nobjectType: secret\nobjectFormat: pem",
        "objectName: foo-pem\nobjectType: secret\nobjectFormat: pfx\nobjectAlias: foo-pem.pfx.b64",
        "objectName: foo-order-5\nobjectType: secret",
        "objectName: foo-aes\nobjectType: cert\nobjectAlias: certs/foo-aes.crt",
        "objectName: foo-pem\nobjectType: cert\nobjectAlias: certs/foo-pem.crt",
        "objectName: demo-legacy\nobjectType: cert\nobjectAlias: certs/demo.crt",
    ]
}

/// Reads what the emulator serves, as another identity with a client secret, so expected
/// bytes never come from the agent under test.
struct Reader {
    client: reqwest::Client,
    token: String,
    vault: url::Url,
}

impl Reader {
    async fn new(h: &Harness) -> Reader {
        let clients = keyvault_agent::http::build(&keyvault_agent::http::HttpOptions::new(
            vec![h.emu.ca_file()],
            Duration::from_secs(10),
        ))
        .unwrap();
        let client = clients.client;
        let url = h
            .emu
            .authority_host()
            .join(&format!("{}/oauth2/v2.0/token", h.emu.tenant_id()))
            .unwrap();
        let resp: Value = client
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", READER_CLIENT_ID),
                ("client_secret", READER_SECRET),
                ("scope", "https://vault.localhost/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = resp["access_token"]
            .as_str()
            .expect("reader token")
            .to_owned();
        Reader {
            client,
            token,
            vault: h.emu.vault_url("demo"),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let mut url = self.vault.join(path).unwrap();
        url.query_pairs_mut().append_pair("api-version", API);
        let r = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn secret_value(&self, name: &str) -> String {
        self.get(&format!("secrets/{name}")).await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn cer(&self, name: &str) -> Vec<u8> {
        STANDARD
            .decode(
                self.get(&format!("certificates/{name}")).await["cer"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap()
    }
}

/// One PEM block as the reference writes it (§2 general rules: 64 columns, trailing newline).
fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(text(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_ders(pem: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text(pem).lines() {
        if line.starts_with("-----BEGIN ") {
            cur = Some(String::new());
        } else if line.starts_with("-----END ") {
            out.push(STANDARD.decode(cur.take().unwrap()).unwrap());
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line.trim());
        }
    }
    out
}

/// (keys as PKCS#8 DER, certificates DER in bag order) of a password-less PFX.
fn open_pfx(der: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let a = p12_keystore::Pkcs12Archive::from_pkcs12(der, "").expect("pfx opens");
    (
        a.keys.iter().map(|k| k.key.as_der().to_vec()).collect(),
        a.certs.iter().map(|c| c.cert.as_der().to_vec()).collect(),
    )
}

fn raw(h: &Harness, rel: &str) -> Vec<u8> {
    std::fs::read(h.dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The mode of the file a published name resolves to (`ls -L`: through the symlinks).
fn mode(h: &Harness, rel: &str) -> u32 {
    std::fs::metadata(h.dir.join(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn spc_path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// reference: docs/reference-provider.md §2.1 (verbatim, nothing trimmed, objectFormat ignored even
// for an x-pkcs12 contentType without kid), §2.11 (plain value `secret1value`), §2.5 (every
// unit-test vector, hex in both cases, base64 to arbitrary bytes), §7 (encoding after
// conversion)
#[tokio::test]
async fn plain_secrets_and_encodings_over_the_wire() {
    let h = start().await;
    let spc = h.spc(
        &[
            "objectName: trailing-ws\nobjectType: secret",
            "objectName: secret1\nobjectType: secret",
            "objectName: abcdefg\nobjectType: secret",
            "objectName: utf8\nobjectType: secret\nobjectEncoding: utf-8",
            "objectName: b64\nobjectType: secret\nobjectEncoding: base64",
            "objectName: b64-binary\nobjectType: secret\nobjectEncoding: BasE64",
            "objectName: hex-upper\nobjectType: secret\nobjectEncoding: hex",
            "objectName: hex-lower\nobjectType: secret\nobjectEncoding: HEX",
            "objectName: pfx-as-plain\nobjectType: secret\nobjectFormat: pfx",
            "objectName: pfx-as-plain\nobjectType: secret\nobjectAlias: pfx-as-plain.pem",
            "objectName: b64-wrapped\nobjectType: secret\nobjectEncoding: base64",
            "objectName: unicode\nobjectType: secret",
            "objectName: large\nobjectType: secret",
            // reference: docs/reference-provider.md §1.5 (every string field is trimmed)
            "objectName: \"b64     \"\nobjectType: \"  secret\"\nobjectEncoding: \"base64   \"\nobjectAlias: \" trimmed \"",
        ],
        &[],
    );
    let report = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");

    let want: BTreeMap<String, Vec<u8>> = [
        ("trailing-ws", TRAILING_WS.as_bytes().to_vec()),
        ("secret1", b"secret1value".to_vec()),
        ("abcdefg", b"abcdefg".to_vec()),
        ("utf8", b"TestSecret1".to_vec()),
        ("b64", b"Base64EncodedString".to_vec()),
        ("b64-binary", (0u8..=255).collect()),
        ("hex-upper", b"HexEncodedString".to_vec()),
        ("unicode", UNICODE.as_bytes().to_vec()),
        ("large", large_value().into_bytes()),
        ("trimmed", b"Base64EncodedString".to_vec()),
        // Go's StdEncoding skips CR and LF anywhere (the reference's decoder).
        ("b64-wrapped", b"Base64EncodedString".to_vec()),
        ("hex-lower", b"HexEncodedString".to_vec()),
        (
            "pfx-as-plain",
            STANDARD.encode(fixture!("demo-aes.pfx")).into_bytes(),
        ),
        (
            "pfx-as-plain.pem",
            STANDARD.encode(fixture!("demo-aes.pfx")).into_bytes(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Byte for byte, and nothing else in the set.
    assert_eq!(h.files(), want);
    // reference: docs/reference-provider.md §2.8 (ids and versions reported)
    let s1 = report.objects.iter().find(|o| o.path == "secret1").unwrap();
    assert_eq!(s1.id, "secret/secret1");
    assert_eq!(s1.version.len(), 32);
    // The exchange really happened: one federated token for the whole set.
    assert_eq!(h.emu.counts().tokens(WI_CLIENT_ID), 1);
}

// reference: docs/reference-provider.md §2.5 [BUG] (bad base64 errors were unwrapped), §7 (wrap
// encoding errors with the object's identity), §6.9 (failure: old contents kept)
#[test]
fn bad_base64_fails_naming_the_object_and_leaves_the_directory_untouched() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(start());
    let dir = h.dir.display().to_string();

    // First run fails: nothing at all is published.
    let bad = h.spc(
        &[
            "objectName: secret1\nobjectType: secret",
            "objectName: bad-b64\nobjectType: secret\nobjectEncoding: base64",
        ],
        &[],
    );
    let run = |spc: &Path| {
        h.run_binary(
            &["--config", spc_path(spc), "--dir", &dir, "--once"],
            &h.wi_env(),
        )
    };
    let out = run(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(EXIT_CONVERT), "{stderr}");
    assert!(stderr.contains("bad-b64"), "the object is named: {stderr}");
    assert!(stderr.contains("base64"), "{stderr}");
    assert!(!stderr.contains("not*base64!"), "the value is not echoed");
    assert!(!h.dir.join("..data").exists(), "nothing published");
    assert!(h.files().is_empty());

    // After a good run, a failing run changes nothing (names, links, bytes).
    let good = h.spc(&["objectName: secret1\nobjectType: secret"], &[]);
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = h.snapshot();
    assert!(before.contains_key("/..data"));
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(EXIT_CONVERT));
    assert_eq!(h.snapshot(), before);
    assert_eq!(raw(&h, "secret1"), b"secret1value");
}

// reference: docs/reference-provider.md §1.5 (`objects` = `array:` → no error, no files), §6
// (`..data` is published even for an empty set)
#[tokio::test]
async fn an_empty_object_list_is_not_an_error() {
    let h = start().await;
    let spc = h.spc(&[], &[]);
    let report = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    assert!(report.objects.is_empty());
    assert!(h.files().is_empty());
    assert!(h.dir.join("..data").is_dir());
    assert_eq!(h.emu.counts().route(keyvault_emulator::Route::SecretGet), 0);
}

// reference: docs/reference-provider.md §2.5 (standard alphabet, padding required; Go's hex with
// `odd length`), [BUG] unwrapped errors: each failure names its object, the version fetched at
// "latest" and Go's offset, and never echoes the value
#[tokio::test]
async fn encoding_errors_over_the_wire_name_the_object() {
    let h = start().await;
    let reader = Reader::new(&h).await;
    for (name, encoding, expect) in [
        ("b64-nopad", "base64", "input byte 24"),
        ("b64-urlsafe", "base64", "input byte 0"),
        ("bad-b64", "base64", "input byte 3"),
        ("hex-odd", "hex", "odd length"),
        ("hex-bad", "hex", "byte 2"),
        // §2 general rules / §7: the decode runs after conversion, so converted PEM is
        // decoded too (and fails at its first `-`), as in the reference.
        ("foo-pem", "base64", "input byte 0"),
        ("foo-aes", "base64", "input byte 0"),
    ] {
        let spc = h.spc(
            &[
                "objectName: secret1\nobjectType: secret",
                &format!("objectName: {name}\nobjectType: secret\nobjectEncoding: {encoding}"),
            ],
            &[],
        );
        let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
        let m = e.to_string();
        assert_eq!(e.exit_code(), EXIT_CONVERT, "{m}");
        // The object was asked for at "latest": the message says which version failed.
        let id = reader.get(&format!("secrets/{name}")).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let version = id.rsplit('/').next().unwrap();
        assert_eq!(version.len(), 32, "{id}");
        assert!(
            m.contains(&format!("secret \"{name}\" (version {version}): ")),
            "{m}"
        );
        assert!(m.contains(expect), "{name}: {m}");
        assert!(!h.dir.join("..data").exists(), "nothing published: {m}");
    }
}

// reference: docs/reference-provider.md §2.2 (x-pkcs12 + pem: PKCS#8 key first, then the chain;
// x-pkcs12 + pfx: the base64 value verbatim; x-pem-file: verbatim whatever the format),
// §2.6 PFX cases (1) and (2), §2.11 (kid + pkcs12/pem vectors)
#[tokio::test]
async fn certificate_backed_secrets_convert_like_the_reference() {
    let h = start().await;
    let spc = h.spc(
        &[
            // (1) RSA, single v1 certificate, from an OpenSSL legacy (RC2/3DES) and an
            // OpenSSL 3 (PBES2/AES) import.
            "objectName: demo-legacy\nobjectType: secret",
            "objectName: demo-aes\nobjectType: secret\nobjectFormat: PEM",
            // (2) EC key with a 3-certificate chain.
            "objectName: foo-aes\nobjectType: secret",
            "objectName: foo-legacy\nobjectType: secret\nobjectAlias: foo-legacy.pem",
            "objectName: foo-aes\nobjectType: secret\nobjectFormat: pfx\nobjectAlias: foo-aes.pfx.b64",
            "objectName: foo-aes\nobjectType: secret\nobjectFormat: Pfx\nobjectEncoding: base64\nobjectAlias: foo-aes.pfx",
            // PEM-backed: verbatim, even when the stored text is not canonical.
            "objectName: foo-pem\nobjectType: secret",
            "objectName: demo-pem\nobjectType: secret\nobjectFormat: pem",
            // PEM-backed + pfx (beyond reference #1945).
            "objectName: foo-pem\nobjectType: secret\nobjectFormat: pfx\nobjectAlias: foo-pem.pfx.b64",
            "objectName: foo-pem\nobjectType: secret\nobjectFormat: pfx\nobjectEncoding: base64\nobjectAlias: foo-pem.pfx",
        ],
        &[],
    );
    h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    let kv = Reader::new(&h).await;

    let demo_pem = cat(&[fixture!("demo-pkcs8.key"), fixture!("demo.pem")]);
    assert_eq!(text(&raw(&h, "demo-legacy")), text(&demo_pem));
    assert_eq!(text(&raw(&h, "demo-aes")), text(&demo_pem));
    let foo_pem = cat(&[
        fixture!("foo-pkcs8.key"),
        fixture!("foo-leaf.pem"),
        fixture!("foo-int.pem"),
        fixture!("foo-root.pem"),
    ]);
    assert_eq!(text(&raw(&h, "foo-aes")), text(&foo_pem));
    assert_eq!(text(&raw(&h, "foo-legacy.pem")), text(&foo_pem));
    assert_eq!(foo_pem, fixture!("foo-kv.pem"), "fixture sanity");

    // pfx: exactly the served base64 text; with base64 encoding, its binary.
    let served = kv.secret_value("foo-aes").await;
    assert_eq!(text(&raw(&h, "foo-aes.pfx.b64")), served);
    let der = STANDARD.decode(&served).unwrap();
    assert_eq!(raw(&h, "foo-aes.pfx"), der);
    let (keys, certs) = open_pfx(&der);
    assert_eq!(keys, pem_ders(fixture!("foo-pkcs8.key")));
    assert_eq!(certs.len(), 3);

    // x-pem-file: what the vault serves, byte for byte.
    let served = kv.secret_value("foo-pem").await;
    assert_eq!(text(&raw(&h, "foo-pem")), served);
    assert_eq!(text(&raw(&h, "foo-pem")), text(fixture!("foo-kv.pem")));
    let served = kv.secret_value("demo-pem").await;
    assert_eq!(text(&raw(&h, "demo-pem")), served);

    // x-pem-file + pfx: a password-less PFX holding the same key and chain, in chain order.
    let b64 = raw(&h, "foo-pem.pfx.b64");
    let der = STANDARD.decode(&b64).expect("standard base64");
    assert_eq!(raw(&h, "foo-pem.pfx"), der);
    let (keys, certs) = open_pfx(&der);
    assert_eq!(keys, pem_ders(fixture!("foo-pkcs8.key")));
    assert_eq!(
        certs,
        [
            pem_ders(fixture!("foo-leaf.pem")),
            pem_ders(fixture!("foo-int.pem")),
            pem_ders(fixture!("foo-root.pem")),
        ]
        .concat()
    );
}

// reference: docs/reference-provider.md §2.6 steps 2–6 and cases (a), (c), PFX case (2), over the
// wire: the served PFX holds its bags in every order (and, for (c), incomplete); case (b) (RSA,
// leaf without SKI) has no key to import and is covered by the convert unit tests
#[tokio::test(flavor = "current_thread")]
async fn chain_ordering_over_the_wire() {
    let logs = LogCapture::start();
    let h = start().await;
    let kv = Reader::new(&h).await;
    let mut objs: Vec<String> = (0..ORDERS.len())
        .map(|i| format!("objectName: foo-order-{i}\nobjectType: secret"))
        .collect();
    objs.push("objectName: foo-incomplete\nobjectType: secret".into());
    objs.push("objectName: foo-extra\nobjectType: secret".into());
    let spc = h.spc(&objs.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");

    // (a): whatever the bag order, key then leaf → intermediate → root.
    let chain: Vec<Vec<u8>> = FOO_CHAIN.iter().flat_map(|c| pem_ders(c)).collect();
    let mut reordered = 0;
    for i in 0..ORDERS.len() {
        let name = format!("foo-order-{i}");
        let (_, bags) = open_pfx(&STANDARD.decode(kv.secret_value(&name).await).unwrap());
        let mut sorted = bags.clone();
        sorted.sort();
        let mut want = chain.clone();
        want.sort();
        assert_eq!(sorted, want, "{name}: the served PFX holds the chain");
        if bags != chain {
            reordered += 1;
        }
        assert_eq!(
            text(&raw(&h, &name)),
            text(fixture!("foo-kv.pem")),
            "{name}"
        );
    }
    assert!(
        reordered >= 2,
        "the wire really carried scrambled bag orders"
    );

    // (c) and step 5: incomplete chains come out in their original order, with a warning.
    for (name, parts) in [
        (
            "foo-incomplete",
            vec![fixture!("foo-leaf.pem"), fixture!("foo-root.pem")],
        ),
        (
            "foo-extra",
            vec![
                fixture!("foo-leaf.pem"),
                fixture!("ec-root.pem"),
                fixture!("foo-root.pem"),
                fixture!("foo-int.pem"),
            ],
        ),
    ] {
        let (_, bags) = open_pfx(&STANDARD.decode(kv.secret_value(name).await).unwrap());
        let mut want = fixture!("foo-pkcs8.key").to_vec();
        for d in &bags {
            want.extend(pem_block("CERTIFICATE", d).into_bytes());
        }
        assert_eq!(
            text(&raw(&h, name)),
            text(&want),
            "{name}: served order kept"
        );
        // The emulator kept the seed order, so this is the order the test wrote down.
        assert_eq!(
            bags,
            parts.iter().flat_map(|c| pem_ders(c)).collect::<Vec<_>>(),
            "{name}"
        );
    }
    let log = logs.text();
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certificate chain is not complete"))
        .collect();
    assert_eq!(warn.len(), 2, "one warning per incomplete chain: {warn:?}");
    assert!(warn.iter().all(|l| l.contains("WARN")), "{warn:?}");
}

// reference: docs/reference-provider.md §2.3 (public key only, PKIX `PUBLIC KEY`; P-384/P-521,
// EC-HSM/RSA-HSM), §2.10 (independent vectors, exact PEM)
#[tokio::test]
async fn keys_give_the_exact_public_key_pem() {
    let h = start().await;
    let spc = h.spc(
        &[
            "objectName: ec-generator\nobjectType: key",
            "objectName: rsa-rfc7517\nobjectType: key\nobjectAlias: keys/rsa.pem",
            "objectName: ec-p384\nobjectType: key",
            "objectName: ec-p521\nobjectType: key",
            "objectName: rsa-4096\nobjectType: key",
        ],
        &[],
    );
    let report = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    assert_eq!(text(&raw(&h, "ec-generator")), P256_GEN_PEM);
    assert_eq!(text(&raw(&h, "keys/rsa.pem")), RFC7517_A1_PEM);
    assert_eq!(text(&raw(&h, "ec-p384")), text(fixture!("p384.pub")));
    assert_eq!(text(&raw(&h, "ec-p521")), text(fixture!("p521.pub")));
    assert_eq!(text(&raw(&h, "rsa-4096")), text(fixture!("rsa4096.pub")));
    // reference: docs/reference-provider.md §2.3 (the version is the last segment of `key.kid`)
    let kv = Reader::new(&h).await;
    let kid = kv.get("keys/ec-p384").await["key"]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = report.objects.iter().find(|o| o.path == "ec-p384").unwrap();
    assert_eq!(o.id, "key/ec-p384");
    assert!(
        kid.ends_with(&format!("/{}", o.version)),
        "{kid} vs {}",
        o.version
    );
}

// reference: docs/reference-provider.md §2.3 (`oct`: "key type 'oct' currently not supported")
#[tokio::test]
async fn oct_keys_are_rejected_if_the_emulator_can_hold_one() {
    let seed = format!(
        "vaults:\n  - name: demo\n    keys:\n      - {{ name: sym, jwk: {{ kty: oct, k: {} }} }}\nidentities:\n  - {{ name: app, client_id: {WI_CLIENT_ID}, federated_credentials: [{{ subject: \"{SA_SUBJECT}\" }}], access: all }}\n",
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    match keyvault_emulator::Emulator::builder()
        .seed_yaml(seed.clone())
        .start()
        .await
    {
        Err(e) => {
            // The emulator imports RSA and EC JWKs only (emulator/src/store.rs
            // `public_jwk`), as a vault serves `oct` keys only on Managed HSM. The agent's
            // rejection is covered by the convert unit tests (`key_errors`).
            let m = e.to_string();
            assert!(
                m.contains("oct"),
                "the seed fails because of the oct key: {m}"
            );
            eprintln!("skipped: the emulator cannot hold an oct key ({m})");
            return;
        }
        Ok(emu) => emu.shutdown().await,
    }
    let h = Harness::with_seed(&seed).await;
    let spc = h.spc(&["objectName: sym\nobjectType: key"], &[]);
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("\"sym\"") && m.contains("oct"), "{m}");
    assert!(!h.dir.join("..data").exists());
}

// reference: docs/reference-provider.md §2.4 (leaf only: one CERTIFICATE block of the bundle's
// `cer`, no chain, no key)
#[tokio::test]
async fn cert_objects_are_the_leaf_only() {
    let h = start().await;
    let spc = h.spc(
        &[
            "objectName: foo-aes\nobjectType: cert\nobjectAlias: certs/foo-aes.crt",
            "objectName: foo-pem\nobjectType: cert\nobjectAlias: certs/foo-pem.crt",
            "objectName: demo-legacy\nobjectType: cert\nobjectAlias: certs/demo.crt",
        ],
        &[],
    );
    h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    let kv = Reader::new(&h).await;
    for (name, file) in [
        ("foo-aes", "certs/foo-aes.crt"),
        ("foo-pem", "certs/foo-pem.crt"),
        ("demo-legacy", "certs/demo.crt"),
    ] {
        let want = pem_block("CERTIFICATE", &kv.cer(name).await);
        assert_eq!(text(&raw(&h, file)), want, "{name}");
    }
    assert_eq!(
        text(&raw(&h, "certs/foo-pem.crt")),
        text(fixture!("foo-leaf.pem"))
    );
    assert_eq!(
        text(&raw(&h, "certs/foo-aes.crt")),
        text(fixture!("foo-leaf.pem"))
    );
    assert_eq!(text(&raw(&h, "certs/demo.crt")), text(fixture!("demo.pem")));
}

// reference: docs/reference-provider.md §2.7 (layout `<alias>/<index>`, newest first, disabled
// skipped, start version; [BUG] N+1 files and a silently missing start version), §2.8 (ids
// `<type>/<name>/<index>`), §7 (exactly min(N, available); error for a missing start)
#[tokio::test]
async fn history_mode_conformance() {
    let h = start().await;
    let run = |objs: &[&str]| {
        let spc = h.spc(objs, &[]);
        let env = h.wi_env();
        let h = &h;
        async move { h.run_once(&spc, &env).await }
    };

    // N=2 with 3 enabled versions (and a disabled one between them): exactly 2 files.
    let report = run(&["objectName: hist\nobjectType: secret\nobjectVersionHistory: 2"])
        .await
        .unwrap();
    let want: BTreeMap<String, Vec<u8>> = [("hist/0", HIST_D), ("hist/1", HIST_B)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(h.files(), want, "newest first, disabled skipped, no N+1");
    let ids: Vec<(&str, &str)> = report
        .objects
        .iter()
        .map(|o| (o.id.as_str(), o.version.as_str()))
        .collect();
    assert_eq!(
        ids,
        [("secret/hist/0", HIST_V_D), ("secret/hist/1", HIST_V_B)]
    );

    // N larger than what exists: all 3 enabled versions, with an alias as the directory.
    run(&["objectName: hist\nobjectType: secret\nobjectAlias: H\nobjectVersionHistory: 200"])
        .await
        .unwrap();
    let files = h.files();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["H/0", "H/1", "H/2"],
        "{:?}",
        files.keys()
    );
    assert_eq!(files["H/2"], HIST_A.as_bytes());

    // A start version is honoured: it is `0`, older ones follow.
    run(&[&format!(
        "objectName: hist\nobjectType: secret\nobjectVersion: {HIST_V_B}\nobjectVersionHistory: 5"
    )])
    .await
    .unwrap();
    let want: BTreeMap<String, Vec<u8>> = [("hist/0", HIST_B), ("hist/1", HIST_A)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(h.files(), want);

    // reference: docs/reference-provider.md §1.4 (in history mode `latest` means the newest)
    run(&["objectName: hist\nobjectType: secret\nobjectVersion: latest\nobjectVersionHistory: 2"])
        .await
        .unwrap();
    let want: BTreeMap<String, Vec<u8>> = [("hist/0", HIST_D), ("hist/1", HIST_B)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(h.files(), want);

    // reference: docs/reference-provider.md §1.4 (single-version mode: objectVersion sent as is)
    run(&[&format!(
        "objectName: hist\nobjectType: secret\nobjectVersion: {HIST_V_A}\nobjectAlias: pinned"
    )])
    .await
    .unwrap();
    assert_eq!(raw(&h, "pinned"), HIST_A.as_bytes());
    let before = h.snapshot();
    let e = run(&[&format!(
        "objectName: hist\nobjectType: secret\nobjectVersion: {HIST_V_C}\nobjectAlias: pinned"
    )])
    .await
    .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("\"hist\"") && m.contains("disabled"), "{m}");
    assert_eq!(e.exit_code(), EXIT_OBJECT, "{m}");
    assert_eq!(h.snapshot(), before);

    // A start version that does not exist, or is disabled: an error naming the object and
    // the version, and nothing changes.
    for v in ["ffffffffffffffffffffffffffffffff", HIST_V_C] {
        let e = run(&[&format!(
            "objectName: hist\nobjectType: secret\nobjectVersion: {v}\nobjectVersionHistory: 2"
        )])
        .await
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("hist") && m.contains(v), "{m}");
        assert_eq!(e.exit_code(), EXIT_OBJECT, "{m}");
        assert_eq!(h.snapshot(), before);
    }
}

// reference: docs/reference-provider.md §2.7 (history for every object type: versions are listed
// with `id` or `kid`, each converted like a single version), §2.8 (`<type>/<name>/<index>`)
#[tokio::test]
async fn history_mode_for_keys_certificates_and_certificate_backed_secrets() {
    let h = start().await;
    let spc = h.spc(
        &[
            "objectName: ec-generator\nobjectType: key\nobjectVersionHistory: 3",
            "objectName: foo-aes\nobjectType: cert\nobjectVersionHistory: 2\nobjectAlias: crt",
            "objectName: foo-aes\nobjectType: secret\nobjectVersionHistory: 2\nobjectAlias: pem",
            "objectName: foo-aes\nobjectType: secret\nobjectFormat: pfx\nobjectVersionHistory: 2\nobjectAlias: pfx",
        ],
        &[],
    );
    let report = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    let kv = Reader::new(&h).await;
    let want: BTreeMap<String, Vec<u8>> = [
        ("ec-generator/0", P256_GEN_PEM.as_bytes().to_vec()),
        ("crt/0", fixture!("foo-leaf.pem").to_vec()),
        ("pem/0", fixture!("foo-kv.pem").to_vec()),
        ("pfx/0", kv.secret_value("foo-aes").await.into_bytes()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(h.files(), want);
    let ids: Vec<&str> = report.objects.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "key/ec-generator/0",
            "cert/foo-aes/0",
            "secret/foo-aes/0",
            "secret/foo-aes/0"
        ]
    );
}

// reference: docs/reference-provider.md §1.4 [BUG]s and §7 (reject invalid filePermission, unknown
// objectType at validation time, duplicate paths, file/directory collisions), §1.5 (format,
// encoding and file name vectors): every problem listed at once, exit 3, no request sent
#[test]
fn invalid_plans_fail_before_any_request_with_every_problem_listed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(start());
    let dir = h.dir.display().to_string();
    let good = h.spc(&["objectName: secret1\nobjectType: secret"], &[]);
    let out = h.run_binary(
        &["--config", spc_path(&good), "--dir", &dir, "--once"],
        &h.wi_env(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = h.snapshot();
    h.emu.reset_counts();

    let bad = h.spc(
        &[
            "objectName: perm\nobjectType: secret\nfilePermission: \"0900\"",
            "objectName: perm2\nobjectType: secret\nfilePermission: rw",
            "objectName: perm3\nobjectType: secret\nfilePermission: \"900\"",
            "objectName: typ\nobjectType: Secret",
            "objectName: dup1\nobjectType: secret\nobjectAlias: same",
            "objectName: dup2\nobjectType: secret\nobjectAlias: same",
            "objectName: plain\nobjectType: secret\nobjectAlias: h",
            "objectName: hist\nobjectType: secret\nobjectAlias: h\nobjectVersionHistory: 2",
            "objectName: fmt\nobjectType: secret\nobjectFormat: pkcs",
            "objectName: enc\nobjectType: secret\nobjectEncoding: utf-16",
            "objectName: pfxcert\nobjectType: cert\nobjectFormat: pfx",
            "objectName: enccert\nobjectType: cert\nobjectEncoding: base64",
            // [BUG] §1.4: the reference's type check for `PFX` was case-sensitive.
            "objectName: pfxcert2\nobjectType: cert\nobjectFormat: PFX",
            "objectName: pfxkey\nobjectType: key\nobjectFormat: pfx",
            "objectName: enckey\nobjectType: key\nobjectEncoding: hex",
            "objectName: abs\nobjectType: secret\nobjectAlias: /secret1",
            "objectName: up1\nobjectType: secret\nobjectAlias: secret1/..",
            "objectName: up2\nobjectType: secret\nobjectAlias: ../secret1",
            "objectName: dots\nobjectType: secret\nobjectAlias: my..secret",
            "objectName: dot\nobjectType: secret\nobjectAlias: ./a",
        ],
        &[],
    );
    let out = h.run_binary(
        &["--config", spc_path(&bad), "--dir", &dir, "--once"],
        &h.wi_env(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    // One line per problem, nothing else.
    let errors = strip_ansi(&stderr)
        .lines()
        .filter(|l| l.starts_with("error: "))
        .count();
    assert_eq!(errors, 18, "{stderr}");
    for needle in [
        "objectName:perm, objectVersion:: filePermission \"0900\": not an octal number",
        "objectName:perm2, objectVersion:: filePermission \"rw\": not an octal number",
        "objectName:perm3, objectVersion:: filePermission \"900\": not an octal number: use a mode such as \"0644\" or \"0440\"",
        "failed to get objectType:Secret, objectName:typ, objectVersion:: Invalid vaultObjectTypes. Should be secret, key, or cert",
        "output path \"same\" is also written by",
        "output path \"h/0\" collides with \"h\"",
        "objectName:fmt, objectVersion:: invalid objectFormat: pkcs, should be PEM or PFX",
        "objectName:enc, objectVersion:: invalid objectEncoding: utf-16, should be hex, base64 or utf-8",
        "objectName:pfxcert, objectVersion:: PFX format only supported for objectType: secret",
        "objectName:enccert, objectVersion:: objectEncoding only supported for objectType: secret",
        "objectName:pfxcert2, objectVersion:: PFX format only supported for objectType: secret",
        "failed to get objectType:key, objectName:pfxkey, objectVersion:: PFX format only supported for objectType: secret",
        "failed to get objectType:key, objectName:enckey, objectVersion:: objectEncoding only supported for objectType: secret",
        "objectName:abs, objectVersion:: file name must be a relative path",
        "objectName:up1, objectVersion:: file name must not contain '..'",
        "objectName:up2, objectVersion:: file name must not contain '..'",
        "objectName:dots, objectVersion:: file name must not contain '..'",
        "objectName:dot, objectVersion:: invalid filepath: \"./a\"",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains("dup1") && stderr.contains("dup2"),
        "{stderr}"
    );
    // Not one request: no token, no Key Vault call.
    assert_eq!(h.emu.counts().total(), 0, "requests were sent");
    assert_eq!(h.emu.counts().tokens(WI_CLIENT_ID), 0);
    assert_eq!(h.snapshot(), before, "directory untouched");
}

// reference: docs/reference-provider.md §1.4 (`filePermission`, base 8, default 0644), §1.5
// ("0600" → 0600, "" → 0644), §6 (AtomicWriter `..data` layout); `ls -L` semantics
#[tokio::test]
async fn file_modes_and_the_atomic_writer_layout() {
    let h = start().await;
    let spc = h.spc(
        &[
            "objectName: secret1\nobjectType: secret",
            "objectName: abcdefg\nobjectType: secret\nfilePermission: \"0600\"",
            "objectName: utf8\nobjectType: secret\nfilePermission: \"440\"",
            "objectName: b64\nobjectType: secret\nobjectEncoding: base64\nobjectAlias: sub/dir/b64\nfilePermission: \"0755\"",
            "objectName: hist\nobjectType: secret\nobjectVersionHistory: 2\nfilePermission: \"0640\"",
        ],
        &[],
    );
    h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    assert_eq!(mode(&h, "secret1"), 0o644);
    assert_eq!(mode(&h, "abcdefg"), 0o600);
    assert_eq!(mode(&h, "utf8"), 0o440);
    assert_eq!(mode(&h, "sub/dir/b64"), 0o755);
    assert_eq!(mode(&h, "hist/0"), 0o640);
    assert_eq!(mode(&h, "hist/1"), 0o640);
    assert_eq!(raw(&h, "sub/dir/b64"), b"Base64EncodedString");

    // `..data` → `..<timestamp>` directory; every top-level name is a link into `..data`.
    let data = std::fs::read_link(h.dir.join("..data")).expect("..data is a symlink");
    let gen_dir = data.to_str().unwrap();
    assert!(
        gen_dir.starts_with("..") && !gen_dir.contains('/'),
        "{gen_dir}"
    );
    assert!(h.dir.join(gen_dir).is_dir());
    for top in ["secret1", "abcdefg", "utf8", "sub", "hist"] {
        let p = h.dir.join(top);
        assert!(
            std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{top}"
        );
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            Path::new("..data").join(top),
            "{top}"
        );
    }
    // The real files live in the generation directory with the same modes.
    let real = std::fs::symlink_metadata(h.dir.join(gen_dir).join("abcdefg")).unwrap();
    assert!(real.file_type().is_file());
    assert_eq!(real.permissions().mode() & 0o7777, 0o600);
}

// reference: docs/reference-provider.md §2.7 (a name becomes a directory in history mode) and §6
// (each sync publishes the whole set: names that leave the set disappear); a name may switch
// between file and directory from one sync to the next
#[tokio::test]
async fn a_name_switches_between_file_and_directory_across_syncs() {
    let h = start().await;
    let single = h.spc(
        &[
            "objectName: hist\nobjectType: secret\nobjectAlias: a",
            "objectName: secret1\nobjectType: secret\nobjectAlias: .hidden",
        ],
        &[],
    );
    let history = h.spc(
        &["objectName: hist\nobjectType: secret\nobjectAlias: a\nobjectVersionHistory: 2"],
        &[],
    );
    let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    h.run_once(&single, &h.wi_env()).await.unwrap();
    assert_eq!(
        h.files(),
        files(&[("a", HIST_D), (".hidden", "secret1value")])
    );
    assert_eq!(raw(&h, ".hidden"), b"secret1value");
    h.run_once(&history, &h.wi_env()).await.unwrap();
    assert_eq!(h.files(), files(&[("a/0", HIST_D), ("a/1", HIST_B)]));
    assert_eq!(raw(&h, "a/1"), HIST_B.as_bytes());
    assert!(
        std::fs::symlink_metadata(h.dir.join(".hidden")).is_err(),
        "the link of a name that left the set is removed"
    );
    h.run_once(&single, &h.wi_env()).await.unwrap();
    assert_eq!(raw(&h, "a"), HIST_D.as_bytes());
    assert!(h.dir.join("a").is_file());
    // Only the current generation is left behind.
    let gens = std::fs::read_dir(&h.dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("..") && n != "..data" && !n.ends_with(".json") && n != "..hmac.key"
        })
        .count();
    assert_eq!(gens, 1);
}

/// Runs the binary like [`Harness::run_binary`], but under `umask` (as a container whose
/// runtime sets a restrictive one).
fn run_binary_with_umask(
    h: &Harness,
    args: &[&str],
    env: &[(String, String)],
    umask: u32,
) -> std::process::Output {
    // The shell sets the umask and execs the agent, instead of an `unsafe` pre_exec hook (the
    // workspace forbids unsafe code).
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {umask:03o} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_keyvault-agent"));
    cmd.env_clear()
        .env("SSL_CERT_FILE", h.emu.ca_file())
        .env(
            "KEYVAULT_AGENT_IMDS_ENDPOINT",
            h.emu.imds_endpoint().to_string(),
        )
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("run keyvault-agent")
}

// reference: docs/reference-provider.md §1.4 (`filePermission`, default 0644) and §6: modes are
// exact whatever the process umask (the driver chmods explicitly)
#[test]
fn modes_are_exact_under_a_restrictive_umask() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(start());
    let dir = h.dir.display().to_string();
    let spc = h.spc(
        &[
            "objectName: secret1\nobjectType: secret",
            "objectName: abcdefg\nobjectType: secret\nfilePermission: \"0666\"",
            "objectName: utf8\nobjectType: secret\nobjectAlias: sub/utf8",
        ],
        &[],
    );
    let out = run_binary_with_umask(
        &h,
        &["--config", spc_path(&spc), "--dir", &dir, "--once"],
        &h.wi_env(),
        0o077,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&h, "secret1"), 0o644);
    assert_eq!(mode(&h, "abcdefg"), 0o666);
    assert_eq!(mode(&h, "sub/utf8"), 0o644);
    // Readers other than the owner can traverse the published tree.
    assert_eq!(mode(&h, "sub"), 0o755);
    assert_eq!(mode(&h, "..data"), 0o755);
}

/// Every `width`-byte window (stride `width/2`) of a secret text (ASCII, one line), so that any
/// leaked slice of `width * 3/2` bytes or more (one PEM line, part of a token) is caught.
fn windows(s: &str, width: usize) -> Vec<String> {
    if s.len() <= width {
        return vec![s.to_owned()];
    }
    (0..=s.len() - width)
        .step_by(width / 2)
        .map(|i| s[i..i + width].to_owned())
        .chain(std::iter::once(s[s.len() - width..].to_owned()))
        .collect()
}

/// The text without ANSI escape sequences, so colouring cannot split a leaked value.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Width of the leak-detection windows: long enough never to match by chance.
const WINDOW: usize = 24;

fn pem_bodies(pem: &[u8]) -> Vec<String> {
    pem_ders(pem).iter().map(|d| STANDARD.encode(d)).collect()
}

// reference: docs/reference-provider.md §7 (cheap change detection): every conversion is
// deterministic, so a second sync of the whole conformance set over the wire publishes nothing
// (a PFX built with random salts would swap `..data` on every refresh)
#[tokio::test]
async fn a_second_sync_of_the_whole_set_changes_nothing() {
    let h = start().await;
    let spc = h.spc(&all_good_objects(), &[]);
    let first = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    assert!(matches!(
        first.outcome,
        keyvault_agent::writer::WriteOutcome::Published { .. }
    ));
    let before = h.snapshot();
    let second = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");
    assert_eq!(
        second.outcome,
        keyvault_agent::writer::WriteOutcome::Unchanged
    );
    let hashes = |r: &keyvault_agent::syncer::SyncReport| -> Vec<(String, String)> {
        r.objects
            .iter()
            .map(|o| (o.path.clone(), o.digest.clone()))
            .collect()
    };
    assert_eq!(hashes(&first), hashes(&second));
    // Nothing is rewritten, the status file included: it describes the published set
    // (reference: ISSUE10 item 5).
    assert_eq!(h.snapshot(), before);
}

// No secret value, private key, access token or service-account token in any log line
// (common brief; docs/reference-provider.md §4 logging), over the whole conformance seed at trace
#[test]
fn no_secret_reaches_the_binarys_output_at_trace_level() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(start());
    let dir = h.dir.display().to_string();
    let spc = h.spc(&all_good_objects(), &[]);
    let mut env = h.wi_env();
    env.push(("KEYVAULT_AGENT_LOG".into(), "trace".into()));
    let output = |out: std::process::Output| {
        strip_ansi(&format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let out = h.run_binary(&["--config", spc_path(&spc), "--dir", &dir, "--once"], &env);
    assert!(out.status.success(), "{}", output(out));
    let mut all = output(out);
    // The client-secret flow (the secret travels in a form body) and a failing run (errors
    // carry context, never values), also at trace.
    let mut sp = h.sp_env(READER_CLIENT_ID, READER_SECRET);
    sp.push(("KEYVAULT_AGENT_LOG".into(), "trace".into()));
    let out = h.run_binary(&["--config", spc_path(&spc), "--dir", &dir, "--once"], &sp);
    assert!(out.status.success(), "{}", output(out));
    all.push_str(&output(out));
    let mut failing = all_good_objects();
    failing.push("objectName: bad-b64\nobjectType: secret\nobjectEncoding: base64");
    let failing = h.spc(&failing, &[]);
    let out = h.run_binary(
        &["--config", spc_path(&failing), "--dir", &dir, "--once"],
        &env,
    );
    assert_eq!(out.status.code(), Some(EXIT_CONVERT));
    all.push_str(&output(out));
    assert!(
        all.lines().count() > 20 && all.contains("TRACE"),
        "trace logging is on: {} lines",
        all.lines().count()
    );

    let kv = rt.block_on(Reader::new(&h));
    let mut needles: Vec<String> = [
        TRAILING_WS.trim(),
        "secret1value",
        UNICODE,
        READER_SECRET,
        "not*base64!",
        "TestSecret1",
        "QmFzZTY0RW5jb2RlZFN0cmluZw==",
        "Base64EncodedString",
        "486578456E636F646564537472696E67",
        "486578456e636f646564537472696e67",
        "HexEncodedString",
        HIST_A,
        HIST_B,
        HIST_D,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Private key bodies (whatever form they are in) and whole PFX values, in windows.
    let mut long: Vec<String> = Vec::new();
    for k in [
        fixture!("foo-pkcs8.key"),
        fixture!("demo-pkcs8.key"),
        fixture!("demo-pkcs1.key"),
        fixture!("foo-sec1.key"),
    ] {
        long.extend(pem_bodies(k));
    }
    for name in [
        "demo-legacy",
        "demo-aes",
        "foo-aes",
        "foo-legacy.pem",
        "foo-aes.pfx.b64",
        "foo-pem.pfx.b64",
        "demo-pem",
        "foo-order-5",
    ] {
        // PEM outputs as their joined base64 bodies, so windows never straddle a line break.
        let b = raw(&h, name);
        if b.starts_with(b"-----BEGIN") {
            long.extend(pem_bodies(&b));
        } else {
            long.push(String::from_utf8(b).unwrap());
        }
    }
    for name in ["foo-aes", "foo-legacy", "demo-legacy", "demo-aes"] {
        long.push(rt.block_on(kv.secret_value(name)));
    }
    long.push(STANDARD.encode(fixture!("demo-aes.pfx")));
    long.push(large_value());
    long.push(STANDARD.encode((0u8..=255).collect::<Vec<u8>>()));
    // The service-account token the agent exchanged, and any JWT at all (access tokens).
    let sa = std::fs::read_to_string(&h.token_file).unwrap();
    long.push(sa.trim().to_owned());
    for part in sa.trim().split('.') {
        needles.push(part.to_owned());
    }
    for l in &long {
        needles.extend(windows(l, WINDOW));
    }
    // Every window of the output, hashed once, so thousands of needles stay cheap.
    let seen: std::collections::HashSet<&[u8]> = all.as_bytes().windows(WINDOW).collect();
    for n in &needles {
        let hit = if n.len() == WINDOW {
            seen.contains(n.as_bytes())
        } else {
            all.contains(n.as_str())
        };
        if hit {
            let line = all.lines().find(|l| l.contains(n.as_str())).unwrap_or("");
            panic!(
                "output contains secret material: {}",
                line.replace(n.as_str(), "<SECRET>")
            );
        }
    }
    assert!(
        !all.contains("eyJ"),
        "a JWT (access or SA token) was logged"
    );
    assert!(
        !all.contains("PRIVATE KEY"),
        "a private key block was logged"
    );
    assert!(
        !all.contains("Bearer "),
        "an authorization header was logged"
    );
}
