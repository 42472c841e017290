//! What the refresh loop promises the health server, and starting it: the state behind
//! `/readyz` and `/status` ([`SidecarState`]: not ready until the first sync publishes), the
//! check-in deadlines behind `/healthz` (the loop is late only after the cycle it waits for
//! would have timed out, plus [`LIVENESS_SLACK`]), and the listener on `--listen`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Plan, Settings};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::telemetry::server::{Limits, Server};
use crate::telemetry::status::SidecarState;

/// How long after its promised check-in the loop may be late before `/healthz` fails.
const LIVENESS_SLACK: Duration = Duration::from_secs(30);

/// The state the health server serves for `plan`: live while the first sync runs within its
/// deadline, ready once it has published.
pub(super) fn state_for(plan: &Plan, settings: &Settings) -> Arc<SidecarState> {
    Arc::new(SidecarState::new(
        plan.vault_name.clone(),
        settings.timeout.saturating_add(LIVENESS_SLACK),
        settings.max_staleness,
    ))
}

/// The check-in promised while waiting for the cycle due at `next`: its start, its
/// `timeout`, and the slack.
pub(super) fn while_waiting(next: Instant, timeout: Duration) -> Duration {
    next.saturating_duration_since(Instant::now())
        .saturating_add(timeout)
        .saturating_add(LIVENESS_SLACK)
}

/// The check-in promised when a cycle starts: its `timeout` and the slack.
pub(super) fn during_cycle(timeout: Duration) -> Duration {
    timeout.saturating_add(LIVENESS_SLACK)
}

/// Binds the health server on `addr` (an error if the address is taken), tells
/// `on_listening` where it listens, and serves `state` and `metrics` from a task in `tasks`.
pub(super) async fn serve(
    addr: SocketAddr,
    limits: Limits,
    on_listening: Option<oneshot::Sender<SocketAddr>>,
    state: Arc<SidecarState>,
    metrics: Arc<Metrics>,
    tasks: &mut JoinSet<()>,
) -> Result<(), Error> {
    let server = Server::bind_with(addr, limits)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let bound = server.local_addr();
    tracing::info!(
        addr = %bound,
        max_connections = server.limits().max_connections,
        "health server listening"
    );
    if let Some(tx) = on_listening {
        let _ = tx.send(bound);
    }
    tasks.spawn(
        server
            .serve(state, metrics)
            .instrument(tracing::info_span!("health_server", addr = %bound)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: README.md (`/healthz`: 200 while the refresh loop is alive): the loop may
    // wait for its next start and then run a whole cycle before it is late
    #[tokio::test(start_paused = true)]
    async fn the_loop_promises_to_check_in_after_the_next_cycle_could_time_out() {
        let timeout = Duration::from_secs(120);
        let next = Instant::now() + Duration::from_secs(60);
        assert_eq!(while_waiting(next, timeout), Duration::from_secs(210));
        // A start already due promises no more than a cycle starting now.
        let due = Instant::now() - Duration::from_secs(5);
        assert_eq!(while_waiting(due, timeout), during_cycle(timeout));
        assert_eq!(during_cycle(timeout), Duration::from_secs(150));
        // An outside timeout of any size saturates instead of panicking.
        assert_eq!(during_cycle(Duration::MAX), Duration::MAX);
    }
}
