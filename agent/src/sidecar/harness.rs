//! The unit tests' loop: a [`Scripted`] cycle (results and latency in tokio time) driven
//! by the real [`Loop`] with a notifier that records, and the helpers the tests of each
//! file share.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cycle::{Cycle, default_factory};
use super::refresh_loop::Loop;
use super::reload::RELOAD_DEADLINE;
use crate::config::{Env, Plan, Settings};
use crate::metrics::Metrics;
use crate::notifier::{ChangeEvent, Coalescer};
use crate::publish::Publisher;
use crate::report::{ObjectStatus, SyncError, SyncReport};
use crate::retry::Failures;
use crate::signal::ReloadRequests;
use crate::telemetry::status::SidecarState;
use crate::writer::WriteOutcome;

/// (start, end) of each cycle.
pub(super) type Calls = Arc<std::sync::Mutex<Vec<(Instant, Option<Instant>)>>>;

/// A scripted cycle: each call takes `latency` (tokio time) and returns the next result.
pub(super) struct Scripted {
    pub(super) script: std::sync::Mutex<std::collections::VecDeque<Result<WriteOutcome, String>>>,
    pub(super) calls: Calls,
    pub(super) latency: Duration,
    /// What each report asks for as `refresh_within`.
    pub(super) within: Option<Duration>,
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
pub(super) fn failure(what: &str) -> SyncError {
    use crate::keyvault::KeyVaultError;
    use crate::report::{FailureKind, ObjectFailure};
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

pub(super) fn published(n: u32) -> Result<WriteOutcome, String> {
    Ok(WriteOutcome::Published {
        data_dir: format!("..{n}"),
    })
}

pub(super) struct Harness {
    pub(super) lp: Loop,
    pub(super) calls: Calls,
    pub(super) notified: Arc<std::sync::Mutex<Vec<String>>>,
    pub(super) _dir: tempfile::TempDir,
}

pub(super) fn harness(
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

pub(super) fn test_plan() -> Plan {
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

pub(super) async fn run_for(h: &mut Harness, total: Duration) {
    run_with(h, total, ReloadRequests::new()).await
}

pub(super) async fn run_with(h: &mut Harness, total: Duration, reload: ReloadRequests) {
    let (_watch_tx, watch_rx) = mpsc::channel::<()>(1);
    h.lp.run(tokio::time::sleep(total), reload, watch_rx)
        .await
        .unwrap();
}

pub(super) fn obj(id: &str, version: &str, sha: &str) -> ObjectStatus {
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
