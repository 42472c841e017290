//! Wire types of the Key Vault REST API (`docs/protocol.md` §1.3, `emulator/tests/fixtures/keyvault/`).
//!
//! Every field is optional because the reference treats missing fields as errors at
//! conversion time (`secret value is nil`, ...) and we want the same messages.
//! Unknown fields are ignored: the service adds fields over time.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::SecretString;

/// Object attributes shared by secrets, keys and certificates. Times are Unix seconds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Attributes {
    /// Whether the version is enabled.
    pub enabled: Option<bool>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Expiry.
    pub exp: Option<i64>,
    /// Creation time.
    pub created: Option<i64>,
    /// Last update time.
    pub updated: Option<i64>,
}

/// `GET /secrets/{name}/{version}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretBundle {
    /// The value; for certificate-backed secrets base64 PFX or PEM text.
    pub value: Option<SecretString>,
    /// `https://{vault}/secrets/{name}/{version}`.
    pub id: Option<String>,
    /// Free-form; `application/x-pkcs12` or `application/x-pem-file` when cert-backed.
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    /// Present only when the secret backs a certificate.
    pub kid: Option<String>,
    /// Attributes.
    pub attributes: Option<Attributes>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// True when the secret backs a certificate.
    pub managed: Option<bool>,
}

/// A JSON Web Key as returned by Key Vault (public parts only). Binary members are
/// base64url without padding.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JsonWebKey {
    /// `https://{vault}/keys/{name}/{version}`.
    pub kid: Option<String>,
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`.
    pub kty: Option<String>,
    /// Permitted operations.
    pub key_ops: Option<Vec<String>>,
    /// RSA modulus.
    pub n: Option<String>,
    /// RSA public exponent.
    pub e: Option<String>,
    /// EC curve: `P-256`, `P-384`, `P-521`, `P-256K`.
    pub crv: Option<String>,
    /// EC x coordinate.
    pub x: Option<String>,
    /// EC y coordinate.
    pub y: Option<String>,
}

/// `GET /keys/{name}/{version}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyBundle {
    /// The public key.
    pub key: Option<JsonWebKey>,
    /// Attributes.
    pub attributes: Option<Attributes>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// True when the key backs a certificate.
    pub managed: Option<bool>,
}

/// `GET /certificates/{name}/{version}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificateBundle {
    /// `https://{vault}/certificates/{name}/{version}`.
    pub id: Option<String>,
    /// Backing key URL.
    pub kid: Option<String>,
    /// Backing secret URL.
    pub sid: Option<String>,
    /// base64url SHA-1 thumbprint of `cer`.
    pub x5t: Option<String>,
    /// Standard base64 of the leaf certificate's DER.
    pub cer: Option<String>,
    /// Attributes (`nbf`/`exp` mirror the certificate validity).
    pub attributes: Option<Attributes>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// One item of a version list (`GET /{secrets|keys|certificates}/{name}/versions`).
/// Secrets and certificates carry `id`; keys carry `kid`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VersionItem {
    /// Versioned id (secrets, certificates).
    pub id: Option<String>,
    /// Versioned id (keys).
    pub kid: Option<String>,
    /// Attributes; items without attributes are skipped in history mode.
    pub attributes: Option<Attributes>,
}

impl VersionItem {
    /// The version: the last path segment of `id` or `kid`.
    pub fn version(&self) -> Option<&str> {
        self.id
            .as_deref()
            .or(self.kid.as_deref())
            .and_then(version_of)
    }
}

/// A page of a list result.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListPage<T> {
    /// Items on this page (may be empty even when `next_link` is set).
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// Absolute URL of the next page, or absent/null on the last page.
    #[serde(rename = "nextLink")]
    pub next_link: Option<String>,
}

/// What one Key Vault GET returned, ready for [`crate::convert`].
#[derive(Debug, Clone)]
pub enum Fetched {
    /// A secret bundle.
    Secret(SecretBundle),
    /// A key bundle.
    Key(KeyBundle),
    /// A certificate bundle.
    Certificate(CertificateBundle),
}

impl Fetched {
    /// The version of the fetched object: last path segment of `id` (`key.kid` for keys).
    pub fn version(&self) -> Option<&str> {
        let id = match self {
            Fetched::Secret(s) => s.id.as_deref(),
            Fetched::Key(k) => k.key.as_ref().and_then(|k| k.kid.as_deref()),
            Fetched::Certificate(c) => c.id.as_deref(),
        };
        id.and_then(version_of)
    }
}

/// Last non-empty path segment of an object id URL.
pub fn version_of(id: &str) -> Option<&str> {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: fixtures/keyvault/GetSecret-example.json, GetKeyVersions-example.json
    #[test]
    fn parses_fixture_shapes() {
        let s: SecretBundle = serde_json::from_str(
            r#"{"value":"mysecretvalue","id":"https://myvault.vault.azure.net/secrets/mysecretname/4387e9f3d6e14c459867679a90fd0f79","attributes":{"enabled":true,"created":1493938410,"updated":1493938410,"recoveryLevel":"Recoverable+Purgeable"}}"#,
        )
        .unwrap();
        assert_eq!(
            Fetched::Secret(s).version(),
            Some("4387e9f3d6e14c459867679a90fd0f79")
        );
        let p: ListPage<VersionItem> = serde_json::from_str(
            r#"{"value":[{"kid":"https://x.vault.azure.net/keys/k/abc","attributes":{"enabled":false,"created":5}}],"nextLink":null}"#,
        )
        .unwrap();
        assert_eq!(p.value[0].version(), Some("abc"));
        assert!(p.next_link.is_none());
    }
}
