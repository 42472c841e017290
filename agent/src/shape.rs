//! Agent extensions that reshape an object's converted bytes before they are published:
//! `objectJsonPointer` (one value out of a JSON secret) and `objectLayout: tls` (a
//! `kubernetes.io/tls` directory out of a certificate's PEM key and chain).
//!
//! Errors name the pointer or the missing part, never a value: the input is secret.

use crate::convert::pem::{self, Block};
use crate::convert::{chain, key};
use crate::secret::SecretBytes;

/// The files of the TLS layout, in the order [`tls`] returns them (defined in `config`,
/// which checks output paths for collisions without depending on the conversions).
pub use crate::config::TLS_FILES;

/// Largest JSON document the pointer is applied to; Key Vault secrets are at most 25 KiB,
/// this bounds what a hostile vault can make the parser hold.
const MAX_JSON_BYTES: usize = 1 << 20;

/// Why reshaping failed (the caller prefixes the object's label).
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The content is not a JSON document.
    #[error(
        "objectJsonPointer {pointer:?}: the secret is not JSON ({reason}): store a JSON object or remove objectJsonPointer"
    )]
    NotJson {
        /// The pointer.
        pointer: String,
        /// Where parsing stopped (line and column only, never the text).
        reason: String,
    },
    /// The pointer names nothing in the document.
    #[error(
        "objectJsonPointer {pointer:?}: no value at this pointer in the secret's JSON: check the pointer (RFC 6901: '/a/b', '~1' for '/', '~0' for '~')"
    )]
    NoValue {
        /// The pointer.
        pointer: String,
    },
    /// The TLS layout needs exactly one private key.
    #[error(
        "objectLayout tls: the object holds {0} private keys, need exactly 1: use a certificate with an exportable key (or a pem secret with one key)"
    )]
    KeyCount(usize),
    /// The private key belongs to none of the certificates.
    #[error(
        "objectLayout tls: the private key matches no certificate of the chain: import the certificate together with its own key"
    )]
    KeyMismatch,
    /// The TLS layout needs a certificate.
    #[error("objectLayout tls: the object holds no certificate")]
    NoCertificate,
    /// The TLS layout needs the key in the clear (Key Vault exports it so).
    #[error("objectLayout tls: the private key is encrypted")]
    EncryptedKey,
    /// A key or certificate does not parse, or the chain cannot be ordered: the conversion's
    /// own cause, for callers to match (its message is part of this one's, not a `source`,
    /// so the edge prints it once).
    #[error("objectLayout tls: {0}")]
    Convert(crate::convert::ConvertError),
}

/// The value at RFC 6901 `pointer` in the JSON `data`: a string as its raw text, any other
/// value as compact JSON.
pub fn json_pointer(data: &[u8], pointer: &str) -> Result<SecretBytes, ShapeError> {
    if data.len() > MAX_JSON_BYTES {
        return Err(ShapeError::NotJson {
            pointer: pointer.to_owned(),
            reason: format!("larger than {MAX_JSON_BYTES} bytes"),
        });
    }
    // serde_json's default recursion limit (128) bounds the depth.
    let doc: serde_json::Value = serde_json::from_slice(data).map_err(|e| ShapeError::NotJson {
        pointer: pointer.to_owned(),
        // serde_json's messages quote no input, but keep only the position to be sure.
        reason: format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
        .to_ascii_lowercase(),
    })?;
    let value = doc.pointer(pointer).ok_or_else(|| ShapeError::NoValue {
        pointer: pointer.to_owned(),
    })?;
    Ok(SecretBytes::new(match value {
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }))
}

/// Splits a PEM holding one private key and a certificate chain into the `kubernetes.io/tls`
/// files: `tls.crt` (the leaf, the certificate of the key, then the rest of the chain leaf →
/// root), `tls.key` (the key as PKCS#8) and `ca.crt` (the chain's CA certificates after the
/// leaf, as stored: intermediates and the root when the vault holds it; empty when the
/// chain is the leaf alone).
pub fn tls(object: &str, data: &[u8]) -> Result<[SecretBytes; 3], ShapeError> {
    let conv = ShapeError::Convert;
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for block in pem::decode_all(data) {
        match block.kind.as_str() {
            pem::CERTIFICATE => certs.push(block.der),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => keys.push(block.der),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(ShapeError::EncryptedKey);
            }
            _ => {}
        }
    }
    if keys.len() != 1 {
        return Err(ShapeError::KeyCount(keys.len()));
    }
    if certs.is_empty() {
        return Err(ShapeError::NoCertificate);
    }
    let key = key::PrivateKey::parse(&keys[0]).map_err(conv)?;
    let pkcs8 = key.to_pkcs8().map_err(conv)?;
    let mut ordered = chain::order_or_keep(object, certs).map_err(conv)?;
    // The leaf is the certificate of the key. A key matching none of the certificates would
    // make a server that fails every handshake: refused. (Keys whose public half we cannot
    // derive, e.g. Ed25519, take the chain's leaf.)
    let leaf = match key.public_spki() {
        Some(spki) => ordered
            .iter()
            .position(|c| crate::convert::cert_spki(c).as_deref() == Some(spki.as_slice()))
            .ok_or(ShapeError::KeyMismatch)?,
        None => 0,
    };
    let leaf = ordered.remove(leaf);
    let mut crt = Vec::new();
    pem::encode_into(&mut crt, &Block::new(pem::CERTIFICATE, leaf));
    let mut ca = Vec::new();
    for der in &ordered {
        pem::encode_into(&mut crt, &Block::new(pem::CERTIFICATE, der.clone()));
        if is_ca(der) {
            pem::encode_into(&mut ca, &Block::new(pem::CERTIFICATE, der.clone()));
        }
    }
    let mut key_pem = Vec::new();
    pem::encode_into(&mut key_pem, &Block::new(pem::PRIVATE_KEY, pkcs8));
    Ok([
        SecretBytes::new(crt),
        SecretBytes::new(key_pem),
        SecretBytes::new(ca),
    ])
}

/// Whether a certificate says it is a CA (basicConstraints cA); unparseable is not.
fn is_ca(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .ok()
        .and_then(|(_, c)| c.basic_constraints().ok().flatten().map(|b| b.value.ca))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointer_strings_raw_others_compact() {
        let doc = br#"{"db":{"password":"p\"w","port":5432,"tags":["a", "b"]},"a/b":{"~":true}}"#;
        let get = |p| String::from_utf8(json_pointer(doc, p).unwrap().into_inner()).unwrap();
        assert_eq!(get("/db/password"), "p\"w");
        assert_eq!(get("/db/port"), "5432");
        assert_eq!(get("/db/tags"), r#"["a","b"]"#);
        assert_eq!(get("/db/tags/1"), "b");
        assert_eq!(get("/a~1b/~0"), "true");
    }

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/convert/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    fn count(pem: &[u8]) -> usize {
        pem::decode_all(pem).len()
    }

    // reference: issue 11 item 5 (tls.crt leaf then chain, ca.crt the chain's CAs)
    #[test]
    fn tls_orders_leaf_first_and_puts_the_cas_in_ca_crt() {
        // Stored out of order: root, key, leaf, intermediate.
        let mut input = fixture("foo-root.pem");
        input.extend(fixture("foo.key"));
        input.extend(fixture("foo-leaf.pem"));
        input.extend(fixture("foo-int.pem"));
        let [crt, key, ca] = tls("foo", &input).unwrap();
        let certs = pem::decode_all(crt.expose());
        assert_eq!(certs.len(), 3);
        assert_eq!(
            certs[0].der,
            pem::decode_all(&fixture("foo-leaf.pem"))[0].der
        );
        assert_eq!(
            certs[1].der,
            pem::decode_all(&fixture("foo-int.pem"))[0].der
        );
        assert_eq!(
            certs[2].der,
            pem::decode_all(&fixture("foo-root.pem"))[0].der
        );
        assert_eq!(count(ca.expose()), 2, "intermediate and root");
        assert_eq!(pem::decode_all(key.expose())[0].kind, pem::PRIVATE_KEY);
        // Without the root in the vault, ca.crt holds the intermediate only.
        let mut no_root = fixture("foo.key");
        no_root.extend(fixture("foo-leaf.pem"));
        no_root.extend(fixture("foo-int.pem"));
        let [crt, _, ca] = tls("foo", &no_root).unwrap();
        assert_eq!((count(crt.expose()), count(ca.expose())), (2, 1));
    }

    // reference: issue 11 items 5 and 6 (a key must match its leaf)
    #[test]
    fn tls_refuses_a_key_of_another_certificate_and_key_counts() {
        let mut input = fixture("demo.key");
        input.extend(fixture("foo-leaf.pem"));
        assert!(matches!(
            tls("x", &input).unwrap_err(),
            ShapeError::KeyMismatch
        ));
        assert!(matches!(
            tls("x", &fixture("foo-leaf.pem")).unwrap_err(),
            ShapeError::KeyCount(0)
        ));
        let mut two = fixture("foo.key");
        two.extend(fixture("demo.key"));
        two.extend(fixture("foo-leaf.pem"));
        assert!(matches!(
            tls("x", &two).unwrap_err(),
            ShapeError::KeyCount(2)
        ));
        assert!(matches!(
            tls("x", &fixture("foo.key")).unwrap_err(),
            ShapeError::NoCertificate
        ));
    }

    // reference: issue 13 item 2 (typed causes a caller can match; printed once)
    #[test]
    fn tls_causes_are_typed_and_the_conversion_message_appears_once() {
        let mut garbage_key = Vec::new();
        pem::encode_into(
            &mut garbage_key,
            &Block::new(pem::PRIVATE_KEY, vec![0x30, 1, 0]),
        );
        garbage_key.extend(fixture("foo-leaf.pem"));
        let e = tls("x", &garbage_key).unwrap_err();
        assert!(
            matches!(
                e,
                ShapeError::Convert(crate::convert::ConvertError::PrivateKey)
            ),
            "{e:?}"
        );
        let m = e.to_string();
        assert_eq!(
            m,
            "objectLayout tls: failed to parse key for type pkcs1, pkcs8 or ec"
        );
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is in the message; a source would print it twice"
        );

        let mut encrypted = Vec::new();
        pem::encode_into(
            &mut encrypted,
            &Block::new("ENCRYPTED PRIVATE KEY", vec![0x30, 1, 0]),
        );
        encrypted.extend(fixture("foo-leaf.pem"));
        let e = tls("x", &encrypted).unwrap_err();
        assert!(matches!(e, ShapeError::EncryptedKey), "{e:?}");
        assert_eq!(
            e.to_string(),
            "objectLayout tls: the private key is encrypted"
        );
    }

    #[test]
    fn json_pointer_errors_never_hold_the_value() {
        let e = json_pointer(b"hunter2-not-json", "/db/password").unwrap_err();
        assert!(matches!(e, ShapeError::NotJson { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("\"/db/password\"") && !m.contains("hunter2"),
            "{m}"
        );
        let e = json_pointer(br#"{"db":{"user":"hunter2"}}"#, "/db/password").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("no value") && !m.contains("hunter2"), "{m}");
    }
}
