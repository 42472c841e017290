//! Tells the application that a new set was published, once per swap however many objects
//! changed (`docs/peers.md` §D.1 #2: coalesced notification; §B.8: apps do not notice updates).
//!
//! Three notifiers, any combination:
//! - `--on-change-signal SIG` to the process named by `--signal-pidfile`, or found by
//!   `--signal-process NAME` in a shared PID namespace (`shareProcessNamespace: true`);
//! - `--on-change-exec CMD`: runs a command (bounded by a timeout; its exit status is logged);
//! - `--on-change-http URL`: POSTs a JSON summary (ids, versions and paths; never values nor
//!   digests of them), with retries and backoff. Plain `http://` is refused for a host that
//!   is not loopback unless `--on-change-http-insecure` (docs/threat-model.md: nothing about the
//!   secrets crosses the network in clear by default).
//!
//! Notifications run on their own task fed through a `watch` channel ([`Coalescer`]): if
//! more swaps happen while one notification is in flight, the application is told once more,
//! about the latest set, not once per swap.
//!
//! One file per notifier (`signal.rs`, `exec.rs`, `http.rs`, named after their flags), the
//! summary they share (`event.rs`), the coalescing task (`coalesce.rs`); this file checks the
//! settings and dispatches to each. Named `notifier`, not `notify`, so it does not shadow
//! the `notify` crate the sidecar watches its configuration with.
//!
//! # Reader contract (for the application)
//! - Watch the target directory for changes to the `..data` symlink (or use these notifiers).
//! - Read files that belong together through one resolution of `..data` (resolve the link
//!   once, then read `<resolved>/a` and `<resolved>/b`), so a swap between two reads cannot
//!   mix sets.
//! - `subPath` mounts of the volume never update: Kubernetes binds the file, not the link.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::NotifySettings;
use crate::metrics::Metrics;

mod coalesce;
mod event;
mod exec;
mod http;
mod signal;

pub use coalesce::Coalescer;
pub use event::{ChangeEvent, NotifiedObject};
pub use exec::EXEC_TIMEOUT;
pub use http::{HTTP_ATTEMPTS, HTTP_DEADLINE, HTTP_TIMEOUT, check_hook_url};
pub use signal::find_processes;

/// Notifier setup problems (reported at startup, like configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `--on-change-signal` without a way to find the process, or the reverse.
    #[error("{0}")]
    Settings(String),
    /// The HTTP client could not be built (a CA file or directory): the builder's own cause,
    /// in the message rather than as a `source`, so it is printed once.
    #[error("--on-change-http: cannot build the HTTP client: {0}")]
    Http(crate::http::HttpError),
    /// `--on-change-http` is plain http to a host that is not loopback.
    #[error(
        "--on-change-http {0}: plain http:// to a host that is not loopback would send the \
         change notification unencrypted; use https://, a loopback address (127.0.0.1, ::1, \
         localhost), or allow it with --on-change-http-insecure \
         (KEYVAULT_AGENT_ON_CHANGE_HTTP_INSECURE=true)"
    )]
    InsecureHttp(String),
}

/// Runs the configured notifiers.
#[derive(Debug, Clone)]
pub struct Notifier {
    signal: Option<signal::SignalNotifier>,
    exec: Option<exec::ExecNotifier>,
    http: Option<http::HttpNotifier>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Checks the settings and builds the HTTP client. `ca_files` are extra trust anchors for
    /// an `https` hook URL.
    pub fn new(
        settings: &NotifySettings,
        ca_files: &[PathBuf],
        metrics: Arc<Metrics>,
    ) -> Result<Self, NotifyError> {
        Self::with_trust(settings, ca_files, &[], metrics)
    }

    /// [`Notifier::new`] trusting the certificates of the `ca_dirs` (`SSL_CERT_DIR`) too.
    pub fn with_trust(
        settings: &NotifySettings,
        ca_files: &[PathBuf],
        ca_dirs: &[PathBuf],
        metrics: Arc<Metrics>,
    ) -> Result<Self, NotifyError> {
        let signal = signal::SignalNotifier::from_settings(settings)?;
        let http = settings
            .http
            .as_ref()
            .map(|url| http::HttpNotifier::new(url, settings.http_insecure, ca_files, ca_dirs))
            .transpose()?;
        Ok(Self {
            signal,
            exec: settings.exec.clone().map(exec::ExecNotifier::new),
            http,
            metrics,
        })
    }

    /// Uses another `/proc` (tests).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        if let Some(s) = &mut self.signal {
            s.set_proc_root(root.into());
        }
        self
    }

    /// Changes the exec timeout.
    pub fn with_exec_timeout(mut self, timeout: Duration) -> Self {
        if let Some(e) = &mut self.exec {
            e.set_timeout(timeout);
        }
        self
    }

    /// Changes the first retry delay of the HTTP hook (it doubles per attempt).
    pub fn with_http_backoff(mut self, first: Duration) -> Self {
        if let Some(h) = &mut self.http {
            h.set_backoff(first);
        }
        self
    }

    /// Whether any notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.signal.is_none() && self.exec.is_none() && self.http.is_none()
    }

    /// Runs every configured notifier once, concurrently. Each logs its own outcome; one
    /// failing does not stop the others.
    pub async fn notify(&self, event: &ChangeEvent) {
        let signal = async {
            if let Some(s) = &self.signal {
                let ok = s.deliver();
                self.metrics.notification("signal", ok);
            }
        };
        let exec = async {
            if let Some(e) = &self.exec {
                let ok = e.deliver(event).await;
                self.metrics.notification("exec", ok);
            }
        };
        let http = async {
            if let Some(h) = &self.http {
                let ok = h.deliver(event).await;
                self.metrics.notification("http", ok);
            }
        };
        tokio::join!(signal, exec, http);
    }
}
