//! PKCS#12's own password-based encryption and MAC (RFC 7292 appendices B and C) in the legacy
//! profile that Key Vault writes and Go's `x/crypto/pkcs12` reads: the SHA-1 KDF, 3DES-CBC or
//! RC2-40-CBC, and HMAC-SHA1, all keyed with raw KDF password bytes.
//!
//! Composed from crates, no cryptography or DER written here: `pkcs12::kdf` (the KDF),
//! `des`/`rc2`/`cbc` (the ciphers), `hmac`/`sha1` (the MAC), `pkcs12::pbe_params` (the
//! parameters). `p12-keystore` has the same glue, but private and fed from a text password,
//! whereas the null-password convention needs the KDF to see no bytes at all.

use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use der::Any;
use der::asn1::{ObjectIdentifier, OctetString};
use hmac::KeyInit;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use pkcs12::pbe_params::Pkcs12PbeParams;
use spki::AlgorithmIdentifierOwned;

/// Refuse absurd iteration counts before running the KDF (as `p12-keystore` does): a PFX must
/// not buy minutes of CPU.
pub(super) const MAX_ITERATIONS: i32 = 1_000_000;

/// Why a PBE or MAC step failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PbeError {
    /// Not the parameters' structure.
    Malformed,
    /// A scheme outside the legacy profile, or an iteration count out of range.
    Unsupported,
    /// Bad padding after decryption (the wrong password for this data).
    Decrypt,
}

/// The two PKCS#12 PBE schemes of the legacy profile.
#[derive(Clone, Copy)]
pub(super) enum Scheme {
    /// `pbeWithSHAAnd3-KeyTripleDES-CBC`.
    Sha1Tdes,
    /// `pbeWithSHAAnd40BitRC2-CBC`.
    Sha1Rc2_40,
}

impl Scheme {
    fn oid(self) -> ObjectIdentifier {
        match self {
            Scheme::Sha1Tdes => pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC,
            Scheme::Sha1Rc2_40 => pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Scheme> {
        [Scheme::Sha1Tdes, Scheme::Sha1Rc2_40]
            .into_iter()
            .find(|s| s.oid() == oid)
    }
}

/// One PBE application: scheme, salt, iterations and the KDF password bytes.
pub(super) struct Pbe<'a> {
    pub(super) scheme: Scheme,
    pub(super) salt: Vec<u8>,
    pub(super) iterations: i32,
    pub(super) password: &'a [u8],
}

impl<'a> Pbe<'a> {
    /// Reads the scheme and its `Pkcs12PbeParams` from an algorithm identifier.
    pub(super) fn from_algorithm(
        alg: &AlgorithmIdentifierOwned,
        password: &'a [u8],
    ) -> Result<Pbe<'a>, PbeError> {
        let scheme = Scheme::from_oid(alg.oid).ok_or(PbeError::Unsupported)?;
        let params = alg.parameters.as_ref().ok_or(PbeError::Malformed)?;
        let params = params
            .decode_as::<Pkcs12PbeParams>()
            .map_err(|_| PbeError::Malformed)?;
        Ok(Pbe {
            scheme,
            iterations: bounded(params.iterations)?,
            salt: params.salt.into_bytes().into_vec(),
            password,
        })
    }

    /// The algorithm identifier naming this scheme, salt and iteration count.
    pub(super) fn algorithm(&self) -> der::Result<AlgorithmIdentifierOwned> {
        let params = Pkcs12PbeParams {
            salt: OctetString::new(self.salt.as_slice())?,
            iterations: self.iterations,
        };
        Ok(AlgorithmIdentifierOwned {
            oid: self.scheme.oid(),
            parameters: Some(Any::encode_from(&params)?),
        })
    }

    fn derive(&self, id: Pkcs12KeyType, len: usize) -> Vec<u8> {
        derive_key::<sha1::Sha1>(self.password, &self.salt, id, self.iterations, len)
    }

    /// CBC encryption with PKCS#7 padding.
    pub(super) fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let iv = self.derive(Pkcs12KeyType::Iv, 8);
        match self.scheme {
            Scheme::Sha1Tdes => cbc::Encryptor::<des::TdesEde3>::new_from_slices(
                &self.derive(Pkcs12KeyType::EncryptionKey, 24),
                &iv,
            )
            .expect("3DES key and IV lengths are fixed")
            .encrypt_padded_vec::<Pkcs7>(plain),
            Scheme::Sha1Rc2_40 => cbc::Encryptor::<rc2::Rc2>::new_from_slices(
                &self.derive(Pkcs12KeyType::EncryptionKey, 5),
                &iv,
            )
            .expect("RC2-40 key and IV lengths are fixed")
            .encrypt_padded_vec::<Pkcs7>(plain),
        }
    }

    /// CBC decryption; fails on bad padding.
    pub(super) fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, PbeError> {
        let iv = self.derive(Pkcs12KeyType::Iv, 8);
        match self.scheme {
            Scheme::Sha1Tdes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(
                &self.derive(Pkcs12KeyType::EncryptionKey, 24),
                &iv,
            )
            .map_err(|_| PbeError::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(data),
            Scheme::Sha1Rc2_40 => cbc::Decryptor::<rc2::Rc2>::new_from_slices(
                &self.derive(Pkcs12KeyType::EncryptionKey, 5),
                &iv,
            )
            .map_err(|_| PbeError::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(data),
        }
        .map_err(|_| PbeError::Decrypt)
    }
}

/// The PFX MAC: HMAC-SHA1 keyed by the KDF's MAC key (RFC 7292 appendix B.4).
pub(super) fn mac_sha1(password: &[u8], salt: &[u8], iterations: i32) -> hmac::Hmac<sha1::Sha1> {
    let key = derive_key::<sha1::Sha1>(password, salt, Pkcs12KeyType::Mac, iterations, 20);
    hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).expect("HMAC accepts any key length")
}

/// `iterations` if it is in `1..=MAX_ITERATIONS`.
pub(super) fn bounded(iterations: i32) -> Result<i32, PbeError> {
    if (1..=MAX_ITERATIONS).contains(&iterations) {
        Ok(iterations)
    } else {
        Err(PbeError::Unsupported)
    }
}
