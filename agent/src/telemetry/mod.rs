//! Observability at the edge: logging setup, Prometheus metrics, the sidecar's shared state
//! (liveness, readiness, status manifest) and the health/status HTTP server.

pub mod logging;
pub mod metrics;
pub mod server;
pub mod status;

pub use logging::init_logging;
