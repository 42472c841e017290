//! Types that carry secret material: secret values, private keys, tokens, client secrets.
//!
//! Their `Debug` never prints the contents, so a stray `?value` in a log line or an error
//! message cannot leak them. There is deliberately no `Display`.

use std::fmt;

/// Secret bytes (a secret value, a converted PEM with a private key, a PFX...).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps bytes that must never be logged.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, for writing to the output file or hashing. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

/// A secret string (a Key Vault secret value, an access token, a client secret, a JWT).
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a string that must never be logged.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The string, for sending it where it belongs. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(<redacted {} bytes>)", self.0.len())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_contents() {
        let s = SecretString::new("hunter2-super-secret");
        let b = SecretBytes::new(b"-----BEGIN PRIVATE KEY-----".to_vec());
        let out = format!("{s:?} {b:?} {:#?}", (&s, &b));
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
        assert!(out.contains("redacted"));
    }
}
