//! RS256 signing keys shared by the cluster token issuer and the Entra token endpoint: load or
//! create a PEM key in the state dir, sign claims with a `kid`, verify signatures.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Why a JWT was rejected before its claims were looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts, or the header/claims are not JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The `kid` names no key we know.
    #[error("the token's signing key {0:?} is unknown")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
}

/// An RSA signing key with its RFC 7638 thumbprint as `kid`.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads `path` (PKCS#8 PEM RSA key) or creates it (2048 bits, mode 0600).
    pub fn load_or_create(path: &Path) -> Result<SigningKey, crate::Error> {
        use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
            rsa::PrivateKey::from_pkcs8_pem(&pem).map_err(|e| {
                crate::Error::State(format!(
                    "signing key {}: {e} (delete the file to regenerate it)",
                    path.display()
                ))
            })?
        } else {
            let key = rsa::PrivateKey::new(&mut rand::rng(), 2048)
                .map_err(|e| crate::Error::State(format!("generating signing key: {e}")))?;
            let pem = key
                .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| crate::Error::State(format!("encoding signing key: {e}")))?;
            crate::tls::write_private(path, pem.as_bytes())?;
            key
        };
        Self::from_rsa(&key)
    }

    /// Writes `path` from a process-wide key for `slot` (generated once per process) unless the
    /// file exists. Emulators with throw-away state dirs use this to skip RSA generation.
    pub(crate) fn seed_from_process_cache(path: &Path, slot: usize) -> Result<(), crate::Error> {
        use rsa::pkcs8::EncodePrivateKey as _;
        static CACHE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        if path.exists() {
            return Ok(());
        }
        let pems = CACHE.get_or_init(|| {
            (0..2)
                .filter_map(|_| {
                    rsa::PrivateKey::new(&mut rand::rng(), 2048)
                        .ok()?
                        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                        .ok()
                        .map(|p| p.to_string())
                })
                .collect()
        });
        match pems.get(slot) {
            Some(pem) => crate::tls::write_private(path, pem.as_bytes()),
            // Generation failed: load_or_create will try again and report the error.
            None => Ok(()),
        }
    }

    fn from_rsa(key: &rsa::PrivateKey) -> Result<SigningKey, crate::Error> {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let n = URL_SAFE_NO_PAD.encode(key.n().to_be_bytes_trimmed_vartime());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_be_bytes_trimmed_vartime());
        // RFC 7638: SHA-256 over the required members in lexicographic order.
        let thumb_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(thumb_input.as_bytes()));
        let pkcs1 = key
            .to_pkcs1_der()
            .map_err(|e| crate::Error::State(format!("encoding signing key: {e}")))?;
        let encoding = EncodingKey::from_rsa_der(pkcs1.as_bytes());
        let decoding = DecodingKey::from_rsa_components(&n, &e)
            .map_err(|e| crate::Error::State(format!("signing key public part: {e}")))?;
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id put in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (with `kid`, `use`, `alg`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `claims` as an RS256 JWT with `kid` and `typ: JWT`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        // Signing with a valid in-memory RSA key cannot fail; fall back to an unusable token
        // rather than panicking inside a request handler.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies the signature (and only the signature) and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(JwtError::BadSignature);
        }
        match header.kid {
            Some(k) if k == self.kid => {}
            Some(k) => return Err(JwtError::UnknownKey(k)),
            None => return Err(JwtError::UnknownKey(String::new())),
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        match jsonwebtoken::decode::<Value>(token, &self.decoding, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Err(JwtError::BadSignature),
                _ => Err(JwtError::Malformed),
            },
        }
    }
}

/// Reads claims without verifying anything (for error messages only).
pub fn peek_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether a JWT `aud` claim (string or array) contains `want`.
pub fn aud_contains(claims: &Value, want: &str) -> bool {
    match &claims["aud"] {
        Value::String(s) => s == want,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

/// The `aud` claim as display text.
pub fn aud_text(claims: &Value) -> String {
    match &claims["aud"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}
