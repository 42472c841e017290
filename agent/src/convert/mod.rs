//! Pure conversions from Key Vault bundles to the exact bytes the reference writes
//! (`docs/reference-provider.md` §2). No I/O.
//!
//! - Plain secrets: the value verbatim (§2.1).
//! - Certificate-backed secrets (§2.2), by exact `contentType`: PEM verbatim; PKCS#12 verbatim
//!   for `objectFormat: pfx`, else the PKCS#8 keys then the chain-ordered certificates (§2.6).
//!   PFX files are read with either encoding of the empty password (OpenSSL's and Windows',
//!   as Go does). Beyond the reference: PBES2/AES PFX files are read, a PFX holding only keys
//!   gives just the keys (the reference fails with `no leaf found`), and `pfx` asked of a PEM
//!   certificate yields a password-less base64 PFX (reference issue #1945).
//! - Keys: the public key as SubjectPublicKeyInfo PEM (§2.3). Certificates: the leaf (§2.4).
//! - `objectEncoding` is applied last, to secrets only (§2.5).
//!
//! PEM output is byte-identical to Go's `encoding/pem`, and re-encoded private keys to Go's
//! `x509.MarshalPKCS8PrivateKey`, so files match the reference's byte for byte.

pub(crate) mod chain;
mod encoding;
pub(crate) mod key;
pub mod pem;
pub(crate) mod pkcs12;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::{ObjectFormat, ObjectSpec, ObjectType};
use crate::keyvault::model::{CertificateBundle, Fetched, KeyBundle, SecretBundle};
use crate::secret::SecretBytes;

pub use chain::INCOMPLETE_CHAIN_WARNING;
pub use pem::split_cert_and_key;

/// `contentType` of a certificate-backed secret stored as PEM.
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";
/// `contentType` of a certificate-backed secret stored as base64 PKCS#12.
pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";

/// A conversion failure; the caller wraps it with the object's label. Messages never contain
/// secret material (no values, no key bytes, no offending characters).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The secret bundle has no `value`.
    #[error("secret value is nil")]
    SecretValueNil,
    /// The secret bundle has no `id`.
    #[error("secret id is nil")]
    SecretIdNil,
    /// The key bundle has no `key`.
    #[error("key value is nil")]
    KeyValueNil,
    /// The JWK has no `kid`.
    #[error("key id is nil")]
    KeyIdNil,
    /// The certificate bundle has no `cer`.
    #[error("certificate value is nil")]
    CertificateValueNil,
    /// The certificate bundle has no `id`.
    #[error("certificate id is nil")]
    CertificateIdNil,
    /// `cer` is not standard base64.
    #[error(
        "certificate value (cer) is not valid base64 (illegal base64 data at input byte {offset})"
    )]
    CertificateValueInvalid {
        /// Go's error offset.
        offset: usize,
    },
    /// A certificate-backed secret with a content type we cannot convert.
    #[error(
        "unknown content type '{0}' of a certificate-backed secret: expected application/x-pkcs12 or application/x-pem-file"
    )]
    UnknownContentType(String),
    /// The PKCS#12 secret value is not base64.
    #[error(
        "pfx value is not valid base64 (illegal base64 data at input byte {offset}): a secret with content type application/x-pkcs12 must hold a base64 pfx"
    )]
    Pkcs12Base64 {
        /// Go's error offset.
        offset: usize,
    },
    /// The PFX cannot be decoded with the empty password.
    #[error("cannot decode the pfx with an empty password: {0}")]
    Pkcs12(String),
    /// A private key that is not PKCS#1, PKCS#8 or SEC1 (or of an unsupported curve).
    #[error("failed to parse key for type pkcs1, pkcs8 or ec")]
    PrivateKey,
    /// A certificate of the chain does not parse.
    #[error("cannot parse certificate number {} of the chain: {reason}", .index + 1)]
    Certificate {
        /// 0-based position in the input.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// Every certificate is another one's parent (§2.6 step 3).
    #[error(
        "no leaf found: every certificate is named as the issuer of another by its key identifiers"
    )]
    NoLeaf,
    /// The parent links loop (§2.6 step 4).
    #[error(
        "constructing chain resulted in cycle: check the subject/authority key identifiers of the certificates"
    )]
    ChainCycle,
    /// An EC key on a curve other than P-256, P-384 and P-521.
    #[error("curve {0} is not supported (P-256, P-384 and P-521 are)")]
    UnsupportedCurve(String),
    /// The JWK's point is not on its curve.
    #[error("invalid elliptic curve public key: the point is not on curve {0}")]
    PointNotOnCurve(String),
    /// The JWK's RSA parameters are unusable.
    #[error("invalid rsa public key: {0}")]
    InvalidRsaKey(String),
    /// A required JWK member is absent.
    #[error("the key has no '{member}' member")]
    JwkMemberMissing {
        /// JWK member name.
        member: &'static str,
    },
    /// A JWK member is not base64url.
    #[error("the key's '{member}' member is not valid base64url")]
    JwkMemberInvalid {
        /// JWK member name.
        member: &'static str,
    },
    /// `oct`, `oct-HSM` or an unknown key type.
    #[error(
        "key type '{0}' currently not supported: only RSA and EC public keys can be written (symmetric keys never leave key vault; store such a value as a secret instead)"
    )]
    UnsupportedKeyType(String),
    /// `objectEncoding: base64` on a value that is not base64.
    #[error(
        "value is not valid base64 (illegal base64 data at input byte {offset}): store it base64-encoded or remove objectEncoding"
    )]
    InvalidBase64 {
        /// Go's error offset.
        offset: usize,
    },
    /// `objectEncoding: hex` on a value with a non-hex byte.
    #[error(
        "value is not valid hex (invalid byte at input byte {offset}): store it hex-encoded or remove objectEncoding"
    )]
    InvalidHexByte {
        /// Offset of the bad byte.
        offset: usize,
    },
    /// `objectEncoding: hex` on a value of odd length.
    #[error(
        "value is not valid hex (encoding/hex: odd length hex string): store it hex-encoded or remove objectEncoding"
    )]
    OddLengthHex,
    /// `objectFormat: pfx` of a PEM certificate that cannot be packed.
    #[error("cannot build a pfx from the pem certificate: {0}")]
    PemToPfx(&'static str),
}

impl ConvertError {
    /// Conversion depends only on the fetched bytes: retrying cannot help.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Converts one fetched object into file contents according to `spec`
/// (format, then encoding last).
pub fn convert(spec: &ObjectSpec, fetched: &Fetched) -> Result<SecretBytes, ConvertError> {
    match fetched {
        Fetched::Secret(secret) => {
            let content = secret_content(spec, secret)?;
            let bytes = if spec.object_type == ObjectType::Secret {
                encoding::decode(spec.encoding, content)?
            } else {
                content
            };
            Ok(SecretBytes::new(bytes))
        }
        Fetched::Key(bundle) => key_content(bundle).map(SecretBytes::new),
        Fetched::Certificate(bundle) => certificate_content(bundle).map(SecretBytes::new),
    }
}

fn is_cert_backed(secret: &SecretBundle) -> bool {
    secret.kid.as_deref().is_some_and(|k| !k.is_empty())
}

fn secret_content(spec: &ObjectSpec, secret: &SecretBundle) -> Result<Vec<u8>, ConvertError> {
    let value = secret.value.as_ref().ok_or(ConvertError::SecretValueNil)?;
    if secret.id.is_none() {
        return Err(ConvertError::SecretIdNil);
    }
    let value = value.expose();
    if !is_cert_backed(secret) {
        return Ok(value.as_bytes().to_vec());
    }
    // The reference dereferences a missing contentType and crashes; treat it as unknown.
    match secret.content_type.as_deref().unwrap_or_default() {
        CONTENT_TYPE_PEM => match spec.format {
            ObjectFormat::Pem => Ok(value.as_bytes().to_vec()),
            ObjectFormat::Pfx => pem_to_pfx(value.as_bytes()),
        },
        CONTENT_TYPE_PKCS12 => match spec.format {
            ObjectFormat::Pfx => Ok(value.as_bytes().to_vec()),
            ObjectFormat::Pem => pfx_to_pem(&spec.name, value),
        },
        other => Err(ConvertError::UnknownContentType(other.to_owned())),
    }
}

/// §2.2: all private keys first as PKCS#8, then the certificates leaf → root.
fn pfx_to_pem(object: &str, value: &str) -> Result<Vec<u8>, ConvertError> {
    let raw = encoding::go_base64_decode(value.as_bytes())
        .map_err(|offset| ConvertError::Pkcs12Base64 { offset })?;
    let contents = pkcs12::decode(&raw)?;
    let mut out = Vec::new();
    for der in &contents.keys {
        let pkcs8 = key::PrivateKey::parse(der)?.to_pkcs8()?;
        pem::encode_into(&mut out, &pem::Block::new(pem::PRIVATE_KEY, pkcs8));
    }
    for der in chain::order_or_keep(object, contents.certs)? {
        pem::encode_into(&mut out, &pem::Block::new(pem::CERTIFICATE, der));
    }
    Ok(out)
}

/// Beyond the reference (#1945): the PEM's key and certificates as a base64 PFX.
fn pem_to_pfx(value: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for block in pem::decode_all(value) {
        match block.kind.as_str() {
            pem::CERTIFICATE => certs.push(block.der),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                keys.push(key::PrivateKey::parse(&block.der)?)
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(ConvertError::PemToPfx("the private key is encrypted"));
            }
            _ => {}
        }
    }
    if keys.len() > 1 {
        return Err(ConvertError::PemToPfx("it holds more than one private key"));
    }
    if keys.is_empty() && certs.is_empty() {
        return Err(ConvertError::PemToPfx(
            "it holds no certificate and no private key",
        ));
    }
    let key = keys.pop();
    let key_cert = match &key {
        None => None,
        Some(k) => k
            .public_spki()
            .and_then(|spki| {
                certs
                    .iter()
                    .position(|c| cert_spki(c).as_deref() == Some(spki.as_slice()))
            })
            .or_else(|| chain::leaf_index(&certs)),
    };
    let pkcs8 = key.as_ref().map(key::PrivateKey::to_pkcs8).transpose()?;
    let pfx = pkcs12::encode(pkcs8.as_deref(), &certs, key_cert)?;
    Ok(STANDARD.encode(pfx).into_bytes())
}

pub(crate) fn cert_spki(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// §2.3: the public key as SubjectPublicKeyInfo PEM.
fn key_content(bundle: &KeyBundle) -> Result<Vec<u8>, ConvertError> {
    let jwk = bundle.key.as_ref().ok_or(ConvertError::KeyValueNil)?;
    if jwk.kid.is_none() {
        return Err(ConvertError::KeyIdNil);
    }
    Ok(pem::encode(pem::PUBLIC_KEY, &key::jwk_to_spki(jwk)?))
}

/// §2.4: `cer` (the leaf only) as one CERTIFICATE block, not parsed.
fn certificate_content(bundle: &CertificateBundle) -> Result<Vec<u8>, ConvertError> {
    let cer = bundle
        .cer
        .as_deref()
        .ok_or(ConvertError::CertificateValueNil)?;
    if bundle.id.is_none() {
        return Err(ConvertError::CertificateIdNil);
    }
    let der = encoding::go_base64_decode(cer.as_bytes())
        .map_err(|offset| ConvertError::CertificateValueInvalid { offset })?;
    Ok(pem::encode(pem::CERTIFICATE, &der))
}

/// Unix seconds of the leaf certificate's notAfter, for certificate objects and
/// certificate-backed secrets; `None` otherwise or when it cannot be determined.
///
/// `output` is what [`convert`] produced; PEM output is read directly. Otherwise (PFX output,
/// or an `objectEncoding` that changed the bytes) the fetched value is read, and as a last
/// resort the secret's `exp` attribute, which Key Vault keeps equal to the certificate's.
pub fn not_after(fetched: &Fetched, output: &[u8]) -> Option<i64> {
    match fetched {
        Fetched::Certificate(bundle) => {
            let der = encoding::go_base64_decode(bundle.cer.as_deref()?.as_bytes()).ok()?;
            cert_not_after(&der)
        }
        Fetched::Secret(secret) if is_cert_backed(secret) => leaf_not_after(&pem_certs(output))
            .or_else(|| {
                let value = secret.value.as_ref()?.expose();
                match secret.content_type.as_deref()? {
                    CONTENT_TYPE_PEM => leaf_not_after(&pem_certs(value.as_bytes())),
                    CONTENT_TYPE_PKCS12 => {
                        let raw = encoding::go_base64_decode(value.as_bytes()).ok()?;
                        leaf_not_after(&pkcs12::decode(&raw).ok()?.certs)
                    }
                    _ => None,
                }
            })
            .or_else(|| secret.attributes.as_ref()?.exp),
        _ => None,
    }
}

/// The private keys and certificates an output file holds, for validation before the swap.
/// Holds private keys: `Debug` shows counts only.
#[derive(Default)]
pub struct Material {
    /// Unencrypted private keys (DER: PKCS#1, PKCS#8 or SEC1), in file order.
    pub keys: Vec<SecretBytes>,
    /// DER certificates, in file order.
    pub certs: Vec<Vec<u8>>,
    /// Whether readers see the certificates in this order (PEM); a PFX's bags have none, so
    /// its chain is ordered before it is checked.
    pub ordered: bool,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Material({} keys, {} certs, ordered {})",
            self.keys.len(),
            self.certs.len(),
            self.ordered
        )
    }
}

impl Material {
    /// The key and certificate blocks of PEM text, in order. Encrypted keys are left out
    /// (they cannot be compared without their password).
    pub fn from_pem(data: &[u8]) -> Self {
        let mut m = Material {
            ordered: true,
            ..Material::default()
        };
        for block in pem::decode_all(data) {
            match block.kind.as_str() {
                pem::CERTIFICATE => m.certs.push(block.der),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    m.keys.push(SecretBytes::new(block.der))
                }
                _ => {}
            }
        }
        m
    }
}

/// What validation reads of a converted object: certificate objects (the leaf), and secrets
/// whose content type is a certificate's (`application/x-pem-file`, `application/x-pkcs12`,
/// certificate-backed or imported as plain secrets), read from `output` as the application
/// will: PEM as written, a base64 PFX (`objectFormat: pfx`) decoded with the empty
/// password. `None` for everything else, and for a PFX that does not open with the empty
/// password (written verbatim by contract: the application has its password).
pub fn material(fetched: &Fetched, output: &[u8]) -> Option<Material> {
    match fetched {
        Fetched::Certificate(_) => Some(Material::from_pem(output)),
        Fetched::Secret(secret) => {
            let ct = secret.content_type.as_deref()?.trim();
            if !ct.eq_ignore_ascii_case(CONTENT_TYPE_PEM)
                && !ct.eq_ignore_ascii_case(CONTENT_TYPE_PKCS12)
            {
                return None;
            }
            if output.windows(11).any(|w| w == b"-----BEGIN ") {
                return Some(Material::from_pem(output));
            }
            let raw = encoding::go_base64_decode(output.trim_ascii()).ok()?;
            let contents = pkcs12::decode(&raw).ok()?;
            Some(Material {
                keys: contents.keys.into_iter().map(SecretBytes::new).collect(),
                certs: contents.certs,
                ordered: false,
            })
        }
        Fetched::Key(_) => None,
    }
}

fn pem_certs(data: &[u8]) -> Vec<Vec<u8>> {
    pem::decode_all(data)
        .into_iter()
        .filter(|b| b.kind == pem::CERTIFICATE)
        .map(|b| b.der)
        .collect()
}

fn leaf_not_after(certs: &[Vec<u8>]) -> Option<i64> {
    cert_not_after(certs.get(chain::leaf_index(certs)?)?)
}

fn cert_not_after(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests;
