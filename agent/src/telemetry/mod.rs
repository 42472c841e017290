//! Observability at the edge: logging setup, the sidecar's shared state
//! (liveness, readiness, status manifest), the health/status HTTP server and its probe client
//! (`keyvault-agent probe`).

pub mod logging;
pub mod probe;
pub mod server;
pub mod status;

pub use logging::init_logging;
// Metrics moved to the top-level `crate::metrics` (the Key Vault and token clients record
// into them, and must not depend on this edge module); the old path keeps working.
pub use crate::metrics;
