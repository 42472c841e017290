//! The input file and its scalar parameters.
//!
//! The file is either a whole SecretProviderClass manifest, exactly as users keep it for the
//! CSI driver, or just its `spec.parameters` map. Values are read as the *literal scalar
//! text* (so `useVMManagedIdentity: true` unquoted works, as the API server would force it to
//! be quoted anyway) and every value is whitespace-trimmed when read, like the reference's
//! getters (`docs/reference-provider.md` §1.1). Keys are case-sensitive; unknown keys are ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The SecretProviderClass `spec.parameters` map (keys case-sensitive, values untrimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters(pub BTreeMap<String, String>);

/// API versions of the SecretProviderClass CRD the driver serves.
const API_VERSIONS: [&str; 2] = [
    "secrets-store.csi.x-k8s.io/v1",
    "secrets-store.csi.x-k8s.io/v1alpha1",
];

impl Parameters {
    /// Builds parameters from pairs (tests, programmatic use).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Parameters(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A parameter, whitespace-trimmed; `""` when absent (the reference's getters).
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(|v| v.trim()).unwrap_or("")
    }

    /// Parses a config file's text: a SecretProviderClass manifest (`apiVersion`,
    /// `kind: SecretProviderClass`, `spec.provider: azure`, `spec.parameters`) or a bare
    /// parameters map. A multi-document file (`---`) must hold exactly one
    /// SecretProviderClass; the other documents are ignored. The error is one line saying
    /// what to fix.
    pub fn from_yaml(text: &str) -> Result<Parameters, String> {
        // Size, depth and aliases before the parser sees the text (docs/threat-model.md rule 4).
        super::limits::check(text).map_err(|e| e.to_string())?;
        // Syntax first, through generic values, so YAML errors and shape errors read
        // differently; then the chosen document again, typed, to keep literal scalar text.
        let values = serde_yaml::Deserializer::from_str(text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<Vec<_>, _>>()
            .map_err(one_line)?;
        let present: Vec<usize> = (0..values.len())
            .filter(|i| !values[*i].is_null())
            .collect();
        let index = match present.as_slice() {
            [] => return Err("is empty: expected a SecretProviderClass or its parameters".into()),
            [one] => *one,
            many => {
                let spcs: Vec<usize> = many
                    .iter()
                    .copied()
                    .filter(|i| {
                        values[*i].get("kind").and_then(|k| k.as_str())
                            == Some("SecretProviderClass")
                    })
                    .collect();
                match spcs.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(format!(
                            "has {} YAML documents and {} of them are SecretProviderClasses: expected exactly one",
                            many.len(),
                            spcs.len()
                        ));
                    }
                }
            }
        };
        let document = || {
            serde_yaml::Deserializer::from_str(text)
                .nth(index)
                .expect("document counted above")
        };
        let map = match &values[index] {
            serde_yaml::Value::Mapping(m) => m,
            _ => {
                return Err(
                    "must be a YAML mapping: a SecretProviderClass manifest or its parameters map"
                        .into(),
                );
            }
        };
        let is_manifest = ["apiVersion", "kind", "spec"]
            .iter()
            .any(|k| map.contains_key(*k));
        if !is_manifest {
            let raw = BTreeMap::<String, Text>::deserialize(document())
                .map_err(|e| format!("parameters map: {}", one_line(e)))?;
            return Ok(Parameters(raw.into_iter().map(|(k, v)| (k, v.0)).collect()));
        }
        let m = Manifest::deserialize(document()).map_err(one_line)?;
        Self::from_manifest(m)
    }

    fn from_manifest(m: Manifest) -> Result<Parameters, String> {
        let kind = m.kind.map(|t| t.0).unwrap_or_default();
        match kind.as_str() {
            "SecretProviderClass" => {}
            "" => {
                return Err(
                    "has apiVersion/spec but no kind: expected kind: SecretProviderClass".into(),
                );
            }
            "ConfigMap" => {
                return Err("is a ConfigMap manifest: mount the ConfigMap as a volume and point --config at the mounted file that holds the SecretProviderClass (or its parameters)".into());
            }
            other => {
                return Err(format!(
                    "kind is {other:?}: expected kind: SecretProviderClass (or a bare parameters map)"
                ));
            }
        }
        let api = m.api_version.map(|t| t.0).unwrap_or_default();
        if !API_VERSIONS.contains(&api.as_str()) {
            return Err(format!(
                "apiVersion is {api:?}: expected {:?}",
                API_VERSIONS[0]
            ));
        }
        let spec = m
            .spec
            .ok_or_else(|| "SecretProviderClass has no spec".to_owned())?;
        let provider = spec.provider.map(|t| t.0).unwrap_or_default();
        if provider.trim() != "azure" {
            return Err(format!(
                "spec.provider is {provider:?}: keyvault-agent only serves provider \"azure\""
            ));
        }
        let params = spec
            .parameters
            .ok_or_else(|| "SecretProviderClass has no spec.parameters".to_owned())?;
        Ok(Parameters(
            params.into_iter().map(|(k, v)| (k, v.0)).collect(),
        ))
    }
}

use super::names::{IGNORED_PARAMETERS as IGNORED, PARAMETERS as KNOWN, did_you_mean};

pub use super::names::TEMPLATES;

/// Non-fatal remarks on the parameters: keys that differ from a known one only by case
/// (keys are case-sensitive, so `tenantid` is silently ignored by the reference), other
/// unknown keys, the deprecated `tenantId`, and settings that have no effect.
pub(crate) fn warnings(params: &Parameters) -> Vec<String> {
    let mut out = Vec::new();
    for key in params.0.keys() {
        let key = key.as_str();
        if KNOWN.contains(&key) {
            continue;
        }
        if IGNORED.contains(&key) || key.starts_with("csi.storage.k8s.io/") {
            out.push(format!("parameter {key:?} is ignored"));
        } else if let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            out.push(format!(
                "parameter {key:?} is ignored: keys are case-sensitive, did you mean {known:?}?"
            ));
        } else if let Some(known) = did_you_mean(key, KNOWN) {
            out.push(format!(
                "unknown parameter {key:?} is ignored: did you mean {known:?}?"
            ));
        } else {
            out.push(format!("unknown parameter {key:?} is ignored"));
        }
    }
    if !params.get("tenantId").is_empty() && params.get("tenantID").is_empty() {
        out.push("parameter \"tenantId\" is deprecated: use \"tenantID\"".to_owned());
    }
    if !params.get("cloudEnvFileName").is_empty()
        && !params
            .get("cloudName")
            .eq_ignore_ascii_case("AzureStackCloud")
    {
        out.push(
            "cloudEnvFileName is ignored: it is only read with cloudName: AzureStackCloud"
                .to_owned(),
        );
    }
    if !params.get("userAssignedIdentityID").is_empty()
        && parse_bool(params.get("useVMManagedIdentity")) != Some(true)
    {
        out.push(
            "userAssignedIdentityID is ignored: it is only used with useVMManagedIdentity: \"true\""
                .to_owned(),
        );
    }
    out
}

/// Go `strconv.ParseBool` on a trimmed value, with the reference's "empty means false".
/// `None` means invalid: the caller knows the parameter name for the message.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "" => Some(false),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Serde errors may span lines; ours are one line each. Type errors on string fields are
/// phrased like yaml.v3's, which users of the reference know.
pub(crate) fn one_line(e: impl fmt::Display) -> String {
    e.to_string()
        .replace(
            "invalid type: map, expected a string",
            "expected a text value, found a mapping",
        )
        .replace(
            "invalid type: sequence, expected a string",
            "expected a text value, found a list",
        )
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<Text>,
    #[serde(default)]
    kind: Option<Text>,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    provider: Option<Text>,
    #[serde(default)]
    parameters: Option<BTreeMap<String, Text>>,
}

/// A YAML scalar read as its literal text, like yaml.v3 decoding into a Go `string`:
/// `0755` stays `"0755"`, `true` stays `"true"`, null becomes `""`. Collections are an
/// error (`cannot unmarshal !!map into string`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Null (`~`, `null`, nothing) is the zero value, anything else its literal text.
        d.deserialize_option(TextVisitor).map(Text)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(TextVisitor)
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<String, A::Error> {
        Err(de::Error::custom("expected a text value, found a mapping"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<String, A::Error> {
        Err(de::Error::custom("expected a text value, found a list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/reference-provider.md §1.1 (Go strconv.ParseBool; empty means false)
    #[test]
    fn parse_bool_matches_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["", "0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["tru", "test", "yes", "on", "tRUE", "2", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    // reference: docs/reference-provider.md §1.5 (parameter getters trim every string parameter)
    #[test]
    fn get_trims_and_defaults_to_empty() {
        let p = Parameters::from_pairs([("keyvaultName", " test "), ("cloudName", "\ttest\n")]);
        assert_eq!(p.get("keyvaultName"), "test");
        assert_eq!(p.get("cloudName"), "test");
        assert_eq!(p.get("tenantID"), "");
        // Keys are case-sensitive.
        assert_eq!(p.get("keyVaultName"), "");
    }

    #[test]
    fn bare_parameters_map_keeps_literal_scalar_text() {
        let p = Parameters::from_yaml(
            "keyvaultName: kv1\nuseVMManagedIdentity: true\nnum: 0755\nempty:\nfloat: 1.10\ntilde: ~\nquoted: \"~\"\n",
        )
        .unwrap();
        assert_eq!(p.get("keyvaultName"), "kv1");
        assert_eq!(p.get("useVMManagedIdentity"), "true");
        assert_eq!(p.get("num"), "0755");
        assert_eq!(p.get("empty"), "");
        assert_eq!(p.get("float"), "1.10");
        assert_eq!(p.get("tilde"), "");
        assert_eq!(p.get("quoted"), "~");
    }

    #[test]
    fn manifest_parameters_are_extracted() {
        let p = Parameters::from_yaml(
            r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: x
spec:
  provider: azure
  secretObjects: []
  parameters:
    keyvaultName: "kv1"
    objects: |
      array:
        - |
          objectName: a
"#,
        )
        .unwrap();
        assert_eq!(p.get("keyvaultName"), "kv1");
        assert!(p.get("objects").starts_with("array:"));
    }

    #[test]
    fn wrong_kind_provider_or_api_version_is_rejected_clearly() {
        let base = |api: &str, kind: &str, provider: &str| {
            format!(
                "apiVersion: {api}\nkind: {kind}\nspec:\n  provider: {provider}\n  parameters:\n    keyvaultName: kv1\n"
            )
        };
        let e = Parameters::from_yaml(&base(
            "secrets-store.csi.x-k8s.io/v1",
            "Deployment",
            "azure",
        ))
        .unwrap_err();
        assert!(
            e.contains("kind is \"Deployment\"") && e.contains("SecretProviderClass"),
            "{e}"
        );
        let e = Parameters::from_yaml(&base(
            "secrets-store.csi.x-k8s.io/v1",
            "SecretProviderClass",
            "vault",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "spec.provider is \"vault\": keyvault-agent only serves provider \"azure\""
        );
        let e = Parameters::from_yaml(&base("v1", "SecretProviderClass", "azure")).unwrap_err();
        assert!(e.starts_with("apiVersion is \"v1\""), "{e}");
        let e = Parameters::from_yaml(&base("v1", "ConfigMap", "azure")).unwrap_err();
        assert!(e.contains("ConfigMap"), "{e}");
        assert!(
            Parameters::from_yaml(&base(
                "secrets-store.csi.x-k8s.io/v1alpha1",
                "SecretProviderClass",
                "azure"
            ))
            .is_ok()
        );
        let e = Parameters::from_yaml("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n").unwrap_err();
        assert!(e.contains("no spec.parameters"), "{e}");
    }

    #[test]
    fn warnings_for_ignored_and_misspelt_parameters() {
        let p = Parameters::from_pairs([
            ("keyvaultName", "kv"),
            ("tenantid", "t"),
            ("KeyVaultName", "kv"),
            ("resourceGroup", "rg"),
            ("csi.storage.k8s.io/pod.name", "p"),
            ("shinyNewThing", "x"),
            ("tenantId", "t"),
            ("cloudEnvFileName", "f.json"),
            ("userAssignedIdentityID", "u"),
        ]);
        let w = warnings(&p);
        let has = |s: &str| w.iter().any(|l| l.contains(s));
        assert!(
            has("\"tenantid\" is ignored: keys are case-sensitive, did you mean \"tenantID\"?"),
            "{w:#?}"
        );
        assert!(has(
            "\"KeyVaultName\" is ignored: keys are case-sensitive, did you mean \"keyvaultName\"?"
        ));
        assert!(has("parameter \"resourceGroup\" is ignored"));
        assert!(has("parameter \"csi.storage.k8s.io/pod.name\" is ignored"));
        assert!(has("unknown parameter \"shinyNewThing\" is ignored"));
        assert!(has("\"tenantId\" is deprecated"));
        assert!(has("cloudEnvFileName is ignored"));
        assert!(has("userAssignedIdentityID is ignored"));
        assert_eq!(w.len(), 8, "{w:#?}");
        let clean = Parameters::from_pairs([
            ("keyvaultName", "kv"),
            ("tenantID", "t"),
            ("objects", "array:"),
        ]);
        assert!(warnings(&clean).is_empty());
    }

    #[test]
    fn multi_document_files_use_their_one_secret_provider_class() {
        let spc = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv1\n    num: 0600\n";
        let other = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n";
        let p = Parameters::from_yaml(&format!("---\n{other}---\n{spc}---\n")).unwrap();
        assert_eq!(p.get("keyvaultName"), "kv1");
        assert_eq!(p.get("num"), "0600");
        let e = Parameters::from_yaml(&format!("{spc}---\n{spc}")).unwrap_err();
        assert!(e.contains("2 of them are SecretProviderClasses"), "{e}");
        let e = Parameters::from_yaml(&format!("{other}---\n{other}")).unwrap_err();
        assert!(e.contains("0 of them"), "{e}");
    }

    #[test]
    fn non_mapping_and_syntax_errors_are_one_line() {
        assert!(Parameters::from_yaml("").unwrap_err().contains("empty"));
        assert!(
            Parameters::from_yaml("- a\n- b\n")
                .unwrap_err()
                .contains("mapping")
        );
        let e = Parameters::from_yaml("a: [\n").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        let e = Parameters::from_yaml("objects:\n  array: []\n").unwrap_err();
        assert!(e.contains("expected a text value, found a mapping"), "{e}");
    }
}
