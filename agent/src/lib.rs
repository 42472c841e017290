//! keyvault-agent: Azure Key Vault objects described by a SecretProviderClass, fetched from
//! inside the pod and published atomically into a shared volume.
//!
//! # Layout
//!
//! Data flows one way (see `docs/architecture.md`):
//!
//! ```text
//! SecretProviderClass ─▶ config ─▶ Plan ─▶ keyvault (with auth) ─▶ convert ─▶ writer
//!                                                                    │
//!                                    sidecar drives cycles; notifier, telemetry at the edge
//! ```
//!
//! - [`cli`]: command-line flags and their environment variables.
//! - [`config`]: SecretProviderClass parsing and validation into a [`config::Plan`]; no I/O
//!   beyond reading files named by the configuration.
//! - [`auth`]: workload identity, managed identity (IMDS) and client-secret credentials with
//!   a token cache; nothing else sees a token.
//! - [`keyvault`]: the only module that speaks HTTP to the vault (challenge, paging, retries).
//! - [`http`]: the one builder of outbound HTTP clients and the bounded body reader.
//! - [`retry`]: backoff with full jitter, server-requested waits, deadlines (every caller).
//! - [`convert`]: pure conversions from Key Vault bundles to file bytes.
//! - [`files`]: bounded reads of regular files named by flags, environment or config.
//! - [`writer`]: the Kubernetes AtomicWriter port; the only module that touches the output dir.
//! - [`syncer`]: one fetch → convert → write cycle over a whole plan.
//! - [`report`]: what a cycle reports (object status, failures) and the exit-code mapping.
//! - [`metrics`]: Prometheus counters and gauges every layer records into (bounded labels).
//! - [`publish`]: the one owner of the output directory's writer; payload plus manifest.
//! - [`sidecar`]: the sidecar loop (jittered timer, backoff, reload, readiness).
//! - [`notifier`]: tells the application that a new set was published.
//! - [`telemetry`]: logs, the sidecar's status, and the health/status HTTP server.
//! - [`signal`]: the one place that listens for SIGTERM, SIGINT and SIGHUP.
//! - [`migrate`]: converts CSI-driver manifests into ones that run the agent (`migrate`).
//! - [`template`]: MiniJinja templates rendered from the objects into the same set.
//! - [`exec`]: `keyvault-agent exec`: fetch once, set env vars, exec the command.
#![forbid(unsafe_code)]
// No arithmetic on durations, instants or system times may panic (issue 9): the lints are set
// for the workspace in Cargo.toml (`[workspace.lints]`); unit tests opt out here.
#![cfg_attr(
    test,
    allow(clippy::arithmetic_side_effects, clippy::unchecked_time_subtraction)
)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod convert;
pub mod detect;
pub mod error;
pub mod exec;
pub mod files;
pub mod http;
pub mod keyvault;
pub mod metrics;
pub mod migrate;
pub mod notifier;
pub mod publish;
pub mod report;
pub mod retry;
pub mod secret;
pub mod shape;
pub mod sidecar;
pub mod signal;
pub mod syncer;
pub mod telemetry;
pub mod template;
pub mod validate;
pub mod writer;

pub use config::{Env, Plan, Settings};

/// Init mode (`--once`): load the configuration, run one sync under the `--timeout`
/// deadline, publish everything or nothing.
pub async fn run_once(settings: Settings, env: Env) -> Result<report::SyncReport, error::Error> {
    syncer::run_once(settings, env).await
}

/// Sidecar mode: first sync, then refresh on a jittered timer until `shutdown` resolves.
/// Reloads the configuration when its file changes or on SIGHUP.
pub async fn run(
    settings: Settings,
    env: Env,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), error::Error> {
    sidecar::run(settings, env, shutdown).await
}
