//! Observability at the edge: logging setup, Prometheus metrics, and the health/status server.

pub mod metrics;
