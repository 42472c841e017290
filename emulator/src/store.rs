//! Versioned vault contents: secrets, keys, certificates and soft-deleted secrets. Plain data
//! behind one `std::sync::Mutex` in the server state; no I/O and no awaits while locked.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::material::{CertInfo, CertMaterial, MaterialError};
use crate::util::{new_version, now};

/// Content type of a PFX-backed certificate secret.
pub(crate) const PKCS12: &str = "application/x-pkcs12";
/// Content type of a PEM-backed certificate secret.
pub(crate) const PEM: &str = "application/x-pem-file";

/// Object attributes shared by secrets, keys and certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attributes {
    /// `enabled`.
    pub enabled: bool,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `exp`.
    pub exp: Option<i64>,
    /// `created`.
    pub created: i64,
    /// `updated`.
    pub updated: i64,
}

impl Attributes {
    /// Enabled, created and updated now.
    pub(crate) fn new_now() -> Attributes {
        let t = now();
        Attributes {
            enabled: true,
            nbf: None,
            exp: None,
            created: t,
            updated: t,
        }
    }
}

/// One secret version.
#[derive(Clone)]
pub(crate) struct SecretVersion {
    /// 32-hex version id.
    pub version: String,
    /// The value.
    pub value: String,
    /// `contentType`.
    pub content_type: Option<String>,
    /// Attributes.
    pub attrs: Attributes,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Set when this secret backs a certificate (`managed: true`, `kid`).
    pub cert: Option<Arc<CertMaterial>>,
}

impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .field("content_type", &self.content_type)
            .field("attrs", &self.attrs)
            .finish_non_exhaustive()
    }
}

/// One key version (public part only: the emulator performs no crypto operations).
#[derive(Debug, Clone)]
pub(crate) struct KeyVersion {
    /// 32-hex version id.
    pub version: String,
    /// Public JWK members without `kid` and `key_ops`.
    pub jwk: Map<String, Value>,
    /// `key_ops`.
    pub key_ops: Vec<String>,
    /// Attributes.
    pub attrs: Attributes,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// True when the key backs a certificate.
    pub managed: bool,
    /// `attributes.exportable`.
    pub exportable: bool,
}

/// One certificate version.
#[derive(Debug, Clone)]
pub(crate) struct CertVersion {
    /// 32-hex version id (shared with the backing key and secret).
    pub version: String,
    /// Key and chain.
    pub material: Arc<CertMaterial>,
    /// Parsed leaf.
    pub info: CertInfo,
    /// Backing secret content type.
    pub content_type: String,
    /// Attributes (`nbf`/`exp` from the certificate).
    pub attrs: Attributes,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Policy issuer name: `Self` for generated, `Unknown` for imported.
    pub issuer_name: String,
}

/// A soft-deleted object (all versions).
#[derive(Debug, Clone)]
pub(crate) struct Deleted<T> {
    /// Versions at deletion time.
    pub versions: Vec<T>,
    /// `deletedDate`.
    pub deleted_date: i64,
    /// `scheduledPurgeDate`.
    pub scheduled_purge_date: i64,
}

impl<T> Deleted<T> {
    fn now(versions: Vec<T>) -> Deleted<T> {
        let t = now();
        Deleted {
            versions,
            deleted_date: t,
            scheduled_purge_date: t + 90 * 86400,
        }
    }
}

/// A soft-deleted secret.
pub(crate) type DeletedSecret = Deleted<SecretVersion>;
/// A soft-deleted key.
pub(crate) type DeletedKey = Deleted<KeyVersion>;
/// A soft-deleted certificate.
pub(crate) type DeletedCertificate = Deleted<CertVersion>;

/// One vault.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vault {
    /// Name.
    pub name: String,
    /// Secrets by name, versions oldest first.
    pub secrets: BTreeMap<String, Vec<SecretVersion>>,
    /// Keys by name.
    pub keys: BTreeMap<String, Vec<KeyVersion>>,
    /// Certificates by name.
    pub certificates: BTreeMap<String, Vec<CertVersion>>,
    /// Soft-deleted secrets by name.
    pub deleted_secrets: BTreeMap<String, DeletedSecret>,
    /// Soft-deleted keys by name.
    pub deleted_keys: BTreeMap<String, DeletedKey>,
    /// Soft-deleted certificates by name (their key and secret are removed with them).
    pub deleted_certificates: BTreeMap<String, DeletedCertificate>,
    /// The key and secret versions removed with a deleted certificate, restored on recovery.
    pub deleted_certificate_backing: BTreeMap<String, (Vec<KeyVersion>, Vec<SecretVersion>)>,
}

/// Store-level failures, mapped to Key Vault errors by the routes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// No such vault.
    #[error("vault {0:?} is not seeded")]
    NoVault(String),
    /// No such object or version.
    #[error("not found")]
    NotFound,
    /// The name is soft-deleted.
    #[error("deleted but recoverable")]
    Deleted,
}

/// Input for a new certificate version.
#[derive(Debug, Clone)]
pub(crate) struct NewCertificate {
    /// Key and chain.
    pub material: CertMaterial,
    /// Backing secret content type (`PKCS12` or `PEM`).
    pub content_type: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `Self` or `Unknown`.
    pub issuer_name: String,
}

/// All vaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    vaults: Vec<Vault>,
}

impl Store {
    /// Adds an empty vault (no-op if it exists).
    pub(crate) fn add_vault(&mut self, name: &str) {
        if self.vault(name).is_none() {
            self.vaults.push(Vault {
                name: name.to_string(),
                ..Vault::default()
            });
        }
    }

    /// Vault names in seed order.
    pub(crate) fn vault_names(&self) -> Vec<String> {
        self.vaults.iter().map(|v| v.name.clone()).collect()
    }

    /// A vault by name (case-insensitive, as DNS is).
    pub(crate) fn vault(&self, name: &str) -> Option<&Vault> {
        self.vaults
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// A vault by name, mutable.
    pub(crate) fn vault_mut(&mut self, name: &str) -> Result<&mut Vault, StoreError> {
        self.vaults
            .iter_mut()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| StoreError::NoVault(name.to_string()))
    }
}

/// Finds a version (`None` = latest) in a version list.
pub(crate) fn pick<'a, T>(
    versions: &'a [T],
    version: Option<&str>,
    id: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    match version {
        None | Some("") => versions.last(),
        Some(v) => versions.iter().find(|x| id(x).eq_ignore_ascii_case(v)),
    }
}

impl Vault {
    /// Adds a secret version; fails with `Deleted` while the name is soft-deleted.
    pub(crate) fn set_secret(
        &mut self,
        name: &str,
        value: String,
        content_type: Option<String>,
        attrs: Attributes,
        tags: BTreeMap<String, String>,
        version: Option<String>,
    ) -> Result<SecretVersion, StoreError> {
        if self.is_deleted("secrets", name) {
            return Err(StoreError::Deleted);
        }
        let v = SecretVersion {
            version: version.unwrap_or_else(new_version),
            value,
            content_type,
            attrs,
            tags,
            cert: None,
        };
        self.secrets
            .entry(name.to_string())
            .or_default()
            .push(v.clone());
        Ok(v)
    }

    /// A secret version (`None` = latest).
    pub(crate) fn secret(&self, name: &str, version: Option<&str>) -> Option<&SecretVersion> {
        pick(self.secrets.get(name)?, version, |v| &v.version)
    }

    /// A secret version, mutable.
    pub(crate) fn secret_mut(
        &mut self,
        name: &str,
        version: Option<&str>,
    ) -> Option<&mut SecretVersion> {
        let list = self.secrets.get_mut(name)?;
        match version {
            None | Some("") => list.last_mut(),
            Some(v) => list.iter_mut().find(|x| x.version.eq_ignore_ascii_case(v)),
        }
    }

    /// Soft-deletes a secret (all versions).
    pub(crate) fn delete_secret(&mut self, name: &str) -> Result<&DeletedSecret, StoreError> {
        let versions = self.secrets.remove(name).ok_or(StoreError::NotFound)?;
        self.deleted_secrets
            .insert(name.to_string(), Deleted::now(versions));
        Ok(&self.deleted_secrets[name])
    }

    /// Restores a soft-deleted secret.
    pub(crate) fn recover_secret(&mut self, name: &str) -> Result<SecretVersion, StoreError> {
        let d = self
            .deleted_secrets
            .remove(name)
            .ok_or(StoreError::NotFound)?;
        let latest = d.versions.last().cloned().ok_or(StoreError::NotFound)?;
        self.secrets.insert(name.to_string(), d.versions);
        Ok(latest)
    }

    /// Soft-deletes a key (all versions).
    pub(crate) fn delete_key(&mut self, name: &str) -> Result<&DeletedKey, StoreError> {
        let versions = self.keys.remove(name).ok_or(StoreError::NotFound)?;
        self.deleted_keys
            .insert(name.to_string(), Deleted::now(versions));
        Ok(&self.deleted_keys[name])
    }

    /// Soft-deletes a certificate and removes its backing key and secret.
    pub(crate) fn delete_certificate(
        &mut self,
        name: &str,
    ) -> Result<&DeletedCertificate, StoreError> {
        let versions = self.certificates.remove(name).ok_or(StoreError::NotFound)?;
        let keys = self.keys.remove(name).unwrap_or_default();
        let secrets = self.secrets.remove(name).unwrap_or_default();
        self.deleted_certificate_backing
            .insert(name.to_string(), (keys, secrets));
        self.deleted_certificates
            .insert(name.to_string(), Deleted::now(versions));
        Ok(&self.deleted_certificates[name])
    }

    /// Restores a soft-deleted key.
    pub(crate) fn recover_key(&mut self, name: &str) -> Result<KeyVersion, StoreError> {
        let d = self.deleted_keys.remove(name).ok_or(StoreError::NotFound)?;
        let latest = d.versions.last().cloned().ok_or(StoreError::NotFound)?;
        self.keys.insert(name.to_string(), d.versions);
        Ok(latest)
    }

    /// Restores a soft-deleted certificate with its key and secret.
    pub(crate) fn recover_certificate(&mut self, name: &str) -> Result<CertVersion, StoreError> {
        let d = self
            .deleted_certificates
            .remove(name)
            .ok_or(StoreError::NotFound)?;
        let latest = d.versions.last().cloned().ok_or(StoreError::NotFound)?;
        self.certificates.insert(name.to_string(), d.versions);
        if let Some((keys, secrets)) = self.deleted_certificate_backing.remove(name) {
            if !keys.is_empty() {
                self.keys.insert(name.to_string(), keys);
            }
            if !secrets.is_empty() {
                self.secrets.insert(name.to_string(), secrets);
            }
        }
        Ok(latest)
    }

    /// Whether `name` is soft-deleted in any collection that blocks its reuse for `kind`.
    pub(crate) fn is_deleted(&self, kind: &str, name: &str) -> bool {
        match kind {
            "keys" => {
                self.deleted_keys.contains_key(name) || self.deleted_certificates.contains_key(name)
            }
            "certificates" => {
                self.deleted_certificates.contains_key(name)
                    || self.deleted_keys.contains_key(name)
                    || self.deleted_secrets.contains_key(name)
            }
            _ => {
                self.deleted_secrets.contains_key(name)
                    || self.deleted_certificates.contains_key(name)
            }
        }
    }

    /// A key version (`None` = latest).
    pub(crate) fn key(&self, name: &str, version: Option<&str>) -> Option<&KeyVersion> {
        pick(self.keys.get(name)?, version, |v| &v.version)
    }

    /// Adds a key version.
    pub(crate) fn add_key(&mut self, name: &str, key: KeyVersion) {
        self.keys.entry(name.to_string()).or_default().push(key);
    }

    /// A certificate version (`None` = latest).
    pub(crate) fn certificate(&self, name: &str, version: Option<&str>) -> Option<&CertVersion> {
        pick(self.certificates.get(name)?, version, |v| &v.version)
    }

    /// Adds a certificate version plus its backing key and secret (same name and version).
    pub(crate) fn add_certificate(
        &mut self,
        name: &str,
        new: NewCertificate,
    ) -> Result<CertVersion, MaterialError> {
        let info = new.material.info()?;
        let value = if new.content_type == PEM {
            new.material.to_pem()
        } else {
            base64::engine::general_purpose::STANDARD.encode(new.material.to_pfx()?)
        };
        let version = new_version();
        let t = now();
        let attrs = Attributes {
            enabled: new.enabled,
            nbf: Some(info.nbf),
            exp: Some(info.exp),
            created: t,
            updated: t,
        };
        let material = Arc::new(new.material);
        let key_ops = match info.public_jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => vec!["sign".into(), "verify".into()],
            _ => vec![
                "sign".into(),
                "verify".into(),
                "wrapKey".into(),
                "unwrapKey".into(),
                "encrypt".into(),
                "decrypt".into(),
            ],
        };
        self.add_key(
            name,
            KeyVersion {
                version: version.clone(),
                jwk: info.public_jwk.clone(),
                key_ops,
                attrs: attrs.clone(),
                tags: new.tags.clone(),
                managed: true,
                exportable: true,
            },
        );
        self.secrets
            .entry(name.to_string())
            .or_default()
            .push(SecretVersion {
                version: version.clone(),
                value,
                content_type: Some(new.content_type.clone()),
                attrs: attrs.clone(),
                tags: new.tags.clone(),
                cert: Some(material.clone()),
            });
        let cert = CertVersion {
            version,
            material,
            info,
            content_type: new.content_type,
            attrs,
            tags: new.tags,
            issuer_name: new.issuer_name,
        };
        self.certificates
            .entry(name.to_string())
            .or_default()
            .push(cert.clone());
        Ok(cert)
    }
}

// Key rules both the data plane (create, import) and the seed apply.

/// Default `key_ops` for a key type, as Key Vault assigns them.
pub(crate) fn default_key_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = if kty.starts_with("EC") {
        &["sign", "verify"]
    } else {
        &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
    };
    ops.iter().map(|s| s.to_string()).collect()
}

/// The public members of an imported JWK, validated; private members are dropped.
pub(crate) fn public_jwk(jwk: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("The JSON Web Key has no 'kty'.")?;
    let required: &[&str] = match kty {
        "RSA" | "RSA-HSM" => &["n", "e"],
        "EC" | "EC-HSM" => &["crv", "x", "y"],
        other => {
            return Err(format!(
                "Key type {other} cannot be imported by the emulator."
            ));
        }
    };
    let mut out = Map::new();
    out.insert("kty".into(), serde_json::json!(kty));
    for k in required {
        let v = jwk
            .get(*k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("The JSON Web Key is missing '{k}'."))?;
        if *k != "crv"
            && base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .is_err()
        {
            return Err(format!("The JSON Web Key member '{k}' is not base64url."));
        }
        out.insert((*k).into(), serde_json::json!(v));
    }
    if let Some(crv) = out.get("crv").and_then(Value::as_str)
        && crate::material::Curve::parse(crv).is_none()
    {
        return Err(format!("Curve {crv} is not supported."));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/protocol.md §2 (imported keys keep their public part only)
    #[test]
    fn imported_jwk_drops_private_members() {
        let jwk =
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB", "d": "CCCC"});
        let p = public_jwk(jwk.as_object().unwrap()).unwrap();
        assert!(p.get("d").is_none());
        assert_eq!(p["crv"], "P-256");
    }
}
