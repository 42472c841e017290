//! Reloading the configuration without stopping: the config file's directory is watched (a
//! ConfigMap update is a `..data` swap), SIGHUPs and other triggers coalesce
//! ([`ReloadRequests`]) and settle into one reload, and the file is parsed on a blocking
//! thread under [`RELOAD_DEADLINE`]. An invalid or unreadable file is reported problem by
//! problem; the running plan stays in effect (the loop adopts only a plan this returns).

use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, Env, Plan, Settings};
use crate::metrics::Metrics;
use crate::signal::ReloadRequests;

/// Config file events closer together than this are handled as one reload (editors and the
/// kubelet's `..data` swap produce bursts).
pub(super) const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest a stream of SIGHUPs may postpone its reload (each one restarts the
/// [`RELOAD_DEBOUNCE`] wait, up to this).
pub(super) const RELOAD_SETTLE_MAX: Duration = Duration::from_secs(5);
/// Longest a reload may take to read and parse the configuration before it is abandoned
/// (the running plan stays; the parse finishes or fails on its own thread).
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// Waits until reload requests stop for [`RELOAD_DEBOUNCE`] (a loop of `kill -HUP`, a
/// supervisor retrying), at most [`RELOAD_SETTLE_MAX`] after the first, so a burst settles
/// into one reload. Returns `false` if `shutdown` resolved first.
pub(super) async fn settle_requests<F: Future>(
    reload: &ReloadRequests,
    shutdown: &mut Pin<&mut F>,
) -> bool {
    let settle_max = tokio::time::sleep(RELOAD_SETTLE_MAX);
    let mut settle_max = pin!(settle_max);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return false,
            _ = &mut settle_max => return true,
            more = tokio::time::timeout(RELOAD_DEBOUNCE, reload.requested()) => {
                if more.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Lets a burst of config file events settle: returns once none came for
/// [`RELOAD_DEBOUNCE`] after the first.
pub(super) async fn settle_watch(watch_rx: &mut mpsc::Receiver<()>) {
    let settle = tokio::time::sleep(RELOAD_DEBOUNCE);
    let mut settle = pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => break,
            Some(()) = watch_rx.recv() => {}
        }
    }
}

/// Reads and parses the configuration on a blocking thread, abandoned after `deadline`.
/// Every problem is logged (one line each) and counted; `None` means the running
/// configuration stays in effect.
pub(super) async fn read_plan(
    settings: &Settings,
    env: &Env,
    deadline: Duration,
    metrics: &Metrics,
) -> Option<Plan> {
    let (owned_settings, owned_env) = (settings.clone(), env.clone());
    let parse = tokio::task::spawn_blocking(move || config::load(&owned_settings, &owned_env));
    let loaded = match tokio::time::timeout(deadline, parse).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            metrics.error("config");
            tracing::error!(error = %e, "configuration reload failed; the running configuration stays in effect");
            return None;
        }
        Err(_) => {
            metrics.error("config");
            tracing::error!(
                file = %settings.config_file.display(),
                deadline = %humantime::format_duration(deadline),
                "reading the configuration did not finish within the reload deadline; \
                 the running configuration stays in effect (is the file a FIFO or huge?)"
            );
            return None;
        }
    };
    match loaded {
        Ok(plan) => Some(plan),
        Err(errors) => {
            metrics.error("config");
            for problem in &errors.0 {
                tracing::error!(
                    file = %settings.config_file.display(),
                    problem = %problem,
                    "invalid configuration"
                );
            }
            tracing::error!(
                problems = errors.0.len(),
                "new configuration rejected; the running configuration stays in effect"
            );
            None
        }
    }
}

/// Watches the directory holding the config file and sends `()` for changes that may
/// concern it: the file itself, or a `..`-prefixed entry (ConfigMap `..data` swaps).
/// Access events are ignored (the agent's own reads would otherwise loop).
pub(super) fn watch_config_dir(
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
    use std::time::Duration;

    use crate::sidecar::harness::{harness, published, run_with};
    use crate::signal::ReloadRequests;

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
}
