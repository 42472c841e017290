//! Turns a SecretProviderClass (plus flags and environment) into a validated [`Plan`].
//!
//! Parsing follows the Azure provider exactly (names, defaults, trimming, boolean parsing,
//! error precedence; `reference-provider.md` §1) and fixes its validation bugs. Every
//! problem is collected and reported in one run. This module never touches the network.

use std::path::PathBuf;
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

/// A cloud's endpoints (the go-autorest table of `reference-provider.md` §3, or an Azure
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
}

/// A snapshot of the process environment, passed in so tests never mutate the real one.
#[derive(Debug, Clone, Default)]
pub struct Env(pub std::collections::BTreeMap<String, String>);

impl Env {
    /// Snapshot of the current process environment.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
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
}

/// Every configuration problem found in one run, one line each.
/// (Placeholder shape; the config work refines it but keeps the name.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

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

/// Reads `settings.config_file` and validates it with `env` into a [`Plan`].
/// (Placeholder; the config work implements it.)
pub fn load(_settings: &Settings, _env: &Env) -> Result<Plan, ConfigErrors> {
    Err(ConfigErrors(vec!["not implemented".into()]))
}
