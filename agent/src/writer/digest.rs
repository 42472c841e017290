//! Keyed digests of published files (HMAC-SHA256, RFC 2104) and the per-volume key.
//!
//! `..status.json` is readable by everyone who can read the volume, and a plain SHA-256 of a
//! low-entropy secret (a short password) can be reversed offline by guessing. A keyed digest
//! keeps the property tools need (equal contents give equal digests, so a change is visible)
//! without that side channel, as long as the key is no more readable than the secrets
//! (docs/threat-model.md rule 8). The key lives in the volume (`..hmac.key`) so that the init
//! container and the sidecar, two processes, produce the same digests.
//!
//! HMAC is the `hmac` crate's over `sha2` (one RustCrypto generation, shared with PKCS#12);
//! the RFC 4231 vectors below pin it.

use hmac::{KeyInit as _, Mac as _};

/// Length of the key, in bytes.
pub const KEY_LEN: usize = 32;

/// A secret key for [`DigestKey::digest`]. Never printed: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; KEY_LEN]);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::fill(&mut k);
        Self(k)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, data)
    }

    /// HMAC-SHA256 of `data`, lowercase hex (what `..status.json` carries).
    pub fn digest(&self, data: &[u8]) -> String {
        hex::encode(self.mac(data))
    }
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: RFC 4231 §4.2, §4.3, §4.7 (HMAC-SHA-256 test vectors)
    #[test]
    fn rfc4231_vectors() {
        let cases: [(Vec<u8>, &[u8], &str); 3] = [
            (
                vec![0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(hex::encode(hmac_sha256(&key, data)), want);
        }
    }

    #[test]
    fn keyed_digests_differ_from_plain_sha256_and_between_keys() {
        let a = DigestKey::random();
        let b = DigestKey::random();
        use sha2::Digest as _;
        let plain = hex::encode(sha2::Sha256::digest(b"hunter2"));
        assert_ne!(a.digest(b"hunter2"), plain);
        assert_ne!(a.digest(b"hunter2"), b.digest(b"hunter2"));
        assert_eq!(a.digest(b"hunter2"), a.clone().digest(b"hunter2"));
        assert_eq!(a.digest(b"x").len(), 64);
        assert_eq!(format!("{a:?}"), "DigestKey(..)");
    }
}
