//! The refresh loop: one task that owns the schedule and runs one [`Cycle`] at a time.
//! It waits for the next start ([`super::schedule`]), a reload request or a config change
//! ([`super::reload`]), or shutdown; runs the cycle (a shutdown during it lets it finish
//! within `--shutdown-grace`); then records the outcome: state served by the health server
//! ([`super::health`]), metrics, one notification per swap (not for the process's first
//! publish unless `--notify-on-start`), and the log lines. A failure keeps the published set
//! and backs off; the first sync retries the same way forever (not ready meanwhile).

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cycle::{Cycle, CycleFactory};
use super::{changes, health, reload, schedule};
use crate::config::{Env, Plan, Settings};
use crate::error::Error;
use crate::metrics::{Metrics, RefreshResult};
use crate::notifier::{ChangeEvent, Coalescer};
use crate::report::{ObjectStatus, SyncError, SyncReport};
use crate::retry::Failures;
use crate::signal::ReloadRequests;
use crate::telemetry::status::SidecarState;
use crate::writer::WriteOutcome;

/// The refresh loop's state; owned by one task, shared outward only through `state`.
pub(super) struct Loop {
    /// Flags and environment-derived settings (fixed for the process).
    pub(super) settings: Settings,
    /// The environment snapshot the plan is loaded with (fixed; reload re-reads the file).
    pub(super) env: Env,
    /// Shared with the health server and the syncer.
    pub(super) metrics: Arc<Metrics>,
    /// Builds the cycle for a reloaded plan.
    pub(super) factory: CycleFactory,
    /// The plan in effect (replaced only by a valid reload).
    pub(super) plan: Arc<Plan>,
    /// The cycle for `plan`.
    pub(super) cycle: Box<dyn Cycle>,
    /// Liveness, readiness and the status manifest, read by the health server.
    pub(super) state: Arc<SidecarState>,
    /// Failure backoff; reset by a success.
    pub(super) backoff: Failures,
    /// Delivers change notifications, when any notifier is configured.
    pub(super) coalescer: Option<Coalescer>,
    /// What the last successful cycle reported, to name the objects that changed.
    pub(super) published: Arc<Vec<ObjectStatus>>,
    /// No cycle has succeeded yet (wording of log lines).
    pub(super) first: bool,
    /// How long a reload may read and parse before it is abandoned.
    pub(super) reload_deadline: Duration,
}

impl Loop {
    pub(super) async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
        requests: ReloadRequests,
        mut watch_rx: mpsc::Receiver<()>,
    ) -> Result<(), Error> {
        let mut shutdown = pin!(shutdown);
        let mut next = Instant::now();
        loop {
            self.state
                .heartbeat(health::while_waiting(next, self.settings.timeout));
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                () = requests.requested() => {
                    if !reload::settle_requests(&requests, &mut shutdown).await {
                        tracing::info!("shutting down");
                        return Ok(());
                    }
                    tracing::info!("reload requested (SIGHUP); reloading and refreshing now");
                    self.reload().await;
                }
                Some(()) = watch_rx.recv() => {
                    // Let the burst settle, then reload once.
                    reload::settle_watch(&mut watch_rx).await;
                    if !self.reload().await {
                        continue;
                    }
                    tracing::info!("configuration changed; refreshing now");
                }
                _ = tokio::time::sleep_until(next) => {}
            }

            // One cycle. Shutdown during it lets it finish within the grace period.
            self.state
                .heartbeat(health::during_cycle(self.settings.timeout));
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
            next = schedule::next_start(ok, started, delay);
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
                let changed = changes::changed_ids(&self.published, &report.objects);
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
                let delay = schedule::after_success(&self.settings, report.refresh_within, started);
                self.state
                    .scheduled(delay.saturating_sub(started.elapsed()));
                // The message stays fixed (log queries match it); the objects are a field.
                let changed_list = changes::describe_changes(&self.published, &report.objects);
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
                    schedule::retry_message(self.backoff.attempt, delay, SystemTime::now())
                );
                delay
            }
        }
    }

    /// Reloads the configuration. Returns whether the plan changed (and was adopted).
    async fn reload(&mut self) -> bool {
        let Some(plan) = reload::read_plan(
            &self.settings,
            &self.env,
            self.reload_deadline,
            &self.metrics,
        )
        .await
        else {
            return false;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::sidecar::harness::{harness, published, run_for};
    use crate::writer::WriteOutcome;

    // reference: README.md (`/readyz`: not ready until the first sync has published)
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

    // reference: README.md (keeps the last good set when Key Vault or Entra fails; writes
    // only when something changed)
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

    // reference: README.md flags table (`--shutdown-grace`: time to finish an in-flight swap)
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

    // reference: README.md flags table (`--shutdown-grace`: time to finish an in-flight swap)
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
}
