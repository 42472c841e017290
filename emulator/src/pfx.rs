//! PKCS#12 import: the password conventions a PFX upload may use, and the bags it holds.
//!
//! An empty password reaches the PKCS#12 KDF in one of two forms: the empty BMPString with its
//! terminator, `00 00` (OpenSSL `-passout pass:`, .NET, `p12-keystore`), or no bytes at all
//! (a NULL password: Windows exports, OpenSSL `PKCS12_create(NULL, ...)`). Key Vault imports
//! both, as do OpenSSL's `PKCS12_parse` and Go's `x/crypto/pkcs12`; a PFX without a MAC is
//! accepted too. `p12-keystore` reads the first form and MAC-less files, so it goes first. When
//! it refuses a file and the password given is empty, the file is read again with no password
//! bytes through the `pkcs12` crate's types (the RustCrypto crate `p12-keystore` is built on,
//! whose KDF takes raw bytes): the MAC, when present, must verify with no bytes, and the
//! PBE-SHA1-3DES / PBE-SHA1-RC2-40 bags are decrypted with no bytes, the ciphers Windows
//! writes. A wrong password is never retried: it fails as before.

use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{KeyInit, Mac};
use pkcs12::cms::cert::x509::der::asn1::{ContextSpecific, ObjectIdentifier, OctetString};
use pkcs12::cms::cert::x509::der::oid::db::{rfc5911, rfc5912};
use pkcs12::cms::cert::x509::der::{Any, Decode, Encode};
use pkcs12::cms::cert::x509::spki::AlgorithmIdentifierOwned;
use pkcs12::cms::content_info::ContentInfo;
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::safe_bag::SafeContents;
use pkcs12::{AuthenticatedSafe, CertBag, Pfx};

/// The keys (PKCS#8 DER) and certificates (DER) of a PFX, in file order.
pub(crate) struct Bags {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) certs: Vec<Vec<u8>>,
}

/// No password bytes at all: the NULL-password convention.
const NO_PASSWORD: &[u8] = &[];

// The named constants the agent's reader uses too (agent/src/convert/pkcs12/), not spelled again.
const OID_DATA: ObjectIdentifier = rfc5911::ID_DATA;
const OID_ENCRYPTED_DATA: ObjectIdentifier = rfc5911::ID_ENCRYPTED_DATA;
const OID_SHA1: ObjectIdentifier = rfc5912::ID_SHA_1;
const OID_KEY_BAG: ObjectIdentifier = pkcs12::PKCS_12_KEY_BAG_OID;
const OID_SHROUDED_KEY_BAG: ObjectIdentifier = pkcs12::PKCS_12_PKCS8_KEY_BAG_OID;
const OID_CERT_BAG: ObjectIdentifier = pkcs12::PKCS_12_CERT_BAG_OID;
const OID_X509_CERTIFICATE: ObjectIdentifier = pkcs12::PKCS_12_X509_CERT_OID;
const OID_PBE_SHA1_3DES: ObjectIdentifier = pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC;
const OID_PBE_SHA1_RC2_40: ObjectIdentifier = pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC;

/// Refuse absurd iteration counts before running the KDF, as `p12-keystore` does: an upload
/// must not buy minutes of CPU.
const MAX_ITERATIONS: i32 = 1_000_000;

/// Opens `der` with `password`, trying the NULL-password convention when `password` is empty.
/// The error is `p12-keystore`'s, the one that names the cause for the usual conventions.
pub(crate) fn open(der: &[u8], password: &str) -> Result<Bags, String> {
    match p12_keystore::Pkcs12Archive::from_pkcs12(der, password) {
        Ok(archive) => Ok(Bags {
            keys: archive
                .keys
                .iter()
                .map(|k| k.key.as_der().to_vec())
                .collect(),
            certs: archive
                .certs
                .iter()
                .map(|c| c.cert.as_der().to_vec())
                .collect(),
        }),
        Err(e) if password.is_empty() => {
            open_with_bytes(der, NO_PASSWORD).map_err(|_| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Why a reading with raw password bytes failed; the caller reports `p12-keystore`'s error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawError {
    /// Not a PKCS#12 structure we can read.
    Malformed,
    /// The MAC does not verify with these password bytes.
    Mac,
    /// A digest, cipher or content type outside the legacy profile.
    Unsupported,
    /// Decryption failed (bad padding: the wrong password for this bag).
    Decrypt,
}

impl From<pkcs12::cms::cert::x509::der::Error> for RawError {
    fn from(_: pkcs12::cms::cert::x509::der::Error) -> RawError {
        RawError::Malformed
    }
}

/// Reads `der` with the KDF password bytes `password` (no BMPString conversion, no terminator).
pub(crate) fn open_with_bytes(der: &[u8], password: &[u8]) -> Result<Bags, RawError> {
    let pfx = Pfx::from_der(der)?;
    if pfx.auth_safe.content_type != OID_DATA {
        return Err(RawError::Unsupported);
    }
    let auth_safe = octets_of(&pfx.auth_safe.content)?;
    if let Some(mac_data) = &pfx.mac_data {
        if mac_data.mac.algorithm.oid != OID_SHA1 {
            return Err(RawError::Unsupported);
        }
        let iterations = bounded(mac_data.iterations)?;
        let key = derive_key::<sha1::Sha1>(
            password,
            mac_data.mac_salt.as_bytes(),
            Pkcs12KeyType::Mac,
            iterations,
            20,
        );
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).map_err(|_| RawError::Mac)?;
        mac.update(&auth_safe);
        mac.verify_slice(mac_data.mac.digest.as_bytes())
            .map_err(|_| RawError::Mac)?;
    }
    let mut bags = Bags {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    for safe in AuthenticatedSafe::from_der(&auth_safe)? {
        let contents = safe_contents(&safe, password)?;
        for bag in SafeContents::from_der(&contents)? {
            if bag.bag_id == OID_CERT_BAG {
                let cert = ContextSpecific::<CertBag>::from_der(&bag.bag_value)?.value;
                if cert.cert_id != OID_X509_CERTIFICATE {
                    return Err(RawError::Unsupported);
                }
                bags.certs.push(cert.cert_value.as_bytes().to_vec());
            } else if bag.bag_id == OID_SHROUDED_KEY_BAG {
                let epki = ContextSpecific::<EncryptedPrivateKeyInfo>::from_der(&bag.bag_value)?;
                let epki = epki.value;
                bags.keys.push(pbe_decrypt(
                    &epki.encryption_algorithm,
                    epki.encrypted_data.as_bytes(),
                    password,
                )?);
            } else if bag.bag_id == OID_KEY_BAG {
                // An unencrypted PKCS#8 key, kept as its DER.
                bags.keys.push(
                    ContextSpecific::<Any>::from_der(&bag.bag_value)?
                        .value
                        .to_der()?,
                );
            }
            // CRL and secret bags carry nothing a certificate import keeps.
        }
    }
    Ok(bags)
}

/// The SafeContents DER of one ContentInfo of the authenticated safe.
fn safe_contents(safe: &ContentInfo, password: &[u8]) -> Result<Vec<u8>, RawError> {
    if safe.content_type == OID_DATA {
        octets_of(&safe.content)
    } else if safe.content_type == OID_ENCRYPTED_DATA {
        let encrypted = EncryptedData::from_der(&safe.content.to_der()?)?;
        let info = encrypted.enc_content_info;
        match info.encrypted_content {
            Some(data) => pbe_decrypt(&info.content_enc_alg, data.as_bytes(), password),
            None => Ok(Vec::new()),
        }
    } else {
        Err(RawError::Unsupported)
    }
}

/// The bytes of an OCTET STRING carried in an `ANY`.
fn octets_of(any: &Any) -> Result<Vec<u8>, RawError> {
    Ok(OctetString::from_der(&any.to_der()?)?
        .into_bytes()
        .into_vec())
}

fn bounded(iterations: i32) -> Result<i32, RawError> {
    if (1..=MAX_ITERATIONS).contains(&iterations) {
        Ok(iterations)
    } else {
        Err(RawError::Unsupported)
    }
}

/// PKCS#12 PBE (RFC 7292 appendix B) with SHA-1 and 3DES or RC2-40.
fn pbe_decrypt(
    alg: &AlgorithmIdentifierOwned,
    data: &[u8],
    password: &[u8],
) -> Result<Vec<u8>, RawError> {
    let params = alg.parameters.as_ref().ok_or(RawError::Malformed)?;
    let params = Pkcs12PbeParams::from_der(&params.to_der()?)?;
    let iterations = bounded(params.iterations)?;
    let salt = params.salt.as_bytes();
    let derive = |id, len| derive_key::<sha1::Sha1>(password, salt, id, iterations, len);
    let iv = derive(Pkcs12KeyType::Iv, 8);
    if alg.oid == OID_PBE_SHA1_3DES {
        cbc::Decryptor::<des::TdesEde3>::new_from_slices(
            &derive(Pkcs12KeyType::EncryptionKey, 24),
            &iv,
        )
        .map_err(|_| RawError::Decrypt)?
        .decrypt_padded_vec::<Pkcs7>(data)
        .map_err(|_| RawError::Decrypt)
    } else if alg.oid == OID_PBE_SHA1_RC2_40 {
        cbc::Decryptor::<rc2::Rc2>::new_from_slices(&derive(Pkcs12KeyType::EncryptionKey, 5), &iv)
            .map_err(|_| RawError::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(data)
            .map_err(|_| RawError::Decrypt)
    } else {
        Err(RawError::Unsupported)
    }
}
