//! The conversion of one pod template: each Secrets Store CSI volume whose
//! SecretProviderClass uses the Azure provider becomes a memory-backed emptyDir filled by
//! the agent (init container, native sidecar or classic sidecar), the class's ConfigMap is
//! mounted into the agent, application mounts become read-only, the workload identity label
//! is kept (or added), and env vars read from Secrets that `secretObjects` synced are set by
//! `keyvault-agent exec` instead, when the container's command is known.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

use super::agent::{self, Role};
use super::options::{Mode, Options};
use super::spc::{Key, Spc, SyncedSecret};
use super::yaml::{child_map, child_seq, s, str_at};

/// The CSI driver's name in a pod's `csi` volume.
pub const DRIVER: &str = "secrets-store.csi.k8s.io";

/// The workload identity webhook's pod label.
pub const WI_LABEL: &str = "azure.workload.identity/use";

/// CSI volumes converted in one pod at most (each gets its own agent and port).
pub const MAX_VOLUMES: usize = 32;

/// What the pod is and where it lives.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The conversion's options.
    pub opts: &'a Options,
    /// Every SecretProviderClass of the input.
    pub spcs: &'a BTreeMap<Key, Spc>,
    /// The pod's namespace, made explicit.
    pub namespace: &'a str,
    /// Job and CronJob pods, and pods with restartPolicy Never or OnFailure: they end.
    pub runs_to_completion: bool,
}

/// What a conversion did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The template was changed.
    pub changed: bool,
    /// One line per change, for the document's comment.
    pub notes: Vec<String>,
    /// What the user must look at (stderr and the document's comment).
    pub warnings: Vec<String>,
    /// The SecretProviderClasses whose volumes were converted.
    pub used: Vec<Key>,
}

struct Target<'a> {
    vol_index: usize,
    vol_name: String,
    spc: &'a Spc,
    key: Key,
    credentials: Option<String>,
    config_volume: String,
    config_dir: String,
}

/// Converts the pod template `template` (a mapping with `metadata` and `spec`).
pub fn convert(template: &mut Mapping, cx: &Context<'_>) -> Outcome {
    let mut out = Outcome::default();
    let Some(spec) = template.get_mut("spec").and_then(Value::as_mapping_mut) else {
        return out;
    };
    let mut targets = find_targets(spec, cx, &mut out);
    if targets.is_empty() {
        return out;
    }
    if targets.len() > MAX_VOLUMES {
        out.warnings.push(format!(
            "{} CSI volumes in one pod, over the limit of {MAX_VOLUMES}: left unchanged",
            targets.len()
        ));
        return out;
    }
    out.changed = true;
    let mut names = Names::of(spec);
    let multi = targets.len() > 1;
    for t in &mut targets {
        t.config_volume = names.volume("keyvault-agent-config");
        t.config_dir = if multi {
            format!("/etc/keyvault-agent/{}", t.spc.name)
        } else {
            "/etc/keyvault-agent".to_owned()
        };
        out.used.push(t.key.clone());
    }

    let roles: &[Role] = match cx.opts.mode {
        Mode::Init => &[Role::Once],
        Mode::NativeSidecar => &[Role::Native],
        Mode::Sidecar if cx.runs_to_completion => {
            out.notes.push(
                "--mode sidecar: this pod runs to completion, which a classic sidecar would prevent, so the agent runs as an init container only (no rotation)".into(),
            );
            &[Role::Once]
        }
        Mode::Sidecar => &[Role::Once, Role::Classic],
    };

    readonly_app_mounts(spec, &targets, &mut out);
    rewrite_env(spec, &targets, cx.opts, &mut out);
    flag_secret_users(spec, &targets, &mut out);

    let mut inits = Vec::new();
    let mut sidecars = Vec::new();
    let mut volume_notes = Vec::new();
    for t in &targets {
        if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_sequence_mut)
            && let Some(slot) = vols.get_mut(t.vol_index)
        {
            *slot = agent::memory_volume(&t.vol_name);
        }
        let mut described = Vec::new();
        for role in roles {
            let base = match role {
                Role::Once if roles.len() > 1 => "keyvault-agent-init",
                _ => "keyvault-agent",
            };
            let name = names.container(base);
            let port = if *role == Role::Once {
                (0, String::new())
            } else {
                names.port()
            };
            let c = agent::container(&agent::Spec {
                name: &name,
                image: &cx.opts.image,
                role: *role,
                secrets_volume: &t.vol_name,
                config_volume: &t.config_volume,
                config_dir: &t.config_dir,
                port: (port.0, &port.1),
                credentials: t.credentials.as_deref(),
            });
            described.push(match role {
                Role::Once => format!("init container {name} (--once)"),
                Role::Native => format!(
                    "native sidecar {name} (initContainer with restartPolicy: Always, refresh every {}, health on port {})",
                    agent::INTERVAL,
                    port.0
                ),
                Role::Classic => format!(
                    "sidecar container {name} (refresh every {}, health on port {})",
                    agent::INTERVAL,
                    port.0
                ),
            });
            if *role == Role::Classic {
                sidecars.push(c);
            } else {
                inits.push(c);
            }
        }
        volume_notes.push(format!(
            "volume {}: csi (SecretProviderClass {}) -> emptyDir (medium: Memory), filled by {} from ConfigMap {}",
            t.vol_name,
            t.spc.name,
            described.join(" and "),
            t.spc.config_map_name()
        ));
        if let Some(secret) = &t.credentials {
            volume_notes.push(format!(
                "volume {}: the nodePublishSecretRef Secret {secret} (clientid, clientsecret) is passed to the agent as AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
                t.vol_name
            ));
        }
        if t.spc.pod_identity {
            out.warnings.push(format!(
                "SecretProviderClass {} sets usePodIdentity: \"true\", which keyvault-agent refuses (AAD pod identity is retired): switch it to workload identity (clientID) before deploying",
                t.spc.name
            ));
        }
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true)
            && roles.iter().any(|r| *r != Role::Once)
        {
            out.warnings.push(format!(
                "hostNetwork: true: the agent's health port is opened on the node; check that it is free there (volume {})",
                t.vol_name
            ));
        }
    }
    out.notes.splice(0..0, volume_notes);
    for t in &targets {
        if let Some(vols) = child_seq(spec, "volumes") {
            vols.push(agent::config_volume(
                &t.config_volume,
                &t.spc.config_map_name(),
            ));
        }
    }
    if let Some(init) = child_seq(spec, "initContainers") {
        // First, so init containers that read the files find them.
        init.splice(0..0, inits);
    }
    if let Some(containers) = child_seq(spec, "containers") {
        containers.extend(sidecars);
    }

    let needs_wi = targets
        .iter()
        .any(|t| t.spc.workload_identity && t.credentials.is_none());
    let account = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if needs_wi {
        workload_identity_label(template, account, &mut out);
    }
    out
}

fn find_targets<'a>(spec: &Mapping, cx: &Context<'a>, out: &mut Outcome) -> Vec<Target<'a>> {
    let mut targets = Vec::new();
    let Some(vols) = spec.get("volumes").and_then(Value::as_sequence) else {
        return targets;
    };
    for (i, v) in vols.iter().enumerate() {
        if str_at(v, &["csi", "driver"]) != Some(DRIVER) {
            continue;
        }
        let vol_name = str_at(v, &["name"]).unwrap_or_default().to_owned();
        let Some(class) = str_at(v, &["csi", "volumeAttributes", "secretProviderClass"]) else {
            out.warnings.push(format!(
                "volume {vol_name}: csi volume without volumeAttributes.secretProviderClass: left unchanged"
            ));
            continue;
        };
        let key = (cx.namespace.to_owned(), class.to_owned());
        match cx.spcs.get(&key) {
            None => out.warnings.push(format!(
                "volume {vol_name}: SecretProviderClass {class} (namespace {}) is not in the input: left unchanged; pass both in one stream (cat spc.yaml app.yaml | keyvault-agent migrate -), or set --namespace",
                cx.namespace
            )),
            Some(spc) if !spc.is_azure() => out.warnings.push(format!(
                "volume {vol_name}: SecretProviderClass {class} uses provider {:?}, not azure: left unchanged",
                spc.provider
            )),
            Some(spc) => targets.push(Target {
                vol_index: i,
                vol_name,
                spc,
                key,
                credentials: str_at(v, &["csi", "nodePublishSecretRef", "name"])
                    .map(str::to_owned),
                config_volume: String::new(),
                config_dir: String::new(),
            }),
        }
    }
    targets
}

/// Names already used in the pod, and new unique ones.
struct Names {
    volumes: BTreeSet<String>,
    containers: BTreeSet<String>,
    port_names: BTreeSet<String>,
    ports: BTreeSet<u64>,
}

impl Names {
    fn of(spec: &Mapping) -> Names {
        let mut n = Names {
            volumes: BTreeSet::new(),
            containers: BTreeSet::new(),
            port_names: BTreeSet::new(),
            ports: BTreeSet::new(),
        };
        for v in seq(spec, "volumes") {
            if let Some(name) = str_at(v, &["name"]) {
                n.volumes.insert(name.to_owned());
            }
        }
        for c in seq(spec, "initContainers").chain(seq(spec, "containers")) {
            if let Some(name) = str_at(c, &["name"]) {
                n.containers.insert(name.to_owned());
            }
            for p in c
                .get("ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                if let Some(name) = str_at(p, &["name"]) {
                    n.port_names.insert(name.to_owned());
                }
                if let Some(port) = p.get("containerPort").and_then(Value::as_u64) {
                    n.ports.insert(port);
                }
            }
        }
        n
    }

    fn volume(&mut self, base: &str) -> String {
        unique(base, &mut self.volumes)
    }

    fn container(&mut self, base: &str) -> String {
        unique(base, &mut self.containers)
    }

    /// The first free port from 9090 (the manifests' port) and a unique name for it.
    fn port(&mut self) -> (u16, String) {
        let port = (9090u16..=u16::MAX)
            .find(|p| !self.ports.contains(&u64::from(*p)))
            .unwrap_or(9090);
        self.ports.insert(u64::from(port));
        (port, unique("http-metrics", &mut self.port_names))
    }
}

fn unique(base: &str, taken: &mut BTreeSet<String>) -> String {
    if taken.insert(base.to_owned()) {
        return base.to_owned();
    }
    let name = (2u32..)
        .map(|n| format!("{base}-{n}"))
        .find(|c| !taken.contains(c))
        .unwrap_or_else(|| base.to_owned());
    taken.insert(name.clone());
    name
}

fn seq<'a>(m: &'a Mapping, key: &str) -> impl Iterator<Item = &'a Value> {
    m.get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

fn containers_mut(spec: &mut Mapping) -> impl Iterator<Item = &mut Mapping> {
    let mut all = Vec::new();
    for (key, v) in spec.iter_mut() {
        if matches!(key.as_str(), Some("initContainers" | "containers"))
            && let Some(items) = v.as_sequence_mut()
        {
            all.extend(items.iter_mut().filter_map(Value::as_mapping_mut));
        }
    }
    all.into_iter()
}

fn name_of(c: &Mapping) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned()
}

/// Application mounts of a converted volume become read-only: only the agent writes.
fn readonly_app_mounts(spec: &mut Mapping, targets: &[Target<'_>], out: &mut Outcome) {
    for c in containers_mut(spec) {
        let cname = name_of(c);
        let Some(mounts) = c.get_mut("volumeMounts").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for m in mounts.iter_mut().filter_map(Value::as_mapping_mut) {
            let vol = m.get("name").and_then(Value::as_str).unwrap_or_default();
            if !targets.iter().any(|t| t.vol_name == vol) {
                continue;
            }
            if m.contains_key("subPath") || m.contains_key("subPathExpr") {
                out.warnings.push(format!(
                    "container {cname}: mounts volume {vol} with subPath, which never sees refreshed files: mount the directory"
                ));
            }
            m.insert(s("readOnly"), Value::Bool(true));
        }
    }
}

/// One env var to set from a file: (target index, env name, file alias).
type EnvPair = (usize, String, String);

/// Env vars from Secrets synced by `secretObjects` become `keyvault-agent exec --env`.
fn rewrite_env(spec: &mut Mapping, targets: &[Target<'_>], opts: &Options, out: &mut Outcome) {
    let mut synced: BTreeMap<&str, (usize, &SyncedSecret)> = BTreeMap::new();
    for (k, t) in targets.iter().enumerate() {
        for sec in &t.spc.synced {
            synced.entry(sec.name.as_str()).or_insert((k, sec));
        }
    }
    if synced.is_empty() {
        return;
    }
    for c in containers_mut(spec) {
        let cname = name_of(c);
        let mut pairs: Vec<EnvPair> = Vec::new();
        let mut drop_env = Vec::new();
        let mut drop_env_from = Vec::new();
        let mut from: BTreeSet<String> = BTreeSet::new();
        for (j, e) in seq(c, "env").enumerate() {
            let Some(secret) = str_at(e, &["valueFrom", "secretKeyRef", "name"]) else {
                continue;
            };
            let Some((k, sec)) = synced.get(secret) else {
                continue;
            };
            let env = str_at(e, &["name"]).unwrap_or_default();
            let key = str_at(e, &["valueFrom", "secretKeyRef", "key"]).unwrap_or_default();
            match sec.data.iter().find(|(dk, _)| dk == key) {
                Some((_, alias)) => {
                    pairs.push((*k, env.to_owned(), alias.clone()));
                    drop_env.push(j);
                    from.insert(secret.to_owned());
                }
                None => out.warnings.push(format!(
                    "container {cname}: env {env} reads key {key} of Secret {secret}, which secretObjects of SecretProviderClass {} does not sync: left unchanged",
                    targets[*k].spc.name
                )),
            }
        }
        for (j, e) in seq(c, "envFrom").enumerate() {
            let Some(secret) = str_at(e, &["secretRef", "name"]) else {
                continue;
            };
            let Some((k, sec)) = synced.get(secret) else {
                continue;
            };
            let prefix = str_at(e, &["prefix"]).unwrap_or_default();
            for (key, alias) in &sec.data {
                pairs.push((*k, format!("{prefix}{key}"), alias.clone()));
            }
            drop_env_from.push(j);
            from.insert(secret.to_owned());
        }
        if pairs.is_empty() {
            continue;
        }
        let names: Vec<&str> = pairs.iter().map(|(_, n, _)| n.as_str()).collect();
        let secrets: Vec<&str> = from.iter().map(String::as_str).collect();
        let command: Option<Vec<Value>> = c
            .get("command")
            .and_then(Value::as_sequence)
            .filter(|cmd| !cmd.is_empty() && cmd.iter().all(Value::is_string))
            .cloned();
        let Some(command) = command else {
            out.warnings.push(format!(
                "container {cname}: env {} come from Secret {} that secretObjects synced; nothing creates that Secret without the CSI driver, and the container has no command to wrap with `keyvault-agent exec`: set command to the image's entrypoint and migrate again, or read the files instead",
                names.join(", "),
                secrets.join(", ")
            ));
            continue;
        };
        remove_indices(c, "env", &drop_env);
        remove_indices(c, "envFrom", &drop_env_from);
        let mut wrapped = Vec::new();
        let mut used: Vec<usize> = pairs.iter().map(|(k, _, _)| *k).collect();
        used.sort_unstable();
        used.dedup();
        for k in &used {
            let t = &targets[*k];
            wrapped.extend([
                s(&opts.exec_path),
                s("exec"),
                s("--config"),
                s(agent::config_path(&t.config_dir)),
            ]);
            for (_, env, alias) in pairs.iter().filter(|(pk, _, _)| pk == k) {
                wrapped.push(s("--env"));
                wrapped.push(s(format!("{env}={alias}")));
            }
            wrapped.push(s("--"));
            let mounted = seq(c, "volumeMounts")
                .any(|m| str_at(m, &["name"]) == Some(t.config_volume.as_str()));
            if !mounted && let Some(mounts) = child_seq(c, "volumeMounts") {
                mounts.push(agent::config_mount(&t.config_volume, &t.config_dir));
            }
            if let Some(secret) = &t.credentials
                && let (Some(env), Value::Sequence(creds)) =
                    (child_seq(c, "env"), agent::credentials_env(secret))
            {
                for e in creds {
                    let name = str_at(&e, &["name"]).map(str::to_owned);
                    if !env
                        .iter()
                        .any(|x| str_at(x, &["name"]).map(str::to_owned) == name)
                    {
                        env.push(e);
                    }
                }
            }
        }
        wrapped.extend(command);
        c.insert(s("command"), Value::Sequence(wrapped));
        out.notes.push(format!(
            "container {cname}: {} set by `keyvault-agent exec` (command wrapped, args unchanged) instead of Secret {}",
            names.join(", "),
            secrets.join(", ")
        ));
        out.warnings.push(format!(
            "container {cname}: its image must contain the agent binary at {} for `keyvault-agent exec` (Containerfile: COPY --from={} /keyvault-agent {}), or set --exec-path",
            opts.exec_path, opts.image, opts.exec_path
        ));
    }
}

fn remove_indices(c: &mut Mapping, key: &str, indices: &[usize]) {
    if indices.is_empty() {
        return;
    }
    if let Some(items) = c.get_mut(key).and_then(Value::as_sequence_mut) {
        let mut i = 0usize;
        items.retain(|_| {
            let keep = !indices.contains(&i);
            i = i.saturating_add(1);
            keep
        });
        if items.is_empty() {
            c.remove(key);
        }
    }
}

/// Secret volumes and image pull secrets naming a synced Secret cannot be converted.
fn flag_secret_users(spec: &Mapping, targets: &[Target<'_>], out: &mut Outcome) {
    let synced: BTreeSet<&str> = targets
        .iter()
        .flat_map(|t| t.spc.synced.iter().map(|s| s.name.as_str()))
        .collect();
    for v in seq(spec, "volumes") {
        if let Some(secret) = str_at(v, &["secret", "secretName"])
            && synced.contains(secret)
        {
            out.warnings.push(format!(
                "volume {}: mounts Secret {secret}, which secretObjects synced and nothing creates without the CSI driver: mount the agent's emptyDir instead",
                str_at(v, &["name"]).unwrap_or_default()
            ));
        }
    }
    for p in seq(spec, "imagePullSecrets") {
        if let Some(secret) = str_at(p, &["name"])
            && synced.contains(secret)
        {
            out.warnings.push(format!(
                "imagePullSecrets: Secret {secret} was synced by secretObjects and nothing creates it without the CSI driver: create it another way"
            ));
        }
    }
}

/// The workload identity webhook injects the token only into labelled pods; the CSI driver
/// did not need the label (it requested the token itself), the agent does.
fn workload_identity_label(template: &mut Mapping, account: Option<String>, out: &mut Outcome) {
    let labels = child_map(template, "metadata").and_then(|m| child_map(m, "labels"));
    match labels {
        Some(labels) if labels.get(WI_LABEL).and_then(Value::as_str) == Some("true") => {
            out.notes.push(format!("label {WI_LABEL}: \"true\" kept"));
        }
        Some(labels) => {
            labels.insert(s(WI_LABEL), s("true"));
            out.notes.push(format!(
                "label {WI_LABEL}: \"true\" added: the agent reads the token the workload identity webhook injects"
            ));
        }
        None => out.warnings.push(format!(
            "metadata.labels is not a mapping: add the label {WI_LABEL}: \"true\" by hand"
        )),
    }
    match account {
        Some(a) => out.notes.push(format!("serviceAccountName {a} kept")),
        None => out.warnings.push(
            "no serviceAccountName: the pod runs as ServiceAccount default, which needs the federated credential (as it did for the CSI driver)".into(),
        ),
    }
}
