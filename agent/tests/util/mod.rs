//! Shared integration harness: an in-process emulator (TLS, own CA, port 0) with a seed, a
//! temp output directory, a minted service-account token file, SecretProviderClass files,
//! runners for `run_once` in-process and for the built binary with a clean environment, and
//! a log capture to prove no secret reaches a log line, an in-process sidecar with its
//! health server ([`running`]) and [`eventually!`] to await a condition.
#![allow(dead_code)]

/// Polls `cond` every 20 ms until it holds (a condition, not a sleep-for-time), failing
/// after `secs` seconds. A macro so that `cond` may `.await` and borrow freely.
macro_rules! eventually {
    ($secs:expr, $what:expr, $cond:expr) => {{
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {}", $what);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

pub mod running;
pub use running::{RunningSidecar, http_get};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyvault_agent::config::{Env, NotifySettings, Settings};
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::Emulator;
use tempfile::TempDir;

/// Workload identity client id in [`SEED`].
pub const WI_CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
/// Client-secret identity in [`SEED`].
pub const SP_CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
/// Its secret.
pub const SP_SECRET: &str = "dev-client-secret-value-9f8e7d";
/// User-assigned managed identity in [`SEED`].
pub const MI_CLIENT_ID: &str = "33333333-3333-3333-3333-333333333333";
/// An identity with access to `db-password` only.
pub const LIMITED_CLIENT_ID: &str = "44444444-4444-4444-4444-444444444444";
/// The service account the federated credentials name.
pub const SA_SUBJECT: &str = "system:serviceaccount:default:app";
/// Values that must never appear in a log line.
pub const SECRET_VALUES: &[&str] = &[
    "s3cr3t-db-password-value",
    "old-db-password-value",
    "api-key-value-0xfeed",
    SP_SECRET,
];
/// Fixed version ids of `db-password` (oldest first).
pub const DB_V1: &str = "0000000000000000000000000000000a";
/// Second version (disabled).
pub const DB_V2: &str = "0000000000000000000000000000000b";
/// Latest version.
pub const DB_V3: &str = "0000000000000000000000000000000c";

// The seeds share their secrets and identities; `concat!` takes only literals, so the
// parts are macros.
macro_rules! seed_secrets {
    () => {
        r#"
vaults:
  - name: demo
    secrets:
      - name: db-password
        versions:
          - { value: "old-db-password-value", created: 1700000000, version: "0000000000000000000000000000000a" }
          - { value: "disabled-db-password-value", created: 1700000100, enabled: false, version: "0000000000000000000000000000000b" }
          - { value: "s3cr3t-db-password-value", content_type: text/plain, created: 1700000200, version: "0000000000000000000000000000000c" }
      - name: api-key
        value: "api-key-value-0xfeed"
      - name: many
        versions:
          - { value: "many-0", created: 1700000000 }
          - { value: "many-3", created: 1700000003 }
          - { value: "many-1", created: 1700000001 }
          - { value: "many-2", created: 1700000002 }
      - name: off
        versions:
          - { value: "disabled-value", enabled: false }
"#
    };
}

macro_rules! seed_identities {
    () => {
        r#"identities:
  - name: app
    client_id: 11111111-1111-1111-1111-111111111111
    federated_credentials:
      - { subject: "system:serviceaccount:default:app", audience: api://AzureADTokenExchange }
    access: all
  - name: sp
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: dev-client-secret-value-9f8e7d
    access: all
  - name: node
    client_id: 33333333-3333-3333-3333-333333333333
    managed_identity: user_assigned
    access: all
  - name: limited
    client_id: 44444444-4444-4444-4444-444444444444
    client_secret: limited-secret
    access: ["demo/secrets/db-password"]
"#
    };
}

/// The full seed: [`SEED_LIGHT`] plus keys and certificates (key generation makes it slower).
pub const SEED: &str = concat!(
    seed_secrets!(),
    r#"      - name: hex-blob
        value: "68656c6c6f"
    keys:
      - { name: rsa-key, kty: RSA, size: 2048 }
      - { name: ec-key, kty: EC, curve: P-256 }
    certificates:
      - name: web-tls
        generate: { subject: "CN=web.demo.local", content_type: application/x-pkcs12 }
      - name: web-pem
        generate: { subject: "CN=pem.demo.local", content_type: application/x-pem-file }
"#,
    seed_identities!()
);

/// The default seed: secrets only (fast to start), one identity per mode.
pub const SEED_LIGHT: &str = concat!(seed_secrets!(), seed_identities!());

/// One test's world: emulator, temp dir, output dir, token file.
pub struct Harness {
    /// The running emulator.
    pub emu: Emulator,
    /// Owns every temp path.
    pub tmp: TempDir,
    /// The target directory (the shared emptyDir).
    pub dir: PathBuf,
    /// The projected service-account token file.
    pub token_file: PathBuf,
}

impl Harness {
    /// Starts the emulator with [`SEED_LIGHT`].
    pub async fn start() -> Harness {
        Self::with_seed(SEED_LIGHT).await
    }

    /// Starts the emulator with [`SEED`] (keys and certificates too).
    pub async fn full() -> Harness {
        Self::with_seed(SEED).await
    }

    /// Starts the emulator with `seed`.
    pub async fn with_seed(seed: &str) -> Harness {
        Self::with_builder(Emulator::builder().seed_yaml(seed)).await
    }

    /// Starts the emulator from a configured builder.
    pub async fn with_builder(b: keyvault_emulator::EmulatorBuilder) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        // Reuse the CA, server and signing keys generated once per test process: RSA key
        // generation dominates start-up otherwise.
        let state = tmp.path().join("emulator-state");
        std::fs::create_dir_all(&state).unwrap();
        for e in std::fs::read_dir(material()).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), state.join(e.file_name())).unwrap();
            }
        }
        let emu = b.state_dir(&state).start().await.expect("emulator starts");
        let dir = tmp.path().join("out");
        let token_file = tmp.path().join("tokens").join("azure-identity-token");
        std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
        let h = Harness {
            emu,
            tmp,
            dir,
            token_file,
        };
        h.write_token(SA_SUBJECT);
        h
    }

    /// Mints a fresh service-account token for `sub` into the token file (as the kubelet).
    pub fn write_token(&self, sub: &str) -> String {
        let t = self
            .emu
            .mint_token(sub, "api://AzureADTokenExchange", Duration::from_secs(3600));
        std::fs::write(&self.token_file, &t).unwrap();
        t
    }

    /// Writes a SecretProviderClass for vault `demo` with `objects` (YAML list items, each a
    /// `|` block body) and extra parameters; returns its path.
    pub fn spc(&self, objects: &[&str], extra: &[(&str, &str)]) -> PathBuf {
        self.spc_for(&self.emu.vault_url("demo"), objects, extra)
    }

    /// Like [`Harness::spc`] with another `keyvaultURL`.
    pub fn spc_for(
        &self,
        vault_url: &url::Url,
        objects: &[&str],
        extra: &[(&str, &str)],
    ) -> PathBuf {
        let mut params = format!(
            "    keyvaultName: demo\n    keyvaultURL: \"{vault_url}\"\n    tenantID: \"{}\"\n",
            self.emu.tenant_id()
        );
        for (k, v) in extra {
            params.push_str(&format!("    {k}: \"{v}\"\n"));
        }
        let mut objs = String::from("    objects: |\n      array:\n");
        for o in objects {
            objs.push_str("        - |\n");
            for line in o.lines() {
                objs.push_str(&format!("          {}\n", line.trim()));
            }
        }
        let text = format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: test\nspec:\n  provider: azure\n  parameters:\n{params}{objs}"
        );
        let path = self.tmp.path().join(format!(
            "spc-{}.yaml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runtime settings for `config` writing into [`Harness::dir`].
    pub fn settings(&self, config: &Path) -> Settings {
        Settings {
            config_file: config.to_owned(),
            dir: self.dir.clone(),
            api_version: "2025-07-01".into(),
            concurrency: 16,
            timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            ca_files: vec![self.emu.ca_file()],
            ca_dirs: vec![],
            interval: Duration::from_secs(120),
            jitter: 0.1,
            listen: None,
            max_staleness: None,
            notify: NotifySettings::default(),
            imds_endpoint: self.emu.imds_endpoint(),
            shutdown_grace: Duration::from_secs(5),
            max_response_size: keyvault_agent::http::DEFAULT_MAX_RESPONSE_SIZE,
            max_token_response_size: keyvault_agent::http::DEFAULT_MAX_TOKEN_RESPONSE_SIZE,
            change_detection: keyvault_agent::detect::ChangeDetection::List,
            full_sweep_every: keyvault_agent::detect::DEFAULT_FULL_SWEEP_EVERY,
            templates: Vec::new(),
            validate: keyvault_agent::config::ValidateMode::default(),
        }
    }

    /// Workload identity environment (as the webhook injects it).
    pub fn wi_env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_CLIENT_ID".into(), WI_CLIENT_ID.into()),
            ("AZURE_TENANT_ID".into(), self.emu.tenant_id()),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                self.token_file.display().to_string(),
            ),
            (
                "AZURE_AUTHORITY_HOST".into(),
                self.emu.authority_host().to_string(),
            ),
        ]
    }

    /// Client secret environment for `client_id`/`secret`.
    pub fn sp_env(&self, client_id: &str, secret: &str) -> Vec<(String, String)> {
        vec![
            ("AZURE_CLIENT_ID".into(), client_id.into()),
            ("AZURE_TENANT_ID".into(), self.emu.tenant_id()),
            ("AZURE_CLIENT_SECRET".into(), secret.into()),
            (
                "AZURE_AUTHORITY_HOST".into(),
                self.emu.authority_host().to_string(),
            ),
        ]
    }

    /// The client-secret environment of [`SP_CLIENT_ID`], the identity most tests use.
    pub fn sp(&self) -> Vec<(String, String)> {
        self.sp_env(SP_CLIENT_ID, SP_SECRET)
    }

    /// An [`Env`] from pairs.
    pub fn env(pairs: &[(String, String)]) -> Env {
        Env(pairs.iter().cloned().collect())
    }

    /// `--once` in-process.
    pub async fn run_once(
        &self,
        config: &Path,
        env: &[(String, String)],
    ) -> Result<keyvault_agent::syncer::SyncReport, keyvault_agent::error::Error> {
        keyvault_agent::run_once(self.settings(config), Self::env(env)).await
    }

    /// `--once` in-process with `settings` as the [`Harness::sp`] identity.
    pub async fn run_once_with(
        &self,
        settings: Settings,
    ) -> Result<keyvault_agent::syncer::SyncReport, keyvault_agent::error::Error> {
        keyvault_agent::run_once(settings, Self::env(&self.sp())).await
    }

    /// The sidecar's unit of work for `settings` as the [`Harness::sp`] identity, and its
    /// metrics registry.
    pub fn syncer(&self, settings: &Settings) -> (Syncer, Arc<Metrics>) {
        let plan = keyvault_agent::config::load(settings, &Self::env(&self.sp())).unwrap();
        let metrics = Metrics::new();
        (
            Syncer::new(plan, settings, metrics.clone()).unwrap(),
            metrics,
        )
    }

    /// The real sidecar loop in-process for `settings` as the [`Harness::sp`] identity:
    /// refreshing every 200 ms without jitter, health server on a loopback port 0.
    pub async fn start_sidecar(&self, settings: Settings) -> RunningSidecar {
        let mut settings = settings;
        settings.interval = Duration::from_millis(200);
        settings.jitter = 0.0;
        settings.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        RunningSidecar::start(keyvault_agent::sidecar::Sidecar::new(
            settings,
            Self::env(&self.sp()),
        ))
        .await
    }

    /// The built binary with a clean environment but for `SSL_CERT_FILE` (the emulator's
    /// CA) and `KEYVAULT_AGENT_IMDS_ENDPOINT`, and `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyvault-agent"));
        cmd.env_clear()
            .env("SSL_CERT_FILE", self.emu.ca_file())
            .env(
                "KEYVAULT_AGENT_IMDS_ENDPOINT",
                self.emu.imds_endpoint().to_string(),
            )
            .args(args);
        cmd
    }

    /// Runs the built binary ([`Harness::command`]) with `env` added.
    pub fn run_binary(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.command(args)
            .envs(env.iter().cloned())
            .output()
            .expect("run keyvault-agent")
    }

    /// Writes `text` to `name` in the temp dir (a template, a script); returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The published `..status.json`.
    pub fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("..status.json")).unwrap()).unwrap()
    }

    /// Every regular file visible through the target dir's top-level names (following the
    /// `..data` symlinks), by relative path.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let data = self.dir.join("..data");
        if data.exists() {
            collect(&data, "", &mut out);
        }
        out
    }

    /// The text of one published file.
    pub fn file(&self, rel: &str) -> String {
        String::from_utf8(std::fs::read(self.dir.join(rel)).unwrap_or_else(|e| {
            panic!("{rel}: {e}");
        }))
        .unwrap()
    }

    /// The permission bits (`& 0o777`) of one published file.
    pub fn mode(&self, rel: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.dir.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    }

    /// A full listing of the target dir (names, link targets, file bytes) to prove it was
    /// not touched.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        snapshot(&self.dir, "", &mut out);
        out
    }
}

/// A state dir with the emulator's generated material, made once per test process.
fn material() -> &'static Path {
    static DIR: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        // Its own thread and runtime: this may be called from inside any test's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let emu = Emulator::builder()
                    .seed_yaml("vaults: [{name: demo}]")
                    .state_dir(&path)
                    .start()
                    .await
                    .expect("emulator starts");
                emu.shutdown().await;
            });
        })
        .join()
        .unwrap();
        dir
    })
    .path()
}

fn collect(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // `..status.json` (the manifest) is the writer's, not published data.
        if prefix.is_empty() && name.starts_with("..") {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let p = e.path();
        if p.is_dir() {
            collect(&p, &rel, out);
        } else {
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

fn snapshot(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}/{name}");
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(
                rel,
                format!("-> {}", std::fs::read_link(&p).unwrap().display()),
            );
        } else if meta.is_dir() {
            out.insert(rel.clone(), "dir".into());
            snapshot(&p, &rel, out);
        } else {
            out.insert(rel, hex_sha(&std::fs::read(&p).unwrap()));
        }
    }
}

fn hex_sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Captures every tracing event (all levels, all targets except the in-process emulator's)
/// while the guard lives, on this thread. Use with a current-thread runtime.
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Starts capturing at TRACE.
    pub fn start() -> LogCapture {
        use tracing_subscriber::prelude::*;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Writer(buf.clone());
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_target(true);
        let filter = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::TRACE)
            .with_target(
                "keyvault_emulator",
                tracing_subscriber::filter::LevelFilter::OFF,
            );
        let sub = tracing_subscriber::registry().with(layer.with_filter(filter));
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(sub),
        }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Panics if any of `needles` appears in a captured line.
    pub fn assert_absent(&self, needles: &[&str]) {
        let text = self.text();
        for n in needles {
            if n.len() < 6 {
                continue;
            }
            if let Some(line) = text.lines().find(|l| l.contains(n)) {
                // Show where, not what.
                panic!(
                    "a log line contains a secret: {}",
                    line.replace(n, "<SECRET>")
                );
            }
        }
    }
}
