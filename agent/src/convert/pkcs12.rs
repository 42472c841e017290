//! PKCS#12 (PFX) in both directions, always with the empty password Key Vault uses.
//!
//! Reading (`docs/reference-provider.md` §2.2) goes through `p12-keystore`, which handles the legacy
//! PBE-SHA1-3DES and PBE-SHA1-RC2-40 schemes as well as PBES2 (PBKDF2 + AES-CBC, the OpenSSL 3
//! default that the reference cannot read) and SHA-1/SHA-2 MACs.
//!
//! Writing (PEM → PFX, beyond the reference: issue #1945) produces what Key Vault itself
//! serves, readable by every consumer including Go's `x/crypto/pkcs12`: certificates in an
//! encrypted safe and the key in a shrouded bag, both PBE-SHA1-3DES, and an HMAC-SHA1 MAC; the
//! key and its certificate share a `localKeyId` (the certificate's SHA-1, as OpenSSL does).
//! `p12-keystore`'s writer draws random salts, which would make every refresh produce different
//! bytes and needlessly republish and notify; here salts are derived from the content instead.
//! With an empty password the encryption protects nothing, so this loses nothing.

use cbc::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use der::{Encode, asn1::ObjectIdentifier};
use hmac::{KeyInit, Mac};
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use sha2::{Digest, Sha256};

use super::ConvertError;

/// What a PFX holds, in bag order. Holds private keys: `Debug` shows counts only.
pub struct Contents {
    /// PKCS#8 DER private keys.
    pub keys: Vec<Vec<u8>>,
    /// DER certificates.
    pub certs: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Contents({} keys, {} certs)",
            self.keys.len(),
            self.certs.len()
        )
    }
}

/// Decodes a PFX with the empty password, in either of its two encodings (see
/// [`super::null_password`]).
pub fn decode(pfx: &[u8]) -> Result<Contents, ConvertError> {
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(pfx, "") {
        Ok(archive) => archive,
        Err(e) => {
            return super::null_password::decode(pfx)
                .map_err(|_| ConvertError::Pkcs12(e.to_string().to_lowercase()));
        }
    };
    Ok(Contents {
        keys: archive
            .keys
            .into_iter()
            .map(|k| k.key.as_der().to_vec())
            .collect(),
        certs: archive
            .certs
            .into_iter()
            .map(|c| c.cert.as_der().to_vec())
            .collect(),
    })
}

pub(super) const OID_DATA: &str = "1.2.840.113549.1.7.1";
pub(super) const OID_ENCRYPTED_DATA: &str = "1.2.840.113549.1.7.6";
pub(super) const OID_PBE_SHA1_3DES: &str = "1.2.840.113549.1.12.1.3";
pub(super) const OID_SHROUDED_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.2";
pub(super) const OID_CERT_BAG: &str = "1.2.840.113549.1.12.10.1.3";
pub(super) const OID_X509_CERTIFICATE: &str = "1.2.840.113549.1.9.22.1";
const OID_LOCAL_KEY_ID: &str = "1.2.840.113549.1.9.21";
pub(super) const OID_SHA1: &str = "1.3.14.3.2.26";

/// Key Vault's PFX iteration count.
const ITERATIONS: u32 = 2000;
/// The empty password as a NUL-terminated BMPString (what OpenSSL and Go derive from "").
pub(super) const EMPTY_PASSWORD: &[u8] = &[0, 0];

/// One DER element: `tag`, definite length, `content`.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    ObjectIdentifier::new_unwrap(dotted)
        .to_der()
        .expect("static OID encodes")
}

fn int(v: u32) -> Vec<u8> {
    v.to_der().expect("integer encodes")
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

fn explicit0(inner: &[u8]) -> Vec<u8> {
    tlv(0xa0, inner)
}

fn local_key_id_attrs(id: &[u8]) -> Vec<u8> {
    tlv(
        0x31,
        &seq(&[&oid(OID_LOCAL_KEY_ID), &tlv(0x31, &octets(id))]),
    )
}

struct Pbe<'a> {
    salt: [u8; 8],
    password: &'a [u8],
}

impl Pbe<'_> {
    fn algorithm(&self) -> Vec<u8> {
        seq(&[
            &oid(OID_PBE_SHA1_3DES),
            &seq(&[&octets(&self.salt), &int(ITERATIONS)]),
        ])
    }

    fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let derive = |id, len| {
            derive_key::<sha1_pkcs12::Sha1>(self.password, &self.salt, id, ITERATIONS as i32, len)
        };
        let key = derive(Pkcs12KeyType::EncryptionKey, 24);
        let iv = derive(Pkcs12KeyType::Iv, 8);
        cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .expect("3DES key and IV lengths are fixed")
            .encrypt_padded_vec::<Pkcs7>(plain)
    }
}

/// Builds a password-less PFX from PKCS#8 `key` (optional) and DER `certs`; `key_cert` is the
/// index of the certificate that belongs to the key. Deterministic for equal input.
pub fn encode(key: Option<&[u8]>, certs: &[Vec<u8>], key_cert: Option<usize>) -> Vec<u8> {
    encode_with(EMPTY_PASSWORD, key, certs, key_cert)
}

/// [`encode`] with the KDF password bytes `password`.
pub(super) fn encode_with(
    password: &[u8],
    key: Option<&[u8]>,
    certs: &[Vec<u8>],
    key_cert: Option<usize>,
) -> Vec<u8> {
    // Content digest: salts depend on everything that goes in.
    let mut h = Sha256::new();
    for part in key.into_iter().chain(certs.iter().map(Vec::as_slice)) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let salt = |label: &[u8]| -> [u8; 8] {
        let d = Sha256::new()
            .chain_update(b"keyvault-agent pfx salt ")
            .chain_update(label)
            .chain_update(digest)
            .finalize();
        d[..8].try_into().expect("8 of 32 bytes")
    };

    let local_key_id = key_cert
        .and_then(|i| certs.get(i))
        .map(|c| <sha1_pkcs12::Sha1 as sha1_pkcs12::Digest>::digest(c).to_vec());

    let mut safes = Vec::new();
    if !certs.is_empty() {
        let bags: Vec<Vec<u8>> = certs
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let value = explicit0(&seq(&[
                    &oid(OID_X509_CERTIFICATE),
                    &explicit0(&octets(der)),
                ]));
                let attrs = match (&local_key_id, Some(i) == key_cert) {
                    (Some(id), true) => local_key_id_attrs(id),
                    _ => Vec::new(),
                };
                seq(&[&oid(OID_CERT_BAG), &value, &attrs])
            })
            .collect();
        let safe_contents = tlv(0x30, &bags.concat());
        let pbe = Pbe {
            salt: salt(b"certificates"),
            password,
        };
        let encrypted_content_info = seq(&[
            &oid(OID_DATA),
            &pbe.algorithm(),
            &tlv(0x80, &pbe.encrypt(&safe_contents)),
        ]);
        let encrypted_data = seq(&[&int(0), &encrypted_content_info]);
        safes.push(seq(&[
            &oid(OID_ENCRYPTED_DATA),
            &explicit0(&encrypted_data),
        ]));
    }
    if let Some(key) = key {
        let pbe = Pbe {
            salt: salt(b"key"),
            password,
        };
        let epki = seq(&[&pbe.algorithm(), &octets(&pbe.encrypt(key))]);
        let attrs = local_key_id
            .as_deref()
            .map(local_key_id_attrs)
            .unwrap_or_default();
        let bag = seq(&[&oid(OID_SHROUDED_KEY_BAG), &explicit0(&epki), &attrs]);
        let safe_contents = seq(&[&bag]);
        safes.push(seq(&[&oid(OID_DATA), &explicit0(&octets(&safe_contents))]));
    }
    let auth_safe = tlv(0x30, &safes.concat());

    let mac_salt = salt(b"mac");
    let mac_key = derive_key::<sha1_pkcs12::Sha1>(
        password,
        &mac_salt,
        Pkcs12KeyType::Mac,
        ITERATIONS as i32,
        20,
    );
    let mut mac = hmac::Hmac::<sha1_pkcs12::Sha1>::new_from_slice(&mac_key)
        .expect("HMAC accepts any key length");
    mac.update(&auth_safe);
    let digest_info = seq(&[
        &seq(&[&oid(OID_SHA1), &[0x05, 0x00]]),
        &octets(&mac.finalize().into_bytes()),
    ]);
    let mac_data = seq(&[&digest_info, &octets(&mac_salt), &int(ITERATIONS)]);

    seq(&[
        &int(3),
        &seq(&[&oid(OID_DATA), &explicit0(&octets(&auth_safe))]),
        &mac_data,
    ])
}
