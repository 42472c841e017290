//! `--on-change-exec`: runs a command with the change in its environment
//! (`KEYVAULT_AGENT_DIR`, `KEYVAULT_AGENT_DATA_DIR`, `KEYVAULT_AGENT_CHANGED`), bounded by a
//! timeout after which it is killed; its exit status is logged.

use std::time::Duration;

use super::event::ChangeEvent;

/// How long an `--on-change-exec` command may run before it is killed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// A configured `--on-change-exec` command.
#[derive(Debug, Clone)]
pub(super) struct ExecNotifier {
    command: Vec<String>,
    timeout: Duration,
}

impl ExecNotifier {
    /// The command (program and arguments) with the default [`EXEC_TIMEOUT`].
    pub(super) fn new(command: Vec<String>) -> Self {
        Self {
            command,
            timeout: EXEC_TIMEOUT,
        }
    }

    /// Changes the timeout.
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs the command once; `true` if it exited successfully within the timeout.
    pub(super) async fn deliver(&self, event: &ChangeEvent) -> bool {
        let Some((program, args)) = self.command.split_first() else {
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
        match tokio::time::timeout(self.timeout, child.wait()).await {
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
                    timeout = %humantime::format_duration(self.timeout),
                    "on-change command timed out and was killed"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Notifier;
    use super::super::event::sample as event;
    use crate::config::NotifySettings;
    use crate::metrics::Metrics;
    use std::time::Duration;

    // reference: docs/peers.md §B.8 (apps do not notice updates: run a command on change)
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

    // reference: docs/peers.md §B.8 (every wait bounded: a hung command is killed)
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
        // `sleep 30` would succeed if waited for: a failure within 25 s is the kill.
        tokio::time::timeout(Duration::from_secs(25), n.notify(&event(1)))
            .await
            .expect("the command is killed at its timeout, not waited for");
        assert!(metrics.encode().contains("class=\"exec_failed\"} 1"));
    }
}
