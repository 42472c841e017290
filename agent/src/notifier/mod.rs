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
//! # Reader contract (for the application)
//! - Watch the target directory for changes to the `..data` symlink (or use these notifiers).
//! - Read files that belong together through one resolution of `..data` (resolve the link
//!   once, then read `<resolved>/a` and `<resolved>/b`), so a swap between two reads cannot
//!   mix sets.
//! - `subPath` mounts of the volume never update: Kubernetes binds the file, not the link.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::NotifySettings;
use crate::metrics::Metrics;
use crate::report::ObjectStatus;

/// How long an `--on-change-exec` command may run before it is killed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts for `--on-change-http` (the first try plus retries).
pub const HTTP_ATTEMPTS: u32 = 5;
/// Per-attempt timeout of `--on-change-http`.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for all attempts of one `--on-change-http` notification, waits included: a
/// hook's `Retry-After` is honoured within it, never beyond.
pub const HTTP_DEADLINE: Duration = Duration::from_secs(120);

/// Notifier setup problems (reported at startup, like configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `--on-change-signal` without a way to find the process, or the reverse.
    #[error("{0}")]
    Settings(String),
    /// The HTTP client could not be built.
    #[error("--on-change-http: cannot build the HTTP client: {0}")]
    Http(String),
    /// `--on-change-http` is plain http to a host that is not loopback.
    #[error(
        "--on-change-http {0}: plain http:// to a host that is not loopback would send the \
         change notification unencrypted; use https://, a loopback address (127.0.0.1, ::1, \
         localhost), or allow it with --on-change-http-insecure \
         (KEYVAULT_AGENT_ON_CHANGE_HTTP_INSECURE=true)"
    )]
    InsecureHttp(String),
}

/// What changed, as posted to `--on-change-http` and summarised for the other notifiers.
/// Carries metadata only.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Always `published`.
    pub event: &'static str,
    /// Vault name.
    pub vault: String,
    /// The target directory.
    pub dir: PathBuf,
    /// The new `..data` target.
    pub data_dir: String,
    /// Ids of objects whose version or contents changed since the previous set.
    pub changed: Vec<String>,
    /// The whole mounted set.
    pub objects: Vec<NotifiedObject>,
}

/// One mounted object as a notification names it: which object, which version, where.
/// Deliberately no digest of the contents: a notification may leave the pod, and a digest
/// of a low-entropy secret can be reversed offline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotifiedObject {
    /// Reference object id (`secret/name` or `secret/name/0`).
    pub id: String,
    /// Key Vault version.
    pub version: String,
    /// Output path relative to the target dir.
    pub path: String,
}

impl From<&ObjectStatus> for NotifiedObject {
    fn from(o: &ObjectStatus) -> Self {
        Self {
            id: o.id.clone(),
            version: o.version.clone(),
            path: o.path.clone(),
        }
    }
}

/// Whether `url` may be POSTed to: https anywhere; http only to loopback unless `insecure`.
pub fn check_hook_url(url: &url::Url, insecure: bool) -> Result<(), NotifyError> {
    if url.scheme() == "https" || insecure || is_loopback(url) {
        return Ok(());
    }
    Err(NotifyError::InsecureHttp(redact_url(url)))
}

/// 127.0.0.0/8, ::1 (also IPv4-mapped) and the name `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        None => false,
    }
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

/// Runs the configured notifiers.
#[derive(Debug, Clone)]
pub struct Notifier {
    settings: NotifySettings,
    http: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
    proc_root: PathBuf,
    exec_timeout: Duration,
    http_backoff: Duration,
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
        match (
            settings.signal,
            settings.signal_pidfile.is_some() || settings.signal_process.is_some(),
        ) {
            (Some(_), false) => {
                return Err(NotifyError::Settings(
                    "--on-change-signal needs --signal-pidfile or --signal-process to find the \
                     process"
                        .into(),
                ));
            }
            (None, true) => {
                return Err(NotifyError::Settings(
                    "--signal-pidfile/--signal-process need --on-change-signal".into(),
                ));
            }
            _ => {}
        }
        if let Some(sig) = settings.signal
            && rustix::process::Signal::from_named_raw(sig).is_none()
        {
            return Err(NotifyError::Settings(format!(
                "--on-change-signal {sig}: real-time and unknown signals are not supported; use \
                 a named signal such as HUP, USR1 or USR2"
            )));
        }
        let http = match &settings.http {
            Some(url) => {
                check_hook_url(url, settings.http_insecure)?;
                // The agent's one client builder (same trust store and limits), proxy-less.
                Some(
                    crate::http::build(&crate::http::HttpOptions {
                        ca_dirs: ca_dirs.to_vec(),
                        ..crate::http::HttpOptions::new(ca_files.to_vec(), HTTP_TIMEOUT)
                    })
                    .map_err(|e| NotifyError::Http(e.to_string()))?
                    .direct,
                )
            }
            None => None,
        };
        Ok(Self {
            settings: settings.clone(),
            http,
            metrics,
            proc_root: PathBuf::from("/proc"),
            exec_timeout: EXEC_TIMEOUT,
            http_backoff: Duration::from_millis(500),
        })
    }

    /// Uses another `/proc` (tests).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// Changes the exec timeout.
    pub fn with_exec_timeout(mut self, timeout: Duration) -> Self {
        self.exec_timeout = timeout;
        self
    }

    /// Changes the first retry delay of the HTTP hook (it doubles per attempt).
    pub fn with_http_backoff(mut self, first: Duration) -> Self {
        self.http_backoff = first;
        self
    }

    /// Whether any notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.settings.signal.is_none()
            && self.settings.exec.is_none()
            && self.settings.http.is_none()
    }

    /// Runs every configured notifier once, concurrently. Each logs its own outcome; one
    /// failing does not stop the others.
    pub async fn notify(&self, event: &ChangeEvent) {
        let signal = async {
            if let Some(sig) = self.settings.signal {
                let ok = self.send_signal(sig);
                self.metrics.notification("signal", ok);
            }
        };
        let exec = async {
            if let Some(cmd) = &self.settings.exec {
                let ok = self.run_exec(cmd, event).await;
                self.metrics.notification("exec", ok);
            }
        };
        let http = async {
            if let (Some(url), Some(client)) = (&self.settings.http, &self.http) {
                let ok = self.post(client, url, event).await;
                self.metrics.notification("http", ok);
            }
        };
        tokio::join!(signal, exec, http);
    }

    fn targets(&self) -> Result<Vec<i32>, String> {
        if let Some(pidfile) = &self.settings.signal_pidfile {
            return read_pidfile(pidfile).map(|p| vec![p]);
        }
        if let Some(name) = &self.settings.signal_process {
            let me = std::process::id() as i32;
            let found = find_processes(&self.proc_root, name, me);
            if found.is_empty() {
                return Err(format!(
                    "no process named {name:?} found in {}; is shareProcessNamespace enabled?",
                    self.proc_root.display()
                ));
            }
            return Ok(found);
        }
        Err("no target process configured".into())
    }

    fn send_signal(&self, sig: i32) -> bool {
        let targets = match self.targets() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "on-change signal not sent");
                return false;
            }
        };
        let Some(signal) = rustix::process::Signal::from_named_raw(sig) else {
            tracing::warn!(
                signal = sig,
                "on-change signal not sent: unsupported signal"
            );
            return false;
        };
        let mut ok = true;
        for pid in targets {
            let result = rustix::process::Pid::from_raw(pid)
                .ok_or_else(|| std::io::Error::other("invalid pid"))
                .and_then(|p| {
                    rustix::process::kill_process(p, signal).map_err(std::io::Error::from)
                });
            match result {
                Ok(()) => tracing::info!(pid, signal = sig, "sent on-change signal"),
                Err(e) => {
                    ok = false;
                    tracing::warn!(pid, signal = sig, error = %e, "on-change signal failed");
                }
            }
        }
        ok
    }

    async fn run_exec(&self, cmd: &[String], event: &ChangeEvent) -> bool {
        let Some((program, args)) = cmd.split_first() else {
            return false;
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("KEYVAULT_AGENT_DIR", &event.dir)
            .env("KEYVAULT_AGENT_DATA_DIR", &event.data_dir)
            .env("KEYVAULT_AGENT_CHANGED", event.changed.join(","))
            // The hook needs to know what changed, not how the agent signs in.
            .env_remove("AZURE_CLIENT_SECRET")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(command = %program, error = %e, "on-change command could not start");
                return false;
            }
        };
        match tokio::time::timeout(self.exec_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                tracing::info!(command = %program, %status, "on-change command finished");
                true
            }
            Ok(Ok(status)) => {
                tracing::warn!(command = %program, %status, "on-change command failed");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(command = %program, error = %e, "on-change command failed");
                false
            }
            Err(_) => {
                let _ = child.kill().await;
                tracing::warn!(
                    command = %program,
                    timeout = %humantime::format_duration(self.exec_timeout),
                    "on-change command timed out and was killed"
                );
                false
            }
        }
    }

    async fn post(&self, client: &reqwest::Client, url: &url::Url, event: &ChangeEvent) -> bool {
        // The shared retry timing: full jitter doubling from `http_backoff`, and the hook's
        // `Retry-After` honoured within the hook's own deadline.
        let backoff = crate::retry::Backoff::new(
            self.http_backoff.max(Duration::from_millis(1)),
            self.http_backoff
                .max(Duration::from_millis(1))
                .saturating_mul(16),
            HTTP_ATTEMPTS.saturating_sub(1),
        )
        .unwrap_or_else(|_| crate::retry::Backoff::service_default());
        let mut retrier = backoff
            .start(crate::retry::deadline_in(HTTP_DEADLINE))
            .named(format!("--on-change-http {}", redact_url(url)));
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let result = client
                .post(url.clone())
                .timeout(HTTP_TIMEOUT)
                .json(event)
                .send()
                .await;
            let (error, requested) = match result {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(url = %redact_url(url), status = %resp.status(), attempt, "on-change hook notified");
                    return true;
                }
                Ok(resp) => (
                    format!("HTTP {}", resp.status()),
                    crate::retry::requested_wait(resp.headers(), std::time::SystemTime::now()),
                ),
                Err(e) => (crate::http::describe(&e).message, None),
            };
            match retrier.next_delay(requested) {
                Ok(sleep) => {
                    tracing::warn!(url = %redact_url(url), attempt, error = %error, retry_in = ?sleep, "on-change hook failed; retrying");
                    tokio::time::sleep(sleep).await;
                }
                Err(_) => {
                    tracing::warn!(url = %redact_url(url), attempt, error = %error, "on-change hook failed; giving up");
                    return false;
                }
            }
        }
    }
}

/// Only scheme, host, port and path: the query or userinfo may carry a token.
fn redact_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

fn read_pidfile(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--signal-pidfile {}: {e}", path.display()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "--signal-pidfile {}: expected a positive process id, found {:?}",
            path.display(),
            text.trim()
        )),
    }
}

/// Processes under `proc_root` whose name (`comm`, or the basename of `argv[0]`) is `name`,
/// excluding `exclude` (this process) and the children of other matches (so an nginx master
/// is signalled, not each of its workers).
pub fn find_processes(proc_root: &Path, name: &str, exclude: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut matches: Vec<(i32, i32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == exclude {
            continue;
        }
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let argv0 = std::fs::read(dir.join("cmdline"))
            .ok()
            .and_then(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or("");
        if comm.trim_end() == name || (!base.is_empty() && base == name) {
            matches.push((pid, parent_pid(&dir).unwrap_or(0)));
        }
    }
    let pids: Vec<i32> = matches.iter().map(|(p, _)| *p).collect();
    let mut top: Vec<i32> = matches
        .into_iter()
        .filter(|(_, ppid)| !pids.contains(ppid))
        .map(|(p, _)| p)
        .collect();
    top.sort_unstable();
    top
}

/// Field 4 of `/proc/<pid>/stat`; the name (field 2) may contain spaces and parentheses,
/// so parse after the last `)`.
fn parent_pid(dir: &Path) -> Option<i32> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Delivers [`ChangeEvent`]s to a handler on its own task, coalescing: while the handler
/// runs, newer events replace older ones, and the handler then runs once with the latest.
#[derive(Debug)]
pub struct Coalescer {
    tx: watch::Sender<Option<ChangeEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Coalescer {
    /// Spawns the delivery task (aborted when the `Coalescer` is dropped).
    pub fn spawn<F, Fut>(handler: F) -> Self
    where
        F: Fn(ChangeEvent) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = watch::channel(None::<ChangeEvent>);
        let task = tokio::spawn(
            async move {
                while rx.changed().await.is_ok() {
                    let event = rx.borrow_and_update().clone();
                    if let Some(event) = event {
                        handler(event).await;
                    }
                }
            }
            .instrument(tracing::info_span!("notify")),
        );
        Self { tx, task }
    }

    /// Queues a notification (replacing one not yet delivered).
    pub fn send(&self, event: ChangeEvent) {
        self.tx.send_replace(Some(event));
    }
}

impl Drop for Coalescer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
    }

    fn fake_proc(root: &Path, pid: i32, ppid: i32, comm: &str, argv0: &str) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(d.join("cmdline"), format!("{argv0}\0--flag\0")).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({comm} x) S {ppid} 1 1 0 -1"),
        )
        .unwrap();
    }

    #[test]
    fn process_lookup_matches_comm_or_argv0_and_skips_children_and_self() {
        let root = tempfile::tempdir().unwrap();
        fake_proc(root.path(), 10, 1, "nginx", "nginx: master process");
        fake_proc(root.path(), 11, 10, "nginx", "nginx: worker process");
        fake_proc(
            root.path(),
            20,
            1,
            "python3",
            "/usr/local/bin/my-long-app-name",
        );
        fake_proc(root.path(), 30, 1, "keyvault-agent", "/keyvault-agent");
        std::fs::create_dir_all(root.path().join("self")).unwrap();
        assert_eq!(find_processes(root.path(), "nginx", 0), vec![10]);
        assert_eq!(find_processes(root.path(), "my-long-app-name", 0), vec![20]);
        assert_eq!(
            find_processes(root.path(), "keyvault-agent", 30),
            Vec::<i32>::new()
        );
        assert_eq!(find_processes(root.path(), "absent", 0), Vec::<i32>::new());
    }

    #[test]
    fn signal_settings_must_come_in_pairs() {
        let m = Metrics::new();
        let only_signal = NotifySettings {
            signal: Some(1),
            ..Default::default()
        };
        assert!(Notifier::new(&only_signal, &[], m.clone()).is_err());
        let only_target = NotifySettings {
            signal_process: Some("app".into()),
            ..Default::default()
        };
        assert!(Notifier::new(&only_target, &[], m.clone()).is_err());
        let realtime = NotifySettings {
            signal: Some(40),
            signal_process: Some("app".into()),
            ..Default::default()
        };
        assert!(Notifier::new(&realtime, &[], m.clone()).is_err());
        assert!(
            Notifier::new(&NotifySettings::default(), &[], m)
                .unwrap()
                .is_empty()
        );
    }

    /// Waits (bounded) for `child` to exit and returns the signal that ended it, if any.
    async fn signal_that_ended(child: &mut tokio::process::Child) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap()
            .signal()
    }

    fn event(n: usize) -> ChangeEvent {
        ChangeEvent {
            event: "published",
            vault: "demo".into(),
            dir: "/x".into(),
            data_dir: format!("..{n}"),
            changed: vec![],
            objects: vec![],
        }
    }

    #[tokio::test]
    async fn coalescer_delivers_the_latest_once_after_a_busy_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let c = {
            let (calls, seen, gate) = (calls.clone(), seen.clone(), gate.clone());
            Coalescer::spawn(move |e: ChangeEvent| {
                let (calls, seen, gate) = (calls.clone(), seen.clone(), gate.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(e.data_dir.clone());
                    gate.acquire().await.unwrap().forget();
                }
            })
        };
        c.send(event(1));
        // Wait until the first delivery is in the (blocked) handler.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for n in 2..=5 {
            c.send(event(n));
        }
        gate.add_permits(10);
        while calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["..1".to_string(), "..5".to_string()]
        );
    }

    #[tokio::test]
    async fn exec_runs_with_the_event_in_its_environment_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let settings = NotifySettings {
            exec: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo \"$KEYVAULT_AGENT_DATA_DIR $KEYVAULT_AGENT_CHANGED\" >> {}",
                    out.display()
                ),
            ]),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone()).unwrap();
        let mut e = event(7);
        e.changed = vec!["secret/a".into(), "secret/b".into()];
        n.notify(&e).await;
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "..7 secret/a,secret/b\n"
        );

        let failing = NotifySettings {
            exec: Some(vec!["sh".into(), "-c".into(), "exit 3".into()]),
            ..Default::default()
        };
        Notifier::new(&failing, &[], metrics.clone())
            .unwrap()
            .notify(&e)
            .await;
        let text = metrics.encode();
        assert!(text.contains("class=\"exec_ok\"} 1"), "{text}");
        assert!(text.contains("class=\"exec_failed\"} 1"), "{text}");
    }

    #[tokio::test]
    async fn http_hook_posts_metadata_and_retries_server_errors() {
        use axum::http::StatusCode;
        let hits = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let h = h.clone();
                async move {
                    let mut hits = h.lock().unwrap();
                    hits.push(v);
                    // The first two attempts fail.
                    if hits.len() <= 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}/hook?token=abc", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let settings = NotifySettings {
            http: Some(url.clone()),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .with_http_backoff(Duration::from_millis(10));
        let mut e = event(3);
        e.changed = vec!["secret/a".into()];
        n.notify(&e).await;
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[2]["data_dir"], "..3");
        assert_eq!(hits[2]["changed"][0], "secret/a");
        assert!(metrics.encode().contains("class=\"http_ok\"} 1"));
        assert!(!redact_url(&url).contains("token"));
        server.abort();
    }

    // reference: issue 13 item 1 (one retry module for every caller): the hook's own
    // Retry-After is honoured, within the hook's deadline only.
    #[tokio::test(start_paused = true)]
    async fn http_hook_honours_retry_after_within_its_deadline() {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let hits = Arc::new(std::sync::Mutex::new(Vec::<tokio::time::Instant>::new()));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    let mut hits = h.lock().unwrap();
                    hits.push(tokio::time::Instant::now());
                    match hits.len() {
                        1 => {
                            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]).into_response()
                        }
                        // Far beyond the hook's deadline: not slept, given up at once.
                        2 => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "99999999999999999999")],
                        )
                            .into_response(),
                        _ => StatusCode::NO_CONTENT.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let settings = NotifySettings {
            http: Some(url),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .with_http_backoff(Duration::from_millis(10));
        let started = tokio::time::Instant::now();
        n.notify(&event(1)).await;
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 2, "gave up after the second answer");
        assert!(
            hits[1] - hits[0] >= Duration::from_secs(7),
            "{:?}",
            hits[1] - hits[0]
        );
        assert!(started.elapsed() < HTTP_DEADLINE);
        assert!(metrics.encode().contains("class=\"http_failed\"} 1"));
        server.abort();
    }

    #[tokio::test]
    async fn signal_reaches_the_process_in_the_pidfile() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pidfile = dir.path().join("pid");
        std::fs::write(&pidfile, format!("{}\n", child.id().unwrap())).unwrap();
        let settings = NotifySettings {
            signal: Some(parse_signal("USR1").unwrap()),
            signal_pidfile: Some(pidfile),
            ..Default::default()
        };
        let metrics = Metrics::new();
        Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .notify(&event(1))
            .await;
        assert_eq!(
            signal_that_ended(&mut child).await,
            Some(rustix::process::Signal::USR1.as_raw())
        );
        assert!(metrics.encode().contains("class=\"signal_ok\"} 1"));

        // A pidfile naming nothing is a logged failure, not a crash.
        let bad = NotifySettings {
            signal: Some(1),
            signal_pidfile: Some(dir.path().join("missing")),
            ..Default::default()
        };
        Notifier::new(&bad, &[], metrics.clone())
            .unwrap()
            .notify(&event(2))
            .await;
        assert!(metrics.encode().contains("class=\"signal_failed\"} 1"));
    }

    #[tokio::test]
    async fn signal_reaches_a_process_found_by_name_in_proc() {
        // A uniquely named copy of `sleep`, so no other process on the machine matches.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("kva{:08x}", rand::random::<u32>());
        let exe = dir.path().join(&name);
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        std::fs::copy(sleep, &exe).unwrap();
        let mut child = tokio::process::Command::new(&exe)
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap() as i32;
        // The child is visible once exec has replaced the forked image.
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while find_processes(Path::new("/proc"), &name, me) != vec![pid] {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never showed up in /proc"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settings = NotifySettings {
            signal: Some(parse_signal("USR2").unwrap()),
            signal_process: Some(name),
            ..Default::default()
        };
        Notifier::new(&settings, &[], Metrics::new())
            .unwrap()
            .notify(&event(1))
            .await;
        assert_eq!(
            signal_that_ended(&mut child).await,
            Some(rustix::process::Signal::USR2.as_raw())
        );
    }

    // reference: docs/threat-model.md rule 9 (issue 9 item 8: no plain http off the pod)
    #[test]
    fn plain_http_hook_is_refused_unless_loopback_or_opted_in() {
        let m = Metrics::new();
        let hook = |url: &str, insecure: bool| NotifySettings {
            http: Some(url.parse().unwrap()),
            http_insecure: insecure,
            ..Default::default()
        };
        for ok in [
            "http://127.0.0.1:8080/-/reload",
            "http://127.9.8.7/x",
            "http://[::1]:9/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://localhost:8080/x",
            "http://LOCALHOST./x",
            "https://hooks.example.com/x",
        ] {
            assert!(
                Notifier::new(&hook(ok, false), &[], m.clone()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://hooks.example.com/x?token=abc",
            "http://10.0.0.7:8080/x",
            "http://[fe80::1]/x",
            "http://localhost.example.com/x",
            "http://user:pw@0.0.0.0/x",
        ] {
            let e = Notifier::new(&hook(bad, false), &[], m.clone())
                .unwrap_err()
                .to_string();
            assert!(e.contains("--on-change-http-insecure"), "{bad}: {e}");
            assert!(
                e.starts_with("--on-change-http http://"),
                "names the URL first: {e}"
            );
            assert!(
                !e.contains("token=abc") && !e.contains("pw@"),
                "not redacted: {e}"
            );
            assert!(
                Notifier::new(&hook(bad, true), &[], m.clone()).is_ok(),
                "{bad}"
            );
        }
    }

    // reference: docs/threat-model.md rule 9 (issue 9 item 8: no digests leave the pod)
    #[test]
    fn the_posted_summary_names_objects_and_versions_but_carries_no_digest() {
        let status = ObjectStatus {
            id: "secret/db-password".into(),
            version: "0000000000000000000000000000000c".into(),
            path: "db-password".into(),
            digest: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
            fetched_at: 1_700_000_000,
            not_after: None,
            expires: None,
            validation: None,
        };
        let mut e = event(1);
        e.objects = vec![(&status).into()];
        let json = serde_json::to_value(&e).unwrap();
        let text = json.to_string();
        assert_eq!(json["objects"][0]["id"], "secret/db-password");
        assert_eq!(
            json["objects"][0]["version"],
            "0000000000000000000000000000000c"
        );
        assert!(
            !text.contains(&status.digest),
            "digest in the payload: {text}"
        );
        assert!(!text.contains("sha256"), "{text}");
    }

    #[tokio::test]
    async fn exec_is_killed_after_its_timeout() {
        let settings = NotifySettings {
            exec: Some(vec!["sleep".into(), "30".into()]),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .with_exec_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        n.notify(&event(1)).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(metrics.encode().contains("class=\"exec_failed\"} 1"));
    }
}
