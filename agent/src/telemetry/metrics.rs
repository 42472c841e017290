//! Prometheus metrics with bounded label values.
//!
//! (Placeholder API; the implementation lands with the sidecar work. Callers in `auth` and
//! `keyvault` record through these methods.)

use std::time::Duration;

/// Outcome class of a Key Vault or token request (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// 404.
    NotFound,
    /// 403 (disabled, RBAC, policy, firewall).
    Forbidden,
    /// 401 (token rejected).
    Unauthorized,
    /// 429.
    Throttled,
    /// 408/5xx/transport/timeout.
    Transient,
    /// Anything else (bad request, unparseable body).
    Other,
}

/// The agent's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// A new registry.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// One Key Vault HTTP request. `object_type` is `secret`, `key`, `cert`.
    pub fn kv_request(&self, _object_type: &str, _outcome: Outcome, _elapsed: Duration) {}

    /// One token acquisition attempt; `mode` is `workload_identity`, `managed_identity`
    /// or `client_secret`.
    pub fn token_request(&self, _mode: &str, _ok: bool) {}
}
