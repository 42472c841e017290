//! RS256 signing keys shared by the cluster token issuer and the Entra token endpoint: load or
//! create a PEM key in the state dir, sign claims with a `kid`, verify signatures.
//!
//! The signature is the `rsa` crate's (PKCS#1 v1.5 with SHA-256, `pkcs1v15::SigningKey`); the
//! JWS compact form around it (RFC 7515 §7.1: three base64url parts joined by dots) is written
//! here. `jsonwebtoken` did this before, but its RustCrypto backend compiles every JWA
//! algorithm (Ed25519 with curve25519-dalek, ECDSA, PSS) into the emulator for the one it
//! uses. Our tokens are verified by an independent implementation, PyJWT, against the published
//! JWKS in tests/sdk/test_auth.py (the SDK suite's venv has it through MSAL).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15;
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
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
    signer: pkcs1v15::SigningKey<sha2::Sha256>,
    verifier: pkcs1v15::VerifyingKey<sha2::Sha256>,
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
        use rsa::traits::PublicKeyParts as _;
        let n = URL_SAFE_NO_PAD.encode(key.n().to_be_bytes_trimmed_vartime());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_be_bytes_trimmed_vartime());
        // RFC 7638: SHA-256 over the required members in lexicographic order.
        let thumb_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(thumb_input.as_bytes()));
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Ok(SigningKey {
            kid,
            signer: pkcs1v15::SigningKey::new(key.clone()),
            verifier: pkcs1v15::VerifyingKey::new(key.to_public_key()),
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
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid});
        let input = format!("{}.{}", b64_json(&header), b64_json(claims));
        // Signing with a valid in-memory RSA key cannot fail; fall back to an unusable token
        // rather than panicking inside a request handler.
        match self.signer.try_sign(input.as_bytes()) {
            Ok(sig) => format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes())),
            Err(_) => String::new(),
        }
    }

    /// Verifies the signature (and only the signature) and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let head: Value = unb64_json(header)?;
        if head["alg"] != "RS256" {
            return Err(JwtError::BadSignature);
        }
        match head["kid"].as_str() {
            Some(k) if k == self.kid => {}
            Some(k) => return Err(JwtError::UnknownKey(k.to_owned())),
            None => return Err(JwtError::UnknownKey(String::new())),
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| JwtError::Malformed)?;
        let sig =
            pkcs1v15::Signature::try_from(sig.as_slice()).map_err(|_| JwtError::BadSignature)?;
        let input = token
            .get(..header.len().saturating_add(1).saturating_add(claims.len()))
            .ok_or(JwtError::Malformed)?;
        self.verifier
            .verify(input.as_bytes(), &sig)
            .map_err(|_| JwtError::BadSignature)?;
        unb64_json(claims)
    }
}

/// A JWS part: base64url (no padding) of compact JSON.
fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWS part back to JSON.
fn unb64_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &tempfile::TempDir, name: &str) -> SigningKey {
        SigningKey::load_or_create(&dir.path().join(name)).unwrap()
    }

    // reference: docs/protocol.md §3.4 (error 700027: a client assertion that fails signature
    // validation is refused); issue 13 item 3 (RS256 signed through the rsa crate).
    #[test]
    fn verify_accepts_our_tokens_and_refuses_tampered_or_foreign_ones() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(&dir, "a.pem");
        let claims = json!({"sub": "system:serviceaccount:ns:sa", "aud": ["api://x"]});
        let token = k.sign(&claims);
        assert_eq!(k.verify(&token), Ok(claims.clone()));
        // Loading the same file gives the same key id and accepts the same tokens.
        assert_eq!(key(&dir, "a.pem").verify(&token), Ok(claims));

        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&tampered), Err(JwtError::BadSignature));

        let other = key(&dir, "b.pem");
        assert_eq!(
            k.verify(&other.sign(&json!({}))),
            Err(JwtError::UnknownKey(other.kid().to_owned()))
        );

        let none_alg = format!(
            "{}.{}.",
            b64_json(&json!({"alg": "none", "kid": k.kid()})),
            parts[1]
        );
        assert_eq!(k.verify(&none_alg), Err(JwtError::BadSignature));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.e30"] {
            assert_eq!(k.verify(bad), Err(JwtError::Malformed), "{bad}");
        }
    }
}
