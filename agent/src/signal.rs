//! The one place that listens for process signals: SIGTERM/SIGINT end the process
//! gracefully ([`shutdown`]), SIGHUP asks for a configuration reload and an immediate
//! refresh ([`reload_requests`]). Everything else receives these as a future or a
//! [`ReloadRequests`] handle, so tests drive the same code paths without real signals.
//! Signals the agent sends (`--on-change-signal`) are parsed ([`parse_signal`]) and sent
//! ([`send`]) here too, so the flag accepts exactly what can be sent.
//!
//! [`install`] is the first thing `main` does (docs/threat-model.md rule 7): until then a signal
//! takes its default action, and SIGHUP's default is to terminate. From then on:
//! - SIGTERM/SIGINT are remembered, even before anything waits for them: a sidecar told to
//!   stop while it starts stops cleanly (exit 0) as soon as it can;
//! - SIGHUP never kills. It sets a "reload pending" flag; a burst of any size while a reload
//!   runs causes at most one more. Nobody consumes the flag in `--once` and `check`, so
//!   there it is ignored.
//!
//! Handlers are registered synchronously by `signal-hook` (no runtime needed); a small
//! thread forwards them to tokio primitives that work with or without a runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::{Notify, watch};

/// A coalescing "reload pending" flag: any number of [`ReloadRequests::request`] calls made
/// before [`ReloadRequests::requested`] resolves count as one.
#[derive(Debug, Clone, Default)]
pub struct ReloadRequests(Arc<Notify>);

impl ReloadRequests {
    /// A new flag, not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag (idempotent while set).
    pub fn request(&self) {
        // notify_one stores at most one permit: this is the coalescing.
        self.0.notify_one();
    }

    /// Resolves once the flag is set, and clears it.
    pub async fn requested(&self) {
        self.0.notified().await
    }
}

/// The process-wide receiving end of the signals.
#[derive(Debug)]
struct Hub {
    reload: ReloadRequests,
    shutdown: watch::Sender<Option<i32>>,
}

static HUB: OnceLock<Hub> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());
/// Set by [`exit_on_shutdown`]: SIGTERM/SIGINT end the process at once.
static EXIT_NOW: AtomicBool = AtomicBool::new(false);

/// Installs the handlers for SIGTERM, SIGINT and SIGHUP (idempotent). Call it before
/// anything else in `main`.
pub fn install() -> std::io::Result<()> {
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if HUB.get().is_some() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let hub = HUB.get_or_init(|| Hub {
        reload: ReloadRequests::new(),
        shutdown: watch::channel(None).0,
    });
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                dispatch(hub, sig);
            }
        })?;
    Ok(())
}

fn dispatch(hub: &Hub, sig: i32) {
    match sig {
        SIGHUP => hub.reload.request(),
        _ if EXIT_NOW.load(Ordering::SeqCst) => exit_for(sig),
        _ => {
            // The first shutdown signal is the one reported.
            hub.shutdown.send_if_modified(|s| {
                if s.is_none() {
                    *s = Some(sig);
                    true
                } else {
                    false
                }
            });
        }
    }
}

/// For work with nothing to finish gracefully (`check`): from now on SIGTERM/SIGINT end the
/// process at once with 128 + the signal number, as the default action would have been
/// reported, and one that already arrived does so now.
pub fn exit_on_shutdown() {
    EXIT_NOW.store(true, Ordering::SeqCst);
    if let Some(sig) = shutdown_signal() {
        exit_for(sig);
    }
}

fn exit_for(sig: i32) -> ! {
    eprintln!("error: stopped by {}", signal_name(sig));
    std::process::exit(crate::report::EXIT_SIGNAL_BASE.saturating_add(sig))
}

fn hub() -> Option<&'static Hub> {
    if let Err(e) = install() {
        tracing::error!(error = %e, "cannot install the signal handlers");
    }
    HUB.get()
}

/// Resolves when SIGTERM or SIGINT arrives (or has arrived since [`install`]), logging which
/// one. If the handlers cannot be installed (only when the environment is broken) it logs
/// that and never resolves, rather than shutting down a healthy sidecar.
pub async fn shutdown() {
    let Some(hub) = hub() else {
        std::future::pending::<()>().await;
        return;
    };
    let mut rx = hub.shutdown.subscribe();
    let received = rx.wait_for(Option::is_some).await.map(|s| *s);
    let Ok(sig) = received else {
        // The sender lives in a static: never dropped.
        return std::future::pending().await;
    };
    let sig = sig.unwrap_or(SIGTERM);
    tracing::info!(
        signal = signal_name(sig),
        "shutdown requested; finishing in-flight work"
    );
}

/// The shutdown signal received so far, if any (`--once` maps it to its exit code).
pub fn shutdown_signal() -> Option<i32> {
    HUB.get().and_then(|h| *h.shutdown.borrow())
}

/// The process's SIGHUP flag. A SIGHUP that arrived before this call is kept: the caller's
/// first wait resolves at once.
pub fn reload_requests() -> std::io::Result<ReloadRequests> {
    install()?;
    HUB.get()
        .map(|h| h.reload.clone())
        .ok_or_else(|| std::io::Error::other("signal handlers not installed"))
}

/// Parses a signal name or number: `HUP`, `SIGHUP`, `sighup`, `1`.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    use rustix::process::Signal as S;
    let sig = match name {
        "HUP" => Some(S::HUP),
        "INT" => Some(S::INT),
        "QUIT" => Some(S::QUIT),
        "TERM" => Some(S::TERM),
        "USR1" => Some(S::USR1),
        "USR2" => Some(S::USR2),
        "KILL" => Some(S::KILL),
        "ALRM" => Some(S::ALARM),
        "WINCH" => Some(S::WINCH),
        "CONT" => Some(S::CONT),
        "STOP" => Some(S::STOP),
        _ => t.parse::<i32>().ok().and_then(S::from_named_raw),
    };
    sig.map(|s| s.as_raw()).ok_or_else(|| {
        format!("unknown signal {t:?}; use a name such as HUP, USR1, USR2, TERM or a signal number")
    })
}

/// Whether `sig` is a named signal [`send`] can deliver (real-time and unknown numbers are
/// not).
pub fn is_sendable(sig: i32) -> bool {
    rustix::process::Signal::from_named_raw(sig).is_some()
}

/// Sends `sig` to the process `pid`.
pub fn send(pid: i32, sig: i32) -> std::io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(sig).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsupported signal")
    })?;
    let pid =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("invalid pid"))?;
    rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
}

/// The conventional name of a signal number, for log lines.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names() {
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(signal_name(SIGINT), "SIGINT");
        assert_eq!(signal_name(SIGHUP), "SIGHUP");
        assert_eq!(signal_name(64), "other");
    }

    // reference: docs/peers.md §B.8 (--on-change-signal takes names and numbers)
    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("HUP"), Ok(1));
        assert_eq!(parse_signal("SIGHUP"), Ok(1));
        assert_eq!(
            parse_signal("sigusr1"),
            Ok(rustix::process::Signal::USR1.as_raw())
        );
        assert_eq!(
            parse_signal(" usr2 "),
            Ok(rustix::process::Signal::USR2.as_raw())
        );
        assert_eq!(parse_signal("15"), Ok(15));
        let e = parse_signal("SIGFOO").unwrap_err();
        assert!(e.contains("\"SIGFOO\"") && e.contains("HUP"), "{e}");
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("").is_err());
        assert!(is_sendable(parse_signal("USR1").unwrap()));
        assert!(!is_sendable(40), "real-time signals are not sent");
    }

    // reference: docs/threat-model.md rule 7 (a burst of reload requests collapses to one)
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_requests_is_one_pending_reload() {
        let r = ReloadRequests::new();
        for _ in 0..1000 {
            r.request();
        }
        // One wait resolves at once...
        tokio::time::timeout(Duration::from_secs(1), r.requested())
            .await
            .expect("the first wait sees the burst");
        // ...and the burst is spent.
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), r.requested())
                .await
                .is_err(),
            "a burst left more than one reload pending"
        );
    }

    #[tokio::test]
    async fn dispatch_keeps_the_first_shutdown_signal_and_flags_reloads() {
        let hub = Hub {
            reload: ReloadRequests::new(),
            shutdown: watch::channel(None).0,
        };
        let rx = hub.shutdown.subscribe();
        dispatch(&hub, SIGHUP);
        dispatch(&hub, SIGHUP);
        assert_eq!(*rx.borrow(), None, "SIGHUP is not a shutdown");
        hub.reload.requested().await;
        dispatch(&hub, SIGINT);
        dispatch(&hub, SIGTERM);
        assert_eq!(*rx.borrow(), Some(SIGINT));
    }
}
