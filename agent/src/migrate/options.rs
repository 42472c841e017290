//! What `keyvault-agent migrate` is asked to produce: how the agent joins the pod, which
//! image and binary path it uses, and the namespace of objects that name none.

/// How the agent is added to a converted pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// An init container: one sync (`--once`) before the application starts; no rotation.
    Init,
    /// A native sidecar (Kubernetes 1.29+): an init container with `restartPolicy: Always`
    /// whose startup probe holds the application until the first sync, then refreshes.
    NativeSidecar,
    /// An init container (`--once`) plus a classic sidecar container that refreshes, for
    /// clusters before 1.29. Pods that run to completion (Job, CronJob, restartPolicy Never
    /// or OnFailure) get the init container only: a classic sidecar would never let them end.
    Sidecar,
}

impl Mode {
    /// The spelling of the flag value.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Init => "init",
            Mode::NativeSidecar => "native-sidecar",
            Mode::Sidecar => "sidecar",
        }
    }
}

/// The agent image the manifests in `manifests/` use.
pub const DEFAULT_IMAGE: &str = concat!("keyvault-agent:", env!("CARGO_PKG_VERSION"));

/// Where an application image is expected to hold the agent binary for `keyvault-agent exec`
/// (`COPY --from=keyvault-agent:<version> /keyvault-agent /usr/local/bin/keyvault-agent`).
pub const DEFAULT_EXEC_PATH: &str = "/usr/local/bin/keyvault-agent";

/// The namespace of objects without `metadata.namespace`, like kubectl's default context.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Every choice of one conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How the agent joins the pod.
    pub mode: Mode,
    /// The agent's image.
    pub image: String,
    /// The agent binary's path inside application images, for `exec` wrapping.
    pub exec_path: String,
    /// The namespace of objects that name none (used to match pods with their
    /// SecretProviderClass).
    pub namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::NativeSidecar,
            image: DEFAULT_IMAGE.to_owned(),
            exec_path: DEFAULT_EXEC_PATH.to_owned(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }
}
