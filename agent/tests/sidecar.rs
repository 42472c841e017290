//! Sidecar mode end to end against the in-process emulator (TLS, real tokens): refresh and
//! rotation, the three notifiers, backoff that keeps the published set, reload, signals,
//! and the health/metrics/status endpoints.
//!
//! reference: docs/peers.md §B.2 (rotation), §B.8 (apps noticing changes), §D.1 (coalesced
//! notification, Retry-After-aware backoff), §B; docs/atomic-writer.md (the `..data` layout).
//!
//! Tests run on a real clock with short intervals and await conditions (never fixed
//! sleeps), except the Retry-After test, which runs the loop on a paused clock while the
//! syncer talks to the emulator on a real-clock runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyvault_agent::config::{Env, NotifySettings, Settings};
use keyvault_agent::sidecar::{Cycle, CycleFactory, Sidecar};
use keyvault_agent::syncer::{SyncError, SyncReport, Syncer};
use keyvault_emulator::{Emulator, Fault, FaultKind, Route};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::util::RunningSidecar;

const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
const CLIENT_SECRET: &str = "dev-secret";
const SUBJECT: &str = "system:serviceaccount:default:app";
const AUDIENCE: &str = "api://AzureADTokenExchange";

fn seed() -> String {
    format!(
        r#"
vaults:
  - name: demo
    secrets:
      - name: db-password
        versions:
          - {{ value: "first" }}
      - name: api-key
        versions:
          - {{ value: "key-1" }}
      - name: extra
        versions:
          - {{ value: "extra-1" }}
identities:
  - name: app
    client_id: {CLIENT_ID}
    client_secret: {CLIENT_SECRET}
    federated_credentials:
      - {{ subject: "{SUBJECT}", audience: {AUDIENCE} }}
    access: all
"#
    )
}

/// A SecretProviderClass for the emulator's `demo` vault with `objects` (secret names).
fn spc(emu_vault: &url::Url, tenant: &str, objects: &[&str]) -> String {
    let items: String = objects
        .iter()
        .map(|o| {
            format!("          - |\n            objectName: {o}\n            objectType: secret\n")
        })
        .collect();
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: app\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: demo\n    keyvaultURL: \"{emu_vault}\"\n    tenantID: \"{tenant}\"\n    clientID: \"{CLIENT_ID}\"\n    objects: |\n      array:\n{items}"
    )
}

/// Publishes `text` as `name` in `dir` the way the kubelet updates a ConfigMap volume:
/// a new timestamped directory, `..data_tmp` pointing at it, renamed over `..data`.
fn configmap_publish(dir: &Path, name: &str, text: &str) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ts = format!(
        "..cm_{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    std::fs::create_dir_all(dir.join(&ts)).unwrap();
    std::fs::write(dir.join(&ts).join(name), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join(name);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    settings: Settings,
    env: Env,
}

impl Fixture {
    async fn new(objects: &[&str]) -> (Emulator, Fixture) {
        let emu = Emulator::builder().seed_yaml(seed()).start().await.unwrap();
        let fx = Self::for_emulator(&emu, objects);
        (emu, fx)
    }

    fn for_emulator(emu: &Emulator, objects: &[&str]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let config_dir = tmp.path().join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        configmap_publish(
            &config_dir,
            "spc.yaml",
            &spc(&emu.vault_url("demo"), &emu.tenant_id(), objects),
        );
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut settings = Settings::with_defaults(config_dir.join("spc.yaml"), &out);
        settings.ca_files = vec![emu.ca_file()];
        settings.interval = Duration::from_millis(300);
        settings.jitter = 0.0;
        settings.timeout = Duration::from_secs(10);
        settings.request_timeout = Duration::from_secs(5);
        settings.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        settings.shutdown_grace = Duration::from_secs(10);
        let env = Env([
            ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
            ("AZURE_TENANT_ID", emu.tenant_id()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("AZURE_AUTHORITY_HOST", emu.authority_host().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect());
        Fixture { tmp, settings, env }
    }

    fn out(&self) -> PathBuf {
        self.settings.dir.clone()
    }

    fn config_dir(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    async fn start(&self) -> RunningSidecar {
        self.start_with(Sidecar::new(self.settings.clone(), self.env.clone()))
            .await
    }

    async fn start_with(&self, sidecar: Sidecar) -> RunningSidecar {
        RunningSidecar::start(sidecar).await
    }
}

fn data_target(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join("..data")).ok()
}

fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

fn timestamped_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data" && !n.starts_with("..status"))
        .collect();
    v.sort();
    v
}

/// A local webhook receiver on port 0 recording POST bodies.
async fn webhook() -> (
    url::Url,
    Arc<Mutex<Vec<serde_json::Value>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, task)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_swap_files_and_fire_each_notifier_once() {
    let (emu, mut fx) = Fixture::new(&["db-password", "api-key"]).await;
    let work = fx.tmp.path().to_path_buf();

    // The application: counts SIGHUPs into a file.
    let hups = work.join("hups");
    let pidfile = work.join("app.pid");
    let mut app = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap 'echo hup >> {}' HUP; echo $$ > {}; while :; do sleep 0.05; done",
            hups.display(),
            pidfile.display()
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually!(
        10,
        "the app's pidfile",
        read(&work, "app.pid").is_some_and(|p| p.ends_with('\n'))
    );

    let execs = work.join("execs");
    let (hook, posts, _hook_task) = webhook().await;
    fx.settings.notify = NotifySettings {
        signal: Some(keyvault_agent::signal::parse_signal("HUP").unwrap()),
        signal_pidfile: Some(pidfile.clone()),
        signal_process: None,
        exec: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"$KEYVAULT_AGENT_CHANGED\" >> {}", execs.display()),
        ]),
        http: Some(hook),
        // The first publish notifies only with --notify-on-start (issue 11 item 8).
        on_start: true,
        ..Default::default()
    };
    let run = fx.start().await;
    let out = fx.out();

    // The first publish notifies once.
    eventually!(
        20,
        "first notifications",
        lines(&hups) == 1 && lines(&execs) == 1 && posts.lock().unwrap().len() == 1
    );
    assert_eq!(read(&out, "db-password").as_deref(), Some("first"));
    let before = data_target(&out).unwrap();

    // Two objects rotate together: one swap, one notification per notifier.
    emu.set_secret("demo", "db-password", "second", None);
    emu.set_secret("demo", "api-key", "key-2", None);
    eventually!(20, "the swap", data_target(&out).as_ref() != Some(&before));
    assert_eq!(read(&out, "db-password").as_deref(), Some("second"));
    assert_eq!(read(&out, "api-key").as_deref(), Some("key-2"));
    eventually!(
        20,
        "second notifications",
        lines(&hups) == 2 && lines(&execs) == 2 && posts.lock().unwrap().len() == 2
    );

    // Several more (unchanged) refreshes: nothing more is sent.
    let r = run.refreshes().await;
    eventually!(20, "three more refreshes", run.refreshes().await >= r + 3.0);
    // Give in-flight notifier tasks a chance to (wrongly) fire before counting.
    tokio::task::yield_now().await;
    assert_eq!(lines(&hups), 2, "signal sent more than once per swap");
    assert_eq!(lines(&execs), 2, "exec ran more than once per swap");
    assert_eq!(
        posts.lock().unwrap().len(),
        2,
        "hook posted more than once per swap"
    );

    let changed = std::fs::read_to_string(&execs).unwrap();
    let last = changed.lines().last().unwrap();
    assert!(
        last.contains("secret/db-password") && last.contains("secret/api-key"),
        "{last}"
    );
    let post = posts.lock().unwrap()[1].clone();
    assert_eq!(post["event"], "published");
    assert_eq!(post["vault"], "demo");
    let body = post.to_string();
    assert!(
        !body.contains("second") && !body.contains("key-2"),
        "values leaked: {body}"
    );

    run.stop().await;
    let _ = app.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_vault_causes_no_write() {
    let (_emu, fx) = Fixture::new(&["db-password"]).await;
    let run = fx.start().await;
    let out = fx.out();
    eventually!(20, "first sync", data_target(&out).is_some());
    // The swap shows before the cycle is counted: wait for the count, or a loaded machine
    // counts the first (changed) cycle among the "three more".
    eventually!(20, "first sync counted", run.refreshes().await >= 1.0);
    let target = data_target(&out).unwrap();
    let dirs = timestamped_dirs(&out);
    let r = run.refreshes().await;
    eventually!(20, "three more refreshes", run.refreshes().await >= r + 3.0);
    assert_eq!(data_target(&out).unwrap(), target);
    assert_eq!(timestamped_dirs(&out), dirs);
    assert_eq!(run.metric("keyvault_agent_swaps_total").await, 1.0);
    assert!(
        run.metric("keyvault_agent_refreshes_total{result=\"unchanged\"}")
            .await
            >= 3.0
    );
    run.stop().await;
}

/// Runs `keyvault-agent probe` (what the compose healthcheck runs) against `listen`.
async fn probe_binary(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyvault-agent"));
    cmd.env_clear().arg("probe").args(args);
    cmd.output().await.expect("run keyvault-agent probe")
}

// reference: issue 12 item 3 (compose gates the app on the sidecar's healthcheck,
// `keyvault-agent probe`, the counterpart of the native sidecar's startup probe on /readyz)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_only_once_the_first_set_is_published() {
    let (emu, fx) = Fixture::new(&["db-password"]).await;
    emu.add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)));
    let run = fx.start().await;
    let listen = run.addr.to_string();
    eventually!(
        20,
        "a failed first sync",
        run.metric("keyvault_agent_refreshes_total{result=\"failed\"}")
            .await
            >= 1.0
    );
    let out = probe_binary(&["--listen", &listen]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not ready (503)"), "{err}");
    assert!(!fx.out().join("db-password").exists());

    emu.clear_faults();
    eventually!(
        30,
        "probe passes after the first sync",
        probe_binary(&["--listen", &listen]).await.status.code() == Some(0)
    );
    assert!(
        fx.out().join("db-password").exists(),
        "ready means published"
    );

    // Nothing listening: not ready, and the message says where it looked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = probe_binary(&["--listen", &gone]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect") && err.contains(&gone),
        "{err}"
    );
    // The health server switched off: nothing to ask is a clear error, not a hang.
    let out = probe_binary(&["--listen", "off"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen off"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_status_endpoints() {
    let (emu, fx) = Fixture::new(&["db-password", "api-key"]).await;
    // Hold the first sync back: every secret read fails until the fault is cleared.
    emu.add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)));
    let run = fx.start().await;

    let (code, body) = run.get("/healthz").await;
    assert_eq!(code, 200, "{body}");
    eventually!(
        20,
        "a failed first sync",
        run.metric("keyvault_agent_refreshes_total{result=\"failed\"}")
            .await
            >= 1.0
    );
    let (code, body) = run.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("first sync not published"), "{body}");
    assert_eq!(
        run.get("/healthz").await.0,
        200,
        "still alive while retrying"
    );

    emu.clear_faults();
    eventually!(
        30,
        "ready after the first sync",
        run.get("/readyz").await.0 == 200
    );

    let (code, text) = run.get("/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "keyvault_agent_keyvault_request_duration_seconds",
        "keyvault_agent_token_acquisitions_total",
        "keyvault_agent_refreshes_total",
        "keyvault_agent_swaps_total",
        "keyvault_agent_errors_total",
        "keyvault_agent_last_successful_sync_timestamp_seconds",
        "keyvault_agent_object_info",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    assert!(text.contains("id=\"secret/db-password\""), "{text}");

    let (code, body) = run.get("/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ready"], true);
    let ids: Vec<&str> = status["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["secret/db-password", "secret/api-key"]);
    assert_eq!(status["objects"][0]["version"].as_str().unwrap().len(), 32);
    // Hashes of (possibly low-entropy) secrets stay off the network...
    assert!(status["objects"][0].get("sha256").is_none(), "{status}");
    assert!(
        status["objects"][0].get("hmac_sha256").is_none(),
        "{status}"
    );
    assert!(status["next_refresh"].as_u64().is_some());
    assert!(
        !body.contains("first") && !body.contains("key-1"),
        "values leaked: {body}"
    );

    // The same manifest is beside `..data`.
    let on_disk: serde_json::Value =
        serde_json::from_str(&read(&fx.out(), "..status.json").unwrap()).unwrap();
    assert_eq!(on_disk["objects"][0]["id"], "secret/db-password");
    // ...and are in the volume, next to the values, keyed (reference: docs/threat-model.md rule 8).
    assert_eq!(
        on_disk["objects"][0]["hmac_sha256"].as_str().unwrap().len(),
        64
    );
    // The file describes the published set; runtime fields are served at /status only.
    assert!(on_disk["next_refresh"].is_null(), "{on_disk}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_down_keeps_files_and_recovers_when_it_returns() {
    let state = tempfile::tempdir().unwrap();
    let emu = Emulator::builder()
        .seed_yaml(seed())
        .state_dir(state.path())
        .start()
        .await
        .unwrap();
    let addr = emu.addr();
    let fx = Fixture::for_emulator(&emu, &["db-password"]);
    let run = fx.start().await;
    let out = fx.out();
    eventually!(20, "first sync", run.get("/readyz").await.0 == 200);
    let target = data_target(&out).unwrap();
    let manifest = read(&out, "..status.json").unwrap();

    // Down: refreshes fail, files stay, still ready (no --max-staleness).
    emu.shutdown().await;
    let failed = run
        .metric("keyvault_agent_refreshes_total{result=\"failed\"}")
        .await;
    eventually!(
        30,
        "failed refreshes",
        run.metric("keyvault_agent_refreshes_total{result=\"failed\"}")
            .await
            >= failed + 2.0
    );
    assert_eq!(data_target(&out).unwrap(), target);
    assert_eq!(read(&out, "db-password").as_deref(), Some("first"));
    assert_eq!(run.get("/readyz").await.0, 200);
    let (_, status) = run.get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["consecutive_failures"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(status["last_error"].as_str().is_some(), "{status}");
    assert_eq!(status["ready"], true, "{status}");
    // The manifest describes the published set: failures do not rewrite it (reference:
    // ISSUE9 item 8, ISSUE10 item 5); the error is at /status.
    assert_eq!(read(&out, "..status.json").unwrap(), manifest);

    // Back on the same address and state: the next refresh succeeds and picks up a rotation.
    let emu = Emulator::builder()
        .seed_yaml(seed())
        .state_dir(state.path())
        .addr(addr)
        .start()
        .await
        .unwrap();
    emu.set_secret("demo", "db-password", "after-outage", None);
    eventually!(
        30,
        "recovery",
        read(&out, "db-password").as_deref() == Some("after-outage")
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_token_file_is_used_on_the_next_exchange() {
    let emu = Emulator::builder()
        .seed_yaml(seed())
        // Short-lived access tokens, so every refresh exchanges the file's token again.
        .token_ttl(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let mut fx = Fixture::for_emulator(&emu, &["db-password"]);
    let token_file = fx.tmp.path().join("token");
    std::fs::write(
        &token_file,
        emu.mint_token(SUBJECT, AUDIENCE, Duration::from_secs(3600)),
    )
    .unwrap();
    fx.env.0.remove("AZURE_CLIENT_SECRET");
    fx.env.0.insert(
        "AZURE_FEDERATED_TOKEN_FILE".into(),
        token_file.display().to_string(),
    );
    let run = fx.start().await;
    eventually!(20, "first sync", run.get("/readyz").await.0 == 200);

    // The kubelet rotates the file to a token Entra refuses: exchanges start failing...
    std::fs::write(&token_file, emu.mint_expired_token(SUBJECT, AUDIENCE)).unwrap();
    eventually!(
        30,
        "an exchange with the rotated (expired) token",
        run.metric("keyvault_agent_token_failures_total").await >= 1.0
    );
    // ...and a fresh one is picked up without a restart.
    std::fs::write(
        &token_file,
        emu.mint_token(SUBJECT, AUDIENCE, Duration::from_secs(3600)),
    )
    .unwrap();
    emu.set_secret("demo", "db-password", "with-new-token", None);
    eventually!(
        30,
        "a sync with the fresh token",
        read(&fx.out(), "db-password").as_deref() == Some("with-new-token")
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_config_is_picked_up_and_broken_config_rejected_without_stopping() {
    let (emu, mut fx) = Fixture::new(&["db-password"]).await;
    // Long interval: only a reload can explain a new file appearing quickly.
    fx.settings.interval = Duration::from_secs(3600);
    let run = fx.start().await;
    let out = fx.out();
    eventually!(20, "first sync", data_target(&out).is_some());
    assert!(read(&out, "api-key").is_none());

    // A ConfigMap update (a `..data` swap in the config directory) adds an object.
    let text = spc(
        &emu.vault_url("demo"),
        &emu.tenant_id(),
        &["db-password", "api-key"],
    );
    configmap_publish(&fx.config_dir(), "spc.yaml", &text);
    eventually!(
        20,
        "the new object",
        read(&out, "api-key").as_deref() == Some("key-1")
    );

    // A broken update is rejected; the running plan continues.
    let target = data_target(&out).unwrap();
    configmap_publish(
        &fx.config_dir(),
        "spc.yaml",
        "spec: [this is not: a SecretProviderClass",
    );
    eventually!(
        20,
        "the rejection",
        run.metric("keyvault_agent_errors_total{class=\"config\"}")
            .await
            >= 1.0
    );
    assert_eq!(run.get("/healthz").await.0, 200);
    assert_eq!(data_target(&out).unwrap(), target);

    // SIGHUP (here the reload trigger) with the broken file: rejected again, yet refreshes now
    // with the running plan.
    emu.set_secret("demo", "api-key", "key-2", None);
    run.reload.send(()).await.unwrap();
    eventually!(
        20,
        "the forced refresh",
        read(&out, "api-key").as_deref() == Some("key-2")
    );
    assert!(
        run.metric("keyvault_agent_errors_total{class=\"config\"}")
            .await
            >= 2.0
    );

    // Fixed again: picked up.
    let text = spc(&emu.vault_url("demo"), &emu.tenant_id(), &["extra"]);
    configmap_publish(&fx.config_dir(), "spc.yaml", &text);
    eventually!(
        20,
        "the fixed config",
        read(&out, "extra").as_deref() == Some("extra-1") && read(&out, "api-key").is_none()
    );
    run.stop().await;
}

/// One cycle as seen by the loop's (paused) clock, with the emulator's request count.
#[derive(Debug, Clone)]
struct CycleRecord {
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    requests_before: u64,
    requests_after: u64,
    retry_after: Option<Duration>,
    ok: bool,
}

/// Runs the real syncer on a real-clock runtime, recording each cycle on the loop's clock.
struct Elsewhere {
    syncer: Arc<Syncer>,
    rt: tokio::runtime::Handle,
    emu: Arc<Emulator>,
    records: mpsc::UnboundedSender<CycleRecord>,
}

impl Cycle for Elsewhere {
    fn sync(&self) -> futures::future::BoxFuture<'_, Result<SyncReport, SyncError>> {
        Box::pin(async move {
            let start = tokio::time::Instant::now();
            let requests_before = self.emu.counts().total();
            let syncer = self.syncer.clone();
            let result = self
                .rt
                .spawn(async move { syncer.sync().await })
                .await
                .unwrap();
            let record = CycleRecord {
                start,
                end: tokio::time::Instant::now(),
                requests_before,
                requests_after: self.emu.counts().total(),
                retry_after: result.as_ref().err().and_then(|e| e.retry_after()),
                ok: result.is_ok(),
            };
            let _ = self.records.send(record);
            result
        })
    }
}

#[test]
fn throttled_refresh_waits_for_retry_after_on_a_paused_clock() {
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emu = Arc::new(
        real.block_on(Emulator::builder().seed_yaml(seed()).start())
            .unwrap(),
    );
    let mut fx = Fixture::for_emulator(&emu, &["db-password"]);
    fx.settings.interval = Duration::from_secs(10);
    // Shorter than Retry-After, so the client gives up at once and the loop must wait.
    fx.settings.timeout = Duration::from_secs(5);
    fx.settings.listen = None;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let factory: CycleFactory = {
        let (rt, emu) = (real.handle().clone(), emu.clone());
        Arc::new(move |plan, settings, metrics| {
            let _guard = rt.enter();
            Ok(Box::new(Elsewhere {
                syncer: Arc::new(Syncer::new(plan, settings, metrics)?),
                rt: rt.clone(),
                emu: emu.clone(),
                records: tx.clone(),
            }) as Box<dyn Cycle>)
        })
    };

    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(async {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let sidecar = Sidecar::new(fx.settings.clone(), fx.env.clone()).cycle_factory(factory);
        let task = tokio::spawn(async move {
            sidecar
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        let first = rx.recv().await.unwrap();
        assert!(first.ok, "{first:?}");

        emu.add_fault(
            Fault::new(
                Route::SecretGet,
                FaultKind::Throttle {
                    retry_after: Some(30),
                },
            )
            .times(1),
        );
        let throttled = rx.recv().await.unwrap();
        assert!(!throttled.ok);
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(30)));
        // The normal schedule had put it 10 s after the first.
        assert_eq!(throttled.start - first.end, Duration::from_secs(10));

        let next = rx.recv().await.unwrap();
        let waited = next.start - throttled.end;
        assert!(
            waited >= Duration::from_secs(30),
            "retried after {waited:?}"
        );
        assert_eq!(
            next.requests_before, throttled.requests_after,
            "requests were sent while Retry-After was pending"
        );
        assert!(next.ok, "{next:?}");
        // Then back to the normal interval.
        let after = rx.recv().await.unwrap();
        assert_eq!(after.start - next.end, Duration::from_secs(10));

        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
    });
    drop(paused);
    drop(fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refreshes_now_and_sigterm_mid_refresh_exits_zero_with_a_complete_set() {
    let (emu, fx) = Fixture::new(&["db-password", "api-key"]).await;
    let out = fx.out();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyvault-agent"));
    cmd.env_clear()
        .envs(fx.env.0.iter())
        .env("KEYVAULT_AGENT_LOG", "info")
        .env("KEYVAULT_AGENT_LOG_FORMAT", "json")
        .arg("--config")
        .arg(&fx.settings.config_file)
        .arg("--dir")
        .arg(&out)
        .arg("--ca-file")
        .arg(emu.ca_file())
        // Only signals can cause a refresh within this test.
        .arg("--interval")
        .arg("1h")
        .arg("--listen")
        .arg("off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    eventually!(
        30,
        "first sync",
        read(&out, "db-password").as_deref() == Some("first")
    );

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();

    // SIGHUP: reload and refresh now.
    emu.set_secret("demo", "db-password", "after-hup", None);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    eventually!(
        20,
        "the SIGHUP refresh",
        read(&out, "db-password").as_deref() == Some("after-hup")
    );

    // The next refresh will publish a rotation, slowly: every secret read takes 2 s.
    emu.set_secret("demo", "db-password", "second", None);
    emu.set_secret("demo", "api-key", "key-2", None);
    let before = emu.counts().route(Route::SecretGet);
    emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::Latency(Duration::from_secs(2)),
    ));
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    eventually!(
        10,
        "a request in flight",
        emu.counts().route(Route::SecretGet) > before
    );

    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    // JSON logs: every line is an object; one line per refresh carries the counts.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let first = lines
        .iter()
        .find(|l| l["message"] == "first sync published")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(first["objects"], 2);
    assert!(first["requests"].as_u64().is_some() && first["duration_ms"].as_u64().is_some());
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "refresh done")
            .count(),
        2,
        "one line per (SIGHUP) refresh: {stderr}"
    );
    // The in-flight refresh completed its swap: the whole new set, not a mix.
    assert_eq!(
        read(&out, "db-password").as_deref(),
        Some("second"),
        "{stderr}"
    );
    assert_eq!(read(&out, "api-key").as_deref(), Some("key-2"));
    assert!(
        !stderr.contains("second") && !stderr.contains("key-2"),
        "values in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_data_is_older_than_max_staleness() {
    let (emu, mut fx) = Fixture::new(&["db-password"]).await;
    fx.settings.max_staleness = Some(Duration::from_secs(1));
    let run = fx.start().await;
    eventually!(20, "ready", run.get("/readyz").await.0 == 200);

    // Refreshes fail from now on: the files stay, but they age past --max-staleness.
    emu.add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)));
    eventually!(20, "not ready", run.get("/readyz").await.0 == 503);
    let (_, body) = run.get("/readyz").await;
    assert!(body.contains("stale"), "{body}");
    assert_eq!(run.get("/healthz").await.0, 200);
    assert_eq!(read(&fx.out(), "db-password").as_deref(), Some("first"));

    emu.clear_faults();
    eventually!(20, "ready again", run.get("/readyz").await.0 == 200);
    run.stop().await;
}
