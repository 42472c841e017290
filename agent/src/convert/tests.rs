//! Conformance tests for the conversions (`docs/reference-provider.md` §2). Fixtures are generated
//! by `agent/tests/fixtures/convert/generate.sh` (OpenSSL 3) and rcgen.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::*;
use crate::config::ObjectEncoding;
use crate::keyvault::model::{Attributes, JsonWebKey};
use crate::secret::SecretString;

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

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn spec(object_type: ObjectType, format: ObjectFormat, encoding: ObjectEncoding) -> ObjectSpec {
    ObjectSpec {
        name: "secret1".into(),
        object_type,
        version: None,
        history: 0,
        format,
        encoding,
        path: "secret1".into(),
        mode: 0o644,
        optional: false,
        json_pointer: None,
        layout: Default::default(),
    }
}

fn secret_spec(format: ObjectFormat) -> ObjectSpec {
    spec(ObjectType::Secret, format, ObjectEncoding::Utf8)
}

const SECRET_ID: &str = "https://kv.vault.azure.net/secrets/secret1/v1";
const KID: &str = "https://kv.vault.azure.net/keys/secret1/v1";

fn secret(value: &str, content_type: Option<&str>, kid: Option<&str>) -> Fetched {
    Fetched::Secret(SecretBundle {
        value: Some(SecretString::new(value)),
        id: Some(SECRET_ID.into()),
        content_type: content_type.map(str::to_owned),
        kid: kid.map(str::to_owned),
        ..Default::default()
    })
}

fn pfx_secret(pfx: &[u8]) -> Fetched {
    secret(&STANDARD.encode(pfx), Some(CONTENT_TYPE_PKCS12), Some(KID))
}

fn run(spec: &ObjectSpec, fetched: &Fetched) -> Vec<u8> {
    convert(spec, fetched).unwrap().into_inner()
}

fn run_err(spec: &ObjectSpec, fetched: &Fetched) -> String {
    convert(spec, fetched).unwrap_err().to_string()
}

fn der_of(pem_text: &[u8]) -> Vec<u8> {
    let blocks = pem::decode_all(pem_text);
    assert_eq!(blocks.len(), 1);
    blocks.into_iter().next().unwrap().der
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Captures what `tracing` logs while `f` runs on this thread.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (out, logs)
}

// ---------------------------------------------------------------- §2.1, §2.11 secrets

// reference: docs/reference-provider.md §2.11 (plain value), §2.1
#[test]
fn plain_secret_is_verbatim() {
    let s = secret_spec(ObjectFormat::Pem);
    assert_eq!(
        run(&s, &secret("secret1value", None, None)),
        b"secret1value"
    );
    // Nothing trimmed, no newline added.
    assert_eq!(
        run(&s, &secret("  a b\n\n", None, None)),
        b"  a b\n\n".as_slice()
    );
}

// reference: docs/reference-provider.md §2.1 (objectFormat ignored without kid, issue #273)
#[test]
fn plain_secret_ignores_format_and_content_type() {
    let value = STANDARD.encode(fixture!("demo-3des.pfx"));
    let f = secret(&value, Some(CONTENT_TYPE_PKCS12), None);
    assert_eq!(run(&secret_spec(ObjectFormat::Pem), &f), value.as_bytes());
    assert_eq!(run(&secret_spec(ObjectFormat::Pfx), &f), value.as_bytes());
    // An empty kid counts as no kid.
    let f = secret(&value, Some(CONTENT_TYPE_PKCS12), Some(""));
    assert_eq!(run(&secret_spec(ObjectFormat::Pem), &f), value.as_bytes());
}

// reference: docs/reference-provider.md §2.11 (kid + PEM content type: same text)
#[test]
fn pem_certificate_secret_is_verbatim() {
    let value = text(&cat(&[fixture!("demo.pem"), fixture!("demo-pkcs8.key")])).to_owned();
    let f = secret(&value, Some(CONTENT_TYPE_PEM), Some(KID));
    assert_eq!(run(&secret_spec(ObjectFormat::Pem), &f), value.as_bytes());
    // Not normalised even when the PEM is odd (CRLF, chain not ordered).
    let odd =
        text(&cat(&[fixture!("foo-root.pem"), fixture!("foo-leaf.pem")])).replace('\n', "\r\n");
    let f = secret(&odd, Some(CONTENT_TYPE_PEM), Some(KID));
    assert_eq!(run(&secret_spec(ObjectFormat::Pem), &f), odd.as_bytes());
}

// reference: docs/reference-provider.md §2.11 (kid + pkcs12 + pfx: base64 unchanged), §2.2
#[test]
fn pkcs12_secret_with_pfx_format_is_verbatim_base64() {
    let f = pfx_secret(fixture!("demo-legacy.pfx"));
    let Fetched::Secret(b) = &f else {
        unreachable!()
    };
    let value = b.value.as_ref().unwrap().expose().as_bytes().to_vec();
    assert_eq!(run(&secret_spec(ObjectFormat::Pfx), &f), value);
    // objectEncoding base64 applies last and yields the binary PFX.
    let s = spec(
        ObjectType::Secret,
        ObjectFormat::Pfx,
        ObjectEncoding::Base64,
    );
    assert_eq!(run(&s, &f), fixture!("demo-legacy.pfx"));
}

// reference: docs/reference-provider.md §2.11 (kid + pkcs12 + pem or no format: key then cert),
// §2.6 PFX case (1): one RSA-2048 v1 certificate, Windows CSP attribute, legacy ciphers.
#[test]
fn pkcs12_secret_to_pem_key_first_then_certificate() {
    let want = cat(&[fixture!("demo-pkcs8.key"), fixture!("demo.pem")]);
    for pfx in [
        fixture!("demo-legacy.pfx"), // RC2-40 certificates, 3DES key, SHA-1 MAC
        fixture!("demo-3des.pfx"),   // PBE-SHA1-3DES everywhere
        fixture!("demo-aes.pfx"),    // OpenSSL 3 default: PBES2 AES-256-CBC, SHA-256 MAC
    ] {
        let got = run(&secret_spec(ObjectFormat::Pem), &pfx_secret(pfx));
        assert_eq!(text(&got), text(&want));
    }
}

// reference: docs/reference-provider.md §2.6 PFX case (2): EC P-256 key, leaf foo, intermediate-ca,
// root-ca (bags leaf, root, intermediate) gives key, leaf, intermediate, root.
#[test]
fn pkcs12_ec_chain_to_pem_in_chain_order() {
    let want = cat(&[
        fixture!("foo-pkcs8.key"),
        fixture!("foo-leaf.pem"),
        fixture!("foo-int.pem"),
        fixture!("foo-root.pem"),
    ]);
    for pfx in [fixture!("foo-aes.pfx"), fixture!("foo-legacy.pfx")] {
        let contents = pkcs12::decode(pfx).unwrap();
        assert_ne!(
            contents.certs[1],
            der_of(fixture!("foo-int.pem")),
            "fixture must exercise reordering"
        );
        let (got, logs) = capture_logs(|| run(&secret_spec(ObjectFormat::Pem), &pfx_secret(pfx)));
        assert_eq!(text(&got), text(&want));
        assert!(logs.is_empty(), "complete chain logs nothing: {logs}");
    }
}

// reference: docs/reference-provider.md §2.11 (errors: value nil, id nil, kid + pkcs12 "invalid")
#[test]
fn secret_errors() {
    let s = secret_spec(ObjectFormat::Pem);
    let mut f = SecretBundle {
        value: None,
        id: Some(SECRET_ID.into()),
        ..Default::default()
    };
    assert_eq!(
        run_err(&s, &Fetched::Secret(f.clone())),
        "secret value is nil"
    );
    f.value = Some(SecretString::new("v"));
    f.id = None;
    assert_eq!(run_err(&s, &Fetched::Secret(f)), "secret id is nil");

    let e = convert(&s, &secret("invalid", Some(CONTENT_TYPE_PKCS12), Some(KID))).unwrap_err();
    assert!(matches!(e, ConvertError::Pkcs12Base64 { offset: 4 }), "{e}");
    // Valid base64 that is not a PFX.
    let e = run_err(
        &s,
        &secret("aW52YWxpZA==", Some(CONTENT_TYPE_PKCS12), Some(KID)),
    );
    assert!(
        e.starts_with("cannot decode the pfx with an empty password: "),
        "{e}"
    );
}

// reference: docs/reference-provider.md §2.2 (unknown content type; missing one crashed the reference)
#[test]
fn unknown_or_missing_content_type_with_kid_is_an_error() {
    let s = secret_spec(ObjectFormat::Pem);
    let e = run_err(&s, &secret("x", Some("application/json"), Some(KID)));
    assert!(
        e.starts_with("unknown content type 'application/json'"),
        "{e}"
    );
    // Compared exactly: case matters.
    let e = run_err(&s, &secret("x", Some("Application/X-PEM-File"), Some(KID)));
    assert!(e.contains("'Application/X-PEM-File'"), "{e}");
    let e = run_err(&s, &secret("x", None, Some(KID)));
    assert!(e.starts_with("unknown content type ''"), "{e}");
}

// reference: docs/reference-provider.md §2.2 (PKCS#1, PKCS#8 and SEC1 keys become PKCS#8)
#[test]
fn private_keys_normalise_to_go_pkcs8() {
    let rsa_pkcs8 = der_of(fixture!("demo-pkcs8.key"));
    let ec_pkcs8 = der_of(fixture!("foo-pkcs8.key"));
    for (input, want) in [
        (der_of(fixture!("demo-pkcs1.key")), &rsa_pkcs8),
        (rsa_pkcs8.clone(), &rsa_pkcs8),
        (der_of(fixture!("foo-sec1.key")), &ec_pkcs8),
        (ec_pkcs8.clone(), &ec_pkcs8),
    ] {
        let got = key::PrivateKey::parse(&input).unwrap().to_pkcs8().unwrap();
        assert_eq!(&got, want);
    }
    let e = key::PrivateKey::parse(b"\x30\x03\x02\x01\x00")
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "failed to parse key for type pkcs1, pkcs8 or ec"
    );
}

// ---------------------------------------------------------------- §2.6 chain ordering

fn ders(files: &[&[u8]]) -> Vec<Vec<u8>> {
    files.iter().map(|f| der_of(f)).collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

fn assert_every_order_gives(chain_leaf_first: &[Vec<u8>]) {
    let perms = permutations(chain_leaf_first.len());
    for perm in &perms {
        let input: Vec<Vec<u8>> = perm.iter().map(|&i| chain_leaf_first[i].clone()).collect();
        let got = chain::order_or_keep("secret1", input).unwrap();
        assert!(got == chain_leaf_first, "order {perm:?}");
    }
}

// reference: docs/reference-provider.md §2.6 (a): EC root, intermediate, leaf; all 6 orders
#[test]
fn chain_ec_three_all_orders() {
    let chain = ders(&[
        fixture!("ec-leaf.pem"),
        fixture!("ec-int.pem"),
        fixture!("ec-root.pem"),
    ]);
    assert_eq!(permutations(3).len(), 6);
    assert_every_order_gives(&chain);
}

// reference: docs/reference-provider.md §2.6 (b): RSA test-ca, test-int1, test-int2, test-leaf
// (leaf without SKI); every order gives leaf, int2, int1, root.
#[test]
fn chain_rsa_four_leaf_without_ski_all_orders() {
    let chain = ders(&[
        fixture!("rsa-leaf.pem"),
        fixture!("rsa-int2.pem"),
        fixture!("rsa-int1.pem"),
        fixture!("rsa-ca.pem"),
    ]);
    assert_eq!(permutations(4).len(), 24);
    assert_every_order_gives(&chain);
}

// reference: docs/reference-provider.md §2.6 (c) and step 5: missing intermediate keeps the input
// byte for byte and logs the warning with the object name only.
#[test]
fn chain_incomplete_keeps_original_order_and_warns() {
    let leaf = der_of(fixture!("ec-leaf.pem"));
    let root = der_of(fixture!("ec-root.pem"));
    for input in [
        vec![leaf.clone(), root.clone()],
        vec![root.clone(), leaf.clone()],
    ] {
        let (got, logs) = capture_logs(|| chain::order_or_keep("my-cert", input.clone()));
        assert_eq!(got.unwrap(), input);
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains(INCOMPLETE_CHAIN_WARNING), "{logs}");
        assert!(logs.contains("my-cert"), "{logs}");
        assert!(!logs.contains("BEGIN"), "{logs}");
    }
    // Through the PFX path: the PEM output keeps the bag order.
    let two_leaves = ders(&[fixture!("ec-leaf.pem"), fixture!("foo-leaf.pem")]);
    assert_eq!(
        chain::order(&two_leaves).unwrap(),
        chain::Ordered::Incomplete
    );
}

fn rcgen_cert(
    cn: &str,
    ski: &[u8],
    aki_issuer_ski: &[u8],
    is_ca: bool,
    key: &rcgen::KeyPair,
) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = if is_ca {
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        rcgen::IsCa::ExplicitNoCa
    };
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ski.to_vec());
    params.use_authority_key_identifier_extension = true;
    let mut issuer_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    issuer_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(aki_issuer_ski.to_vec());
    let issuer = rcgen::Issuer::new(issuer_params, key);
    params.signed_by(key, &issuer).unwrap().der().to_vec()
}

// reference: docs/reference-provider.md §2.6 steps 3 and 4 (`no leaf found`, cycle, issue #1051)
#[test]
fn chain_errors_no_leaf_and_cycle() {
    let key = rcgen::KeyPair::generate().unwrap();
    let a = rcgen_cert("a", b"aaaa", b"bbbb", true, &key);
    let b = rcgen_cert("b", b"bbbb", b"aaaa", true, &key);
    let leaf = rcgen_cert("leaf", b"llll", b"aaaa", false, &key);
    let e = chain::order(&[a.clone(), b.clone()]).unwrap_err();
    assert!(matches!(e, ConvertError::NoLeaf), "{e}");
    assert!(e.to_string().starts_with("no leaf found"));
    let e = chain::order(&[leaf, a, b]).unwrap_err();
    assert!(matches!(e, ConvertError::ChainCycle), "{e}");
    assert!(
        e.to_string()
            .starts_with("constructing chain resulted in cycle")
    );
    let e = chain::order(&[b"not a certificate".to_vec()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot parse certificate number 1"),
        "{e}"
    );
}

// reference: docs/reference-provider.md §2.6 step 2 (first matching parent wins; no DN matching)
#[test]
fn chain_matches_by_key_identifiers_only() {
    let key = rcgen::KeyPair::generate().unwrap();
    // Subjects and issuers are unrelated; only SKI/AKI link them.
    let root = rcgen_cert("r", b"root", b"root", true, &key);
    let mid = rcgen_cert("m", b"mid!", b"root", true, &key);
    let leaf = rcgen_cert("l", b"leaf", b"mid!", false, &key);
    let got = chain::order(&[root.clone(), leaf.clone(), mid.clone()]).unwrap();
    assert_eq!(got, chain::Ordered::Chain(vec![1, 2, 0]));
}

// ---------------------------------------------------------------- §2.3, §2.10 keys

fn key_bundle(jwk: JsonWebKey) -> Fetched {
    Fetched::Key(KeyBundle {
        key: Some(jwk),
        ..Default::default()
    })
}

fn ec_jwk(kty: &str, crv: &str, x: &str, y: &str) -> Fetched {
    key_bundle(JsonWebKey {
        kid: Some("https://kv.vault.azure.net/keys/k1/v1".into()),
        kty: Some(kty.into()),
        crv: Some(crv.into()),
        x: Some(x.into()),
        y: Some(y.into()),
        ..Default::default()
    })
}

fn rsa_jwk(kty: &str, n: &str, e: &str) -> Fetched {
    key_bundle(JsonWebKey {
        kid: Some("https://kv.vault.azure.net/keys/k1/v1".into()),
        kty: Some(kty.into()),
        n: Some(n.into()),
        e: Some(e.into()),
        ..Default::default()
    })
}

fn key_spec() -> ObjectSpec {
    spec(ObjectType::Key, ObjectFormat::Pem, ObjectEncoding::Utf8)
}

const P256_GX: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
const P256_GY: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";

// reference: docs/reference-provider.md §2.10 (EC P-256 generator point, exact PEM)
#[test]
fn key_ec_p256_generator_vector() {
    let want = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt\n\
6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==\n\
-----END PUBLIC KEY-----\n";
    for kty in ["EC", "EC-HSM"] {
        let got = run(&key_spec(), &ec_jwk(kty, "P-256", P256_GX, P256_GY));
        assert_eq!(text(&got), want);
    }
}

const RFC7517_A1_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

// reference: docs/reference-provider.md §2.10 (RFC 7517 A.1 RSA modulus, e=AQAB, exact PEM)
#[test]
fn key_rsa_rfc7517_vector() {
    let want = "-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0vx7agoebGcQSuuPiLJX\n\
ZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS\n\
oc/BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ/2W+5JsGY4Hc5n9yBXArwl93lqt\n\
7/RN5w6Cf0h4QyQ5v+65YGjQR0/FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0\n\
zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt+bFTWhAI4vMQFh6WeZu0f\n\
M4lFd2NcRwr3XPksINHaQ+G/xBniIqbw0Ls1jF44+csFCur+kEgU8awapJzKnqDK\n\
gwIDAQAB\n\
-----END PUBLIC KEY-----\n";
    for kty in ["RSA", "RSA-HSM"] {
        let got = run(&key_spec(), &rsa_jwk(kty, RFC7517_A1_N, "AQAB"));
        assert_eq!(text(&got), want);
    }
    // `e` is a big-endian integer: leading zero bytes do not change the key.
    let got = run(&key_spec(), &rsa_jwk("RSA", RFC7517_A1_N, "AAEAAQ"));
    assert_eq!(text(&got), want);
}

// reference: docs/reference-provider.md §2.3 (P-384, P-521, RSA-4096 match OpenSSL's PEM exactly)
#[test]
fn keys_match_openssl_public_key_pem() {
    use spki::DecodePublicKey;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let p384 = p384::PublicKey::from_public_key_pem(text(fixture!("p384.pub"))).unwrap();
    let pt = p384::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&p384, false);
    let got = run(
        &key_spec(),
        &ec_jwk("EC", "P-384", &b64(pt.x().unwrap()), &b64(pt.y().unwrap())),
    );
    assert_eq!(text(&got), text(fixture!("p384.pub")));

    let p521 = p521::PublicKey::from_public_key_pem(text(fixture!("p521.pub"))).unwrap();
    let pt = p521::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&p521, false);
    let got = run(
        &key_spec(),
        &ec_jwk(
            "EC-HSM",
            "P-521",
            &b64(pt.x().unwrap()),
            &b64(pt.y().unwrap()),
        ),
    );
    assert_eq!(text(&got), text(fixture!("p521.pub")));

    use rsa::traits::PublicKeyParts;
    let rsa = rsa::PublicKey::from_public_key_pem(text(fixture!("rsa4096.pub"))).unwrap();
    let got = run(
        &key_spec(),
        &rsa_jwk(
            "RSA-HSM",
            &b64(&rsa.n().to_be_bytes_trimmed_vartime()),
            &b64(&rsa.e().to_be_bytes_trimmed_vartime()),
        ),
    );
    assert_eq!(text(&got), text(fixture!("rsa4096.pub")));
}

// reference: docs/reference-provider.md §2.3 (P-256K, oct/oct-HSM, point not on the curve), §2.9
#[test]
fn key_errors() {
    let s = key_spec();
    let e = run_err(&s, &ec_jwk("EC", "P-256K", P256_GX, P256_GY));
    assert!(e.starts_with("curve P-256K is not supported"), "{e}");
    for kty in ["oct", "oct-HSM"] {
        let f = key_bundle(JsonWebKey {
            kid: Some("https://kv.vault.azure.net/keys/k1/v1".into()),
            kty: Some(kty.into()),
            ..Default::default()
        });
        let e = run_err(&s, &f);
        assert!(
            e.starts_with(&format!("key type '{kty}' currently not supported: ")),
            "{e}"
        );
        assert!(e.contains("store such a value as a secret"), "{e}");
    }
    // The generator's y plus one is not on the curve.
    let mut y = URL_SAFE_NO_PAD.decode(P256_GY).unwrap();
    *y.last_mut().unwrap() ^= 1;
    let e = run_err(
        &s,
        &ec_jwk("EC", "P-256", P256_GX, &URL_SAFE_NO_PAD.encode(&y)),
    );
    assert_eq!(
        e,
        "invalid elliptic curve public key: the point is not on curve P-256"
    );
    // Coordinates too long for the curve.
    let long = URL_SAFE_NO_PAD.encode([1u8; 33]);
    let e = run_err(&s, &ec_jwk("EC", "P-256", &long, P256_GY));
    assert_eq!(e, "the key's 'x' member is not valid base64url");

    let e = run_err(
        &s,
        &Fetched::Key(KeyBundle {
            key: None,
            ..Default::default()
        }),
    );
    assert_eq!(e, "key value is nil");
    let e = run_err(&s, &key_bundle(JsonWebKey::default()));
    assert_eq!(e, "key id is nil");
    let e = run_err(&s, &rsa_jwk("RSA", "", "AQAB"));
    assert!(e.starts_with("invalid rsa public key"), "{e}");
    let mut f = rsa_jwk("RSA", RFC7517_A1_N, "AQAB");
    if let Fetched::Key(KeyBundle { key: Some(k), .. }) = &mut f {
        k.e = None;
    }
    assert_eq!(run_err(&s, &f), "the key has no 'e' member");
}

// ---------------------------------------------------------------- §2.4 certificates

fn cert_bundle(cer: Option<&str>, id: Option<&str>) -> Fetched {
    Fetched::Certificate(CertificateBundle {
        cer: cer.map(str::to_owned),
        id: id.map(str::to_owned),
        ..Default::default()
    })
}

fn cert_spec() -> ObjectSpec {
    spec(ObjectType::Cert, ObjectFormat::Pem, ObjectEncoding::Utf8)
}

// reference: docs/reference-provider.md §2.4 (`cer` = "test" vector; nil cer / id)
#[test]
fn certificate_object() {
    let id = Some("https://kv.vault.azure.net/certificates/c1/v1");
    let got = run(&cert_spec(), &cert_bundle(Some("dGVzdA=="), id));
    assert_eq!(
        text(&got),
        "-----BEGIN CERTIFICATE-----\ndGVzdA==\n-----END CERTIFICATE-----\n"
    );
    // A real leaf comes out as the same PEM OpenSSL wrote.
    let cer = STANDARD.encode(der_of(fixture!("demo.pem")));
    let got = run(&cert_spec(), &cert_bundle(Some(&cer), id));
    assert_eq!(got, fixture!("demo.pem"));

    assert_eq!(
        run_err(&cert_spec(), &cert_bundle(None, id)),
        "certificate value is nil"
    );
    assert_eq!(
        run_err(&cert_spec(), &cert_bundle(Some("dGVzdA=="), None)),
        "certificate id is nil"
    );
    let e = run_err(&cert_spec(), &cert_bundle(Some("dGVzdA"), id));
    assert!(
        e.starts_with("certificate value (cer) is not valid base64"),
        "{e}"
    );
}

// ---------------------------------------------------------------- §2.5 encoding at convert level

// reference: docs/reference-provider.md §2.5 (applied to secrets only, after conversion)
#[test]
fn encoding_applies_to_secrets_only() {
    let s = spec(
        ObjectType::Secret,
        ObjectFormat::Pem,
        ObjectEncoding::Base64,
    );
    assert_eq!(
        run(&s, &secret("QmFzZTY0RW5jb2RlZFN0cmluZw==", None, None)),
        b"Base64EncodedString"
    );
    let s = spec(ObjectType::Secret, ObjectFormat::Pem, ObjectEncoding::Hex);
    assert_eq!(
        run(&s, &secret("486578456E636F646564537472696E67", None, None)),
        b"HexEncodedString"
    );
    // Type cert or key with an encoding: bytes unchanged.
    let mut c = cert_spec();
    c.encoding = ObjectEncoding::Base64;
    let id = Some("https://kv.vault.azure.net/certificates/c1/v1");
    assert!(text(&run(&c, &cert_bundle(Some("dGVzdA=="), id))).starts_with("-----BEGIN"));
    let mut k = key_spec();
    k.encoding = ObjectEncoding::Hex;
    assert!(text(&run(&k, &ec_jwk("EC", "P-256", P256_GX, P256_GY))).starts_with("-----BEGIN"));
}

#[test]
fn encoding_errors_name_the_problem_without_the_value() {
    let s = spec(
        ObjectType::Secret,
        ObjectFormat::Pem,
        ObjectEncoding::Base64,
    );
    let e = run_err(&s, &secret("#hunter2", None, None));
    assert_eq!(
        e,
        "value is not valid base64 (illegal base64 data at input byte 0): store it base64-encoded or remove objectEncoding"
    );
    assert!(!e.contains("hunter2"));
}

// ---------------------------------------------------------------- PEM → PFX (beyond, #1945)

fn pfx_from(value: &[u8]) -> Vec<u8> {
    let f = secret(text(value), Some(CONTENT_TYPE_PEM), Some(KID));
    let out = run(&secret_spec(ObjectFormat::Pfx), &f);
    STANDARD.decode(out).expect("standard base64 output")
}

// reference: docs/reference-provider.md §2.2 (pem + pfx; issue #1945)
#[test]
fn pem_to_pfx_round_trips() {
    let pfx = pfx_from(fixture!("foo-kv.pem"));
    let contents = pkcs12::decode(&pfx).unwrap();
    assert_eq!(contents.keys, [der_of(fixture!("foo-pkcs8.key"))]);
    assert_eq!(
        contents.certs,
        ders(&[
            fixture!("foo-leaf.pem"),
            fixture!("foo-int.pem"),
            fixture!("foo-root.pem")
        ])
    );
    // The key and its certificate share a localKeyId, as Key Vault's and OpenSSL's do.
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, "").unwrap();
    let key_id = archive.keys[0].local_key_id.clone().unwrap();
    let leaf_id = archive.certs[0].local_key_id.clone().unwrap();
    assert_eq!(key_id.as_ref(), leaf_id.as_slice());
    assert!(archive.certs[1].local_key_id.is_none());

    // Same input, same bytes: a refresh with an unchanged certificate publishes nothing.
    assert_eq!(pfx_from(fixture!("foo-kv.pem")), pfx);

    // Reading it back as PEM gives the canonical key-then-chain output.
    let back = run(&secret_spec(ObjectFormat::Pem), &pfx_secret(&pfx));
    assert_eq!(back, fixture!("foo-kv.pem"));

    // With objectEncoding base64 the file is the binary PFX.
    let f = secret(
        text(fixture!("foo-kv.pem")),
        Some(CONTENT_TYPE_PEM),
        Some(KID),
    );
    let s = spec(
        ObjectType::Secret,
        ObjectFormat::Pfx,
        ObjectEncoding::Base64,
    );
    assert_eq!(run(&s, &f), pfx);
}

// reference: docs/reference-provider.md §2.2 (pem + pfx; issue #1945); issue 13 item 3: the
// writer moved from hand-written DER to the `pkcs12` crate's types without changing a byte.
// These digests are of the previous writer's output: a certificate that does not change must
// not republish (and notify) after an upgrade either.
#[test]
fn pfx_writer_bytes_are_pinned() {
    use sha2::Digest as _;
    let key = der_of(fixture!("foo-pkcs8.key"));
    let certs = ders(&[
        fixture!("foo-leaf.pem"),
        fixture!("foo-int.pem"),
        fixture!("foo-root.pem"),
    ]);
    let digest = |pfx: Vec<u8>| hex::encode(sha2::Sha256::digest(pfx));
    assert_eq!(
        digest(pkcs12::encode(Some(&key), &certs, Some(0)).unwrap()),
        "219886510dddccabd629fccfb79f2ca77fe17f8430ff9ce23ca950fdea0d54e1"
    );
    assert_eq!(
        digest(pkcs12::encode(None, &certs[..1], None).unwrap()),
        "8b1b274fe04106ec02610e22b44c24b21d1a856c5bfb5d8a7d3568b94f15b447"
    );
    assert_eq!(
        digest(
            pkcs12::write::encode_with(pkcs12::NO_PASSWORD, Some(&key), &certs, Some(1)).unwrap()
        ),
        "3ee753a4cf6cea781b04249151f48b064ae4715d49b4e3329e86ae066335f085"
    );
}

// reference: docs/reference-provider.md §2.2 (pem + pfx; issue #1945): every consumer reads the
// PFX we write, OpenSSL included (`openssl` is installed by scripts/install-deps.sh).
#[test]
fn openssl_reads_the_pfx_we_write() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let pfx = pfx_from(fixture!("foo-kv.pem"));
    let mut child = Command::new("openssl")
        .args(["pkcs12", "-nodes", "-passin", "pass:"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (scripts/install-deps.sh)");
    child.stdin.take().unwrap().write_all(&pfx).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenSSL verified the MAC and decrypted both safes: the key and the three certificates.
    let blocks = pem::decode_all(&out.stdout);
    let kinds: Vec<&str> = blocks.iter().map(|b| b.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "PRIVATE KEY").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == pem::CERTIFICATE).count(), 3);
    let key = blocks.iter().find(|b| b.kind == "PRIVATE KEY").unwrap();
    assert_eq!(key.der, der_of(fixture!("foo-pkcs8.key")));
}

#[test]
fn pem_to_pfx_key_forms_and_cert_order() {
    // PKCS#1 key after the certificate: the key still pairs with its certificate.
    let pfx = pfx_from(&cat(&[fixture!("demo.pem"), fixture!("demo-pkcs1.key")]));
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, "").unwrap();
    assert_eq!(
        archive.keys[0].key.as_der(),
        der_of(fixture!("demo-pkcs8.key"))
    );
    assert!(archive.certs[0].local_key_id.is_some());
    // SEC1 key with the leaf not first: localKeyId goes to the key's own certificate.
    let pfx = pfx_from(&cat(&[
        fixture!("foo-root.pem"),
        fixture!("foo-sec1.key"),
        fixture!("foo-leaf.pem"),
    ]));
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, "").unwrap();
    assert!(archive.certs[0].local_key_id.is_none());
    assert!(archive.certs[1].local_key_id.is_some());
    assert_eq!(
        archive.certs[1].cert.as_der(),
        der_of(fixture!("foo-leaf.pem"))
    );
    // Certificates only (non-exportable key policy).
    let pfx = pfx_from(fixture!("foo-leaf.pem"));
    let contents = pkcs12::decode(&pfx).unwrap();
    assert!(contents.keys.is_empty());
    assert_eq!(contents.certs.len(), 1);
}

#[test]
fn pem_to_pfx_errors() {
    let s = secret_spec(ObjectFormat::Pfx);
    let pem_secret = |v: &str| secret(v, Some(CONTENT_TYPE_PEM), Some(KID));
    let e = run_err(&s, &pem_secret("not pem at all"));
    assert_eq!(
        e,
        "cannot build a pfx from the pem certificate: it holds no certificate and no private key"
    );
    let two = cat(&[fixture!("foo-pkcs8.key"), fixture!("demo-pkcs8.key")]);
    let e = run_err(&s, &pem_secret(text(&two)));
    assert!(e.ends_with("more than one private key"), "{e}");
    let enc = text(&pem::encode("ENCRYPTED PRIVATE KEY", b"x")).to_owned();
    let e = run_err(&s, &pem_secret(&enc));
    assert!(e.ends_with("the private key is encrypted"), "{e}");
}

// ---------------------------------------------------------------- side-file split (§2.2, §2.11)

// reference: docs/reference-provider.md §2.11 TestSplitCertAndKey
#[test]
fn split_cert_and_key_keeps_order() {
    let key = fixture!("demo-pkcs8.key");
    let (certs, keys) = split_cert_and_key(&cat(&[fixture!("ec-leaf.pem"), key]));
    assert_eq!(certs, fixture!("ec-leaf.pem"));
    assert_eq!(keys, key);
    let chain = cat(&[
        fixture!("ec-root.pem"),
        fixture!("ec-int.pem"),
        fixture!("ec-leaf.pem"),
    ]);
    let (certs, keys) = split_cert_and_key(&cat(&[&chain, key]));
    assert_eq!(certs, chain);
    assert_eq!(keys, key);
    // Blocks are re-encoded: CRLF input comes out normalised.
    let crlf = text(&cat(&[key, fixture!("ec-leaf.pem")])).replace('\n', "\r\n");
    let (certs, keys) = split_cert_and_key(crlf.as_bytes());
    assert_eq!(certs, fixture!("ec-leaf.pem"));
    assert_eq!(keys, key);
}

// ---------------------------------------------------------------- not_after

fn notafter(file: &[u8]) -> i64 {
    text(file).trim().parse().unwrap()
}

#[test]
fn not_after_for_certificates_and_cert_backed_secrets() {
    let demo = notafter(fixture!("demo.notafter"));
    let foo = notafter(fixture!("foo-leaf.notafter"));
    assert!(demo > 4_000_000_000, "fixtures are long-lived");

    let cer = STANDARD.encode(der_of(fixture!("demo.pem")));
    let f = cert_bundle(
        Some(&cer),
        Some("https://kv.vault.azure.net/certificates/c/v"),
    );
    let out = run(&cert_spec(), &f);
    assert_eq!(not_after(&f, &out), Some(demo));

    // PFX → PEM output: the leaf, whatever the bag order.
    let f = pfx_secret(fixture!("foo-aes.pfx"));
    let out = run(&secret_spec(ObjectFormat::Pem), &f);
    assert_eq!(not_after(&f, &out), Some(foo));
    // PFX kept as base64, even binary after objectEncoding: read from the fetched value.
    let s = spec(
        ObjectType::Secret,
        ObjectFormat::Pfx,
        ObjectEncoding::Base64,
    );
    let out = run(&s, &f);
    assert_eq!(not_after(&f, &out), Some(foo));
    // PEM secret with the root first.
    let v = cat(&[fixture!("foo-root.pem"), fixture!("foo-leaf.pem")]);
    let f = secret(text(&v), Some(CONTENT_TYPE_PEM), Some(KID));
    let out = run(&secret_spec(ObjectFormat::Pfx), &f);
    assert_eq!(not_after(&f, &out), Some(foo));

    // Unreadable value: the secret's exp, which Key Vault mirrors from the certificate.
    let f = Fetched::Secret(SecretBundle {
        value: Some(SecretString::new("garbage")),
        id: Some(SECRET_ID.into()),
        content_type: Some(CONTENT_TYPE_PKCS12.into()),
        kid: Some(KID.into()),
        attributes: Some(Attributes {
            exp: Some(1_900_000_000),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(not_after(&f, b"garbage"), Some(1_900_000_000));

    // Plain secrets and keys have no certificate.
    let f = secret(text(fixture!("demo.pem")), None, None);
    assert_eq!(not_after(&f, fixture!("demo.pem")), None);
    let f = ec_jwk("EC", "P-256", P256_GX, P256_GY);
    assert_eq!(not_after(&f, b""), None);
}

#[test]
fn errors_are_lowercase_and_never_transient() {
    let errors = [
        ConvertError::SecretValueNil,
        ConvertError::UnknownContentType("x".into()),
        ConvertError::NoLeaf,
        ConvertError::ChainCycle,
        ConvertError::PrivateKey,
        ConvertError::UnsupportedKeyType("oct".into()),
        ConvertError::OddLengthHex,
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(msg.chars().next().unwrap().is_lowercase(), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(!e.is_transient());
    }
}

// ---------------------------------------------------------------- null-password PFX

// reference: docs/reference-provider.md §2.6 PFX case (1): the reference's Windows-CSP PFX uses the
// null password (no KDF bytes), which Go's pkcs12 retries after the "00 00" one.
#[test]
fn null_password_pfx_is_read_like_go() {
    let certs = ders(&[
        fixture!("foo-root.pem"),
        fixture!("foo-leaf.pem"),
        fixture!("foo-int.pem"),
    ]);
    let key = der_of(fixture!("foo-pkcs8.key"));
    let pfx = pkcs12::write::encode_with(pkcs12::NO_PASSWORD, Some(&key), &certs, Some(1)).unwrap();
    // p12-keystore alone cannot read it...
    assert!(p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, "").is_err());
    // ...the conversion can, with the same output as for any other PFX.
    let got = run(&secret_spec(ObjectFormat::Pem), &pfx_secret(&pfx));
    assert_eq!(got, fixture!("foo-kv.pem"));
}

// The fallback reader itself, on OpenSSL's files (their password is "00 00").
#[test]
fn null_password_reader_reads_openssl_legacy_files() {
    for pfx in [
        fixture!("demo-legacy.pfx"), // RC2-40 certificates, 3DES key
        fixture!("demo-3des.pfx"),
        fixture!("foo-legacy.pfx"),
    ] {
        let ours = pkcs12::read::decode_with(pfx, pkcs12::EMPTY_PASSWORD).unwrap();
        let theirs = pkcs12::decode(pfx).unwrap();
        assert_eq!(ours.keys, theirs.keys);
        assert_eq!(ours.certs, theirs.certs);
        // With no password bytes the MAC does not verify.
        assert_eq!(
            pkcs12::read::decode_with(pfx, pkcs12::NO_PASSWORD).unwrap_err(),
            pkcs12::read::Error::Mac
        );
    }
    // PBES2 with a SHA-256 MAC is p12-keystore's job (Go cannot read it at all).
    assert_eq!(
        pkcs12::read::decode_with(fixture!("demo-aes.pfx"), pkcs12::EMPTY_PASSWORD).unwrap_err(),
        pkcs12::read::Error::Unsupported
    );
    assert_eq!(
        pkcs12::read::decode_with(b"\x30\x80", pkcs12::NO_PASSWORD).unwrap_err(),
        pkcs12::read::Error::Malformed
    );
}

#[test]
fn tampered_pfx_is_rejected() {
    let mut pfx = fixture!("demo-3des.pfx").to_vec();
    let n = pfx.len();
    pfx[n / 2] ^= 1;
    let e = run_err(&secret_spec(ObjectFormat::Pem), &pfx_secret(&pfx));
    assert!(
        e.starts_with("cannot decode the pfx with an empty password: "),
        "{e}"
    );
}

// ---------------------------------------------------------------- property tests (fuzzing)

// reference: docs/threat-model.md "How to prove it" (fuzz every parser of outside bytes); issue 9
// item 10. Every conversion takes bytes a vault (or whoever answers in its place) chose:
// whatever they are, the result is `Ok` or a `ConvertError`, never a panic. Case counts
// are bounded so each property runs in a few seconds in `cargo test`.
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Valid inputs with a few bytes changed, cut short or extended: the shapes that reach
    /// deep into a parser, unlike uniformly random bytes.
    fn mutated(seed: impl Into<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let seed: Vec<u8> = seed.into();
        (
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            prop::option::of(any::<prop::sample::Index>()),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(move |(flips, cut, tail)| {
                let mut b = seed.clone();
                for (at, byte) in flips {
                    let i = at.index(b.len());
                    b[i] = byte;
                }
                if let Some(cut) = cut {
                    b.truncate(cut.index(b.len() + 1));
                }
                b.extend(tail);
                b
            })
    }

    /// PEM-looking text: BEGIN/END lines of assorted labels around base64-ish bodies.
    fn pem_like() -> impl Strategy<Value = String> {
        let label = prop::sample::select(vec![
            "CERTIFICATE",
            "PRIVATE KEY",
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "PUBLIC KEY",
            "X",
            "",
        ]);
        let block = (
            label.clone(),
            label,
            "[A-Za-z0-9+/=\\n\\r :-]{0,200}",
            any::<bool>(),
        )
            .prop_map(|(begin, end, body, end_line)| {
                let end = if end_line {
                    format!("-----END {end}-----\n")
                } else {
                    String::new()
                };
                format!("-----BEGIN {begin}-----\n{body}\n{end}")
            });
        prop::collection::vec(block, 0..4).prop_map(|v| v.concat())
    }

    fn pem_secret_spec(format: ObjectFormat) -> ObjectSpec {
        spec(ObjectType::Secret, format, ObjectEncoding::Utf8)
    }

    fn cert_backed(value: String, content_type: &str) -> Fetched {
        secret(&value, Some(content_type), Some(KID))
    }

    fn b64url(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn pem_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), text in pem_like()) {
            let _ = pem::decode_all(&bytes);
            let _ = pem::split_cert_and_key(&bytes);
            let _ = pem::decode_all(text.as_bytes());
            let _ = pem::split_cert_and_key(text.as_bytes());
        }

        #[test]
        fn pem_secret_conversions_never_panic(text in pem_like(), real in mutated(fixture!("foo-bundle.pem"))) {
            for value in [text, String::from_utf8_lossy(&real).into_owned()] {
                for format in [ObjectFormat::Pem, ObjectFormat::Pfx] {
                    let f = cert_backed(value.clone(), CONTENT_TYPE_PEM);
                    let _ = convert(&pem_secret_spec(format), &f);
                    let _ = not_after(&f, value.as_bytes());
                }
            }
        }

        #[test]
        fn jwk_conversion_never_panics(
            kty in prop::sample::select(vec!["RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM", "", "rsa"]),
            crv in prop::sample::select(vec!["P-256", "P-384", "P-521", "P-256K", "", "P-999"]),
            n in prop::option::of(prop::collection::vec(any::<u8>(), 0..600)),
            e in prop::option::of(prop::collection::vec(any::<u8>(), 0..9)),
            x in prop::option::of(prop::collection::vec(any::<u8>(), 0..70)),
            y in prop::option::of(prop::collection::vec(any::<u8>(), 0..70)),
            junk in prop::option::of("[^A-Za-z0-9_-]{1,4}"),
        ) {
            let enc = |v: &Option<Vec<u8>>| v.as_deref().map(|b| match &junk {
                Some(j) => format!("{}{j}", b64url(b)),
                None => b64url(b),
            });
            let jwk = JsonWebKey {
                kid: Some("https://kv.vault.azure.net/keys/k1/v1".into()),
                kty: Some(kty.into()),
                crv: Some(crv.into()),
                n: enc(&n),
                e: enc(&e),
                x: enc(&x),
                y: enc(&y),
                ..Default::default()
            };
            let _ = key::jwk_to_spki(&jwk);
            let s = spec(ObjectType::Key, ObjectFormat::Pem, ObjectEncoding::Utf8);
            let _ = convert(&s, &key_bundle(jwk));
        }

        #[test]
        fn pkcs12_decode_never_panics(
            random in prop::collection::vec(any::<u8>(), 0..512),
            legacy in mutated(fixture!("foo-legacy.pfx")),
            aes in mutated(fixture!("foo-aes.pfx")),
            des in mutated(fixture!("demo-3des.pfx")),
        ) {
            for pfx in [&random, &legacy, &aes, &des] {
                let _ = pkcs12::decode(pfx);
                let _ = pkcs12::read::decode_with(pfx, pkcs12::NO_PASSWORD);
            }
        }

        #[test]
        fn pfx_secret_conversions_never_panic(pfx in mutated(fixture!("demo-legacy.pfx")), garbage in "[ -~]{0,64}") {
            for value in [STANDARD.encode(&pfx), garbage] {
                for format in [ObjectFormat::Pem, ObjectFormat::Pfx] {
                    let f = cert_backed(value.clone(), CONTENT_TYPE_PKCS12);
                    let _ = convert(&pem_secret_spec(format), &f);
                    let _ = not_after(&f, value.as_bytes());
                }
            }
        }

        #[test]
        fn certificate_and_encoding_conversions_never_panic(
            der in mutated(der_of(fixture!("foo-leaf.pem"))),
            value in "[ -~]{0,64}",
            encoding in prop::sample::select(vec![ObjectEncoding::Utf8, ObjectEncoding::Hex, ObjectEncoding::Base64]),
        ) {
            let cer = STANDARD.encode(&der);
            let f = cert_bundle(Some(&cer), Some("https://kv.vault.azure.net/certificates/c1/v1"));
            let _ = convert(&cert_spec(), &f);
            let _ = not_after(&f, &der);
            let _ = convert(&cert_spec(), &cert_bundle(Some(&value), Some("https://kv.vault.azure.net/certificates/c1/v1")));
            let s = spec(ObjectType::Secret, ObjectFormat::Pem, encoding);
            let _ = convert(&s, &secret(&value, None, None));
        }
    }
}
