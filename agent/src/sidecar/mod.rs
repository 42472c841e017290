//! The sidecar loop: first sync, jittered refresh, backoff that keeps the last good set,
//! reload on config change or SIGHUP, readiness, graceful shutdown.
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
//!   coalesce ([`ReloadRequests`]) and settle (a reload starts once they have stopped for
//!   250 ms, at most 5 s after the first), so a burst of any size causes one reload, and
//!   one more at most if it goes on during that reload's refresh. The file
//!   is parsed on a blocking thread under [`RELOAD_DEADLINE`], so a slow or huge file never
//!   stalls the runtime (health server included) and delays the schedule by at most that;
//! - shutdown lets an in-flight cycle finish (so a swap completes) within
//!   `--shutdown-grace`, then returns.
//!
//! All timing uses `tokio::time`, so tests drive it with a paused clock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{self, ConfigErrors, Env, Plan, Settings};
use crate::error::Error;
use crate::metrics::{Metrics, RefreshResult};
use crate::notifier::{ChangeEvent, Coalescer, Notifier};
use crate::publish::Publisher;
use crate::report::{ObjectStatus, SyncError, SyncReport};
use crate::retry::{Failures, deadline_in, jittered};
use crate::signal::ReloadRequests;
use crate::syncer::Syncer;
use crate::telemetry::server::{Limits, Server};
use crate::telemetry::status::SidecarState;
use crate::writer::WriteOutcome;

/// How long after its promised check-in the loop may be late before `/healthz` fails.
const LIVENESS_SLACK: Duration = Duration::from_secs(30);
/// Config file events closer together than this are handled as one reload (editors and the
/// kubelet's `..data` swap produce bursts).
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest a stream of SIGHUPs may postpone its reload (each one restarts the
/// [`RELOAD_DEBOUNCE`] wait, up to this).
const RELOAD_SETTLE_MAX: Duration = Duration::from_secs(5);
/// Longest a reload may take to read and parse the configuration before it is abandoned
/// (the running plan stays; the parse finishes or fails on its own thread).
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

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

/// One sync cycle over a plan. [`Syncer`] is the real one; the seam exists so a test can
/// run the real syncer elsewhere (for example on a runtime with a real clock while the loop
/// runs on a paused one).
pub trait Cycle: Send + Sync {
    /// One fetch → convert → write cycle.
    fn sync(&self) -> BoxFuture<'_, Result<SyncReport, SyncError>>;

    /// The publisher this cycle writes through, if it has one.
    fn publisher(&self) -> Option<&Publisher> {
        None
    }
}

impl Cycle for Syncer {
    fn sync(&self) -> BoxFuture<'_, Result<SyncReport, SyncError>> {
        Box::pin(Syncer::sync(self))
    }

    fn publisher(&self) -> Option<&Publisher> {
        Some(Syncer::publisher(self))
    }
}

/// Builds a [`Cycle`] for a plan (at startup and on each reload).
pub type CycleFactory = Arc<
    dyn Fn(Arc<Plan>, &Settings, Arc<Metrics>) -> Result<Box<dyn Cycle>, SyncError> + Send + Sync,
>;

/// Real syncers, all publishing through `publisher` (one writer per output directory for
/// the life of the process, whatever the reloads) and sharing one fetch cache (a reload
/// reuses unchanged objects).
fn default_factory(publisher: Publisher) -> CycleFactory {
    let cache = crate::detect::FetchCache::new();
    Arc::new(move |plan, settings, metrics| {
        Ok(Box::new(
            Syncer::with_publisher(plan, settings, metrics, publisher.clone())?
                .with_cache(cache.clone()),
        ) as Box<dyn Cycle>)
    })
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
        let state = Arc::new(SidecarState::new(
            plan.vault_name.clone(),
            settings.timeout.saturating_add(LIVENESS_SLACK),
            settings.max_staleness,
        ));

        let mut tasks = JoinSet::new();
        if let Some(addr) = settings.listen {
            let server = Server::bind_with(addr, self.limits)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let bound = server.local_addr();
            tracing::info!(
                addr = %bound,
                max_connections = server.limits().max_connections,
                "health server listening"
            );
            if let Some(tx) = self.on_listening.take() {
                let _ = tx.send(bound);
            }
            tasks.spawn(
                server
                    .serve(state.clone(), self.metrics.clone())
                    .instrument(tracing::info_span!("health_server", addr = %bound)),
            );
        }

        let (watch_tx, watch_rx) = mpsc::channel(16);
        let _watcher = match watch_config_dir(&settings.config_file, watch_tx) {
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

/// The refresh loop's state; owned by one task, shared outward only through `state`.
struct Loop {
    /// Flags and environment-derived settings (fixed for the process).
    settings: Settings,
    /// The environment snapshot the plan is loaded with (fixed; reload re-reads the file).
    env: Env,
    /// Shared with the health server and the syncer.
    metrics: Arc<Metrics>,
    /// Builds the cycle for a reloaded plan.
    factory: CycleFactory,
    /// The plan in effect (replaced only by a valid reload).
    plan: Arc<Plan>,
    /// The cycle for `plan`.
    cycle: Box<dyn Cycle>,
    /// Liveness, readiness and the status manifest, read by the health server.
    state: Arc<SidecarState>,
    /// Failure backoff; reset by a success.
    backoff: Failures,
    /// Delivers change notifications, when any notifier is configured.
    coalescer: Option<Coalescer>,
    /// What the last successful cycle reported, to name the objects that changed.
    published: Arc<Vec<ObjectStatus>>,
    /// No cycle has succeeded yet (wording of log lines).
    first: bool,
    /// How long a reload may read and parse before it is abandoned.
    reload_deadline: Duration,
}

impl Loop {
    async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
        reload: ReloadRequests,
        mut watch_rx: mpsc::Receiver<()>,
    ) -> Result<(), Error> {
        let mut shutdown = pin!(shutdown);
        let mut next = Instant::now();
        loop {
            self.state.heartbeat(
                next.saturating_duration_since(Instant::now())
                    .saturating_add(self.settings.timeout)
                    .saturating_add(LIVENESS_SLACK),
            );
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                () = reload.requested() => {
                    // A burst (a loop of `kill -HUP`, a supervisor retrying) settles into
                    // one reload: wait until requests stop for RELOAD_DEBOUNCE.
                    let settle_max = tokio::time::sleep(RELOAD_SETTLE_MAX);
                    let mut settle_max = pin!(settle_max);
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut shutdown => {
                                tracing::info!("shutting down");
                                return Ok(());
                            }
                            _ = &mut settle_max => break,
                            more = tokio::time::timeout(RELOAD_DEBOUNCE, reload.requested()) => {
                                if more.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::info!("reload requested (SIGHUP); reloading and refreshing now");
                    self.reload().await;
                }
                Some(()) = watch_rx.recv() => {
                    // Let the burst settle, then reload once.
                    let settle = tokio::time::sleep(RELOAD_DEBOUNCE);
                    let mut settle = pin!(settle);
                    loop {
                        tokio::select! {
                            _ = &mut settle => break,
                            Some(()) = watch_rx.recv() => {}
                        }
                    }
                    if !self.reload().await {
                        continue;
                    }
                    tracing::info!("configuration changed; refreshing now");
                }
                _ = tokio::time::sleep_until(next) => {}
            }

            // One cycle. Shutdown during it lets it finish within the grace period.
            self.state
                .heartbeat(self.settings.timeout.saturating_add(LIVENESS_SLACK));
            let started = Instant::now();
            let result = {
                let mut fut = self.cycle.sync();
                tokio::select! {
                    r = &mut fut => r,
                    _ = &mut shutdown => {
                        let grace = self.settings.shutdown_grace;
                        tracing::info!(
                            grace = %humantime::format_duration(grace),
                            "shutdown requested during a refresh; letting it finish"
                        );
                        match tokio::time::timeout(grace, fut).await {
                            Ok(r) => {
                                self.finished(r, started, false);
                                tracing::info!("shutting down");
                            }
                            Err(_) => tracing::warn!(
                                grace = %humantime::format_duration(grace),
                                "refresh did not finish within the shutdown grace period; \
                                 the previously published set stays"
                            ),
                        }
                        return Ok(());
                    }
                }
            };
            let ok = result.is_ok();
            let delay = self.finished(result, started, true);
            // The schedule runs start to start: a slow cycle eats into the wait, and one slower
            // than the interval is followed at once (never overlapped: the next starts after
            // this one returned). Failure backoff (and Retry-After) counts from the failure.
            next = if ok {
                crate::retry::instant_after(started, delay)
            } else {
                deadline_in(delay)
            };
        }
    }

    /// Records a finished cycle; returns the delay until the next one.
    fn finished(
        &mut self,
        result: Result<SyncReport, SyncError>,
        started: Instant,
        notify: bool,
    ) -> Duration {
        match result {
            Ok(report) => {
                let data_dir = match &report.outcome {
                    WriteOutcome::Published { data_dir } => Some(data_dir.clone()),
                    WriteOutcome::Unchanged => None,
                };
                let changed = changed_ids(&self.published, &report.objects);
                self.metrics.refresh(if data_dir.is_some() {
                    RefreshResult::Changed
                } else {
                    RefreshResult::Unchanged
                });
                self.metrics.synced(
                    report.finished_at,
                    report.objects.iter().map(ObjectStatus::mounted),
                );
                self.state.succeeded(&report, data_dir.clone());
                let mut delay = jittered(self.settings.interval, self.settings.jitter);
                // An object expiring before the next look is looked at before it expires.
                if let Some(within) = report.refresh_within {
                    delay = delay.min(within.saturating_add(started.elapsed()));
                }
                self.state
                    .scheduled(delay.saturating_sub(started.elapsed()));
                // The message stays fixed (log queries match it); the objects are a field.
                let changed_list = describe_changes(&self.published, &report.objects);
                tracing::info!(
                    objects = report.objects.len(),
                    changed = data_dir.is_some(),
                    changed_objects = changed.len(),
                    changed_list = %changed_list,
                    requests = report.requests,
                    duration_ms = report.duration.as_millis() as u64,
                    next_in = %humantime::format_duration(Duration::from_secs(delay.as_secs())),
                    "{}",
                    if self.first { "first sync published" } else { "refresh done" }
                );
                // The first publish of the process is what the application starts with, not
                // a change to it: notified only with --notify-on-start.
                let notify = notify && (!self.first || self.settings.notify.on_start);
                if let (Some(data_dir), true, Some(c)) = (data_dir, notify, &self.coalescer) {
                    c.send(ChangeEvent {
                        event: "published",
                        vault: self.plan.vault_name.clone(),
                        dir: self.settings.dir.clone(),
                        data_dir,
                        changed,
                        objects: report.objects.iter().map(Into::into).collect(),
                    });
                }
                self.published = report.objects;
                self.first = false;
                self.backoff.reset();
                delay
            }
            Err(e) => {
                self.metrics.refresh(RefreshResult::Failed);
                self.metrics.error(error_class(&e));
                let requested = e.retry_after();
                let pause = self.backoff.next_delay(requested);
                let delay = pause.delay;
                if let Some(asked) = pause.clamped_from {
                    // Once per clamp, with the objects (the error names them).
                    tracing::warn!(
                        error = %e.to_string().replace('\n', "; "),
                        requested_wait = %crate::retry::format_wait(asked),
                        retry_in = %crate::retry::format_wait(delay),
                        "the server asked to wait longer than the sidecar allows; retrying sooner so rotation does not stop"
                    );
                }
                // Object failures are one per line; the log line stays one line.
                let message = e.to_string().replace('\n', "; ");
                self.state.failed_with(&message, e.refused());
                self.state.scheduled(delay);
                tracing::warn!(
                    error = %message,
                    transient = e.is_transient(),
                    attempt = self.backoff.attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)),
                    "{}",
                    if self.first {
                        "first sync failed; not ready, retrying"
                    } else {
                        "refresh failed; keeping the published set"
                    }
                );
                // Said at info too, so a sidecar at the default level is never silent
                // about when it tries again.
                tracing::info!(
                    retry = self.backoff.attempt,
                    "{}",
                    retry_message(self.backoff.attempt, delay, SystemTime::now())
                );
                delay
            }
        }
    }

    /// Reloads the configuration. Returns whether the plan changed (and was adopted).
    async fn reload(&mut self) -> bool {
        let (settings, env) = (self.settings.clone(), self.env.clone());
        let parse = tokio::task::spawn_blocking(move || config::load(&settings, &env));
        let loaded = match tokio::time::timeout(self.reload_deadline, parse).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => {
                self.metrics.error("config");
                tracing::error!(error = %e, "configuration reload failed; the running configuration stays in effect");
                return false;
            }
            Err(_) => {
                self.metrics.error("config");
                tracing::error!(
                    file = %self.settings.config_file.display(),
                    deadline = %humantime::format_duration(self.reload_deadline),
                    "reading the configuration did not finish within the reload deadline; \
                     the running configuration stays in effect (is the file a FIFO or huge?)"
                );
                return false;
            }
        };
        let plan = match loaded {
            Ok(plan) => plan,
            Err(errors) => {
                self.metrics.error("config");
                for problem in &errors.0 {
                    tracing::error!(
                        file = %self.settings.config_file.display(),
                        problem = %problem,
                        "invalid configuration"
                    );
                }
                tracing::error!(
                    problems = errors.0.len(),
                    "new configuration rejected; the running configuration stays in effect"
                );
                return false;
            }
        };
        let plan = Arc::new(plan);
        if plan == self.plan {
            tracing::debug!("configuration unchanged");
            return false;
        }
        match (self.factory)(plan.clone(), &self.settings, self.metrics.clone()) {
            Ok(cycle) => {
                tracing::info!(
                    vault = %plan.vault_name,
                    objects = plan.objects.len(),
                    "configuration reloaded"
                );
                self.state.set_vault(&plan.vault_name);
                self.cycle = cycle;
                self.plan = plan;
                true
            }
            Err(e) => {
                self.metrics.error("config");
                tracing::error!(
                    error = %e,
                    "new configuration rejected; the running configuration stays in effect"
                );
                false
            }
        }
    }
}

/// Ids whose version or contents differ between two reports (new ids included).
fn changed_ids(before: &[ObjectStatus], after: &[ObjectStatus]) -> Vec<String> {
    // A set, not a scan per object: at thousands of objects a nested scan is millions of
    // string comparisons per refresh.
    let known: std::collections::HashSet<(&str, &str, &str, &str)> = before
        .iter()
        .map(|b| {
            (
                b.id.as_str(),
                b.path.as_str(),
                b.version.as_str(),
                b.digest.as_str(),
            )
        })
        .collect();
    after
        .iter()
        .filter(|a| {
            !known.contains(&(
                a.id.as_str(),
                a.path.as_str(),
                a.version.as_str(),
                a.digest.as_str(),
            ))
        })
        .map(|a| a.id.clone())
        .collect()
}

/// How many changed objects a change log line names before `and N more`.
const CHANGED_NAMES: usize = 10;

/// The objects that changed between two reports, with their new versions, for the log:
/// `secret/db@3f2a..., cert/tls@9c1e...` (at most [`CHANGED_NAMES`], then `and N more`).
fn describe_changes(before: &[ObjectStatus], after: &[ObjectStatus]) -> String {
    let changed: Vec<String> = after
        .iter()
        .filter(|a| {
            !before.iter().any(|b| {
                b.id == a.id && b.path == a.path && b.version == a.version && b.digest == a.digest
            })
        })
        .map(|a| format!("{}@{}", a.id, a.version))
        .collect();
    crate::report::name_list(&changed, CHANGED_NAMES)
}

/// `retry 3 at 2024-05-01T10:00:07Z (in 7s)`: when the sidecar tries again after its
/// `n`th consecutive failure.
fn retry_message(n: u32, delay: Duration, now: SystemTime) -> String {
    let at = now
        .checked_add(delay)
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "later".to_owned());
    format!(
        "retry {n} at {at} (in {})",
        humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
    )
}

/// Short fixed error class for the `errors_total` metric.
fn error_class(e: &SyncError) -> &'static str {
    if e.retry_after().is_some() {
        "throttled"
    } else if e.is_transient() {
        "transient"
    } else {
        "permanent"
    }
}

/// Watches the directory holding the config file and sends `()` for changes that may
/// concern it: the file itself, or a `..`-prefixed entry (ConfigMap `..data` swaps).
/// Access events are ignored (the agent's own reads would otherwise loop).
fn watch_config_dir(
    config_file: &Path,
    tx: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dir: PathBuf = match config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = config_file.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let file = p.file_name();
            file == name.as_deref()
                || file
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(".."))
        });
        if relevant {
            // Full means a reload is already pending.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, end) of each cycle.
    type Calls = Arc<std::sync::Mutex<Vec<(Instant, Option<Instant>)>>>;

    /// A scripted cycle: each call takes `latency` (tokio time) and returns the next result.
    struct Scripted {
        script: std::sync::Mutex<std::collections::VecDeque<Result<WriteOutcome, String>>>,
        calls: Calls,
        latency: Duration,
        /// What each report asks for as `refresh_within`.
        within: Option<Duration>,
    }

    impl Cycle for Scripted {
        fn sync(&self) -> BoxFuture<'_, Result<SyncReport, SyncError>> {
            Box::pin(async move {
                let idx = {
                    let mut calls = self.calls.lock().unwrap();
                    calls.push((Instant::now(), None));
                    calls.len() - 1
                };
                tokio::time::sleep(self.latency).await;
                self.calls.lock().unwrap()[idx].1 = Some(Instant::now());
                let next = self
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Ok(WriteOutcome::Unchanged));
                match next {
                    Ok(outcome) => Ok(SyncReport {
                        outcome,
                        objects: Arc::new(vec![obj("secret/a", "1", "x")]),
                        requests: 1,
                        duration: self.latency,
                        finished_at: std::time::SystemTime::now(),
                        list_fallback: Vec::new(),
                        absent: Vec::new(),
                        refresh_within: self.within,
                    }),
                    Err(e) => Err(failure(&e)),
                }
            })
        }
    }

    /// `throttle:N` is a 429 with `Retry-After: N`; anything else a 503.
    fn failure(what: &str) -> SyncError {
        use crate::keyvault::KeyVaultError;
        use crate::syncer::{FailureKind, ObjectFailure};
        let kind = match what.strip_prefix("throttle:") {
            Some(n) => KeyVaultError::Throttled {
                retry_after: Some(Duration::from_secs(n.parse().unwrap())),
            },
            None => KeyVaultError::Transient {
                status: Some(503),
                message: what.into(),
            },
        };
        SyncError::Objects(vec![ObjectFailure {
            label: "secret \"a\"".into(),
            kind: FailureKind::KeyVault(kind),
        }])
    }

    fn published(n: u32) -> Result<WriteOutcome, String> {
        Ok(WriteOutcome::Published {
            data_dir: format!("..{n}"),
        })
    }

    struct Harness {
        lp: Loop,
        calls: Calls,
        notified: Arc<std::sync::Mutex<Vec<String>>>,
        _dir: tempfile::TempDir,
    }

    fn harness(
        script: Vec<Result<WriteOutcome, String>>,
        latency: Duration,
        interval: Duration,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::with_defaults(dir.path().join("spc.yaml"), dir.path());
        settings.interval = interval;
        settings.jitter = 0.0;
        settings.listen = None;
        settings.shutdown_grace = Duration::from_secs(10);
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let notified = Arc::new(std::sync::Mutex::new(Vec::new()));
        let n = notified.clone();
        let coalescer = Coalescer::spawn(move |e: ChangeEvent| {
            let n = n.clone();
            async move { n.lock().unwrap().push(e.data_dir) }
        });
        let plan = Arc::new(test_plan());
        let lp = Loop {
            backoff: Failures::for_interval(interval),
            env: Env::default(),
            metrics: Metrics::new(),
            factory: default_factory(Publisher::for_dir(dir.path())),
            plan,
            cycle: Box::new(Scripted {
                script: std::sync::Mutex::new(script.into()),
                calls: calls.clone(),
                latency,
                within: None,
            }),
            state: Arc::new(SidecarState::new(
                "demo".into(),
                Duration::from_secs(60),
                None,
            )),
            coalescer: Some(coalescer),
            published: Arc::default(),
            first: true,
            reload_deadline: RELOAD_DEADLINE,
            settings,
        };
        Harness {
            lp,
            calls,
            notified,
            _dir: dir,
        }
    }

    fn test_plan() -> Plan {
        Plan {
            vault_url: "https://demo.vault.localhost/".parse().unwrap(),
            vault_name: "demo".into(),
            cloud: crate::config::cloud_by_name("AzurePublicCloud").unwrap(),
            identity: crate::config::Identity::ManagedIdentity {
                client_id: None,
                endpoint: "http://127.0.0.1:1/".parse().unwrap(),
            },
            objects: vec![],
            templates: vec![],
        }
    }

    // reference: ISSUE13 item 1 ("one AtomicWriter per output dir owned by the publisher")
    #[tokio::test]
    async fn cycles_built_for_reloads_share_one_publisher() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::with_defaults(dir.path().join("spc.yaml"), dir.path());
        let publisher = Publisher::for_dir(dir.path());
        let factory = default_factory(publisher.clone());
        let first = factory(test_plan().into(), &settings, Metrics::new()).unwrap();
        let mut reloaded = test_plan();
        reloaded.vault_name = "other".into();
        let second = factory(reloaded.into(), &settings, Metrics::new()).unwrap();
        assert!(first.publisher().unwrap().same_as(&publisher));
        assert!(second.publisher().unwrap().same_as(&publisher));
        // And the sidecar's own loop has no writer of its own: it is built from settings
        // with one publisher that every cycle shares.
        let s = Sidecar::new(settings.clone(), Env::default());
        let a = (s.factory)(test_plan().into(), &settings, Metrics::new()).unwrap();
        let b = (s.factory)(test_plan().into(), &settings, Metrics::new()).unwrap();
        assert!(a.publisher().unwrap().same_as(b.publisher().unwrap()));
    }

    async fn run_for(h: &mut Harness, total: Duration) {
        run_with(h, total, ReloadRequests::new()).await
    }

    async fn run_with(h: &mut Harness, total: Duration, reload: ReloadRequests) {
        let (_watch_tx, watch_rx) = mpsc::channel::<()>(1);
        h.lp.run(tokio::time::sleep(total), reload, watch_rx)
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn first_sync_failures_retry_with_backoff_and_stay_unready() {
        let mut h = harness(
            vec![Err("down".into()), Err("down".into()), published(1)],
            Duration::from_millis(10),
            Duration::from_secs(60),
        );
        let state = h.lp.state.clone();
        assert!(!state.readiness().ok);
        run_for(&mut h, Duration::from_secs(200)).await;
        let calls = h.calls.lock().unwrap().clone();
        // 3 attempts to get the first set, then one per minute.
        assert!(calls.len() >= 5, "{calls:?}");
        let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].0 - w[0].0).collect();
        // Backoff after failures: under the 1 s and 2 s ceilings (plus the cycle's latency).
        assert!(gaps[0] <= Duration::from_millis(1010), "{gaps:?}");
        assert!(gaps[1] <= Duration::from_millis(2010), "{gaps:?}");
        // Then the normal schedule (no jitter here): interval from start to start.
        assert_eq!(gaps[2], Duration::from_secs(60));
        assert!(state.readiness().ok);
        assert_eq!(state.doc().consecutive_failures, 0);
        // reference: issue 11 item 8 (the first publish notifies only with --notify-on-start)
        assert!(h.notified.lock().unwrap().is_empty());
    }

    // reference: issue 11 item 8 (--notify-on-start: the first publish notifies too)
    #[tokio::test(start_paused = true)]
    async fn the_first_publish_notifies_only_with_notify_on_start() {
        for on_start in [false, true] {
            let mut h = harness(
                vec![published(1), Ok(WriteOutcome::Unchanged), published(2)],
                Duration::from_millis(5),
                Duration::from_secs(10),
            );
            h.lp.settings.notify.on_start = on_start;
            run_for(&mut h, Duration::from_secs(35)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let want: &[&str] = if on_start { &["..1", "..2"] } else { &["..2"] };
            assert_eq!(*h.notified.lock().unwrap(), want, "on_start {on_start}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_set_and_notifies_only_on_swaps() {
        let mut h = harness(
            vec![
                published(1),
                Ok(WriteOutcome::Unchanged),
                Err("throttled".into()),
                published(2),
                Ok(WriteOutcome::Unchanged),
            ],
            Duration::from_millis(5),
            Duration::from_secs(10),
        );
        let state = h.lp.state.clone();
        run_for(&mut h, Duration::from_secs(45)).await;
        assert!(h.calls.lock().unwrap().len() >= 5);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // The first publish is what the app starts with (no --notify-on-start here).
        assert_eq!(*h.notified.lock().unwrap(), vec!["..2".to_string()]);
        assert!(state.readiness().ok);
        assert_eq!(state.doc().data_dir.as_deref(), Some("..2"));
        let text = h.lp.metrics.encode();
        assert!(
            text.contains("refreshes_total{result=\"changed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("refreshes_total{result=\"failed\"} 1"),
            "{text}"
        );
        assert!(text.contains("swaps_total 2"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_delays_the_next_attempt_then_the_schedule_resumes() {
        let mut h = harness(
            vec![published(1), Err("throttle:30".into()), published(2)],
            Duration::from_millis(5),
            Duration::from_secs(10),
        );
        run_for(&mut h, Duration::from_secs(60)).await;
        let calls = h.calls.lock().unwrap().clone();
        let gap = |i: usize| calls[i + 1].0 - calls[i].1.unwrap();
        let start_to_start = |i: usize| calls[i + 1].0 - calls[i].0;
        assert_eq!(start_to_start(0), Duration::from_secs(10));
        // Far beyond the 1 s backoff ceiling: the server asked for 30 s, counted from the
        // failure.
        assert!(gap(1) >= Duration::from_secs(30), "{:?}", gap(1));
        assert!(gap(1) <= Duration::from_secs(31), "{:?}", gap(1));
        assert_eq!(start_to_start(2), Duration::from_secs(10));
        let text = h.lp.metrics.encode();
        assert!(
            text.contains("errors_total{class=\"throttled\"} 1"),
            "{text}"
        );
    }

    // reference: issue 9 item 1 ("a huge Retry-After: 86400 silently stops rotation"; and
    // `Instant::now() + delay` panicked on main with a saturated one)
    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_is_clamped_so_rotation_goes_on() {
        for asked in ["86400", "18446744073709551615"] {
            let mut h = harness(
                vec![published(1), Err(format!("throttle:{asked}")), published(2)],
                Duration::from_millis(5),
                Duration::from_secs(10),
            );
            let state = h.lp.state.clone();
            run_for(&mut h, Duration::from_secs(400)).await;
            let calls = h.calls.lock().unwrap().clone();
            assert!(calls.len() >= 3, "{asked}: {calls:?}");
            let gap = calls[2].0 - calls[1].1.unwrap();
            // Clamped to the longer of the interval and the 5 minute backoff ceiling.
            assert_eq!(gap, crate::retry::MAX_BACKOFF, "{asked}");
            assert_eq!(state.doc().data_dir.as_deref(), Some("..2"), "{asked}");
            assert!(state.readiness().ok, "{asked}");
        }
    }

    // reference: issue 10 item 3 (the interval is measured start to start)
    #[tokio::test(start_paused = true)]
    async fn the_interval_runs_start_to_start() {
        // Each cycle takes 2 s; refreshes still start every 10 s, not every 12 s.
        let mut h = harness(vec![], Duration::from_secs(2), Duration::from_secs(10));
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(45)).await;
        let starts: Vec<Duration> = h.calls.lock().unwrap().iter().map(|c| c.0 - t0).collect();
        assert_eq!(
            starts,
            [0, 10, 20, 30, 40].map(Duration::from_secs).to_vec(),
            "{starts:?}"
        );
    }

    // reference: issue 10 item 4 (refetched before it expires, even between intervals)
    #[tokio::test(start_paused = true)]
    async fn an_expiring_object_brings_the_next_refresh_forward() {
        let mut h = harness(vec![], Duration::from_secs(1), Duration::from_secs(60));
        h.lp.cycle = Box::new(Scripted {
            script: std::sync::Mutex::new(Default::default()),
            calls: h.calls.clone(),
            latency: Duration::from_secs(1),
            within: Some(Duration::from_secs(5)),
        });
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(14)).await;
        let starts: Vec<Duration> = h.calls.lock().unwrap().iter().map(|c| c.0 - t0).collect();
        // 5 s after each cycle ends, not 60 s after it starts.
        assert_eq!(starts, [0, 6, 12].map(Duration::from_secs).to_vec());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_slower_than_the_interval_is_followed_at_once_never_overlapped() {
        // Each cycle takes 15 s with a 10 s interval: back to back, one at a time.
        let mut h = harness(vec![], Duration::from_secs(15), Duration::from_secs(10));
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(50)).await;
        let calls = h.calls.lock().unwrap().clone();
        let starts: Vec<Duration> = calls.iter().map(|c| c.0 - t0).collect();
        assert_eq!(starts, [0, 15, 30, 45].map(Duration::from_secs).to_vec());
        for w in calls.windows(2) {
            assert!(w[1].0 >= w[0].1.unwrap(), "cycles overlapped: {calls:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_mid_cycle_lets_it_finish_within_grace() {
        // The first cycle takes 5 s; shutdown arrives at 1 s; grace is 10 s.
        let mut h = harness(
            vec![published(1)],
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        let started = Instant::now();
        run_for(&mut h, Duration::from_secs(1)).await;
        let calls = h.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        assert!(calls[0].1.is_some(), "the in-flight cycle was abandoned");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(h.lp.state.readiness().ok);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_grace_bounds_a_stuck_cycle() {
        let mut h = harness(
            vec![published(1)],
            Duration::from_secs(600),
            Duration::from_secs(60),
        );
        h.lp.settings.shutdown_grace = Duration::from_secs(3);
        let started = Instant::now();
        run_for(&mut h, Duration::from_secs(1)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        assert!(h.calls.lock().unwrap()[0].1.is_none());
        assert!(!h.lp.state.readiness().ok);
    }

    // reference: docs/threat-model.md rule 7 (SIGHUP coalesced: a burst of any size causes at
    // most one reload after the one in progress)
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_reload_requests_causes_one_more_refresh_not_one_per_request() {
        let mut h = harness(
            vec![published(1)],
            Duration::from_secs(1),
            Duration::from_secs(3600),
        );
        let reload = ReloadRequests::new();
        let burst = reload.clone();
        // 1,000 requests while the first cycle is in flight.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for _ in 0..1000 {
                burst.request();
            }
        });
        run_with(&mut h, Duration::from_secs(600), reload).await;
        let calls = h.calls.lock().unwrap().len();
        assert_eq!(calls, 2, "the first sync plus one for the whole burst");
    }

    // reference: docs/threat-model.md rule 7 (a reload never stalls the refresh loop)
    #[test]
    fn a_config_read_that_never_finishes_does_not_stall_the_loop() {
        use std::os::unix::fs::OpenOptionsExt;
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("spc.yaml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let config = fifo.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let calls = rt.block_on(async {
                let mut h = harness(vec![], Duration::from_millis(10), Duration::from_millis(50));
                // Reading a FIFO nobody writes blocks forever.
                h.lp.settings.config_file = config;
                h.lp.reload_deadline = Duration::from_millis(100);
                let reload = ReloadRequests::new();
                reload.request();
                run_with(&mut h, Duration::from_millis(1500), reload).await;
                h.calls.lock().unwrap().len()
            });
            let _ = tx.send(calls);
            // The runtime waits for its blocking threads when dropped.
            drop(rt);
        });
        let calls = rx.recv_timeout(Duration::from_secs(60));
        // Unblock the reader (EOF), whatever happened.
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&fifo),
        );
        let calls = calls.expect("the refresh loop stalled on a configuration read");
        assert!(
            calls >= 3,
            "refreshes kept running during the reload: {calls}"
        );
    }

    fn obj(id: &str, version: &str, sha: &str) -> ObjectStatus {
        ObjectStatus {
            id: id.into(),
            version: version.into(),
            path: id.into(),
            digest: sha.into(),
            fetched_at: 0,
            not_after: None,
            expires: None,
            validation: None,
        }
    }

    #[test]
    // reference: issue 12 item 4 (change log lines name objects and versions, bounded)
    fn change_lines_name_objects_and_versions_bounded() {
        let before = vec![obj("secret/a", "v1", "x"), obj("secret/b", "v1", "y")];
        let after = vec![obj("secret/a", "v2", "z"), obj("secret/b", "v1", "y")];
        assert_eq!(describe_changes(&before, &after), "secret/a@v2");
        let many: Vec<ObjectStatus> = (0..25)
            .map(|i| obj(&format!("secret/s{i}"), "v9", "d"))
            .collect();
        let line = describe_changes(&[], &many);
        assert!(line.starts_with("secret/s0@v9, secret/s1@v9, "), "{line}");
        assert!(line.ends_with("secret/s9@v9 and 15 more"), "{line}");
        assert_eq!(line.matches('@').count(), 10, "{line}");
    }

    #[test]
    // reference: issue 12 item 4 (the sidecar logs each retry with the next attempt time)
    fn retry_lines_give_the_next_attempt_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_message(3, Duration::from_secs(7), now),
            "retry 3 at 2023-11-14T22:13:27Z (in 7s)"
        );
    }

    #[test]
    fn changed_ids_name_new_and_modified_objects_only() {
        let before = vec![obj("secret/a", "1", "x"), obj("secret/b", "1", "y")];
        let after = vec![
            obj("secret/a", "1", "x"),
            obj("secret/b", "2", "z"),
            obj("secret/c", "1", "w"),
        ];
        assert_eq!(changed_ids(&before, &after), vec!["secret/b", "secret/c"]);
        assert!(changed_ids(&after, &after).is_empty());
    }
}
