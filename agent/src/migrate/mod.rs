//! `keyvault-agent migrate`: converts a manifest stream that mounts the Secrets Store CSI
//! driver with the Azure provider into one that runs the agent in the pod (issue 11 item 7).
//!
//! For every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob whose pod
//! mounts a `csi` volume of `secrets-store.csi.k8s.io` naming a SecretProviderClass of the
//! input with `provider: azure` (see `pod.rs`):
//! - the volume becomes an `emptyDir` (`medium: Memory`) with the same name, so application
//!   mounts keep their paths (made read-only);
//! - the agent joins as an init container, a native sidecar or a classic sidecar
//!   ([`Mode`]), configured like `manifests/overlays`;
//! - the SecretProviderClass document is replaced by a ConfigMap holding its YAML unchanged,
//!   mounted into the agent;
//! - env vars from Secrets that `secretObjects` synced are set by `keyvault-agent exec`
//!   wrapping the container's command, or flagged when there is no command to wrap.
//!
//! Every other document is printed back byte for byte. A converted document starts with a
//! comment block saying what changed and what to check; warnings also go to stderr. The
//! input is bounded ([`MAX_INPUT`] bytes, and the YAML limits of [`crate::config::limits`]).

mod agent;
mod options;
mod pod;
mod spc;
mod stream;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde_yaml::{Mapping, Value};

pub use options::{DEFAULT_EXEC_PATH, DEFAULT_IMAGE, DEFAULT_NAMESPACE, Mode, Options};

use spc::{Key, Spc};
use yaml::{map, one_line, s, str_at};

/// Largest input read, from a file or stdin (the config file limit).
pub const MAX_INPUT: u64 = crate::files::MAX_CONFIG_FILE;

/// A converted stream.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The YAML stream to print.
    pub yaml: String,
    /// One line per thing to check, each naming the object (`Deployment web: ...`).
    pub warnings: Vec<String>,
    /// Documents converted (workloads and SecretProviderClasses).
    pub converted: usize,
}

/// Reads the input: a file, or stdin for `-`. Bounded by [`MAX_INPUT`].
pub fn read_input(source: &Path) -> Result<String, String> {
    if source == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_INPUT.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        if buf.len() as u64 > MAX_INPUT {
            return Err(format!(
                "stdin is larger than the limit of {MAX_INPUT} bytes: split the stream"
            ));
        }
        return String::from_utf8(buf).map_err(|_| "stdin is not UTF-8 text".to_owned());
    }
    crate::files::read_to_string(source, MAX_INPUT, "manifest file").map_err(|e| e.to_string())
}

/// Converts a manifest stream. Every problem that stops the conversion is returned at once.
pub fn convert(text: &str, opts: &Options) -> Result<Converted, Vec<String>> {
    let docs = stream::parse(text)?;
    let mut warnings = Vec::new();
    let spcs = spc::index(
        docs.iter().map(|d| &d.value),
        &opts.namespace,
        &mut warnings,
    );

    let mut values: Vec<Option<Value>> = vec![None; docs.len()];
    let mut comments: Vec<Vec<String>> = vec![Vec::new(); docs.len()];
    let mut used: BTreeSet<Key> = BTreeSet::new();
    for (i, doc) in docs.iter().enumerate() {
        let kind = str_at(&doc.value, &["kind"]).unwrap_or_default();
        let Some(path) = template_path(kind) else {
            continue;
        };
        let what = describe(&doc.value);
        let namespace = str_at(&doc.value, &["metadata", "namespace"])
            .unwrap_or(&opts.namespace)
            .to_owned();
        let mut value = doc.value.clone();
        yaml::octal_modes(&mut value);
        let Some(template) = template_mut(&mut value, path) else {
            continue;
        };
        let restart = template
            .get("spec")
            .and_then(|s| s.get("restartPolicy"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let cx = pod::Context {
            opts,
            spcs: &spcs,
            namespace: &namespace,
            runs_to_completion: matches!(kind, "Job" | "CronJob")
                || matches!(restart.as_deref(), Some("Never" | "OnFailure")),
        };
        let outcome = pod::convert(template, &cx);
        warnings.extend(outcome.warnings.iter().map(|w| format!("{what}: {w}")));
        if !outcome.changed {
            continue;
        }
        used.extend(outcome.used);
        comments[i] = header(&outcome.notes, &outcome.warnings);
        values[i] = Some(value);
    }

    // The classes the converted pods mount become ConfigMaps; the others stay as they are.
    let mut synced_by_ns: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, spc) in &spcs {
        if !spc.is_azure() {
            continue;
        }
        if !used.contains(key) {
            warnings.push(format!(
                "SecretProviderClass {} (namespace {}): no workload of the input mounts it: left unchanged; migrate it together with its workloads",
                spc.name, key.0
            ));
            continue;
        }
        let Some(doc) = docs.get(spc.doc) else {
            continue;
        };
        let (cm, notes, spc_warnings) = config_map(spc, &doc.text);
        warnings.extend(
            spc_warnings
                .iter()
                .map(|w| format!("SecretProviderClass {}: {w}", spc.name)),
        );
        comments[spc.doc] = header(&notes, &spc_warnings);
        values[spc.doc] = Some(cm);
        for sec in &spc.synced {
            synced_by_ns
                .entry(key.0.clone())
                .or_default()
                .push((sec.name.clone(), spc.name.clone()));
        }
    }
    for doc in &docs {
        if str_at(&doc.value, &["kind"]) != Some("Ingress") {
            continue;
        }
        let ns = str_at(&doc.value, &["metadata", "namespace"]).unwrap_or(&opts.namespace);
        let tls = doc.value.get("spec").and_then(|s| s.get("tls"));
        for t in tls.and_then(Value::as_sequence).into_iter().flatten() {
            let Some(secret) = str_at(t, &["secretName"]) else {
                continue;
            };
            if let Some((_, class)) = synced_by_ns
                .get(ns)
                .and_then(|v| v.iter().find(|(n, _)| n == secret))
            {
                warnings.push(format!(
                    "{}: its TLS Secret {secret} was synced by secretObjects of SecretProviderClass {class}, which nothing does after the migration: create the Secret another way (e.g. cert-manager) or keep the CSI driver for it",
                    describe(&doc.value)
                ));
            }
        }
    }

    let mut out = String::new();
    let mut converted = 0usize;
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match &values[i] {
            None => out.push_str(&doc.text),
            Some(v) => {
                converted = converted.saturating_add(1);
                for line in &comments[i] {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push_str(&yaml::emit(v));
            }
        }
    }
    Ok(Converted {
        yaml: out,
        warnings: warnings.iter().map(|w| one_line(w)).collect(),
        converted,
    })
}

/// Where a kind keeps its pod template (the Pod itself for `Pod`).
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

fn template_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Mapping> {
    path.iter()
        .try_fold(v, |v, k| v.get_mut(*k))?
        .as_mapping_mut()
}

/// `Kind name` (with the namespace when the document names one).
fn describe(v: &Value) -> String {
    let kind = str_at(v, &["kind"]).unwrap_or("object");
    let name = str_at(v, &["metadata", "name"]).unwrap_or("(unnamed)");
    match str_at(v, &["metadata", "namespace"]) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The comment block of a converted document.
fn header(notes: &[String], warnings: &[String]) -> Vec<String> {
    let mut lines = vec![
        "# Converted by `keyvault-agent migrate` from the Secrets Store CSI driver:".to_owned(),
    ];
    lines.extend(notes.iter().map(|n| format!("# - {}", one_line(n))));
    lines.extend(
        warnings
            .iter()
            .map(|w| format!("# WARNING: {}", one_line(w))),
    );
    lines
}

/// The ConfigMap replacing a SecretProviderClass, its notes and warnings.
fn config_map(spc: &Spc, text: &str) -> (Value, Vec<String>, Vec<String>) {
    let mut metadata = Mapping::new();
    metadata.insert(s("name"), s(spc.config_map_name()));
    if let Some(ns) = &spc.namespace {
        metadata.insert(s("namespace"), s(ns));
    }
    metadata.insert(
        s("labels"),
        map([("app.kubernetes.io/part-of", s("keyvault-agent"))]),
    );
    let cm = map([
        ("apiVersion", s("v1")),
        ("kind", s("ConfigMap")),
        ("metadata", Value::Mapping(metadata)),
        ("data", map([(agent::CONFIG_KEY, s(text))])),
    ]);
    let notes = vec![format!(
        "SecretProviderClass {} -> ConfigMap {} (its YAML unchanged under {}, read by the agent); workloads not in this input that still mount the class through the CSI driver need the SecretProviderClass: keep it until they are migrated",
        spc.name,
        spc.config_map_name(),
        agent::CONFIG_KEY
    )];
    let mut warnings = Vec::new();
    if !spc.synced.is_empty() {
        let list: Vec<String> = spc
            .synced
            .iter()
            .map(|s| format!("{} ({})", s.name, s.kind))
            .collect();
        warnings.push(format!(
            "secretObjects: Secret {} will no longer be synced (the agent never writes secrets to etcd); env vars read from it were rewritten to `keyvault-agent exec` where the command is known; other users need another source",
            list.join(", ")
        ));
    }
    if spc.config_map_name().len() > 253 {
        warnings.push(format!(
            "ConfigMap name {} is longer than 253 characters: shorten it",
            spc.config_map_name()
        ));
    }
    (cm, notes, warnings)
}
