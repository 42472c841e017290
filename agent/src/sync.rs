//! One sync cycle over a whole plan: fetch every object in parallel (bounded), convert,
//! assemble one payload, publish it atomically, and report what is mounted.
//!
//! (Placeholder API; the implementation lands with the fetch work.)

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Plan, Settings};
use crate::telemetry::metrics::Metrics;
use crate::writer::WriteOutcome;

/// What is mounted for one output file's object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectStatus {
    /// Reference object id (`secret/name` or `secret/name/0`).
    pub id: String,
    /// Key Vault version.
    pub version: String,
    /// Output path relative to the target dir.
    pub path: String,
    /// sha256 hex of the file contents (contents are never reported).
    pub sha256: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    /// Certificate `notAfter` (Unix seconds), when the object is or holds a certificate.
    pub not_after: Option<i64>,
}

/// Result of a successful cycle.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// Whether files were swapped.
    pub outcome: WriteOutcome,
    /// Status per output file, in plan order.
    pub objects: Vec<ObjectStatus>,
    /// Key Vault GETs performed this cycle (pinned versions are served from memory).
    pub requests: usize,
    /// Wall time of the cycle.
    pub duration: Duration,
    /// When the cycle finished.
    pub finished_at: SystemTime,
}

/// A failed cycle; nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Placeholder.
    #[error("{0}")]
    Failed(String),
}

impl SyncError {
    /// Whether retrying later may succeed (throttling, 5xx, network, deadline).
    pub fn is_transient(&self) -> bool {
        false
    }

    /// Server-requested delay before the next attempt (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Process exit code for `--once` (see `error.rs`).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// Runs sync cycles for one plan; keeps credentials, the HTTP pool and pinned versions
/// between cycles.
#[derive(Debug)]
pub struct Syncer {
    _plan: Plan,
}

impl Syncer {
    /// Builds the HTTP client, credential and writer for `plan`.
    pub fn new(
        plan: Plan,
        _settings: &Settings,
        _metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        Ok(Self { _plan: plan })
    }

    /// One cycle under the settings' overall deadline.
    pub async fn sync(&self) -> Result<SyncReport, SyncError> {
        Err(SyncError::Failed("not implemented".into()))
    }
}

/// `--once`: load, sync once, exit. See [`crate::run_once`].
pub async fn run_once(
    _settings: Settings,
    _env: crate::config::Env,
) -> Result<SyncReport, crate::error::Error> {
    Err(crate::error::Error::Internal("not implemented".into()))
}
