//! Turns a SecretProviderClass (plus flags and environment) into a validated [`Plan`].
//!
//! Parsing follows the Azure provider exactly (names, defaults, trimming, boolean parsing,
//! error texts and precedence; `docs/reference-provider.md` §1) and fixes its validation bugs.
//! This module never touches the network; the only files it reads are the configuration
//! file itself, an Azure Stack cloud file (`cloudEnvFileName`) and a client-secret file
//! (`AZURE_CLIENT_SECRET_FILE`). The federated token file is deliberately *not* read here:
//! the kubelet rotates it, so the credential re-reads it for every exchange.
//!
//! - `params`: the input file (a SecretProviderClass manifest or its bare parameters map)
//!   and the scalar parameters (trimming, Go `strconv.ParseBool`, warnings).
//! - `objects`: the `objects` string and per-object validation, paths and collisions.
//! - `cloud`: the cloud table, Azure Stack files and the vault URL.
//! - `identity`: which identity the agent uses, from parameters and environment.
//! - `templates`: `--template` flags and the `templates` parameter, read and checked.
//!
//! Where we deliberately differ from the reference:
//! - every problem (all parameters, all objects) is reported in one run, in the reference's
//!   precedence order (§1.2), instead of the first one only;
//! - the pod name and namespace parameters are not required (the agent runs in the pod);
//! - the tenant is not required for managed identity (the reference requires it, unused);
//! - rejected at validation time: unknown `objectType`, invalid `filePermission` (the
//!   reference writes mode 0) or one above 0777, `pfx` for non-secrets in any case, an empty
//!   `objectName` behind an alias, the CSI driver's path rules, duplicate output paths and
//!   file/directory collisions;
//! - `usePodIdentity` and `useAzureTokenProxy` are parsed, then refused with a hint;
//! - `cloudEnvFileName` is read at load time (relative to the config file), never stored in
//!   a process-wide env var; `keyvaultURL` overrides the vault URL;
//! - unknown or misspelt parameters and object keys produce warnings (with a did-you-mean,
//!   `names`) instead of silence;
//! - parse errors are in our words (`usePodIdentity "tru": not a boolean`), not Go's
//!   `strconv.ParseBool: ...` texts that the reference prints.

mod cloud;
mod identity;
pub mod limits;
mod names;
mod objects;
mod params;
mod templates;

pub use cloud::{cloud_by_name, vault_url_for};
pub use objects::{is_object_name, is_object_version, unsafe_character, validate_path};
pub use params::{Parameters, parse_bool};
pub use templates::PARAMETER as TEMPLATES_PARAMETER;

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::secret::SecretString;

/// Key Vault object type (`objectType`), case-sensitive as in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// `secret`
    Secret,
    /// `key`
    Key,
    /// `cert`
    Cert,
}

impl ObjectType {
    /// The SecretProviderClass spelling (`secret`, `key`, `cert`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Secret => "secret",
            ObjectType::Key => "key",
            ObjectType::Cert => "cert",
        }
    }
}

/// `objectFormat`: only meaningful for certificate-backed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectFormat {
    /// `pem` or empty (the default).
    #[default]
    Pem,
    /// `pfx`: base64 PKCS#12.
    Pfx,
}

/// `objectEncoding`: decoding applied last, to secrets only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectEncoding {
    /// `utf-8` or empty: bytes unchanged.
    #[default]
    Utf8,
    /// `hex`: the value is hex and is decoded.
    Hex,
    /// `base64`: the value is standard base64 and is decoded.
    Base64,
}

/// The files of the TLS layout (`objectLayout: tls`) under the object's path, in the order
/// the conversion returns them.
pub const TLS_FILES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// `objectLayout` (an agent extension; the CSI provider ignores the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectLayout {
    /// Empty: one file at the output path (the reference's layout).
    #[default]
    File,
    /// `tls`: a directory at the output path holding `tls.crt` (leaf then chain), `tls.key`
    /// and `ca.crt`, the `kubernetes.io/tls` convention.
    Tls,
}

/// One validated object of the SecretProviderClass `objects` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    /// `objectName`: the Key Vault object name.
    pub name: String,
    /// `objectType`.
    pub object_type: ObjectType,
    /// `objectVersion`: `None` for latest (empty; `latest` only in history mode).
    /// A pinned version is immutable and is fetched once per process.
    pub version: Option<String>,
    /// `objectVersionHistory`: `<= 1` means one version; `N > 1` writes `path/0..N-1`.
    pub history: u32,
    /// `objectFormat`.
    pub format: ObjectFormat,
    /// `objectEncoding`.
    pub encoding: ObjectEncoding,
    /// Output path relative to the target dir: `objectAlias`, else `objectName`.
    /// Validated: relative, clean, no `..`, components ≤ 255 bytes, total ≤ 4096.
    pub path: String,
    /// File mode (`filePermission`, default 0o644).
    pub mode: u32,
    /// `objectOptional: "true"` (agent extension): a missing or disabled object is skipped
    /// with a warning and reported as absent instead of failing the set.
    pub optional: bool,
    /// `objectJsonPointer` (agent extension, RFC 6901): write only the value at this pointer
    /// of the secret's JSON content. `None` when empty.
    pub json_pointer: Option<String>,
    /// `objectLayout` (agent extension).
    pub layout: ObjectLayout,
}

impl ObjectSpec {
    /// The reference's object id: `<type>/<name>` (or `<type>/<name>/<index>` in history
    /// mode, see [`ObjectSpec::history_id`]). Used in status and metrics.
    pub fn id(&self) -> String {
        format!("{}/{}", self.object_type.as_str(), self.name)
    }

    /// Object id of the `index`-th version in history mode.
    pub fn history_id(&self, index: usize) -> String {
        format!("{}/{}/{}", self.object_type.as_str(), self.name, index)
    }

    /// The agent extensions in effect, for `check` (`, optional, json pointer "/a"`).
    fn extras(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.json_pointer {
            s.push_str(&format!(", json pointer {p:?}"));
        }
        if self.optional {
            s.push_str(", optional");
        }
        s
    }

    /// Whether this object is in history mode.
    pub fn is_history(&self) -> bool {
        self.history > 1
    }

    /// Human label for error messages: `secret "db-password"` or
    /// `secret "db-password" (version 3f2a…)`.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!(
                "{} \"{}\" (version {})",
                self.object_type.as_str(),
                self.name,
                v
            ),
            None => format!("{} \"{}\"", self.object_type.as_str(), self.name),
        }
    }
}

/// A cloud's endpoints (the go-autorest table of `docs/reference-provider.md` §3, or an Azure
/// Stack JSON file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// Canonical name, e.g. `AzurePublicCloud`.
    pub name: String,
    /// Entra authority host with a trailing slash, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: Url,
    /// Key Vault DNS suffix without a leading dot, e.g. `vault.azure.net`.
    pub keyvault_dns_suffix: String,
    /// Key Vault resource (for IMDS) without trailing slash, e.g. `https://vault.azure.net`.
    pub keyvault_resource: String,
}

/// How the agent proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Workload identity: exchange the projected service-account token at Entra.
    WorkloadIdentity {
        /// Application (client) ID.
        client_id: String,
        /// Entra tenant.
        tenant_id: String,
        /// `AZURE_FEDERATED_TOKEN_FILE`; re-read for every exchange.
        token_file: PathBuf,
        /// Authority host (`AZURE_AUTHORITY_HOST` or the cloud's).
        authority_host: Url,
    },
    /// Managed identity through IMDS.
    ManagedIdentity {
        /// User-assigned identity client ID; `None` for system-assigned.
        client_id: Option<String>,
        /// IMDS base URL (`http://169.254.169.254/` unless `KEYVAULT_AGENT_IMDS_ENDPOINT`).
        endpoint: Url,
    },
    /// Client secret (development; the `nodePublishSecretRef` analogue).
    ClientSecret {
        /// Application (client) ID.
        client_id: String,
        /// Entra tenant.
        tenant_id: String,
        /// The secret (from `AZURE_CLIENT_SECRET` or a file).
        secret: SecretString,
        /// Authority host.
        authority_host: Url,
    },
}

/// Everything one sync needs, validated. Produced by [`load`]; `keyvault-agent check` stops here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Vault base URL with a trailing slash (`https://<name>.<suffix>/` or `keyvaultURL`).
    pub vault_url: Url,
    /// The vault name (`keyvaultName`), for messages and metrics.
    pub vault_name: String,
    /// The cloud.
    pub cloud: Cloud,
    /// The identity to use.
    pub identity: Identity,
    /// Objects in SecretProviderClass order. Output paths are unique and collision-free.
    pub objects: Vec<ObjectSpec>,
    /// Templates rendered into the same set (flags first, then the `templates` parameter);
    /// their output paths meet no object's.
    pub templates: Vec<crate::template::TemplateSpec>,
}

impl Identity {
    /// One line naming the mode and its non-secret parameters (for `check` and logs).
    pub fn describe(&self) -> String {
        match self {
            Identity::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
                authority_host,
            } => format!(
                "workload identity (client {client_id}, tenant {tenant_id}, token file {}, authority {authority_host})",
                token_file.display()
            ),
            Identity::ManagedIdentity {
                client_id,
                endpoint,
            } => match client_id {
                Some(c) => format!("managed identity (user-assigned client {c}, IMDS {endpoint})"),
                None => format!("managed identity (system-assigned, IMDS {endpoint})"),
            },
            Identity::ClientSecret {
                client_id,
                tenant_id,
                authority_host,
                ..
            } => format!(
                "client secret (client {client_id}, tenant {tenant_id}, authority {authority_host})"
            ),
        }
    }
}

impl Plan {
    /// What `check` prints on success: the vault, the identity, then one line per object
    /// (id, output path, mode). Never a value.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "vault {} ({}, cloud {})",
                self.vault_name, self.vault_url, self.cloud.name
            ),
            format!("identity: {}", self.identity.describe()),
            format!("{} object(s)", self.objects.len()),
        ];
        for o in &self.objects {
            let version = o
                .version
                .as_deref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default();
            if o.is_history() {
                lines.push(format!(
                    "{}{version} -> {}/0..{}/{} ({} versions, mode {:04o})",
                    o.id(),
                    o.path,
                    o.path,
                    o.history - 1,
                    o.history,
                    o.mode
                ));
            } else if o.layout == ObjectLayout::Tls {
                lines.push(format!(
                    "{}{version} -> {p}/tls.crt, {p}/tls.key, {p}/ca.crt (tls layout, mode {:04o}){}",
                    o.id(),
                    o.mode,
                    o.extras(),
                    p = o.path,
                ));
            } else {
                lines.push(format!(
                    "{}{version} -> {} (mode {:04o}){}",
                    o.id(),
                    o.path,
                    o.mode,
                    o.extras()
                ));
            }
        }
        if !self.templates.is_empty() {
            lines.push(format!("{} template(s)", self.templates.len()));
        }
        for t in &self.templates {
            lines.push(format!(
                "template \"{}\" -> {} (mode {:04o})",
                t.name, t.dest, t.mode
            ));
        }
        lines
    }

    /// Every file a successful cycle publishes, objects first (history versions and TLS
    /// files expanded), then templates; for `exec --env-all`.
    pub fn output_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.objects {
            if o.is_history() {
                out.extend((0..o.history).map(|i| format!("{}/{i}", o.path)));
            } else if o.layout == ObjectLayout::Tls {
                out.extend(TLS_FILES.iter().map(|f| format!("{}/{f}", o.path)));
            } else {
                out.push(o.path.clone());
            }
        }
        out.extend(self.templates.iter().map(|t| t.dest.clone()));
        out
    }
}

/// A snapshot of the process environment, passed in so tests never mutate the real one.
#[derive(Debug, Clone, Default)]
pub struct Env(pub std::collections::BTreeMap<String, String>);

impl Env {
    /// Snapshot of the current process environment.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    /// An environment made of exactly these variables.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A variable, `None` when unset or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// How to tell the application that a new set was published (sidecar).
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// Signal to send (`--on-change-signal`, e.g. SIGHUP).
    pub signal: Option<i32>,
    /// Find the process by pidfile (`--signal-pidfile`).
    pub signal_pidfile: Option<PathBuf>,
    /// Find the process by name in the shared PID namespace (`--signal-process`).
    pub signal_process: Option<String>,
    /// Command to run (`--on-change-exec`), split shell-style.
    pub exec: Option<Vec<String>>,
    /// URL to POST to (`--on-change-http`).
    pub http: Option<Url>,
    /// Allow `http` to a non-loopback host (`--on-change-http-insecure`).
    pub http_insecure: bool,
    /// Notify on the sidecar's first publish too (`--notify-on-start`). Off by default: the
    /// application starts after (native sidecar) or reads the files when it starts, so a
    /// reload signal for the set it is about to read is noise, or a race with its start.
    pub on_start: bool,
}

/// Runtime settings from flags and environment (not from the SecretProviderClass).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Path of the SecretProviderClass (or parameters map) file.
    pub config_file: PathBuf,
    /// Output directory (the shared emptyDir).
    pub dir: PathBuf,
    /// Key Vault api-version (default `2025-07-01`).
    pub api_version: String,
    /// Maximum concurrent Key Vault requests.
    pub concurrency: usize,
    /// Overall deadline of one sync (`--timeout`).
    pub timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Extra CA certificate files (`--ca-file`, `SSL_CERT_FILE`).
    pub ca_files: Vec<PathBuf>,
    /// Extra CA certificate directories (`SSL_CERT_DIR`, colon-separated as OpenSSL reads it).
    pub ca_dirs: Vec<PathBuf>,
    /// Refresh interval (sidecar).
    pub interval: Duration,
    /// Jitter fraction, e.g. 0.1 for ±10%.
    pub jitter: f64,
    /// HTTP listen address for health/metrics/status; `None` when `off`.
    pub listen: Option<std::net::SocketAddr>,
    /// Not ready when the published data is older than this (sidecar).
    pub max_staleness: Option<Duration>,
    /// App notification (sidecar).
    pub notify: NotifySettings,
    /// IMDS base URL (`KEYVAULT_AGENT_IMDS_ENDPOINT`, default `http://169.254.169.254`).
    pub imds_endpoint: Url,
    /// Grace period for finishing an in-flight swap on SIGTERM.
    pub shutdown_grace: Duration,
    /// Largest Key Vault response body accepted, in bytes (`--max-response-size`).
    pub max_response_size: u64,
    /// Largest Entra/IMDS response body accepted, in bytes (`--max-token-response-size`).
    pub max_token_response_size: u64,
    /// How changes of latest objects are detected (`--change-detection`).
    pub change_detection: ChangeDetection,
    /// Every Nth refresh fetches every latest object (`--full-sweep-every`, 0 = never).
    pub full_sweep_every: u32,
    /// Templates from `--template` (the `templates` parameter adds more).
    pub templates: Vec<crate::template::TemplateArg>,
    /// What an expired or not-yet-valid certificate does (`--validate`).
    pub validate: ValidateMode,
}

impl Settings {
    /// Settings with every default of the command line, for `config_file` and `dir`.
    /// Used by `check` and by tests; the CLI fills every field itself.
    pub fn with_defaults(config_file: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Settings {
            config_file: config_file.into(),
            dir: dir.into(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            ca_files: Vec::new(),
            ca_dirs: Vec::new(),
            interval: Duration::from_secs(120),
            jitter: 0.1,
            listen: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9090))),
            max_staleness: None,
            notify: NotifySettings::default(),
            imds_endpoint: Url::parse(DEFAULT_IMDS_ENDPOINT).expect("valid default IMDS URL"),
            shutdown_grace: Duration::from_secs(10),
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            max_token_response_size: DEFAULT_MAX_TOKEN_RESPONSE_SIZE,
            change_detection: ChangeDetection::List,
            full_sweep_every: DEFAULT_FULL_SWEEP_EVERY,
            templates: Vec::new(),
            validate: ValidateMode::default(),
        }
    }
}

impl Settings {
    /// What `check` prints after the plan: settings that change what is published or who
    /// is told (never a value).
    pub fn summary(&self) -> Vec<String> {
        let validity = match self.validate {
            ValidateMode::Warn => {
                "an expired or not-yet-valid certificate, or an incomplete chain, is published with a warning"
            }
            ValidateMode::Strict => {
                "an expired or not-yet-valid certificate, or an incomplete chain, is refused"
            }
        };
        let mut lines = vec![
            format!(
                "certificate validation: {} (a key not matching its leaf or a chain out of order is always refused; {validity})",
                self.validate.as_str()
            ),
            format!(
                "notify on first publish: {}",
                if self.notify.on_start {
                    "yes (--notify-on-start)"
                } else {
                    "no (only later changes notify)"
                }
            ),
        ];
        let files: Vec<String> = self
            .ca_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        let dirs: Vec<String> = self
            .ca_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        lines.push(match (files.is_empty(), dirs.is_empty()) {
            (true, true) => "trust: system roots".to_owned(),
            _ => format!(
                "trust: system roots, ca files [{}], SSL_CERT_DIR [{}]",
                files.join(", "),
                dirs.join(", ")
            ),
        });
        lines
    }
}

/// Default limit of one Key Vault response body (`--max-response-size`): a secret is at
/// most 25 KiB, and a page of 25 versions a few KiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 4 * 1024 * 1024;
/// Default limit of one Entra or IMDS response body (`--max-token-response-size`).
pub const DEFAULT_MAX_TOKEN_RESPONSE_SIZE: u64 = 1024 * 1024;
/// Default of `--full-sweep-every`.
pub const DEFAULT_FULL_SWEEP_EVERY: u32 = 10;

/// How changes of latest objects are detected (`--change-detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangeDetection {
    /// Collection lists, GETs only for changed objects (default).
    #[default]
    List,
    /// One GET per object per refresh (the reference behaviour).
    Get,
}

impl std::str::FromStr for ChangeDetection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "list" | "on" => Ok(ChangeDetection::List),
            "get" | "off" => Ok(ChangeDetection::Get),
            other => Err(format!(
                "change detection {other:?}: use list (default) or get (one GET per object per refresh)"
            )),
        }
    }
}

/// What certificate validation before the swap does with a certificate outside its validity
/// period, or a chain no order completes (`--validate`). A private key that does not match its leaf, or a chain out of
/// order, is refused in both modes: no client can use such a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidateMode {
    /// Publish it with a warning (default; the CSI provider publishes it without one).
    #[default]
    Warn,
    /// Refuse it: the set is not published (`--once` fails, the sidecar keeps the last
    /// good set).
    Strict,
}

impl ValidateMode {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidateMode::Warn => "warn",
            ValidateMode::Strict => "strict",
        }
    }
}

impl std::str::FromStr for ValidateMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "warn" => Ok(ValidateMode::Warn),
            "strict" => Ok(ValidateMode::Strict),
            other => Err(format!(
                "validate {other:?}: use warn (default: publish an expired certificate with a warning) or strict (refuse it)"
            )),
        }
    }
}

/// Default Key Vault api-version (`--api-version`).
pub const DEFAULT_API_VERSION: &str = "2025-07-01";
/// Default bound on concurrent Key Vault requests (`--concurrency`). Key Vault's service
/// limits are counted per vault per 10 s (4,000 GETs); 16 in flight stays far below them
/// while fetching 100 objects in about 11 round trips (measured: 8 takes ~23).
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default IMDS base URL (`KEYVAULT_AGENT_IMDS_ENDPOINT`).
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// Mode of output files when `filePermission` is not set (the CSI driver's default, 0644).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// One configuration problem. `Display` is one line, lowercase where the reference's own
/// text allows, and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read (missing, not a regular file, over the
    /// 4 MiB limit, not UTF-8); `reason` names the file and the fix.
    #[error("{reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The configuration file is not valid YAML, or not a SecretProviderClass / parameters map.
    #[error("config file \"{path}\": {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A required parameter is missing (`keyvaultName is not provided`, reference text).
    #[error("{0} is not provided")]
    Missing(&'static str),
    /// A boolean parameter is not a boolean (the values Go `strconv.ParseBool` accepts; the
    /// message is ours, not Go's).
    #[error("{name} {value:?}: not a boolean: use \"true\" or \"false\"")]
    Bool {
        /// Parameter name.
        name: &'static str,
        /// The trimmed value.
        value: String,
    },
    /// More than one of the identity-mode booleans is true (reference text).
    #[error(
        "only one identity mode can be enabled at a time: usePodIdentity, useVMManagedIdentity, or useAzureTokenProxy"
    )]
    ModeConflict,
    /// An identity mode of the reference that the agent does not implement.
    #[error("{name} is not supported by keyvault-agent: {hint}")]
    UnsupportedMode {
        /// Parameter name.
        name: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// `cloudName` / `cloudEnvFileName` problem (`cloudName X is not valid, error: ...`).
    #[error("cloudName {name} is not valid, error: {reason}")]
    Cloud {
        /// The cloud name as written.
        name: String,
        /// Why.
        reason: String,
    },
    /// `keyvaultURL` is not an https URL.
    #[error("keyvaultURL {value:?} is not valid: {reason}")]
    VaultUrl {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Vault name validation (reference text, after the objects).
    #[error("failed to get vault: {0}")]
    VaultName(String),
    /// No usable identity, or an incomplete one.
    #[error("{0}")]
    Identity(String),
    /// `objects` is empty (reference text).
    #[error("objects is not set")]
    ObjectsNotSet,
    /// The `objects` string could not be parsed (reference text prefix).
    #[error("failed to yaml unmarshal objects, error: {0}")]
    ObjectsYaml(String),
    /// One element of `objects.array` could not be parsed.
    #[error("objects[{index}]: {reason}")]
    ObjectYaml {
        /// Zero-based element index.
        index: usize,
        /// The YAML error.
        reason: String,
    },
    /// A per-object problem, wrapped with the object's identity like the reference. Values
    /// are shown with control, bidi and zero-width characters escaped, so the line stays
    /// one line and reads as what it is. Problems the reference does not have name the
    /// object's index themselves (`objects[2]: ...`).
    #[error(
        "failed to get objectType:{}, objectName:{}, objectVersion:{}: {problem}",
        printable(object_type),
        printable(name),
        printable(version)
    )]
    Object {
        /// Zero-based index in `objects.array`.
        index: usize,
        /// `objectType` as written (trimmed).
        object_type: String,
        /// `objectName` as written (trimmed).
        name: String,
        /// `objectVersion` as written (trimmed).
        version: String,
        /// What is wrong.
        problem: ObjectProblem,
    },
    /// Anything else (free text, one line).
    #[error("{0}")]
    Other(String),
}

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError::Other(s)
    }
}

impl From<&str> for ConfigError {
    fn from(s: &str) -> Self {
        ConfigError::Other(s.to_owned())
    }
}

/// `s` with control, bidi and zero-width characters escaped as `\u{..}`; unchanged (and
/// not quoted, as in the reference's texts) when it has none.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if objects::unsafe_character(s).is_none() {
        return s.into();
    }
    s.chars()
        .map(
            |c| match objects::unsafe_character(c.encode_utf8(&mut [0; 4])) {
                Some(_) => format!("\\u{{{:04x}}}", u32::from(c)),
                None => c.to_string(),
            },
        )
        .collect::<String>()
        .into()
}

/// What is wrong with one object (wrapped in [`ConfigError::Object`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectProblem {
    /// `objectType` is not `secret`, `key` or `cert` (reference text; the reference only
    /// notices at fetch time).
    #[error("Invalid vaultObjectTypes. Should be secret, key, or cert")]
    InvalidType,
    /// Reference text.
    #[error("invalid objectFormat: {0}, should be PEM or PFX")]
    InvalidFormat(String),
    /// Reference text (our check is case-insensitive).
    #[error("PFX format only supported for objectType: secret")]
    PfxNotSecret,
    /// Reference text.
    #[error("invalid objectEncoding: {0}, should be hex, base64 or utf-8")]
    InvalidEncoding(String),
    /// Reference text.
    #[error("objectEncoding only supported for objectType: secret")]
    EncodingNotSecret,
    /// Reference text.
    #[error("file name must not be empty")]
    EmptyFileName,
    /// Reference text.
    #[error("file name must be a relative path")]
    AbsoluteFileName,
    /// Reference text (a `..` element or substring).
    #[error("file name must not contain '..'")]
    DotDot,
    /// The CSI driver's clean-path rule (`./a`, `a//b`, `a/`).
    #[error("invalid filepath: {0:?}")]
    UncleanPath(String),
    /// The AtomicWriter's component limit.
    #[error("invalid path: filenames must be less than or equal to 255 characters")]
    ComponentTooLong,
    /// The AtomicWriter's total limit.
    #[error("invalid path: must be less than or equal to 4096 characters")]
    PathTooLong,
    /// `filePermission` is not an octal mode (the reference writes mode 0 instead).
    #[error("filePermission {0}")]
    FilePermission(String),
    /// `objectName` is empty (the reference would send an empty name to Key Vault).
    #[error("objectName must not be empty")]
    EmptyName,
    /// `objectName` is not a Key Vault name (Key Vault: `^[0-9A-Za-z-]{1,127}$`).
    #[error(
        "objects[{index}]: objectName {name:?} is not a Key Vault object name: use 1 to 127 ASCII letters, digits and dashes"
    )]
    InvalidName {
        /// Zero-based index in `objects.array`.
        index: usize,
        /// The name (shortened).
        name: String,
    },
    /// `objectVersion` is not a Key Vault version id.
    #[error(
        "objects[{index}]: objectVersion {version:?} is not a Key Vault version: use the 32 hexadecimal characters of a version id, or leave it empty for the latest"
    )]
    InvalidVersion {
        /// Zero-based index in `objects.array`.
        index: usize,
        /// The version (shortened).
        version: String,
    },
    /// The output path holds a control, bidi or zero-width character.
    #[error(
        "objects[{index}]: output path {path:?} contains {ch}: control, bidi and zero-width characters are not allowed in objectAlias"
    )]
    UnsafeCharacter {
        /// Zero-based index in `objects.array`.
        index: usize,
        /// The path (shortened).
        path: String,
        /// The character, as `U+202E`.
        ch: String,
    },
    /// `objectOptional` is not `true` or `false`.
    #[error("objectOptional must be \"true\" or \"false\", not {0:?}")]
    InvalidOptional(String),
    /// `objectJsonPointer` is not an RFC 6901 pointer.
    #[error(
        "objectJsonPointer {0:?} is not a JSON pointer: it must be empty or start with '/' (RFC 6901)"
    )]
    InvalidJsonPointer(String),
    /// `objectJsonPointer` on something that is not a plain secret.
    #[error(
        "objectJsonPointer is only supported for objectType: secret without objectVersionHistory or objectLayout"
    )]
    JsonPointerNotSecret,
    /// `objectLayout` is not a known layout.
    #[error("invalid objectLayout: {0:?}, should be tls or empty")]
    InvalidLayout(String),
    /// `objectLayout: tls` where no private key can be found.
    #[error(
        "objectLayout: tls is only supported for objectType: cert or secret (pem), without objectVersionHistory"
    )]
    TlsLayoutType,
    /// Two objects write the same file.
    #[error(
        "output path {path:?} is also written by {other}: give one of them a different objectAlias"
    )]
    DuplicatePath {
        /// The path.
        path: String,
        /// The other object (`objectType:secret, objectName:x`).
        other: String,
    },
    /// A file path is also a directory of another object.
    #[error(
        "output path {path:?} collides with {other_path:?} of {other}: a file cannot also be a directory"
    )]
    PathCollision {
        /// This object's path.
        path: String,
        /// The other object's path.
        other_path: String,
        /// The other object.
        other: String,
    },
}

/// Every configuration problem found in one run, one line each, in the reference's
/// precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// One line per problem.
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads `settings.config_file` (a SecretProviderClass manifest or its parameters map,
/// symlinks followed so a ConfigMap volume works as mounted) and validates it with `env`
/// into a [`Plan`]. Every problem is reported, in the reference's precedence order.
/// Warnings (ignored or misspelt parameters) are logged.
pub fn load(settings: &Settings, env: &Env) -> Result<Plan, ConfigErrors> {
    let (plan, warnings) = load_with_warnings(settings, env)?;
    for w in warnings {
        tracing::warn!(config = %settings.config_file.display(), "{w}");
    }
    Ok(plan)
}

/// [`load`], returning the warnings instead of logging them (`check` prints them).
pub fn load_with_warnings(
    settings: &Settings,
    env: &Env,
) -> Result<(Plan, Vec<String>), ConfigErrors> {
    let path = &settings.config_file;
    let text = crate::files::read_to_string(path, crate::files::MAX_CONFIG_FILE, "config file")
        .map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let params = Parameters::from_yaml(&text).map_err(|reason| ConfigError::File {
        path: path.clone(),
        reason,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let warnings = warnings(&params);
    let plan = from_parameters(&params, base_dir, settings, env)
        .map_err(|e| with_suggestions(e, &warnings))?;
    Ok((plan, warnings))
}

/// Values `check` stands in for the identity variables the workload identity webhook
/// injects into the pod only (so a laptop or CI run has none of them).
const WEBHOOK_STAND_INS: [(&str, &str); 3] = [
    ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"),
    ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000"),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "/var/run/secrets/azure/tokens/azure-identity-token",
    ),
];

/// What `keyvault-agent check` found.
#[derive(Debug)]
pub struct Checked {
    /// The plan, or every problem (without those demoted to notes).
    pub result: Result<Plan, ConfigErrors>,
    /// Ignored or misspelt parameters and object keys.
    pub warnings: Vec<String>,
    /// Problems that only mean this environment is not the pod's (no identity variables):
    /// printed as notes, not failures, unless `--strict`.
    pub notes: Vec<String>,
}

impl Checked {
    /// A failed result carries the did-you-mean warnings as problems (and not twice).
    fn new(
        result: Result<Plan, ConfigErrors>,
        mut warnings: Vec<String>,
        notes: Vec<String>,
    ) -> Self {
        let result = result.map_err(|e| with_suggestions(e, &warnings));
        if result.is_err() {
            warnings.retain(|w| !w.contains("did you mean"));
        }
        Checked {
            result,
            warnings,
            notes,
        }
    }

    /// What `check` prints for a valid plan: [`Plan::summary`], with the identity line
    /// saying it comes from the pod when this environment had none.
    pub fn summary(&self) -> Vec<String> {
        let Ok(plan) = &self.result else {
            return Vec::new();
        };
        let mut lines = plan.summary();
        if !self.notes.is_empty()
            && let Some(line) = lines.get_mut(1)
        {
            *line = "identity: workload identity from the pod's environment (not set here, see the note)".into();
        }
        lines
    }
}

/// `keyvault-agent check`: validates offline. A configuration whose only problems are the
/// missing identity variables of the workload identity webhook (checked again with stand-ins
/// for them) is valid, with those problems as notes; `strict` keeps them errors.
pub fn check_offline(settings: &Settings, env: &Env, strict: bool) -> Checked {
    let path = &settings.config_file;
    let params =
        match crate::files::read_to_string(path, crate::files::MAX_CONFIG_FILE, "config file") {
            Err(e) => Err(ConfigError::Read {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Ok(text) => Parameters::from_yaml(&text).map_err(|reason| ConfigError::File {
                path: path.clone(),
                reason,
            }),
        };
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            return Checked {
                result: Err(e.into()),
                warnings: Vec::new(),
                notes: Vec::new(),
            };
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let warnings = warnings(&params);
    let first = from_parameters(&params, base_dir, settings, env);
    let chose_a_secret = ["AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET_FILE"]
        .iter()
        .any(|k| env.get(k).is_some_and(|v| !v.trim().is_empty()));
    let errs = match first {
        Ok(plan) => {
            return Checked {
                result: Ok(plan),
                warnings,
                notes: Vec::new(),
            };
        }
        Err(errs) if strict || chose_a_secret => {
            return Checked::new(Err(errs), warnings, Vec::new());
        }
        Err(errs) => errs,
    };
    let mut stand_in = env.clone();
    for (k, v) in WEBHOOK_STAND_INS {
        if env.get(k).is_none_or(|x| x.trim().is_empty()) {
            stand_in.0.insert(k.to_owned(), v.to_owned());
        }
    }
    let second = from_parameters(&params, base_dir, settings, &stand_in);
    let remaining: &[ConfigError] = match &second {
        Ok(_) => &[],
        Err(e) => &e.0,
    };
    let mut notes: Vec<String> = errs
        .iter()
        .filter(|e| !remaining.contains(e))
        .map(ToString::to_string)
        .collect();
    if !notes.is_empty() {
        notes.push(
            "this environment has no workload identity variables (the webhook sets AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE in the pod only): the rest was checked as if it had; use check --strict to fail instead".into(),
        );
    }
    Checked::new(second, warnings, notes)
}

/// Remarks on parameters and object keys (unknown, misspelt, deprecated, without effect).
fn warnings(params: &Parameters) -> Vec<String> {
    let mut out = params::warnings(params);
    out.extend(objects::unknown_keys(params.get("objects")));
    out
}

/// A failed configuration with the did-you-mean warnings added as problems: a misspelt key
/// is most likely why something required is missing, so it is said with the errors.
fn with_suggestions(mut errs: ConfigErrors, warnings: &[String]) -> ConfigErrors {
    for w in warnings.iter().filter(|w| w.contains("did you mean")) {
        errs.0.push(ConfigError::Other(w.clone()));
    }
    errs
}

/// Validates a parameters map (already extracted from its file) into a [`Plan`].
/// Relative `cloudEnvFileName` paths are resolved against `base_dir` (the config file's
/// directory, so a ConfigMap can carry both files).
pub fn from_parameters(
    params: &Parameters,
    base_dir: &Path,
    settings: &Settings,
    env: &Env,
) -> Result<Plan, ConfigErrors> {
    let mut errs: Vec<ConfigError> = Vec::new();

    // docs/reference-provider.md §1.2 order: booleans → exclusivity → keyvaultName → tenant →
    // cloud → auth → objects → vault name. Pod name/namespace are not required here.
    let modes = identity::Modes::parse(params, &mut errs);
    let vault_name = params.get("keyvaultName");
    if vault_name.is_empty() {
        errs.push(ConfigError::Missing("keyvaultName"));
    }
    let tenant = identity::tenant(params, env);
    if tenant.is_none() && modes.needs_tenant() {
        errs.push(ConfigError::Missing("tenantId"));
    }
    let cloud = cloud::from_parameters(params, base_dir, &mut errs);
    let vault_url_override = cloud::vault_url_override(params, &mut errs);
    // With a broken cloud, identity problems are still worth reporting; the public cloud
    // stands in (the plan is not produced anyway).
    let fallback;
    let identity_cloud = match &cloud {
        Some(c) => c,
        None => {
            fallback = cloud_by_name("").expect("public cloud is built in");
            &fallback
        }
    };
    let identity = identity::select(
        &modes,
        params,
        tenant.as_deref(),
        identity_cloud,
        settings,
        env,
        &mut errs,
    );
    let objects = objects::from_parameters(params, &mut errs);
    let templates =
        templates::from_sources(&settings.templates, params, base_dir, &objects, &mut errs);
    let vault_url = match cloud::validate_vault_name(vault_name) {
        Ok(()) => vault_url_override.or_else(|| {
            cloud
                .as_ref()
                .and_then(|c| vault_url_for(vault_name, c).ok())
        }),
        Err(msg) => {
            if !vault_name.is_empty() {
                errs.push(ConfigError::VaultName(msg));
            }
            None
        }
    };

    match (errs.is_empty(), vault_url, cloud, identity) {
        (true, Some(vault_url), Some(cloud), Some(identity)) => Ok(Plan {
            vault_url,
            vault_name: vault_name.to_owned(),
            cloud,
            identity,
            objects,
            templates,
        }),
        _ if !errs.is_empty() => Err(ConfigErrors(errs)),
        // Unreachable by construction (every None above pushes an error); say so plainly.
        _ => Err(ConfigErrors(vec![ConfigError::Other(
            "internal error: configuration incomplete without a reported problem".into(),
        )])),
    }
}

#[cfg(test)]
mod tests;
