//! `--on-change-signal`: finds the application's process, from `--signal-pidfile` or by
//! name (`--signal-process`) in a shared PID namespace (`shareProcessNamespace: true`), and
//! signals it through [`crate::signal::send`]. Parsing and sending signals belong to
//! [`crate::signal`]; this file only knows which processes to aim at.

use std::path::{Path, PathBuf};

use super::NotifyError;
use crate::config::NotifySettings;

/// Where the signal goes.
#[derive(Debug, Clone)]
enum Target {
    /// `--signal-pidfile`: the one process it names (read at each notification).
    Pidfile(PathBuf),
    /// `--signal-process`: every process of that name but children of another match.
    Process(String),
}

/// A validated `--on-change-signal` with its target.
#[derive(Debug, Clone)]
pub(super) struct SignalNotifier {
    signal: i32,
    target: Target,
    proc_root: PathBuf,
}

impl SignalNotifier {
    /// `None` without `--on-change-signal`; an error for half a pair (a signal without a way
    /// to find the process, or the reverse) or for a signal that cannot be sent.
    pub(super) fn from_settings(settings: &NotifySettings) -> Result<Option<Self>, NotifyError> {
        let target = match (&settings.signal_pidfile, &settings.signal_process) {
            (Some(pidfile), _) => Some(Target::Pidfile(pidfile.clone())),
            (None, Some(name)) => Some(Target::Process(name.clone())),
            (None, None) => None,
        };
        let (signal, target) = match (settings.signal, target) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(NotifyError::Settings(
                    "--on-change-signal needs --signal-pidfile or --signal-process to find the \
                     process"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(NotifyError::Settings(
                    "--signal-pidfile/--signal-process need --on-change-signal".into(),
                ));
            }
            (Some(signal), Some(target)) => (signal, target),
        };
        if !crate::signal::is_sendable(signal) {
            return Err(NotifyError::Settings(format!(
                "--on-change-signal {signal}: real-time and unknown signals are not supported; \
                 use a named signal such as HUP, USR1 or USR2"
            )));
        }
        Ok(Some(Self {
            signal,
            target,
            proc_root: PathBuf::from("/proc"),
        }))
    }

    /// Looks for processes by name under `root` instead of `/proc` (tests).
    pub(super) fn set_proc_root(&mut self, root: PathBuf) {
        self.proc_root = root;
    }

    /// Signals every target; `true` if all were signalled.
    pub(super) fn deliver(&self) -> bool {
        let sig = self.signal;
        let targets = match self.targets() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "on-change signal not sent");
                return false;
            }
        };
        let mut ok = true;
        for pid in targets {
            match crate::signal::send(pid, sig) {
                Ok(()) => tracing::info!(pid, signal = sig, "sent on-change signal"),
                Err(e) => {
                    ok = false;
                    tracing::warn!(pid, signal = sig, error = %e, "on-change signal failed");
                }
            }
        }
        ok
    }

    fn targets(&self) -> Result<Vec<i32>, String> {
        match &self.target {
            Target::Pidfile(pidfile) => read_pidfile(pidfile).map(|p| vec![p]),
            Target::Process(name) => {
                let me = std::process::id() as i32;
                let found = find_processes(&self.proc_root, name, me);
                if found.is_empty() {
                    return Err(format!(
                        "no process named {name:?} found in {}; is shareProcessNamespace enabled?",
                        self.proc_root.display()
                    ));
                }
                Ok(found)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::super::Notifier;
    use super::super::event::sample as event;
    use super::*;
    use crate::metrics::Metrics;
    use crate::signal::parse_signal;
    use std::time::Duration;

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

    // reference: docs/peers.md §B.8 (apps do not notice updates: signal the master process)
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

    // reference: docs/peers.md §B.8 (a half-configured signal is a configuration error)
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

    // reference: docs/peers.md §B.8 (the app is told by its own reload signal)
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

    // reference: docs/peers.md §B.8 (shareProcessNamespace: find the app by name)
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
}
