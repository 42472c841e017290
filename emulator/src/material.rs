//! Key and certificate material: key generation, public JWKs, certificate parsing, and the
//! PKCS#12 / PEM encodings Key Vault hands out for a certificate's backing secret.
//!
//! Everything here is pure computation (no I/O, no locks) so the store and the seed loader can
//! call it from blocking threads.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value, json};
use sha1::Digest as _;

/// Errors while generating or decoding key material.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The PFX could not be opened (wrong password, unsupported cipher, corrupt data).
    #[error("pfx: {0} (check the password and that the data is base64 of a PKCS#12 file)")]
    Pfx(String),
    /// The PEM text has no usable certificate or private key.
    #[error("pem: {0}")]
    Pem(String),
    /// A certificate could not be parsed or generated.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A key could not be generated or decoded.
    #[error("key: {0}")]
    Key(String),
    /// The private key belongs to none of the certificates it came with.
    #[error(
        "the private key does not match the public key of any certificate given with it ({0}); \
         supply the leaf certificate's own private key"
    )]
    KeyMismatch(String),
}

type Result<T> = std::result::Result<T, MaterialError>;

/// Elliptic curves Key Vault supports for software keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

impl Curve {
    /// Parses a JWK `crv` name.
    pub fn parse(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    /// The JWK `crv` name.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A private key in PKCS#8 DER plus its public JWK. `Debug` never shows the private part.
#[derive(Clone)]
pub struct KeyMaterial {
    /// PKCS#8 DER of the private key.
    pub pkcs8: Vec<u8>,
    /// Public JWK members (`kty`, `n`/`e` or `crv`/`x`/`y`), no `kid`.
    pub public_jwk: Map<String, Value>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("pkcs8", &"<redacted>")
            .field("public_jwk", &self.public_jwk)
            .finish()
    }
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The public RSA JWK members for a modulus and exponent (big-endian bytes).
pub fn rsa_jwk(n: &[u8], e: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kty".into(), json!("RSA"));
    m.insert("n".into(), json!(b64u(strip_leading_zeros(n))));
    m.insert("e".into(), json!(b64u(strip_leading_zeros(e))));
    m
}

/// The public EC JWK members for an uncompressed SEC1 point.
pub fn ec_jwk(curve: Curve, point: &[u8]) -> Result<Map<String, Value>> {
    let len = curve.coordinate_len();
    if point.len() != 1 + 2 * len || point[0] != 4 {
        return Err(MaterialError::Key(format!(
            "{} public point is not an uncompressed point of {} bytes",
            curve.name(),
            1 + 2 * len
        )));
    }
    let mut m = Map::new();
    m.insert("kty".into(), json!("EC"));
    m.insert("crv".into(), json!(curve.name()));
    m.insert("x".into(), json!(b64u(&point[1..1 + len])));
    m.insert("y".into(), json!(b64u(&point[1 + len..])));
    Ok(m)
}

/// Generates an RSA key of `bits` bits (2048, 3072 or 4096).
pub fn generate_rsa(bits: usize) -> Result<KeyMaterial> {
    use rsa::pkcs8::EncodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::PrivateKey::new(&mut rand::rng(), bits)
        .map_err(|e| MaterialError::Key(format!("generating rsa-{bits}: {e}")))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| MaterialError::Key(format!("encoding rsa key: {e}")))?
        .as_bytes()
        .to_vec();
    let public_jwk = rsa_jwk(
        &key.n().to_be_bytes_trimmed_vartime(),
        &key.e().to_be_bytes_trimmed_vartime(),
    );
    Ok(KeyMaterial { pkcs8, public_jwk })
}

/// Generates an EC key on `curve`.
pub fn generate_ec(curve: Curve) -> Result<KeyMaterial> {
    macro_rules! gen_ec {
        ($krate:ident) => {{
            use $krate::elliptic_curve::sec1::ToSec1Point as _;
            use $krate::pkcs8::EncodePrivateKey as _;
            let secret: $krate::SecretKey =
                $krate::elliptic_curve::Generate::generate_from_rng(&mut rand::rng());
            let point = secret.public_key().to_sec1_point(false);
            let pkcs8 = secret
                .to_pkcs8_der()
                .map_err(|e| MaterialError::Key(format!("encoding ec key: {e}")))?
                .as_bytes()
                .to_vec();
            (pkcs8, point.as_bytes().to_vec())
        }};
    }
    let (pkcs8, point) = match curve {
        Curve::P256 => gen_ec!(p256),
        Curve::P384 => gen_ec!(p384),
        Curve::P521 => gen_ec!(p521),
    };
    Ok(KeyMaterial {
        pkcs8,
        public_jwk: ec_jwk(curve, &point)?,
    })
}

/// Normalises any PEM/DER private key rustls understands (PKCS#1, SEC1, PKCS#8) to PKCS#8 DER.
pub fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>> {
    match key {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::PrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
                .map_err(|e| MaterialError::Key(format!("pkcs#1 rsa key: {e}")))?;
            Ok(key
                .to_pkcs8_der()
                .map_err(|e| MaterialError::Key(format!("encoding rsa key: {e}")))?
                .as_bytes()
                .to_vec())
        }
        PrivateKeyDer::Sec1(k) => {
            let der = k.secret_sec1_der();
            macro_rules! try_curve {
                ($krate:ident) => {
                    if let Ok(secret) = $krate::SecretKey::from_sec1_der(der) {
                        use $krate::pkcs8::EncodePrivateKey as _;
                        return Ok(secret
                            .to_pkcs8_der()
                            .map_err(|e| MaterialError::Key(format!("encoding ec key: {e}")))?
                            .as_bytes()
                            .to_vec());
                    }
                };
            }
            try_curve!(p256);
            try_curve!(p384);
            try_curve!(p521);
            Err(MaterialError::Key(
                "sec1 ec key is not on P-256, P-384 or P-521".into(),
            ))
        }
        _ => Err(MaterialError::Key(
            "unsupported private key encoding".into(),
        )),
    }
}

/// The public JWK of a PKCS#8 private key: RSA, or EC on P-256, P-384 or P-521.
pub fn public_jwk_of_pkcs8(pkcs8: &[u8]) -> Result<Map<String, Value>> {
    {
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        if let Ok(key) = rsa::PrivateKey::from_pkcs8_der(pkcs8) {
            return Ok(rsa_jwk(
                &key.n().to_be_bytes_trimmed_vartime(),
                &key.e().to_be_bytes_trimmed_vartime(),
            ));
        }
    }
    macro_rules! try_curve {
        ($krate:ident, $curve:expr) => {{
            use $krate::elliptic_curve::sec1::ToSec1Point as _;
            use $krate::pkcs8::DecodePrivateKey as _;
            if let Ok(secret) = $krate::SecretKey::from_pkcs8_der(pkcs8) {
                let point = secret.public_key().to_sec1_point(false);
                return ec_jwk($curve, point.as_bytes());
            }
        }};
    }
    try_curve!(p256, Curve::P256);
    try_curve!(p384, Curve::P384);
    try_curve!(p521, Curve::P521);
    Err(MaterialError::Key(
        "the private key is neither RSA nor EC on P-256, P-384 or P-521".into(),
    ))
}

/// Puts the certificate whose public key is `key_pkcs8`'s first and keeps the others in their
/// order. Key Vault takes the leaf by key, not by position: PEM bundles often carry the root
/// first, and a key belonging to none of the certificates is refused.
fn leaf_first(key_pkcs8: &[u8], mut chain: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
    use x509_parser::prelude::*;
    let key_jwk = public_jwk_of_pkcs8(key_pkcs8)?;
    let mut subjects = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            MaterialError::Certificate(format!("parsing certificate {}: {e}", i + 1))
        })?;
        // Certificates with key types Key Vault cannot hold (ed25519 roots, ...) simply never
        // match.
        if spki_jwk(&cert).is_ok_and(|(jwk, _)| jwk == key_jwk) {
            let leaf = chain.remove(i);
            chain.insert(0, leaf);
            return Ok(chain);
        }
        subjects.push(format!("{:?}", cert.subject().to_string()));
    }
    Err(MaterialError::KeyMismatch(format!(
        "certificates: {}",
        subjects.join(", ")
    )))
}

/// A certificate chain (leaf first) with its private key.
#[derive(Clone)]
pub struct CertMaterial {
    /// PKCS#8 DER of the leaf's private key.
    pub key_pkcs8: Vec<u8>,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertMaterial")
            .field("key_pkcs8", &"<redacted>")
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// What Key Vault derives from a certificate: thumbprint, validity, public JWK, key shape.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// base64url SHA-1 of the leaf DER.
    pub x5t: String,
    /// Not-before, Unix seconds.
    pub nbf: i64,
    /// Not-after, Unix seconds.
    pub exp: i64,
    /// Subject as RFC 4514 text (`CN=...`).
    pub subject: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Public JWK members of the leaf key.
    pub public_jwk: Map<String, Value>,
    /// RSA modulus size in bits, if RSA.
    pub key_size: Option<usize>,
}

impl CertMaterial {
    /// Opens a PFX (base64 already decoded) with `password` (empty for none). Handles legacy
    /// (3DES/RC2) and PBES2/AES files, files without a MAC, and both empty-password
    /// conventions (see `pfx`).
    pub fn from_pfx(der: &[u8], password: &str) -> Result<CertMaterial> {
        // The raw bags, not `KeyStore`: its import links the key to whichever certificate
        // carries the key's localKeyId and drops the rest, so a file whose attributes point at
        // the root loses its leaf. The leaf is found by public key instead, as Key Vault does.
        let bags = crate::pfx::open(der, password).map_err(MaterialError::Pfx)?;
        let key_pkcs8 = match bags.keys.as_slice() {
            [] => return Err(MaterialError::Pfx("the file holds no private key".into())),
            [key] => key.clone(),
            keys => {
                return Err(MaterialError::Pfx(format!(
                    "the file holds {} private keys; a certificate import takes exactly one",
                    keys.len()
                )));
            }
        };
        let mut certs: Vec<Vec<u8>> = Vec::with_capacity(bags.certs.len());
        for der in bags.certs {
            if !certs.contains(&der) {
                certs.push(der);
            }
        }
        if certs.is_empty() {
            return Err(MaterialError::Pfx(
                "the file holds no certificate for its private key".into(),
            ));
        }
        Ok(CertMaterial {
            chain: leaf_first(&key_pkcs8, certs)?,
            key_pkcs8,
        })
    }

    /// Reads PEM text holding one private key and one or more certificates in any order; the
    /// certificate matching the key becomes the leaf.
    pub fn from_pem(text: &str) -> Result<CertMaterial> {
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| MaterialError::Pem(format!("reading certificates: {e}")))?
            .into_iter()
            .map(|c| c.to_vec())
            .collect();
        if chain.is_empty() {
            return Err(MaterialError::Pem(
                "no -----BEGIN CERTIFICATE----- block found".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(text.as_bytes())
            .map_err(|e| MaterialError::Pem(format!("no usable private key block: {e}")))?;
        let key_pkcs8 = to_pkcs8(&key)?;
        Ok(CertMaterial {
            chain: leaf_first(&key_pkcs8, chain)?,
            key_pkcs8,
        })
    }

    /// The password-less PFX Key Vault serves for `application/x-pkcs12` (3DES + SHA-1 MAC, the
    /// legacy profile every PKCS#12 reader understands).
    pub fn to_pfx(&self) -> Result<Vec<u8>> {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
            PrivateKeyChain,
        };
        let key = PrivateKey::from_der(&self.key_pkcs8)
            .map_err(|e| MaterialError::Pfx(format!("private key: {e}")))?;
        let certs = self
            .chain
            .iter()
            .map(|d| Certificate::from_der(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| MaterialError::Pfx(format!("certificate: {e}")))?;
        let local_key_id = sha1::Sha1::digest(&self.chain[0]).to_vec();
        let mut store = KeyStore::new();
        store.add_entry(
            "1",
            KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
        );
        store
            .writer("")
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1)
            .encryption_iterations(2000)
            .mac_iterations(2000)
            .write()
            .map_err(|e| MaterialError::Pfx(format!("writing: {e}")))
    }

    /// The PEM Key Vault serves for `application/x-pem-file`: PKCS#8 key, then the chain.
    pub fn to_pem(&self) -> String {
        let mut out = pem_block("PRIVATE KEY", &self.key_pkcs8);
        for c in &self.chain {
            out.push_str(&pem_block("CERTIFICATE", c));
        }
        out
    }

    /// Parses the leaf certificate.
    pub fn info(&self) -> Result<CertInfo> {
        cert_info(&self.chain[0])
    }
}

/// One PEM block with 64-column base64 and a trailing newline.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// base64url SHA-1 of a DER certificate (Key Vault's `x5t`).
pub fn x5t(der: &[u8]) -> String {
    b64u(&sha1::Sha1::digest(der))
}

/// Extracts what Key Vault reports about a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| MaterialError::Certificate(format!("parsing: {e}")))?;
    let (public_jwk, key_size) = spki_jwk(&cert)?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                dns_names.push((*d).to_string());
            }
        }
    }
    Ok(CertInfo {
        x5t: x5t(der),
        nbf: cert.validity().not_before.timestamp(),
        exp: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        dns_names,
        public_jwk,
        key_size,
    })
}

/// The public JWK of a certificate's SubjectPublicKeyInfo, and its RSA size in bits.
fn spki_jwk(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(Map<String, Value>, Option<usize>)> {
    let spki = cert.public_key();
    Ok(
        match spki
            .parsed()
            .map_err(|e| MaterialError::Certificate(format!("public key: {e}")))?
        {
            x509_parser::public_key::PublicKey::RSA(rsa) => {
                let n = strip_leading_zeros(rsa.modulus);
                (rsa_jwk(n, rsa.exponent), Some(n.len() * 8))
            }
            x509_parser::public_key::PublicKey::EC(point) => {
                let curve_oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                let curve = match curve_oid.as_str() {
                    "1.2.840.10045.3.1.7" => Curve::P256,
                    "1.3.132.0.34" => Curve::P384,
                    "1.3.132.0.35" => Curve::P521,
                    other => {
                        return Err(MaterialError::Certificate(format!(
                            "unsupported ec curve {other}"
                        )));
                    }
                };
                (ec_jwk(curve, point.data())?, None)
            }
            _ => {
                return Err(MaterialError::Certificate(
                    "only RSA and EC certificate keys are supported".into(),
                ));
            }
        },
    )
}

/// How a seeded certificate is generated.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    /// `CN=...,O=...` style subject.
    pub subject: String,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Validity in days from its start (back-dated by one hour for clock skew).
    pub validity_days: u32,
    /// Days from now the validity starts (negative: in the past; with a short validity, an
    /// already expired certificate; positive: not yet valid).
    pub valid_from_days: i32,
    /// RSA bits, or None for EC.
    pub rsa_bits: Option<usize>,
    /// EC curve when `rsa_bits` is None.
    pub curve: Curve,
}

/// Parses `CN=a, O=b` into an rcgen distinguished name.
fn parse_dn(subject: &str) -> Result<rcgen::DistinguishedName> {
    let mut dn = rcgen::DistinguishedName::new();
    for part in subject.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            MaterialError::Certificate(format!("subject part {part:?} is not KEY=VALUE"))
        })?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => rcgen::DnType::CommonName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "C" => rcgen::DnType::CountryName,
            "L" => rcgen::DnType::LocalityName,
            "ST" => rcgen::DnType::StateOrProvinceName,
            other => {
                return Err(MaterialError::Certificate(format!(
                    "subject attribute {other:?} is not one of CN, O, OU, C, L, ST"
                )));
            }
        };
        dn.push(ty, v.trim());
    }
    Ok(dn)
}

/// Generates a certificate for `spec`, self-signed or signed by `ca` (PEM cert, PEM key).
pub fn generate_certificate(spec: &GenerateSpec, ca: Option<(&str, &str)>) -> Result<CertMaterial> {
    let cert_err = |e: rcgen::Error| MaterialError::Certificate(e.to_string());
    let (key_pair, pkcs8) = match spec.rsa_bits {
        Some(bits) => {
            let m = generate_rsa(bits)?;
            let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
                &rustls_pki_types::PrivatePkcs8KeyDer::from(m.pkcs8.clone()),
                &rcgen::PKCS_RSA_SHA256,
            )
            .map_err(cert_err)?;
            (kp, m.pkcs8)
        }
        None => {
            let alg = match spec.curve {
                Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
                Curve::P521 => {
                    return Err(MaterialError::Certificate(
                        "generated certificates support P-256 and P-384 only".into(),
                    ));
                }
            };
            let kp = rcgen::KeyPair::generate_for(alg).map_err(cert_err)?;
            let der = kp.serialize_der();
            (kp, der)
        }
    };
    let mut params = rcgen::CertificateParams::new(spec.dns_names.clone()).map_err(cert_err)?;
    params.distinguished_name = parse_dn(&spec.subject)?;
    // The validity comes from a seed file or a create request: checked, so an absurd one is a
    // refused request, not a panic of the server.
    let now = time::OffsetDateTime::now_utc();
    let out_of_range = || {
        MaterialError::Certificate(format!(
            "a validity of {} days ends past the year 9999: use fewer",
            spec.validity_days
        ))
    };
    let start = now
        .checked_add(time::Duration::days(i64::from(spec.valid_from_days)))
        .ok_or_else(out_of_range)?;
    params.not_before = start
        .checked_sub(time::Duration::hours(1))
        .ok_or_else(out_of_range)?;
    params.not_after = start
        .checked_add(time::Duration::days(i64::from(spec.validity_days.max(1))))
        .ok_or_else(out_of_range)?;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut serial = [0u8; 16];
    rand::fill(&mut serial[..]);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let chain = match ca {
        None => vec![
            params
                .self_signed(&key_pair)
                .map_err(cert_err)?
                .der()
                .to_vec(),
        ],
        Some((ca_cert_pem, ca_key_pem)) => {
            let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).map_err(cert_err)?;
            let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(cert_err)?;
            let leaf = params.signed_by(&key_pair, &issuer).map_err(cert_err)?;
            let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
                .map_err(|e| MaterialError::Certificate(format!("ca pem: {e}")))?;
            vec![leaf.der().to_vec(), ca_der.to_vec()]
        }
    };
    Ok(CertMaterial {
        key_pkcs8: pkcs8,
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ec_certificate_round_trips_through_pfx_and_pem() {
        let spec = GenerateSpec {
            subject: "CN=web.demo.local".into(),
            dns_names: vec!["web.demo.local".into()],
            validity_days: 30,
            valid_from_days: 0,
            rsa_bits: None,
            curve: Curve::P256,
        };
        let m = generate_certificate(&spec, None).unwrap();
        let info = m.info().unwrap();
        assert_eq!(info.subject, "CN=web.demo.local");
        assert_eq!(info.public_jwk["crv"], "P-256");
        assert!(info.exp - info.nbf > 29 * 86400);
        let pfx = m.to_pfx().unwrap();
        let back = CertMaterial::from_pfx(&pfx, "").unwrap();
        assert_eq!(back.chain, m.chain);
        assert_eq!(back.key_pkcs8, m.key_pkcs8);
        let pem = m.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = CertMaterial::from_pem(&pem).unwrap();
        assert_eq!(back.chain, m.chain);
    }

    #[test]
    fn an_absurd_validity_is_refused_not_a_panic() {
        let spec = GenerateSpec {
            subject: "CN=forever".into(),
            dns_names: vec![],
            validity_days: u32::MAX,
            valid_from_days: 0,
            rsa_bits: None,
            curve: Curve::P256,
        };
        let e = generate_certificate(&spec, None).unwrap_err();
        assert!(e.to_string().contains("past the year 9999"), "{e}");
    }

    #[test]
    fn ec_jwk_rejects_compressed_points() {
        assert!(ec_jwk(Curve::P256, &[2u8; 33]).is_err());
    }
}
