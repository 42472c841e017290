//! The seed file: vaults with their secrets, keys and certificates, and the identities (app
//! registrations / managed identities) that may call them. Every field is documented in
//! `emulator/README.md`; `emulator/examples/seed.yaml` is the annotated example.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The tenant used when a seed does not name one.
pub(crate) const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-0000000000aa";

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

fn yes() -> bool {
    true
}

/// A whole seed document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Entra tenant id (GUID) used in tokens, challenges and the authority URL.
    #[serde(default = "default_tenant")]
    pub(crate) tenant_id: String,
    /// Vaults, the first one is the default for requests to `localhost`.
    #[serde(default)]
    pub(crate) vaults: Vec<VaultSeed>,
    /// Identities that can obtain tokens.
    #[serde(default)]
    pub(crate) identities: Vec<IdentitySeed>,
    /// Throttling, in `--throttle` syntax (`off`, `keyvault`, `secrets=100,window=10s`);
    /// the command line's `--throttle` wins.
    #[serde(default)]
    pub throttle: Option<String>,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            tenant_id: default_tenant(),
            vaults: Vec::new(),
            identities: Vec::new(),
            throttle: None,
        }
    }
}

/// One vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VaultSeed {
    /// Vault name (`^[0-9a-zA-Z-]{3,24}$`), the first DNS label of its URL.
    pub name: String,
    /// Secrets.
    #[serde(default)]
    pub secrets: Vec<SecretSeed>,
    /// Keys.
    #[serde(default)]
    pub keys: Vec<KeySeed>,
    /// Certificates (each also creates a key and a secret with the same name and version).
    #[serde(default)]
    pub certificates: Vec<CertificateSeed>,
}

/// A secret: either `versions` or the `value` shorthand for one version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretSeed {
    /// Secret name.
    pub name: String,
    /// Versions, oldest first; the last one is "latest".
    #[serde(default)]
    pub versions: Vec<SecretVersionSeed>,
    /// Shorthand for a single version's value.
    #[serde(default)]
    pub value: Option<String>,
    /// Content type for the shorthand version.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Tags for the shorthand version.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One secret version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretVersionSeed {
    /// The secret value (text, as Key Vault stores it).
    pub value: String,
    /// `contentType` hint.
    #[serde(default)]
    pub content_type: Option<String>,
    /// `attributes.enabled` (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `attributes.created` in Unix seconds (default: now, older versions one second earlier each).
    #[serde(default)]
    pub created: Option<i64>,
    /// `attributes.nbf`.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// `attributes.exp`.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Explicit 32-hex version id (default random).
    #[serde(default)]
    pub version: Option<String>,
}

/// A key: generated from `kty`/`size`/`curve`, or imported from `jwk`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeySeed {
    /// Key name.
    pub name: String,
    /// `RSA` or `EC` (also `RSA-HSM`/`EC-HSM`, reported as given). Default RSA.
    #[serde(default)]
    pub kty: Option<String>,
    /// RSA size in bits: 2048 (default), 3072 or 4096.
    #[serde(default)]
    pub size: Option<usize>,
    /// EC curve: P-256 (default), P-384, P-521.
    #[serde(default)]
    pub curve: Option<String>,
    /// A JWK to import instead of generating (private members are dropped).
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
    /// `key_ops` (default: all operations valid for the key type).
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// `attributes.enabled` (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A certificate: exactly one of `generate`, `pem`, `pfx_base64`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateSeed {
    /// Certificate name.
    pub name: String,
    /// Generate a certificate.
    #[serde(default)]
    pub generate: Option<GenerateSeed>,
    /// PEM text with the private key and the certificate chain, in any order: the certificate
    /// matching the key is the leaf; a key matching none fails the seed.
    #[serde(default)]
    pub pem: Option<String>,
    /// Base64 of a PFX file.
    #[serde(default)]
    pub pfx_base64: Option<String>,
    /// PFX password (default empty).
    #[serde(default)]
    pub password: Option<String>,
    /// Backing secret content type: `application/x-pkcs12` (default for pfx/generate) or
    /// `application/x-pem-file` (default for pem).
    #[serde(default)]
    pub content_type: Option<String>,
    /// `attributes.enabled` (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// How to generate a seeded certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateSeed {
    /// Subject, e.g. `CN=web.demo.local, O=Demo`.
    pub subject: String,
    /// Backing secret content type (overrides the certificate-level `content_type`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// DNS subject alternative names.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Validity in months (default 12).
    #[serde(default)]
    pub validity_months: Option<u32>,
    /// Days from now the validity starts (default 0; `-90` with `validity_months: 1` makes an
    /// expired certificate, `30` one that is not yet valid).
    #[serde(default)]
    pub valid_from_days: Option<i32>,
    /// `RSA` (default) or `EC`.
    #[serde(default)]
    pub kty: Option<String>,
    /// RSA bits (default 2048).
    #[serde(default)]
    pub size: Option<usize>,
    /// EC curve (P-256 default, P-384).
    #[serde(default)]
    pub curve: Option<String>,
    /// `self` (default) or `ca`: sign with the emulator CA, so the secret holds a 2-cert chain.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// Which kind of managed identity an identity is, for IMDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ManagedIdentityKind {
    /// Selected by `client_id`/`object_id`/`msi_res_id` (or by default when it is the only one).
    UserAssigned,
    /// Selected when IMDS is called with no selector.
    SystemAssigned,
}

/// What an identity may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Access {
    /// `all`, or `none`.
    Word(String),
    /// Patterns `vault/kind/name`, any segment may be `*`, a trailing `*` covers the rest.
    List(Vec<String>),
}

impl Default for Access {
    fn default() -> Self {
        Access::Word("all".into())
    }
}

/// A federated identity credential on an app registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FederatedCredentialSeed {
    /// Expected `sub` of the presented assertion.
    pub subject: String,
    /// Expected audience (default `api://AzureADTokenExchange`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Expected issuer (default: the emulator's own issuer URL).
    #[serde(default)]
    pub issuer: Option<String>,
}

/// An identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentitySeed {
    /// Display name (also used in the default `msi_res_id`).
    pub name: String,
    /// Application (client) id.
    pub client_id: String,
    /// Object id (default: derived from the name).
    #[serde(default)]
    pub object_id: Option<String>,
    /// Client secret for the client-secret flow.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Federated credentials for workload identity.
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredentialSeed>,
    /// Makes the identity available through IMDS.
    #[serde(default)]
    pub managed_identity: Option<ManagedIdentityKind>,
    /// ARM resource id for `msi_res_id` selection (default
    /// `/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Data-plane access (default `all`).
    #[serde(default)]
    pub access: Access,
}

impl IdentitySeed {
    /// The object id, explicit or derived deterministically from the name.
    pub(crate) fn object_id(&self) -> String {
        self.object_id
            .clone()
            .unwrap_or_else(|| crate::util::guid_from(&format!("oid:{}", self.name)))
    }

    /// The ARM resource id used for `msi_res_id`.
    pub(crate) fn resource_id(&self) -> String {
        self.resource_id.clone().unwrap_or_else(|| {
            format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                self.name
            )
        })
    }

    /// Whether this identity may touch `vault/kind/name` (`name` None = list the collection).
    pub(crate) fn allows(&self, vault: &str, kind: &str, name: Option<&str>) -> bool {
        match &self.access {
            Access::Word(w) => w.eq_ignore_ascii_case("all"),
            Access::List(patterns) => patterns
                .iter()
                .any(|p| pattern_allows(p, vault, kind, name)),
        }
    }
}

fn pattern_allows(pattern: &str, vault: &str, kind: &str, name: Option<&str>) -> bool {
    let parts: Vec<&str> = pattern.split('/').collect();
    let target = [Some(vault), Some(kind), name];
    for (i, p) in parts.iter().enumerate() {
        if *p == "*" && i == parts.len() - 1 {
            return true;
        }
        match target.get(i) {
            Some(Some(t)) if *p == "*" || p == t => {}
            _ => return false,
        }
    }
    parts.len() == 3
}

/// Errors reading a seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// YAML syntax or an unknown field.
    #[error("seed yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A value is out of range or inconsistent.
    #[error("seed: {0}")]
    Invalid(String),
}

impl Seed {
    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Seed, SeedError> {
        if text.trim().is_empty() {
            return Ok(Seed::default());
        }
        let seed: Seed = serde_yaml::from_str(text)?;
        seed.validate()?;
        Ok(seed)
    }

    fn validate(&self) -> Result<(), SeedError> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 127
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let mut seen = std::collections::HashSet::new();
        for v in &self.vaults {
            if !name_ok(&v.name) || !seen.insert(v.name.clone()) {
                return Err(SeedError::Invalid(format!(
                    "vault name {:?} must be unique and match ^[0-9a-zA-Z-]+$",
                    v.name
                )));
            }
            for n in v
                .secrets
                .iter()
                .map(|s| &s.name)
                .chain(v.keys.iter().map(|k| &k.name))
                .chain(v.certificates.iter().map(|c| &c.name))
            {
                if !name_ok(n) {
                    return Err(SeedError::Invalid(format!(
                        "vault {:?}: object name {n:?} must match ^[0-9a-zA-Z-]+$",
                        v.name
                    )));
                }
            }
            for s in &v.secrets {
                if s.versions.is_empty() == s.value.is_none() {
                    return Err(SeedError::Invalid(format!(
                        "vault {:?}: secret {:?} needs exactly one of `value` or `versions`",
                        v.name, s.name
                    )));
                }
            }
            for c in &v.certificates {
                let n = [
                    c.generate.is_some(),
                    c.pem.is_some(),
                    c.pfx_base64.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if n != 1 {
                    return Err(SeedError::Invalid(format!(
                        "vault {:?}: certificate {:?} needs exactly one of `generate`, `pem`, `pfx_base64`",
                        v.name, c.name
                    )));
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        for i in &self.identities {
            if !ids.insert(i.client_id.to_ascii_lowercase()) {
                return Err(SeedError::Invalid(format!(
                    "identity {:?}: client_id {} is used twice",
                    i.name, i.client_id
                )));
            }
            if let Access::Word(w) = &i.access
                && !matches!(w.as_str(), "all" | "none")
            {
                return Err(SeedError::Invalid(format!(
                    "identity {:?}: access must be `all`, `none` or a list of patterns",
                    i.name
                )));
            }
        }
        Ok(())
    }
}

/// Builds the vault store from a seed (generates keys and certificates; CPU-bound).
pub(crate) fn build_store(
    seed: &Seed,
    ca: Option<(&str, &str)>,
) -> Result<crate::store::Store, SeedError> {
    use crate::material::{self, CertMaterial, Curve, GenerateSpec};
    use crate::store::{Attributes, KeyVersion, NewCertificate, PEM, PKCS12, Store};
    use base64::Engine as _;

    let mut store = Store::default();
    let now = crate::util::now();
    for vs in &seed.vaults {
        store.add_vault(&vs.name);
        let vault = store
            .vault_mut(&vs.name)
            .map_err(|e| SeedError::Invalid(e.to_string()))?;
        let ctx = |what: &str, name: &str, e: &dyn std::fmt::Display| {
            SeedError::Invalid(format!("vault {:?}: {what} {name:?}: {e}", vs.name))
        };
        for s in &vs.secrets {
            let versions: Vec<SecretVersionSeed> = if let Some(v) = &s.value {
                vec![SecretVersionSeed {
                    value: v.clone(),
                    content_type: s.content_type.clone(),
                    enabled: true,
                    created: None,
                    nbf: None,
                    exp: None,
                    tags: s.tags.clone(),
                    version: None,
                }]
            } else {
                s.versions.clone()
            };
            let n = versions.len() as i64;
            for (i, v) in versions.into_iter().enumerate() {
                if let Some(ver) = &v.version
                    && (ver.len() != 32 || !ver.chars().all(|c| c.is_ascii_hexdigit()))
                {
                    return Err(ctx("secret", &s.name, &"version must be 32 hex characters"));
                }
                let created = v.created.unwrap_or(now - (n - 1 - i as i64));
                let attrs = Attributes {
                    enabled: v.enabled,
                    nbf: v.nbf,
                    exp: v.exp,
                    created,
                    updated: created,
                };
                vault
                    .set_secret(
                        &s.name,
                        v.value,
                        v.content_type,
                        attrs,
                        v.tags,
                        v.version.map(|x| x.to_ascii_lowercase()),
                    )
                    .map_err(|e| ctx("secret", &s.name, &e))?;
            }
        }
        for k in &vs.keys {
            let (jwk, kty) = if let Some(jwk) = &k.jwk {
                let obj = jwk
                    .as_object()
                    .ok_or_else(|| ctx("key", &k.name, &"jwk must be a mapping"))?;
                let public = crate::store::public_jwk(obj).map_err(|e| ctx("key", &k.name, &e))?;
                let kty = public["kty"].as_str().unwrap_or("RSA").to_string();
                (public, kty)
            } else {
                let kty = k.kty.clone().unwrap_or_else(|| "RSA".into());
                let m = if kty.starts_with("EC") {
                    let crv = k.curve.as_deref().unwrap_or("P-256");
                    let c = Curve::parse(crv)
                        .ok_or_else(|| ctx("key", &k.name, &format!("unknown curve {crv}")))?;
                    material::generate_ec(c)
                } else if kty.starts_with("RSA") {
                    let bits = k.size.unwrap_or(2048);
                    if ![2048, 3072, 4096].contains(&bits) {
                        return Err(ctx("key", &k.name, &"size must be 2048, 3072 or 4096"));
                    }
                    material::generate_rsa(bits)
                } else {
                    return Err(ctx(
                        "key",
                        &k.name,
                        &"kty must be RSA, RSA-HSM, EC or EC-HSM",
                    ));
                }
                .map_err(|e| ctx("key", &k.name, &e))?;
                let mut jwk = m.public_jwk;
                jwk.insert("kty".into(), serde_json::json!(kty));
                (jwk, kty)
            };
            let mut attrs = Attributes::new_now();
            attrs.enabled = k.enabled;
            vault.add_key(
                &k.name,
                KeyVersion {
                    version: crate::util::new_version(),
                    jwk,
                    key_ops: k
                        .key_ops
                        .clone()
                        .unwrap_or_else(|| crate::store::default_key_ops(&kty)),
                    attrs,
                    tags: k.tags.clone(),
                    managed: false,
                    exportable: false,
                },
            );
        }
        for c in &vs.certificates {
            let (material, default_ct, issuer_name) = if let Some(g) = &c.generate {
                let ec = g.kty.as_deref().is_some_and(|k| k.starts_with("EC"));
                let curve = match g.curve.as_deref() {
                    None => Curve::P256,
                    Some(crv) => Curve::parse(crv).ok_or_else(|| {
                        ctx("certificate", &c.name, &format!("unknown curve {crv}"))
                    })?,
                };
                let spec = GenerateSpec {
                    subject: g.subject.clone(),
                    dns_names: g.dns_names.clone(),
                    validity_days: g.validity_months.unwrap_or(12).max(1) * 30,
                    valid_from_days: g.valid_from_days.unwrap_or(0),
                    rsa_bits: if ec {
                        None
                    } else {
                        Some(g.size.unwrap_or(2048))
                    },
                    curve,
                };
                let signer = match g.issuer.as_deref() {
                    None | Some("self") | Some("Self") => None,
                    Some("ca") => Some(ca.ok_or_else(|| {
                        ctx("certificate", &c.name, &"issuer: ca needs the emulator CA")
                    })?),
                    Some(other) => {
                        return Err(ctx(
                            "certificate",
                            &c.name,
                            &format!("issuer must be `self` or `ca`, not {other:?}"),
                        ));
                    }
                };
                let m = material::generate_certificate(&spec, signer)
                    .map_err(|e| ctx("certificate", &c.name, &e))?;
                (
                    m,
                    g.content_type.clone().unwrap_or_else(|| PKCS12.into()),
                    "Self",
                )
            } else if let Some(pem) = &c.pem {
                let m = CertMaterial::from_pem(pem).map_err(|e| ctx("certificate", &c.name, &e))?;
                (m, PEM.to_string(), "Unknown")
            } else {
                let b64 = c.pfx_base64.as_deref().unwrap_or_default();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.split_whitespace().collect::<String>())
                    .map_err(|e| ctx("certificate", &c.name, &format!("pfx_base64: {e}")))?;
                let m = CertMaterial::from_pfx(&der, c.password.as_deref().unwrap_or(""))
                    .map_err(|e| ctx("certificate", &c.name, &e))?;
                (m, PKCS12.to_string(), "Unknown")
            };
            let content_type = c
                .generate
                .as_ref()
                .and_then(|g| g.content_type.clone())
                .or_else(|| c.content_type.clone())
                .unwrap_or(default_ct);
            if content_type != PEM && content_type != PKCS12 {
                return Err(ctx(
                    "certificate",
                    &c.name,
                    &format!("content_type must be {PKCS12} or {PEM}"),
                ));
            }
            vault
                .add_certificate(
                    &c.name,
                    NewCertificate {
                        material,
                        content_type,
                        enabled: c.enabled,
                        tags: c.tags.clone(),
                        issuer_name: issuer_name.into(),
                    },
                )
                .map_err(|e| ctx("certificate", &c.name, &e))?;
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_patterns_cover_what_they_say() {
        let id = |p: &[&str]| IdentitySeed {
            name: "x".into(),
            client_id: "c".into(),
            object_id: None,
            client_secret: None,
            federated_credentials: vec![],
            managed_identity: None,
            resource_id: None,
            access: Access::List(p.iter().map(|s| s.to_string()).collect()),
        };
        let one = id(&["demo/secrets/db-password"]);
        assert!(one.allows("demo", "secrets", Some("db-password")));
        assert!(!one.allows("demo", "secrets", Some("other")));
        assert!(!one.allows("demo", "secrets", None));
        assert!(!one.allows("demo", "keys", Some("db-password")));
        let keys = id(&["demo/keys/*"]);
        assert!(keys.allows("demo", "keys", Some("k")));
        assert!(keys.allows("demo", "keys", None));
        assert!(!keys.allows("other", "keys", Some("k")));
        let vault = id(&["demo/*"]);
        assert!(vault.allows("demo", "certificates", Some("c")));
        assert!(!vault.allows("prod", "certificates", Some("c")));
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_field_name() {
        let err = Seed::from_yaml("vaults:\n  - name: demo\n    secretz: []\n").unwrap_err();
        assert!(err.to_string().contains("secretz"), "{err}");
    }
}
