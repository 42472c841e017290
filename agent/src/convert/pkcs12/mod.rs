//! PKCS#12 (PFX) in both directions, always with the empty password Key Vault uses, through
//! the types of the RustCrypto `pkcs12` crate (`Pfx`, `MacData`, `SafeBag`, `CertBag`) and of
//! `cms`, DER-encoded by `der`: no DER is written by hand here.
//!
//! Reading (`docs/reference-provider.md` §2.2) goes through `p12-keystore` (built on the same
//! `pkcs12` types), which handles the legacy PBE-SHA1-3DES and PBE-SHA1-RC2-40 schemes as well
//! as PBES2 (PBKDF2 + AES-CBC, the OpenSSL 3 default that the reference cannot read) and
//! SHA-1/SHA-2 MACs, with the empty password as OpenSSL spells it. Files keyed with no
//! password bytes at all (Windows) are then read by [`read`]. Writing (PEM → PFX) is
//! [`write`]; the PKCS#12 PBE and MAC both share are in [`pbe`].

mod pbe;
pub(crate) mod read;
pub(crate) mod write;

use der::asn1::ObjectIdentifier;
use der::oid::db::{rfc2985, rfc5911, rfc5912};

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

const OID_DATA: ObjectIdentifier = rfc5911::ID_DATA;
const OID_ENCRYPTED_DATA: ObjectIdentifier = rfc5911::ID_ENCRYPTED_DATA;
const OID_SHA1: ObjectIdentifier = rfc5912::ID_SHA_1;
const OID_LOCAL_KEY_ID: ObjectIdentifier = rfc2985::PKCS_9_AT_LOCAL_KEY_ID;

/// The empty password as a NUL-terminated BMPString (what OpenSSL and Go derive from "").
pub(crate) const EMPTY_PASSWORD: &[u8] = &[0, 0];
/// No password bytes at all: the Windows (NULL password) convention.
pub(crate) const NO_PASSWORD: &[u8] = &[];

/// Decodes a PFX with the empty password, in either of its two encodings.
pub fn decode(pfx: &[u8]) -> Result<Contents, ConvertError> {
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(pfx, "") {
        Ok(archive) => archive,
        Err(e) => {
            // p12-keystore names the cause for the usual conventions: report its error.
            return read::decode_with(pfx, NO_PASSWORD)
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

/// Builds a password-less PFX from PKCS#8 `key` (optional) and DER `certs`; `key_cert` is the
/// index of the certificate that belongs to the key. Deterministic for equal input.
pub fn encode(
    key: Option<&[u8]>,
    certs: &[Vec<u8>],
    key_cert: Option<usize>,
) -> Result<Vec<u8>, ConvertError> {
    write::encode_with(EMPTY_PASSWORD, key, certs, key_cert)
        .map_err(|_| ConvertError::PemToPfx("its contents cannot be encoded as DER"))
}
