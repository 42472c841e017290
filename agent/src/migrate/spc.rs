//! The SecretProviderClasses of the input, indexed by namespace and name: their provider,
//! the identity they select, and what their `secretObjects` synced into Kubernetes Secrets.
//!
//! Only what the migration needs is read; the object list (`parameters.objects`) stays the
//! agent's business, which reads the unchanged YAML from the ConfigMap.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::yaml::{at, str_at};

/// The API groups of a SecretProviderClass the CSI driver serves.
pub const API_VERSIONS: [&str; 2] = [
    "secrets-store.csi.x-k8s.io/v1",
    "secrets-store.csi.x-k8s.io/v1alpha1",
];

/// One Kubernetes Secret a SecretProviderClass synced (`secretObjects[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedSecret {
    /// `secretName`.
    pub name: String,
    /// `type` (`Opaque` when absent).
    pub kind: String,
    /// `data[]`: the Secret's key and the file (object name or alias) it came from.
    pub data: Vec<(String, String)>,
}

/// One SecretProviderClass of the input.
#[derive(Debug, Clone)]
pub struct Spc {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` as written (the ConfigMap keeps it).
    pub namespace: Option<String>,
    /// `spec.provider`.
    pub provider: String,
    /// `spec.secretObjects`.
    pub synced: Vec<SyncedSecret>,
    /// `clientID` is set and no other identity mode is: workload identity.
    pub workload_identity: bool,
    /// `usePodIdentity: "true"`, which the agent does not support.
    pub pod_identity: bool,
    /// Index of its document in the stream.
    pub doc: usize,
}

impl Spc {
    /// The ConfigMap that carries this class's YAML for the agent.
    pub fn config_map_name(&self) -> String {
        format!("keyvault-agent-{}", self.name)
    }

    /// Whether the Azure provider serves it.
    pub fn is_azure(&self) -> bool {
        self.provider == "azure"
    }
}

/// `(namespace, name)`, the namespace made explicit.
pub type Key = (String, String);

/// Reads `doc` as a SecretProviderClass; `None` for any other object. A document of that
/// kind with an unknown apiVersion is reported in `warnings` and skipped.
pub fn read(doc: &Value, index: usize, warnings: &mut Vec<String>) -> Option<Spc> {
    if str_at(doc, &["kind"]) != Some("SecretProviderClass") {
        return None;
    }
    let name = str_at(doc, &["metadata", "name"])
        .unwrap_or_default()
        .to_owned();
    let api = str_at(doc, &["apiVersion"]).unwrap_or_default();
    if !API_VERSIONS.contains(&api) {
        warnings.push(format!(
            "SecretProviderClass {name}: apiVersion {api:?} is not one the CSI driver serves ({}): left unchanged",
            API_VERSIONS.join(", ")
        ));
        return None;
    }
    let param = |k: &str| str_at(doc, &["spec", "parameters", k]).map(str::trim);
    let truthy = |k: &str| param(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let synced = at(doc, &["spec", "secretObjects"])
        .and_then(Value::as_sequence)
        .map(|items| items.iter().filter_map(synced_secret).collect())
        .unwrap_or_default();
    let pod_identity = truthy("usePodIdentity");
    Some(Spc {
        namespace: str_at(doc, &["metadata", "namespace"]).map(str::to_owned),
        provider: str_at(doc, &["spec", "provider"])
            .unwrap_or_default()
            .to_owned(),
        synced,
        workload_identity: param("clientID").is_some_and(|c| !c.is_empty())
            && !truthy("useVMManagedIdentity")
            && !pod_identity,
        pod_identity,
        doc: index,
        name,
    })
}

fn synced_secret(item: &Value) -> Option<SyncedSecret> {
    let name = str_at(item, &["secretName"])?.to_owned();
    let data = at(item, &["data"])
        .and_then(Value::as_sequence)
        .map(|d| {
            d.iter()
                .filter_map(|e| {
                    Some((
                        str_at(e, &["key"])?.to_owned(),
                        str_at(e, &["objectName"])?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(SyncedSecret {
        name,
        kind: str_at(item, &["type"]).unwrap_or("Opaque").to_owned(),
        data,
    })
}

/// Every SecretProviderClass of the stream by `(namespace, name)`; a duplicate is reported
/// and the first one kept.
pub fn index<'a>(
    docs: impl Iterator<Item = &'a Value>,
    default_namespace: &str,
    warnings: &mut Vec<String>,
) -> BTreeMap<Key, Spc> {
    let mut out = BTreeMap::new();
    for (i, doc) in docs.enumerate() {
        let Some(spc) = read(doc, i, warnings) else {
            continue;
        };
        let key = (
            spc.namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            spc.name.clone(),
        );
        if out.contains_key(&key) {
            warnings.push(format!(
                "SecretProviderClass {} (namespace {}) appears twice: the first one is used, the second left unchanged",
                key.1, key.0
            ));
            continue;
        }
        out.insert(key, spc);
    }
    out
}
