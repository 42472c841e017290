//! The sidecar loop: first sync, jittered refresh, backoff that keeps the last good set,
//! reload on config change or SIGHUP, readiness.
//!
//! (Placeholder; the implementation lands with the sidecar work.)

use crate::config::{Env, Settings};

/// See [`crate::run`].
pub async fn run(
    _settings: Settings,
    _env: Env,
    _shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), crate::error::Error> {
    Err(crate::error::Error::Internal("not implemented".into()))
}
