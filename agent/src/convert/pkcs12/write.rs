//! Writes a password-less PFX from a PEM certificate (beyond the reference: issue #1945).
//!
//! The file is what Key Vault itself serves, readable by every consumer including Go's
//! `x/crypto/pkcs12` and `openssl pkcs12`: certificates in an encrypted safe and the key in a
//! shrouded bag, both PBE-SHA1-3DES, and an HMAC-SHA1 MAC; the key and its certificate share a
//! `localKeyId` (the certificate's SHA-1, as OpenSSL does). It is assembled from the `pkcs12`
//! and `cms` types and DER-encoded by `der`.
//!
//! `p12-keystore`'s writer draws random salts, which would make every refresh produce different
//! bytes and needlessly republish and notify; here salts are derived from the content instead,
//! so an unchanged certificate yields unchanged bytes. With an empty password the encryption
//! protects nothing, so this loses nothing.

use der::asn1::{OctetString, SetOfVec};
use der::{Any, Encode};
use pkcs12::cms::cert::x509::attr::{Attribute, Attributes};
use pkcs12::cms::content_info::{CmsVersion, ContentInfo};
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::cms::enveloped_data::EncryptedContentInfo;
use pkcs12::pbe_params::EncryptedPrivateKeyInfo;
use pkcs12::pfx::Version;
use pkcs12::safe_bag::SafeBag;
use pkcs12::{CertBag, DigestInfo, MacData, Pfx};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;

use super::pbe::{Pbe, Scheme, mac_sha1};
use super::{OID_DATA, OID_ENCRYPTED_DATA, OID_LOCAL_KEY_ID, OID_SHA1};

/// Key Vault's PFX iteration count.
const ITERATIONS: i32 = 2000;

/// Builds a PFX from PKCS#8 `key` (optional) and DER `certs` with the KDF password bytes
/// `password`; `key_cert` is the index of the certificate that belongs to the key.
/// Deterministic for equal input.
pub(crate) fn encode_with(
    password: &[u8],
    key: Option<&[u8]>,
    certs: &[Vec<u8>],
    key_cert: Option<usize>,
) -> der::Result<Vec<u8>> {
    // Content digest: salts depend on everything that goes in.
    let mut h = Sha256::new();
    for part in key.into_iter().chain(certs.iter().map(Vec::as_slice)) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let salt = |label: &[u8]| -> Vec<u8> {
        let d = Sha256::new()
            .chain_update(b"keyvault-agent pfx salt ")
            .chain_update(label)
            .chain_update(digest)
            .finalize();
        d[..8].to_vec()
    };
    let pbe = |label: &[u8]| Pbe {
        scheme: Scheme::Sha1Tdes,
        salt: salt(label),
        iterations: ITERATIONS,
        password,
    };

    let local_key_id = key_cert
        .and_then(|i| certs.get(i))
        .map(|c| local_key_id_attrs(&sha1::Sha1::digest(c)))
        .transpose()?;

    let mut safes = Vec::new();
    if !certs.is_empty() {
        let bags = certs
            .iter()
            .enumerate()
            .map(|(i, der)| {
                Ok(SafeBag {
                    bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
                    bag_value: CertBag {
                        cert_id: pkcs12::PKCS_12_X509_CERT_OID,
                        cert_value: OctetString::new(der.as_slice())?,
                    }
                    .to_der()?,
                    bag_attributes: local_key_id.clone().filter(|_| Some(i) == key_cert),
                })
            })
            .collect::<der::Result<Vec<_>>>()?;
        let pbe = pbe(b"certificates");
        safes.push(ContentInfo {
            content_type: OID_ENCRYPTED_DATA,
            content: Any::encode_from(&EncryptedData {
                version: CmsVersion::V0,
                enc_content_info: EncryptedContentInfo {
                    content_type: OID_DATA,
                    content_enc_alg: pbe.algorithm()?,
                    encrypted_content: Some(OctetString::new(pbe.encrypt(&bags.to_der()?))?),
                },
                unprotected_attrs: None,
            })?,
        });
    }
    if let Some(key) = key {
        let pbe = pbe(b"key");
        let bag = SafeBag {
            bag_id: pkcs12::PKCS_12_PKCS8_KEY_BAG_OID,
            bag_value: EncryptedPrivateKeyInfo {
                encryption_algorithm: pbe.algorithm()?,
                encrypted_data: OctetString::new(pbe.encrypt(key))?,
            }
            .to_der()?,
            bag_attributes: local_key_id,
        };
        safes.push(ContentInfo {
            content_type: OID_DATA,
            content: Any::encode_from(&OctetString::new(vec![bag].to_der()?)?)?,
        });
    }
    let auth_safe = safes.to_der()?;

    let mac_salt = salt(b"mac");
    let mut mac = mac_sha1(password, &mac_salt, ITERATIONS);
    hmac::Mac::update(&mut mac, &auth_safe);
    let mac_data = MacData {
        mac: DigestInfo {
            algorithm: AlgorithmIdentifierOwned {
                oid: OID_SHA1,
                parameters: Some(Any::null()),
            },
            digest: OctetString::new(hmac::Mac::finalize(mac).into_bytes().to_vec())?,
        },
        mac_salt: OctetString::new(mac_salt)?,
        iterations: ITERATIONS,
    };

    Pfx {
        version: Version::V3,
        auth_safe: ContentInfo {
            content_type: OID_DATA,
            content: Any::encode_from(&OctetString::new(auth_safe)?)?,
        },
        mac_data: Some(mac_data),
    }
    .to_der()
}

/// The bag attributes `{ localKeyId: id }`.
fn local_key_id_attrs(id: &[u8]) -> der::Result<Attributes> {
    let value = Any::encode_from(&OctetString::new(id)?)?;
    let attr = Attribute {
        oid: OID_LOCAL_KEY_ID,
        values: SetOfVec::try_from(vec![value])?,
    };
    SetOfVec::try_from(vec![attr])
}
