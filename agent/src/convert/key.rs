//! Key material: JWK public keys to SubjectPublicKeyInfo (`docs/reference-provider.md` §2.3), and
//! private keys normalised to the PKCS#8 bytes Go's `x509.MarshalPKCS8PrivateKey` produces
//! (§2.2), so our PEM output is byte-identical to the reference's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use der::{Decode, asn1::ObjectIdentifier};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;

use crate::keyvault::model::JsonWebKey;

use super::ConvertError;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// RSA moduli beyond this are refused (Key Vault's largest is 4096 bits).
const MAX_RSA_BITS: usize = 16384;

fn jwk_member(value: &Option<String>, member: &'static str) -> Result<Vec<u8>, ConvertError> {
    let text = value
        .as_deref()
        .ok_or(ConvertError::JwkMemberMissing { member })?;
    // Key Vault sends base64url without padding; tolerate padding some tools add.
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| ConvertError::JwkMemberInvalid { member })
}

/// DER SubjectPublicKeyInfo of a Key Vault JWK (public parts only).
pub fn jwk_to_spki(jwk: &JsonWebKey) -> Result<Vec<u8>, ConvertError> {
    let kty = jwk.kty.as_deref().unwrap_or_default();
    match kty {
        "RSA" | "RSA-HSM" => {
            let n = rsa::BoxedUint::from_be_slice_vartime(&jwk_member(&jwk.n, "n")?);
            let e = rsa::BoxedUint::from_be_slice_vartime(&jwk_member(&jwk.e, "e")?);
            // No lower bound: the reference writes whatever modulus Key Vault returns.
            let key = rsa::PublicKey::new_with_size_limits(n, e, 1..=MAX_RSA_BITS)
                .map_err(|e| ConvertError::InvalidRsaKey(e.to_string()))?;
            Ok(key
                .to_public_key_der()
                .map_err(|e| ConvertError::InvalidRsaKey(e.to_string()))?
                .into_vec())
        }
        "EC" | "EC-HSM" => {
            let crv = jwk.crv.as_deref().unwrap_or_default();
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                other => return Err(ConvertError::UnsupportedCurve(other.to_owned())),
            };
            let x = fixed_width(jwk_member(&jwk.x, "x")?, size, "x")?;
            let y = fixed_width(jwk_member(&jwk.y, "y")?, size, "y")?;
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let not_on_curve = || ConvertError::PointNotOnCurve(crv.to_owned());
            let doc = match crv {
                "P-256" => p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| not_on_curve())?
                    .to_public_key_der(),
                "P-384" => p384::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| not_on_curve())?
                    .to_public_key_der(),
                _ => p521::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| not_on_curve())?
                    .to_public_key_der(),
            };
            Ok(doc.map_err(|_| not_on_curve())?.into_vec())
        }
        other => Err(ConvertError::UnsupportedKeyType(other.to_owned())),
    }
}

/// A big-endian coordinate as Go's `big.Int.SetBytes` then `FillBytes` would see it:
/// leading zeros dropped, then left-padded to the field size.
fn fixed_width(bytes: Vec<u8>, size: usize, member: &'static str) -> Result<Vec<u8>, ConvertError> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = &bytes[first..];
    if digits.len() > size {
        return Err(ConvertError::JwkMemberInvalid { member });
    }
    let mut out = vec![0u8; size - digits.len()];
    out.extend_from_slice(digits);
    Ok(out)
}

/// A private key in a form we can re-encode exactly.
pub enum PrivateKey {
    /// RSA.
    Rsa(Box<rsa::PrivateKey>),
    /// NIST P-256.
    P256(p256::SecretKey),
    /// NIST P-384.
    P384(p384::SecretKey),
    /// NIST P-521.
    P521(p521::SecretKey),
    /// Any other PKCS#8 key (for example Ed25519), kept verbatim.
    OtherPkcs8(Vec<u8>),
}

impl PrivateKey {
    /// Parses PKCS#1, then PKCS#8, then SEC1, in the reference's order (`parsePrivateKey`).
    pub fn parse(der: &[u8]) -> Result<Self, ConvertError> {
        if let Ok(k) = rsa::PrivateKey::from_pkcs1_der(der) {
            return Ok(PrivateKey::Rsa(Box::new(k)));
        }
        if let Ok(info) = pkcs8::PrivateKeyInfoRef::from_der(der) {
            return Self::from_pkcs8(der, &info);
        }
        if let Ok(sec1) = sec1::EcPrivateKey::from_der(der) {
            let curve = sec1
                .parameters
                .and_then(|p| p.named_curve())
                .ok_or(ConvertError::PrivateKey)?;
            return ec_from_scalar(curve, sec1.private_key);
        }
        Err(ConvertError::PrivateKey)
    }

    fn from_pkcs8(der: &[u8], info: &pkcs8::PrivateKeyInfoRef<'_>) -> Result<Self, ConvertError> {
        match info.algorithm.oid {
            RSA_ENCRYPTION => rsa::PrivateKey::from_pkcs8_der(der)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(|_| ConvertError::PrivateKey),
            EC_PUBLIC_KEY => {
                let sec1 = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
                    .map_err(|_| ConvertError::PrivateKey)?;
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .ok()
                    .or_else(|| sec1.parameters.and_then(|p| p.named_curve()))
                    .ok_or(ConvertError::PrivateKey)?;
                ec_from_scalar(curve, sec1.private_key)
            }
            _ => Ok(PrivateKey::OtherPkcs8(der.to_vec())),
        }
    }

    /// PKCS#8 DER as Go's `x509.MarshalPKCS8PrivateKey` writes it: version 0, no attributes;
    /// RSA with NULL parameters and the full CRT set; EC with the named curve in the
    /// algorithm, and SEC1 with the public key but without repeated parameters.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, ConvertError> {
        let doc = match self {
            PrivateKey::Rsa(k) => k.to_pkcs8_der(),
            PrivateKey::P256(k) => k.to_pkcs8_der(),
            PrivateKey::P384(k) => k.to_pkcs8_der(),
            PrivateKey::P521(k) => k.to_pkcs8_der(),
            PrivateKey::OtherPkcs8(der) => return Ok(der.clone()),
        };
        Ok(doc
            .map_err(|_| ConvertError::PrivateKey)?
            .as_bytes()
            .to_vec())
    }

    /// DER SubjectPublicKeyInfo of the matching public key, to find the key's certificate.
    pub fn public_spki(&self) -> Option<Vec<u8>> {
        let doc = match self {
            PrivateKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            PrivateKey::P256(k) => k.public_key().to_public_key_der(),
            PrivateKey::P384(k) => k.public_key().to_public_key_der(),
            PrivateKey::P521(k) => k.public_key().to_public_key_der(),
            PrivateKey::OtherPkcs8(_) => return None,
        };
        doc.ok().map(|d| d.into_vec())
    }
}

fn ec_from_scalar(curve: ObjectIdentifier, scalar: &[u8]) -> Result<PrivateKey, ConvertError> {
    let bad = |_| ConvertError::PrivateKey;
    match curve {
        SECP256R1 => p256::SecretKey::from_slice(scalar)
            .map(PrivateKey::P256)
            .map_err(bad),
        SECP384R1 => p384::SecretKey::from_slice(scalar)
            .map(PrivateKey::P384)
            .map_err(bad),
        SECP521R1 => p521::SecretKey::from_slice(scalar)
            .map(PrivateKey::P521)
            .map_err(bad),
        _ => Err(ConvertError::PrivateKey),
    }
}
