//! The sidecar: first sync, jittered refresh, backoff that keeps the last good set, reload
//! on config change or SIGHUP, readiness, graceful shutdown. [`run`] and [`Sidecar`] are
//! the entry the rest of the crate uses; one file per concern below it:
//!
//! - `cycle.rs`: [`Cycle`], the seam to the work (the real one is the syncer), and
//!   [`CycleFactory`], one cycle per plan sharing one publisher;
//! - `refresh_loop.rs`: the task that owns the schedule and records each cycle's outcome;
//! - `schedule.rs`: when the next cycle starts (interval, jitter, start to start,
//!   expiry-aware; backoff after a failure);
//! - `reload.rs`: config file watch, SIGHUP settling, parsing under a deadline;
//! - `health.rs`: readiness and liveness promises, and the health server's listener;
//! - `changes.rs`: which objects changed between two published sets.
//!
//! One task owns the schedule. Each cycle is [`Cycle::sync`] (fetch → convert → write, by
//! [`crate::syncer::Syncer`]); the writer decides whether anything changed. Around it:
//! - success: state and metrics updated, the app notified once if files were swapped (not
//!   for the process's first publish, the set the app starts with, unless
//!   `--notify-on-start`), next
//!   refresh at `interval ± jitter`. `..status.json` is the published set's manifest,
//!   written by the publisher inside each new generation; an unchanged or failed refresh
//!   does not touch it (next refresh and last error are served at `/status`);
//! - failure: the published set stays, the next attempt backs off exponentially with full
//!   jitter and never earlier than the server's `Retry-After`, clamped to the longer of the
//!   interval and 5 minutes ([`crate::retry::Failures`]), then the normal schedule resumes. The first sync retries the same way forever (not ready meanwhile);
//! - a change in the config file's directory (a ConfigMap update is a `..data` swap, so the
//!   directory is watched, not the file) or SIGHUP reloads the SecretProviderClass; an
//!   invalid one is reported problem by problem and the running plan continues. SIGHUPs
//!   coalesce ([`crate::signal::ReloadRequests`]) and settle (a reload starts once they have stopped for
//!   250 ms, at most 5 s after the first), so a burst of any size causes one reload, and
//!   one more at most if it goes on during that reload's refresh. The file
//!   is parsed on a blocking thread under [`RELOAD_DEADLINE`], so a slow or huge file never
//!   stalls the runtime (health server included) and delays the schedule by at most that;
//! - shutdown lets an in-flight cycle finish (so a swap completes) within
//!   `--shutdown-grace`, then returns.
//!
//! All timing uses `tokio::time`, so tests drive it with a paused clock.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{self, ConfigErrors, Env, Settings};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::notifier::{Coalescer, Notifier};
use crate::publish::Publisher;
use crate::retry::Failures;
use crate::signal::ReloadRequests;
use crate::telemetry::server::Limits;

mod changes;
mod cycle;
#[cfg(test)]
mod harness;
mod health;
mod refresh_loop;
mod reload;
mod schedule;

pub use cycle::{Cycle, CycleFactory};
pub use reload::RELOAD_DEADLINE;

use cycle::default_factory;
use refresh_loop::Loop;

/// See [`crate::run`]: the production wiring (SIGHUP reloads).
pub async fn run(
    settings: Settings,
    env: Env,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    let mut sidecar = Sidecar::new(settings, env);
    match crate::signal::reload_requests() {
        Ok(hups) => sidecar = sidecar.reload_requests(hups),
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file watch only"),
    }
    sidecar.run(shutdown).await
}

/// The sidecar, configured. [`run`] is `Sidecar::new(..).reload_trigger(SIGHUP).run(..)`.
pub struct Sidecar {
    /// Flags and environment-derived settings.
    settings: Settings,
    /// Environment snapshot for loading the plan.
    env: Env,
    /// The metrics registry (shared with the caller when given).
    metrics: Arc<Metrics>,
    /// The coalescing reload flag (SIGHUP in production).
    reload: ReloadRequests,
    /// Streams whose items set `reload` (forwarded by a task while the sidecar runs).
    triggers: Vec<BoxStream<'static, ()>>,
    /// Bounds of the health server.
    limits: Limits,
    /// Told the health server's bound address once it listens.
    on_listening: Option<oneshot::Sender<SocketAddr>>,
    /// Builds a cycle for a plan.
    factory: CycleFactory,
}

impl Sidecar {
    /// A sidecar for `settings` and `env` with the real syncer and no reload trigger other
    /// than the config file watch.
    pub fn new(settings: Settings, env: Env) -> Self {
        let publisher = Publisher::for_dir(&settings.dir);
        Self {
            settings,
            env,
            metrics: Metrics::new(),
            reload: ReloadRequests::new(),
            triggers: Vec::new(),
            limits: Limits::for_this_process(),
            on_listening: None,
            factory: default_factory(publisher),
        }
    }

    /// Uses `metrics` (shared with the caller).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Each item requests a reload and an immediate refresh; requests coalesce like
    /// SIGHUPs (see [`Sidecar::reload_requests`]).
    pub fn reload_trigger(mut self, trigger: impl Stream<Item = ()> + Send + 'static) -> Self {
        self.triggers.push(trigger.boxed());
        self
    }

    /// Uses `reload` as the reload flag (the process's SIGHUP flag in production): each
    /// time it is set the configuration is reloaded and a refresh runs now; requests made
    /// while one is pending or running collapse into one.
    pub fn reload_requests(mut self, reload: ReloadRequests) -> Self {
        self.reload = reload;
        self
    }

    /// Bounds of the health server (default [`Limits::for_this_process`]).
    pub fn health_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Receives the health server's bound address (useful with port 0).
    pub fn on_listening(mut self, tx: oneshot::Sender<SocketAddr>) -> Self {
        self.on_listening = Some(tx);
        self
    }

    /// Replaces how cycles are built.
    pub fn cycle_factory(mut self, factory: CycleFactory) -> Self {
        self.factory = factory;
        self
    }

    /// Runs until `shutdown` resolves. Returns an error only for problems found at startup
    /// (invalid configuration or flags, the listen address taken); later failures are
    /// retried.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let span = tracing::info_span!("sidecar");
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let settings = self.settings.clone();
        let plan = Arc::new(config::load(&settings, &self.env).map_err(Error::Config)?);
        let notifier = Notifier::with_trust(
            &settings.notify,
            &settings.ca_files,
            &settings.ca_dirs,
            self.metrics.clone(),
        )
        .map_err(|e| Error::Config(ConfigErrors(vec![e.to_string().into()])))?;
        let cycle = (self.factory)(plan.clone(), &settings, self.metrics.clone())?;
        tracing::info!(
            vault = %plan.vault_name,
            objects = plan.objects.len(),
            interval = %humantime::format_duration(settings.interval),
            jitter = settings.jitter,
            dir = %settings.dir.display(),
            "sidecar starting"
        );
        let state = health::state_for(&plan, &settings);

        let mut tasks = JoinSet::new();
        if let Some(addr) = settings.listen {
            health::serve(
                addr,
                self.limits,
                self.on_listening.take(),
                state.clone(),
                self.metrics.clone(),
                &mut tasks,
            )
            .await?;
        }

        let (watch_tx, watch_rx) = mpsc::channel(16);
        let _watcher = match reload::watch_config_dir(&settings.config_file, watch_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    file = %settings.config_file.display(),
                    error = %e,
                    "cannot watch the configuration; reload with SIGHUP"
                );
                None
            }
        };

        for trigger in std::mem::take(&mut self.triggers) {
            let reload = self.reload.clone();
            tasks.spawn(trigger.for_each(move |()| {
                reload.request();
                std::future::ready(())
            }));
        }

        let coalescer = (!notifier.is_empty()).then(|| {
            let notifier = Arc::new(notifier);
            Coalescer::spawn(move |event| {
                let notifier = notifier.clone();
                async move { notifier.notify(&event).await }
            })
        });

        let mut lp = Loop {
            backoff: Failures::for_interval(settings.interval),
            settings,
            env: self.env,
            metrics: self.metrics,
            factory: self.factory,
            plan,
            cycle,
            state,
            coalescer,
            published: Arc::default(),
            first: true,
            reload_deadline: RELOAD_DEADLINE,
        };
        let result = lp.run(shutdown, self.reload, watch_rx).await;
        tasks.shutdown().await;
        result
    }
}
