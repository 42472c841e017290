//! The one place that listens for process signals: SIGTERM/SIGINT end the process
//! gracefully ([`shutdown`]), SIGHUP asks for a configuration reload and an immediate
//! refresh ([`reload_signals`]). Everything else receives these as futures or streams, so
//! tests drive the same code paths with channels instead of real signals.

use futures::{Stream, StreamExt};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

/// Resolves when SIGTERM or SIGINT arrives, logging which one. If the handlers cannot be
/// installed (which only happens when the environment is broken) it logs that and never
/// resolves, rather than shutting down a healthy sidecar.
pub async fn shutdown() {
    match Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => {
            if let Some(sig) = signals.next().await {
                tracing::info!(
                    signal = signal_name(sig),
                    "shutdown requested; finishing in-flight work"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
            std::future::pending::<()>().await;
        }
    }
}

/// A stream yielding `()` for each SIGHUP. Installing the handler replaces SIGHUP's default
/// action (terminate), which is what a reloadable daemon wants.
pub fn reload_signals() -> std::io::Result<impl Stream<Item = ()> + Send + Unpin + 'static> {
    let signals = Signals::new([SIGHUP])?;
    Ok(signals.map(|_| ()))
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

    #[test]
    fn names() {
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(signal_name(SIGINT), "SIGINT");
        assert_eq!(signal_name(SIGHUP), "SIGHUP");
        assert_eq!(signal_name(64), "other");
    }
}
