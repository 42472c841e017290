//! The agent's containers as `manifests/overlays` deploy them (args, probes, resources,
//! hardened securityContext), built as YAML values for a converted pod.

use serde_yaml::{Mapping, Value};

use super::yaml::{map, s, strings};

/// Where the agent mounts the shared emptyDir (its own container; the application keeps
/// its mount path).
pub const AGENT_DIR: &str = "/mnt/secrets";

/// The ConfigMap's data key holding the SecretProviderClass YAML.
pub const CONFIG_KEY: &str = "secretproviderclass.yaml";

/// The refresh period of the sidecars, as in `manifests/`.
pub const INTERVAL: &str = "2m";

/// The emptyDir's size limit, as in `manifests/` (a memory-backed volume counts against the
/// pod's memory; Key Vault objects are at most 25 KiB each).
pub const SIZE_LIMIT: &str = "16Mi";

/// How one agent container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--once` in an init container.
    Once,
    /// Refresh loop in an init container with `restartPolicy: Always`.
    Native,
    /// Refresh loop in a regular container.
    Classic,
}

/// Everything one agent container needs to know.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Container name.
    pub name: &'a str,
    /// Image.
    pub image: &'a str,
    /// How it runs.
    pub role: Role,
    /// The emptyDir volume it fills.
    pub secrets_volume: &'a str,
    /// The ConfigMap volume with the SecretProviderClass.
    pub config_volume: &'a str,
    /// Where that ConfigMap is mounted.
    pub config_dir: &'a str,
    /// Port of the health server and its name (refresh roles only).
    pub port: (u16, &'a str),
    /// The `nodePublishSecretRef` Secret with `clientid` and `clientsecret`, if any.
    pub credentials: Option<&'a str>,
}

/// The `--config` path inside a container that mounts the ConfigMap at `dir`.
pub fn config_path(dir: &str) -> String {
    format!("{dir}/{CONFIG_KEY}")
}

/// The agent container.
pub fn container(spec: &Spec<'_>) -> Value {
    let mut args = vec![
        format!("--config={}", config_path(spec.config_dir)),
        format!("--dir={AGENT_DIR}"),
    ];
    match spec.role {
        Role::Once => args.push("--once".into()),
        Role::Native | Role::Classic => {
            args.push(format!("--interval={INTERVAL}"));
            args.push(format!("--listen=0.0.0.0:{}", spec.port.0));
        }
    }
    let mut c = Mapping::new();
    let mut put = |k: &str, v: Value| {
        c.insert(s(k), v);
    };
    put("name", s(spec.name));
    put("image", s(spec.image));
    put("imagePullPolicy", s("IfNotPresent"));
    if spec.role == Role::Native {
        put("restartPolicy", s("Always"));
    }
    put("args", strings(args));
    if let Some(secret) = spec.credentials {
        put("env", credentials_env(secret));
    }
    if spec.role != Role::Once {
        let (port, port_name) = spec.port;
        put(
            "ports",
            Value::Sequence(vec![map([
                ("name", s(port_name)),
                ("containerPort", Value::from(port)),
                ("protocol", s("TCP")),
            ])]),
        );
        let probe = |path: &str, period: u64, failures: Option<u64>| {
            let mut p = map([
                ("httpGet", map([("path", s(path)), ("port", s(port_name))])),
                ("periodSeconds", Value::from(period)),
            ]);
            if let (Some(f), Some(m)) = (failures, p.as_mapping_mut()) {
                m.insert(s("failureThreshold"), Value::from(f));
            }
            p
        };
        if spec.role == Role::Native {
            // Holds the application until the first set is published (up to 5 minutes).
            put("startupProbe", probe("/readyz", 1, Some(300)));
        } else {
            put("readinessProbe", probe("/readyz", 10, None));
        }
        put("livenessProbe", probe("/healthz", 20, Some(3)));
    }
    put(
        "resources",
        map([
            ("requests", map([("cpu", s("10m")), ("memory", s("16Mi"))])),
            ("limits", map([("memory", s("64Mi"))])),
        ]),
    );
    put("securityContext", hardened());
    put(
        "volumeMounts",
        Value::Sequence(vec![
            map([
                ("name", s(spec.secrets_volume)),
                ("mountPath", s(AGENT_DIR)),
            ]),
            config_mount(spec.config_volume, spec.config_dir),
        ]),
    );
    Value::Mapping(c)
}

/// The read-only mount of the ConfigMap volume.
pub fn config_mount(volume: &str, dir: &str) -> Value {
    map([
        ("name", s(volume)),
        ("mountPath", s(dir)),
        ("readOnly", Value::Bool(true)),
    ])
}

/// `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` from the Secret the CSI driver received as
/// `nodePublishSecretRef` (keys `clientid` and `clientsecret`, the provider's names).
pub fn credentials_env(secret: &str) -> Value {
    let from = |env: &str, key: &str| {
        map([
            ("name", s(env)),
            (
                "valueFrom",
                map([("secretKeyRef", map([("name", s(secret)), ("key", s(key))]))]),
            ),
        ])
    };
    Value::Sequence(vec![
        from("AZURE_CLIENT_ID", "clientid"),
        from("AZURE_CLIENT_SECRET", "clientsecret"),
    ])
}

/// The container securityContext of `manifests/`: non-root 65532, read-only root, no
/// privilege escalation, no capabilities, RuntimeDefault seccomp.
fn hardened() -> Value {
    map([
        ("runAsNonRoot", Value::Bool(true)),
        ("runAsUser", Value::from(65532u32)),
        ("runAsGroup", Value::from(65532u32)),
        ("readOnlyRootFilesystem", Value::Bool(true)),
        ("allowPrivilegeEscalation", Value::Bool(false)),
        ("capabilities", map([("drop", strings(["ALL"]))])),
        ("seccompProfile", map([("type", s("RuntimeDefault"))])),
    ])
}

/// The emptyDir that replaces a CSI volume.
pub fn memory_volume(name: &str) -> Value {
    map([
        ("name", s(name)),
        (
            "emptyDir",
            map([("medium", s("Memory")), ("sizeLimit", s(SIZE_LIMIT))]),
        ),
    ])
}

/// The ConfigMap volume.
pub fn config_volume(name: &str, config_map: &str) -> Value {
    map([
        ("name", s(name)),
        ("configMap", map([("name", s(config_map))])),
    ])
}
