//! Reads PFX files whose KDF password is given as raw bytes: in practice the *absent* password,
//! the convention of Windows/.NET exports (and of the Windows-CSP PFX in the reference's own
//! tests, `docs/reference-provider.md` §2.6 PFX case 1).
//!
//! An empty password can enter the PKCS#12 KDF two ways: as the BMPString terminator `00 00`
//! (OpenSSL, `p12-keystore`) or as no bytes at all (Windows). Go's `x/crypto/pkcs12`, which the
//! reference uses, tries the first and then the second; `p12-keystore` only knows the first
//! (its API takes a text password), so this reader covers the second for what Go reads: a SHA-1
//! MAC, which must be present and verify, and PBE-SHA1-3DES or PBE-SHA1-RC2-40 safes and key
//! bags. It is only consulted after `p12-keystore` has failed.
//!
//! The structures are the `pkcs12` crate's (`Pfx`, `MacData`, `SafeBag`, `CertBag`) and
//! `cms`'s (`ContentInfo`, `EncryptedData`), the types `p12-keystore` is built on, decoded as
//! DER by `der` (BER-only forms such as indefinite lengths are refused, as `p12-keystore`
//! refuses them).

use der::asn1::{ContextSpecific, OctetString};
use der::{Any, Decode, Encode};
use pkcs12::cms::content_info::ContentInfo;
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::pbe_params::EncryptedPrivateKeyInfo;
use pkcs12::safe_bag::SafeContents;
use pkcs12::{AuthenticatedSafe, CertBag, Pfx};

use super::pbe::{self, Pbe, PbeError};
use super::{Contents, OID_DATA, OID_ENCRYPTED_DATA, OID_SHA1};

/// Why the reading failed; only used to decide and for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Not the structure we expect.
    Malformed,
    /// No MAC, or it does not verify with these password bytes.
    Mac,
    /// A cipher, digest or content type Go's reader does not support either.
    Unsupported,
    /// Decryption failed (bad padding).
    Decrypt,
}

impl From<der::Error> for Error {
    fn from(_: der::Error) -> Error {
        Error::Malformed
    }
}

impl From<PbeError> for Error {
    fn from(e: PbeError) -> Error {
        match e {
            PbeError::Malformed => Error::Malformed,
            PbeError::Unsupported => Error::Unsupported,
            PbeError::Decrypt => Error::Decrypt,
        }
    }
}

/// Decodes `pfx` with the KDF password bytes `password` (a BMPString, or nothing).
pub(crate) fn decode_with(pfx: &[u8], password: &[u8]) -> Result<Contents, Error> {
    let pfx = Pfx::from_der(pfx)?;
    if pfx.auth_safe.content_type != OID_DATA {
        return Err(Error::Unsupported);
    }
    let auth_safe = octets_of(&pfx.auth_safe.content)?;
    // Go requires a MAC, and it is what tells this convention from a wrong password.
    let mac_data = pfx.mac_data.ok_or(Error::Mac)?;
    if mac_data.mac.algorithm.oid != OID_SHA1 {
        return Err(Error::Unsupported);
    }
    let iterations = pbe::bounded(mac_data.iterations)?;
    let mut mac = pbe::mac_sha1(password, mac_data.mac_salt.as_bytes(), iterations);
    hmac::Mac::update(&mut mac, &auth_safe);
    hmac::Mac::verify_slice(mac, mac_data.mac.digest.as_bytes()).map_err(|_| Error::Mac)?;

    let mut contents = Contents {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    for safe in AuthenticatedSafe::from_der(&auth_safe)? {
        let bags = safe_contents(&safe, password)?;
        for bag in SafeContents::from_der(&bags)? {
            if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
                let cert = ContextSpecific::<CertBag>::from_der(&bag.bag_value)?.value;
                if cert.cert_id != pkcs12::PKCS_12_X509_CERT_OID {
                    return Err(Error::Unsupported);
                }
                contents.certs.push(cert.cert_value.as_bytes().to_vec());
            } else if bag.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID {
                let epki =
                    ContextSpecific::<EncryptedPrivateKeyInfo>::from_der(&bag.bag_value)?.value;
                let pbe = Pbe::from_algorithm(&epki.encryption_algorithm, password)?;
                contents
                    .keys
                    .push(pbe.decrypt(epki.encrypted_data.as_bytes())?);
            } else if bag.bag_id == pkcs12::PKCS_12_KEY_BAG_OID {
                // An unencrypted PKCS#8 key: the SEQUENCE as it was.
                let key = ContextSpecific::<Any>::from_der(&bag.bag_value)?.value;
                contents.keys.push(key.to_der()?);
            }
            // Other bags (CRLs, secrets) carry nothing we write.
        }
    }
    Ok(contents)
}

/// The SafeContents DER of one ContentInfo of the authenticated safe.
fn safe_contents(safe: &ContentInfo, password: &[u8]) -> Result<Vec<u8>, Error> {
    if safe.content_type == OID_DATA {
        octets_of(&safe.content)
    } else if safe.content_type == OID_ENCRYPTED_DATA {
        let info = safe.content.decode_as::<EncryptedData>()?.enc_content_info;
        let data = info.encrypted_content.ok_or(Error::Malformed)?;
        let pbe = Pbe::from_algorithm(&info.content_enc_alg, password)?;
        Ok(pbe.decrypt(data.as_bytes())?)
    } else {
        Err(Error::Unsupported)
    }
}

/// The bytes of an OCTET STRING carried in an `ANY`.
fn octets_of(any: &Any) -> Result<Vec<u8>, Error> {
    Ok(any.decode_as::<OctetString>()?.into_bytes().into_vec())
}
