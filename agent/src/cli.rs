//! Command-line flags and their environment variables, mapped into [`Settings`].
//!
//! Every flag also reads a `KEYVAULT_AGENT_*` variable, so a pod spec can configure the agent
//! with `env:` alone. Single-flag mistakes (a bad duration, an unknown signal) are clap usage
//! errors; cross-flag mistakes are collected by [`Cli::into_invocation`] and reported all at
//! once. Both exit with code 2 (see [`crate::error`]).
//!
//! `--on-change-exec` is split like a POSIX shell would split it (quotes and backslashes,
//! no expansion of variables or globs) by the `shlex` crate; the command runs directly,
//! without a shell. Wrap it in `sh -c '...'` when shell features are needed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use url::Url;

use crate::config::{DEFAULT_API_VERSION, DEFAULT_IMDS_ENDPOINT, Env, NotifySettings, Settings};

const AFTER_HELP: &str = "\
The configuration file is a SecretProviderClass manifest (provider: azure), exactly as used
with the Secrets Store CSI driver, or just its spec.parameters map.

Identity (first match wins): useVMManagedIdentity: \"true\" in the parameters (IMDS); workload
identity from AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE (injected by the
azure-workload-identity webhook for pods labelled azure.workload.identity/use: \"true\"), where
the clientID / tenantID parameters win over the env vars; a client secret from
AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE. AZURE_AUTHORITY_HOST overrides the cloud's
Entra endpoint. SSL_CERT_FILE adds trusted CA certificates, like --ca-file; SSL_CERT_DIR
(colon-separated directories, as OpenSSL reads it) adds every PEM certificate file in them.

Exit codes:
  0  success
  1  internal error (a bug, e.g. a panic in any task)
  2  command-line usage error
  3  invalid configuration (SecretProviderClass, identity, notifier settings)
  4  authentication failed (Entra / IMDS refused the identity)
  5  Key Vault refused an object (not found, disabled, forbidden, too large),
     or the vault host does not exist
  6  Key Vault or Entra unavailable or throttling until the deadline
  7  an object's content could not be converted
  8  the output directory could not be written
  9  the --listen address could not be bound (in use, or not permitted)
  10  a certificate failed validation (a key that does not match its leaf, a chain
     out of order; an expired or not-yet-valid certificate with --validate strict)
  126, 127  exec: the command could not be run (126) or was not found (127)
  130, 143  --once or check stopped by SIGINT (130) or SIGTERM (143) before it finished

A sidecar stopped by SIGTERM/SIGINT exits 0. SIGHUP reloads the configuration (sidecar)
or is ignored (--once); it never terminates the agent.";

/// keyvault-agent: fetches the Azure Key Vault objects of a SecretProviderClass into a
/// directory, atomically, from inside the pod.
#[derive(Debug, Parser)]
#[command(
    name = "keyvault-agent",
    version,
    about = "Fetches the Azure Key Vault objects of a SecretProviderClass into a directory, atomically, from inside the pod.",
    long_about = "Fetches the Azure Key Vault objects of a SecretProviderClass into a directory, atomically, from inside the pod.\n\n\
        With --once it runs as an initContainer: one sync, then exit. Without it, it runs as a sidecar: \
        first sync, then refresh every --interval, notifying the application when files change.",
    after_long_help = AFTER_HELP,
)]
pub struct Cli {
    /// Subcommand (none: sync, once or forever).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the sync modes.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration offline: print every problem (exit 3), or one line per
    /// object (id, path, mode; never values).
    Check(CheckArgs),
    /// Fetch once, write nothing, set env vars from the objects and exec CMD in the same
    /// process (its PID, so signals go straight to it). A failed fetch exits with the
    /// agent's exit code and never runs CMD.
    Exec(ExecArgs),
    /// Ask a running sidecar whether it is ready (GET /readyz on its --listen address, 0.0.0.0
    /// probed as 127.0.0.1): exit 0 when ready, 1 when not or unreachable. For container
    /// health checks in images without a shell (compose: `test: ["CMD", "/keyvault-agent", "probe"]`).
    Probe(ProbeArgs),
    /// Convert manifests that mount the Secrets Store CSI driver (provider azure) into ones
    /// that run the agent; prints the converted YAML stream on stdout, warnings on stderr.
    Migrate(MigrateArgs),
}

/// `probe` flags.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The sidecar's health server address (default: --listen / KEYVAULT_AGENT_LISTEN).
    #[arg(long, value_parser = listen, value_name = "ADDR")]
    pub listen: Option<Listen>,
}

/// `migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Manifest stream to convert (Pods, Deployments, StatefulSets, DaemonSets, Jobs,
    /// CronJobs and their SecretProviderClasses), or `-` for stdin.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: PathBuf,

    /// How the agent joins each pod: `init` (one sync before the app starts, no rotation),
    /// `native-sidecar` (Kubernetes 1.29+: an initContainer with restartPolicy Always that
    /// holds the app until the first sync, then refreshes), `sidecar` (init container plus a
    /// classic sidecar container, for older clusters).
    #[arg(
        long,
        env = "KEYVAULT_AGENT_MIGRATE_MODE",
        value_enum,
        default_value = "native-sidecar",
        value_name = "MODE"
    )]
    pub mode: crate::migrate::Mode,

    /// Image of the agent containers.
    #[arg(long, env = "KEYVAULT_AGENT_MIGRATE_IMAGE", default_value = crate::migrate::DEFAULT_IMAGE, value_name = "IMAGE")]
    pub image: String,

    /// Path of the agent binary inside application images, used when an env var from a
    /// synced Secret is rewritten to `keyvault-agent exec`.
    #[arg(long, env = "KEYVAULT_AGENT_MIGRATE_EXEC_PATH", default_value = crate::migrate::DEFAULT_EXEC_PATH, value_name = "PATH")]
    pub exec_path: String,

    /// Namespace of objects that name none, used to match pods with their
    /// SecretProviderClass.
    #[arg(long, short = 'n', env = "KEYVAULT_AGENT_MIGRATE_NAMESPACE", default_value = crate::migrate::DEFAULT_NAMESPACE, value_name = "NAMESPACE")]
    pub namespace: String,
}

impl MigrateArgs {
    /// The conversion's options.
    pub fn options(&self) -> crate::migrate::Options {
        crate::migrate::Options {
            mode: self.mode,
            image: self.image.trim().to_owned(),
            exec_path: self.exec_path.trim().to_owned(),
            namespace: self.namespace.trim().to_owned(),
        }
    }
}

/// `check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// SecretProviderClass manifest, or its parameters map (required; may also come
    /// before `check`).
    #[arg(long, env = "KEYVAULT_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Also fail (exit 3) when this environment has no identity: without it, a missing
    /// AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE is a note, because the
    /// workload identity webhook injects them only into the pod.
    #[arg(long, env = "KEYVAULT_AGENT_CHECK_STRICT", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub strict: bool,
}

/// Flags of the sync modes (init container and sidecar).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// SecretProviderClass manifest, or its parameters map (required).
    #[arg(long, env = "KEYVAULT_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output directory, normally a shared emptyDir (required).
    #[arg(long, env = "KEYVAULT_AGENT_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Sync once and exit (initContainer mode). The env var takes true/false, 1/0,
    /// yes/no, on/off.
    #[arg(long, env = "KEYVAULT_AGENT_ONCE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub once: bool,

    /// Refresh interval in sidecar mode (e.g. 2m, 90s, 1h).
    #[arg(long, env = "KEYVAULT_AGENT_INTERVAL", default_value = "2m", value_parser = positive_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Random spread of each refresh as a fraction of --interval (0.1 = ±10%).
    #[arg(long, env = "KEYVAULT_AGENT_JITTER", default_value_t = 0.1, value_parser = jitter, value_name = "FRACTION")]
    pub jitter: f64,

    /// Deadline of one whole sync, retries included (the whole run with --once).
    #[arg(long, env = "KEYVAULT_AGENT_TIMEOUT", default_value = "2m", value_parser = positive_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Timeout of each HTTP request.
    #[arg(long, env = "KEYVAULT_AGENT_REQUEST_TIMEOUT", default_value = "30s", value_parser = positive_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// Key Vault requests in flight at most. Key Vault's limits are counted per vault per
    /// 10 s; the default stays far below them.
    #[arg(long, env = "KEYVAULT_AGENT_CONCURRENCY", default_value_t = crate::config::DEFAULT_CONCURRENCY,
          value_parser = concurrency, value_name = "N")]
    pub concurrency: usize,

    /// Key Vault REST api-version.
    #[arg(long, env = "KEYVAULT_AGENT_API_VERSION", default_value = DEFAULT_API_VERSION, value_name = "VERSION")]
    pub api_version: String,

    /// Extra trusted CA certificates (PEM); repeatable, or comma-separated in the env var.
    /// SSL_CERT_FILE is added too.
    #[arg(
        long = "ca-file",
        env = "KEYVAULT_AGENT_CA_FILE",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub ca_files: Vec<PathBuf>,

    /// Address of the health, metrics and status server, or `off`.
    #[arg(long, env = "KEYVAULT_AGENT_LISTEN", default_value = "0.0.0.0:9090", value_parser = listen, value_name = "ADDR|off")]
    pub listen: Listen,

    /// Report not ready when the published data is older than this (sidecar).
    #[arg(long, env = "KEYVAULT_AGENT_MAX_STALENESS", value_parser = positive_duration, value_name = "DURATION")]
    pub max_staleness: Option<Duration>,

    /// Signal sent to the application after each change (HUP, SIGUSR1, 10, ...).
    #[arg(long, env = "KEYVAULT_AGENT_ON_CHANGE_SIGNAL", value_parser = signal, value_name = "SIG")]
    pub on_change_signal: Option<i32>,

    /// Find the process to signal by its pidfile.
    #[arg(long, env = "KEYVAULT_AGENT_SIGNAL_PIDFILE", value_name = "FILE")]
    pub signal_pidfile: Option<PathBuf>,

    /// Find the process to signal by name (needs shareProcessNamespace: true).
    #[arg(long, env = "KEYVAULT_AGENT_SIGNAL_PROCESS", value_name = "NAME")]
    pub signal_process: Option<String>,

    /// Command run after each change, split shell-style (no shell is involved).
    #[arg(long, env = "KEYVAULT_AGENT_ON_CHANGE_EXEC", value_parser = command_line, value_name = "CMD")]
    pub on_change_exec: Option<ExecCommand>,

    /// URL POSTed to after each change (names and versions, never values or digests).
    /// Plain http:// only to a loopback host (127.0.0.0/8, ::1, localhost) unless
    /// --on-change-http-insecure.
    #[arg(long, env = "KEYVAULT_AGENT_ON_CHANGE_HTTP", value_parser = http_url, value_name = "URL")]
    pub on_change_http: Option<Url>,

    /// Allow --on-change-http to POST over plain http:// to a host that is not loopback
    /// (the notification then crosses the network unencrypted). The env var takes
    /// true/false, 1/0, yes/no, on/off.
    #[arg(long, env = "KEYVAULT_AGENT_ON_CHANGE_HTTP_INSECURE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub on_change_http_insecure: bool,

    /// Notify (signal, exec, HTTP) on the sidecar's first publish too; by default only
    /// later changes notify. The env var takes true/false, 1/0, yes/no, on/off.
    #[arg(long, env = "KEYVAULT_AGENT_NOTIFY_ON_START", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub notify_on_start: bool,

    /// Certificates (cert objects, PEM/PFX secrets) are checked before the swap: a key that
    /// does not match its leaf or a chain out of order is always refused; an expired or
    /// not-yet-valid certificate, or an incomplete chain, is published with a warning
    /// (`warn`) or refused (`strict`).
    #[arg(
        long,
        env = "KEYVAULT_AGENT_VALIDATE",
        default_value = "warn",
        value_name = "strict|warn"
    )]
    pub validate: crate::config::ValidateMode,

    /// Time allowed to finish an in-flight swap after SIGTERM/SIGINT.
    #[arg(long, env = "KEYVAULT_AGENT_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// How a refresh detects changed objects: `list` reads the vault's collection lists
    /// (25 objects per request) and GETs only what changed; `get` GETs every object every
    /// refresh (the reference behaviour).
    #[arg(
        long,
        env = "KEYVAULT_AGENT_CHANGE_DETECTION",
        default_value = "list",
        value_name = "list|get"
    )]
    pub change_detection: crate::detect::ChangeDetection,

    /// With list detection, every Nth refresh GETs every object anyway (0 = never), which
    /// bounds staleness from two edits within the same second.
    #[arg(long, env = "KEYVAULT_AGENT_FULL_SWEEP_EVERY", default_value_t = crate::detect::DEFAULT_FULL_SWEEP_EVERY, value_name = "N")]
    pub full_sweep_every: u32,

    /// IMDS base URL for managed identity (tests and proxies).
    #[arg(long, env = "KEYVAULT_AGENT_IMDS_ENDPOINT", default_value = DEFAULT_IMDS_ENDPOINT, value_parser = http_url, value_name = "URL")]
    pub imds_endpoint: Url,

    /// Largest Key Vault response accepted (e.g. 4MiB, 512KiB); larger is an error.
    #[arg(long, env = "KEYVAULT_AGENT_MAX_RESPONSE_SIZE", default_value = "4MiB", value_parser = crate::http::parse_size, value_name = "SIZE")]
    pub max_response_size: u64,

    /// Largest Entra or IMDS token response accepted; larger is an error.
    #[arg(long, env = "KEYVAULT_AGENT_MAX_TOKEN_RESPONSE_SIZE", default_value = "1MiB", value_parser = crate::http::parse_size, value_name = "SIZE")]
    pub max_token_response_size: u64,

    /// Render a MiniJinja template into the set: SRC is the template file, DEST its path
    /// in the output directory, MODE octal (default 0644). Repeatable, or comma-separated
    /// in the env var; the `templates` parameter adds more. Also for `check` and `exec`.
    #[arg(long = "template", env = "KEYVAULT_AGENT_TEMPLATE", value_delimiter = ',', global = true,
          value_parser = crate::template::TemplateArg::parse, value_name = "SRC:DEST[:MODE]")]
    pub templates: Vec<crate::template::TemplateArg>,
}

/// `exec` flags.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// SecretProviderClass manifest, or its parameters map (required; may also come
    /// before `exec`).
    #[arg(long, env = "KEYVAULT_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Set env var NAME to the content of the file ALIAS of the set (an objectAlias or
    /// objectName, `alias/0` in history mode, a template's DEST). Repeatable, or
    /// comma-separated in the env var.
    #[arg(long = "env", env = "KEYVAULT_AGENT_EXEC_ENV", value_delimiter = ',',
          value_parser = crate::exec::EnvMap::parse, value_name = "NAME=ALIAS")]
    pub env: Vec<crate::exec::EnvMap>,

    /// Set one env var per file of the set, named in UPPER_SNAKE case (`db-password` ->
    /// DB_PASSWORD). The env var takes true/false, 1/0, yes/no, on/off.
    #[arg(long, env = "KEYVAULT_AGENT_EXEC_ENV_ALL", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub env_all: bool,

    /// The command and its arguments, after `--`; it replaces the agent (same PID).
    ///
    /// A name without `/` is searched on PATH. Exit 127 when it is not found, 126 when it
    /// cannot be run; a failed fetch exits with the agent's code and never runs it.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `--listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

/// `--on-change-exec`, split into program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand(pub Vec<String>);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `check`: load the configuration only.
    Check,
    /// `--once`: one sync under `--timeout`.
    Once,
    /// Sidecar: sync and refresh until a shutdown signal.
    Run,
    /// `exec`: fetch once into the environment, then exec the command.
    Exec,
}

/// A validated command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What to run.
    pub mode: Mode,
    /// Every setting, flags and environment applied.
    pub settings: Settings,
    /// Remarks on the command line that did not stop it (a clamped value), one line each,
    /// printed as `note: ...`.
    pub notes: Vec<String>,
    /// `check --strict`: a problem `check` would only note fails the check.
    pub strict: bool,
    /// What `exec` sets and runs (`Mode::Exec` only).
    pub exec: Option<crate::exec::ExecRequest>,
}

impl Cli {
    /// For `probe`: the health server address to ask (the subcommand's `--listen`, else the
    /// sync flags' `--listen` / `KEYVAULT_AGENT_LISTEN`); `None` for the other modes.
    pub fn probe_listen(&self) -> Option<Listen> {
        match &self.command {
            Some(Command::Probe(p)) => Some(p.listen.unwrap_or(self.run.listen)),
            _ => None,
        }
    }

    /// Takes the `migrate` subcommand out of the command line, if it is the one given: it
    /// needs none of the sync settings.
    pub fn take_migrate(&mut self) -> Option<MigrateArgs> {
        match self.command.take() {
            Some(Command::Migrate(m)) => Some(m),
            other => {
                self.command = other;
                None
            }
        }
    }

    /// Cross-flag validation and mapping into [`Settings`]. `env` supplies `SSL_CERT_FILE`.
    /// Every problem is returned at once, one line each, without the `error: ` prefix.
    pub fn into_invocation(self, env: &Env) -> Result<Invocation, Vec<String>> {
        let r = self.run;
        let mut errs = Vec::new();
        let mut exec = None;
        let (mode, config, strict) = match self.command {
            Some(Command::Check(c)) => (Mode::Check, c.config.or(r.config), c.strict),
            Some(Command::Exec(e)) => {
                if e.env.is_empty() && !e.env_all {
                    errs.push("exec: give --env NAME=ALIAS (repeatable) or --env-all, or there is nothing to set".to_owned());
                }
                exec = Some(crate::exec::ExecRequest {
                    env: e.env,
                    env_all: e.env_all,
                    command: e.command,
                });
                (Mode::Exec, e.config.or(r.config), false)
            }
            // `main` answers `probe` before this (see `Cli::probe_listen`): it syncs nothing.
            Some(Command::Probe(_)) => {
                return Err(vec![
                    "probe: takes only --listen (it syncs nothing)".to_owned(),
                ]);
            }
            Some(Command::Migrate(_)) => {
                return Err(vec![
                    "migrate takes no sync settings: run it through Cli::take_migrate".to_owned(),
                ]);
            }
            None if r.once => (Mode::Once, r.config, false),
            None => (Mode::Run, r.config, false),
        };
        if config.is_none() {
            errs.push("--config FILE (or KEYVAULT_AGENT_CONFIG) is required".to_owned());
        }
        if matches!(mode, Mode::Once | Mode::Run) && r.dir.is_none() {
            errs.push("--dir DIR (or KEYVAULT_AGENT_DIR) is required".to_owned());
        }

        let mut ca_files = r.ca_files;
        if let Some(f) = env
            .get("SSL_CERT_FILE")
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            ca_files.push(PathBuf::from(f));
        }
        // OpenSSL's reading: a colon-separated list; empty entries are skipped.
        let ca_dirs: Vec<PathBuf> = env
            .get("SSL_CERT_DIR")
            .map(|v| {
                v.split(':')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        if mode != Mode::Check {
            for f in &ca_files {
                if let Err(e) = std::fs::metadata(f) {
                    errs.push(format!("CA file \"{}\": {e}", f.display()));
                }
            }
            for d in &ca_dirs {
                match std::fs::metadata(d) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => errs.push(format!(
                        "SSL_CERT_DIR \"{}\" is not a directory: point it at a directory of pem certificates (or use SSL_CERT_FILE for a file)",
                        d.display()
                    )),
                    Err(e) => errs.push(format!("SSL_CERT_DIR \"{}\": {e}", d.display())),
                }
            }
        }

        match (r.on_change_signal, &r.signal_pidfile, &r.signal_process) {
            (_, Some(_), Some(_)) => errs.push(
                "--signal-pidfile and --signal-process both name the process to signal: use one"
                    .to_owned(),
            ),
            (None, Some(_), None) => {
                errs.push("--signal-pidfile needs --on-change-signal SIG".to_owned())
            }
            (None, None, Some(_)) => {
                errs.push("--signal-process needs --on-change-signal SIG".to_owned())
            }
            (Some(_), None, None) => errs.push(
                "--on-change-signal needs --signal-pidfile FILE or --signal-process NAME to find the process"
                    .to_owned(),
            ),
            _ => {}
        }
        if let Some(s) = r.max_staleness.filter(|s| *s <= r.interval) {
            errs.push(format!(
                "--max-staleness ({}) must be longer than --interval ({}), or the agent is not ready between refreshes",
                humantime::format_duration(s),
                humantime::format_duration(r.interval)
            ));
        }
        // A request can never outlive the sync it belongs to: clamp (with a note) instead of
        // refusing, so `--timeout 20s` alone works with the 30s request default.
        let mut notes = Vec::new();
        let mut request_timeout = r.request_timeout;
        if request_timeout > r.timeout {
            notes.push(format!(
                "--request-timeout ({}) is longer than --timeout ({}): each request is limited to {} instead",
                humantime::format_duration(request_timeout),
                humantime::format_duration(r.timeout),
                humantime::format_duration(r.timeout)
            ));
            request_timeout = r.timeout;
        }
        if r.api_version.trim().is_empty() {
            errs.push("--api-version must not be empty".to_owned());
        }
        if !errs.is_empty() {
            return Err(errs);
        }

        let settings = Settings {
            config_file: config.unwrap_or_default(),
            dir: r.dir.unwrap_or_default(),
            api_version: r.api_version.trim().to_owned(),
            concurrency: r.concurrency,
            timeout: r.timeout,
            request_timeout,
            ca_files,
            ca_dirs,
            interval: r.interval,
            jitter: r.jitter,
            listen: r.listen.0,
            max_staleness: r.max_staleness,
            notify: NotifySettings {
                signal: r.on_change_signal,
                signal_pidfile: r.signal_pidfile,
                signal_process: r.signal_process,
                exec: r.on_change_exec.map(|c| c.0),
                http: r.on_change_http,
                http_insecure: r.on_change_http_insecure,
                on_start: r.notify_on_start,
            },
            imds_endpoint: r.imds_endpoint,
            shutdown_grace: r.shutdown_grace,
            max_response_size: r.max_response_size,
            max_token_response_size: r.max_token_response_size,
            change_detection: r.change_detection,
            full_sweep_every: r.full_sweep_every,
            validate: r.validate,
            templates: r.templates,
        };
        Ok(Invocation {
            mode,
            settings,
            notes,
            strict,
            exec,
        })
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err("expected a number from 1 to 256".into()),
    }
}

fn jitter(s: &str) -> Result<f64, String> {
    let j: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if !(0.0..1.0).contains(&j) {
        return Err("must be at least 0 and less than 1 (0.1 means ±10%)".into());
    }
    Ok(j)
}

fn listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| Listen(Some(a)))
        .map_err(|_| "expected an address like 0.0.0.0:9090 or [::]:9090, or off".into())
}

fn http_url(s: &str) -> Result<Url, String> {
    let u = Url::parse(s.trim()).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("expected an http:// or https:// URL".into());
    }
    Ok(u)
}

fn command_line(s: &str) -> Result<ExecCommand, String> {
    let words = shlex::split(s).ok_or("unbalanced quotes or trailing backslash")?;
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(ExecCommand(words))
}

/// Parses `--on-change-signal`: a name (`HUP`, `SIGHUP`, `sigusr1`) or a number. One parser
/// for the flag and the notifier, so what the flag accepts is what can be sent.
pub fn signal(s: &str) -> Result<i32, String> {
    crate::signal::parse_signal(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keyvault-agent").chain(args.iter().copied()))
    }

    fn invocation(args: &[&str]) -> Result<Invocation, Vec<String>> {
        parse(args).unwrap().into_invocation(&Env::default())
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_fill_every_setting() {
        let inv = invocation(&["--config", "spc.yaml", "--dir", "/out"]).unwrap();
        assert_eq!(inv.mode, Mode::Run);
        let s = inv.settings;
        assert_eq!(s.config_file, PathBuf::from("spc.yaml"));
        assert_eq!(s.dir, PathBuf::from("/out"));
        assert_eq!(s.api_version, "2025-07-01");
        assert_eq!(s.concurrency, 16);
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.interval, Duration::from_secs(120));
        assert_eq!(s.jitter, 0.1);
        assert_eq!(s.listen, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(s.max_staleness, None);
        assert!(s.ca_files.is_empty());
        assert_eq!(s.imds_endpoint.as_str(), "http://169.254.169.254/");
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.max_response_size, 4 * 1024 * 1024);
        assert_eq!(s.max_token_response_size, 1024 * 1024);
        assert!(s.notify.signal.is_none() && s.notify.exec.is_none() && s.notify.http.is_none());
        // The defaults agree with Settings::with_defaults.
        let d = Settings::with_defaults("spc.yaml", "/out");
        assert_eq!(format!("{d:?}"), format!("{s:?}"));
    }

    #[test]
    fn every_flag_maps_into_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ca = ca.to_str().unwrap();
        let inv = parse(&[
            "--config",
            "c.yaml",
            "--dir",
            "/o",
            "--once",
            "--interval",
            "90s",
            "--jitter",
            "0.25",
            "--timeout",
            "5m",
            "--request-timeout",
            "10s",
            "--concurrency",
            "3",
            "--api-version",
            "7.5",
            "--ca-file",
            ca,
            "--ca-file",
            ca,
            "--listen",
            "127.0.0.1:0",
            "--max-staleness",
            "10m",
            "--on-change-signal",
            "SIGUSR1",
            "--signal-process",
            "nginx",
            "--on-change-exec",
            "sh -c 'kill -HUP 1'",
            "--on-change-http",
            "http://127.0.0.1:8080/-/reload",
            "--shutdown-grace",
            "3s",
            "--imds-endpoint",
            "http://127.0.0.1:5555",
            "--max-response-size",
            "8MiB",
            "--max-token-response-size",
            "64KiB",
            "--change-detection",
            "get",
            "--full-sweep-every",
            "4",
        ])
        .unwrap()
        .into_invocation(&Env([("SSL_CERT_FILE".to_string(), ca.to_string())].into()))
        .unwrap();
        assert_eq!(inv.mode, Mode::Once);
        let s = inv.settings;
        assert_eq!(s.interval, Duration::from_secs(90));
        assert_eq!(s.jitter, 0.25);
        assert_eq!(s.timeout, Duration::from_secs(300));
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.api_version, "7.5");
        assert_eq!(s.ca_files.len(), 3, "two flags plus SSL_CERT_FILE");
        assert_eq!(s.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(s.max_staleness, Some(Duration::from_secs(600)));
        assert_eq!(s.notify.signal, Some(signal_hook::consts::SIGUSR1));
        assert_eq!(s.notify.signal_process.as_deref(), Some("nginx"));
        assert_eq!(
            s.notify.exec,
            Some(vec!["sh".to_string(), "-c".into(), "kill -HUP 1".into()])
        );
        assert_eq!(
            s.notify.http.unwrap().as_str(),
            "http://127.0.0.1:8080/-/reload"
        );
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
        assert_eq!(s.change_detection, crate::detect::ChangeDetection::Get);
        assert_eq!(s.full_sweep_every, 4);
        assert_eq!(s.imds_endpoint.as_str(), "http://127.0.0.1:5555/");
        assert_eq!(s.max_response_size, 8 * 1024 * 1024);
        assert_eq!(s.max_token_response_size, 64 * 1024);
    }

    // reference: issue 11 items 6 and 8 (--validate, --notify-on-start, SSL_CERT_DIR)
    #[test]
    fn validation_notify_on_start_and_ssl_cert_dir() {
        use crate::config::ValidateMode;
        let s = invocation(&["--config", "c", "--dir", "d"])
            .unwrap()
            .settings;
        assert_eq!(
            s.validate,
            ValidateMode::Warn,
            "warn is the compatible default"
        );
        assert!(!s.notify.on_start);
        assert!(s.ca_dirs.is_empty());
        let s = invocation(&[
            "--config",
            "c",
            "--dir",
            "d",
            "--validate",
            "STRICT",
            "--notify-on-start",
        ])
        .unwrap()
        .settings;
        assert_eq!(s.validate, ValidateMode::Strict);
        assert!(s.notify.on_start);
        assert!(parse(&["--validate", "maybe"]).is_err());
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(&b, "not a dir").unwrap();
        let dirs = format!("{}::{}", a.display(), a.display());
        let inv = parse(&["--config", "c", "--dir", "d"])
            .unwrap()
            .into_invocation(&Env([("SSL_CERT_DIR".to_string(), dirs)].into()))
            .unwrap();
        assert_eq!(inv.settings.ca_dirs, vec![a.clone(), a.clone()]);
        let missing = tmp.path().join("missing");
        let errs = parse(&["--config", "c", "--dir", "d"])
            .unwrap()
            .into_invocation(&Env([(
                "SSL_CERT_DIR".to_string(),
                format!("{}:{}", b.display(), missing.display()),
            )]
            .into()))
            .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("is not a directory"), "{errs:?}");
        assert!(errs[1].contains(&missing.display().to_string()), "{errs:?}");
    }

    #[test]
    fn listen_off_disables_the_server() {
        let inv = invocation(&["--config", "c", "--dir", "d", "--listen", "off"]).unwrap();
        assert_eq!(inv.settings.listen, None);
    }

    #[test]
    fn signal_names_and_numbers() {
        use signal_hook::consts::*;
        assert_eq!(signal("HUP"), Ok(SIGHUP));
        assert_eq!(signal("SIGHUP"), Ok(SIGHUP));
        assert_eq!(signal("usr1"), Ok(SIGUSR1));
        assert_eq!(signal("SigUsr2"), Ok(SIGUSR2));
        assert_eq!(signal("15"), Ok(15));
        assert!(signal("0").is_err());
        assert!(signal("SIGFOO").unwrap_err().contains("HUP"));
    }

    #[test]
    fn bad_single_values_are_usage_errors() {
        for args in [
            &["--interval", "soon"][..],
            &["--interval", "0s"],
            &["--jitter", "1.5"],
            &["--concurrency", "0"],
            &["--listen", "nowhere"],
            &["--on-change-signal", "BOGUS"],
            &["--on-change-exec", "echo 'unterminated"],
            &["--on-change-http", "ftp://x/"],
            &["--max-response-size", "4TiB"],
            &["--max-token-response-size", "12"],
            &["--no-such-flag"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn cross_flag_problems_are_reported_together() {
        let errs = invocation(&[
            "--signal-pidfile",
            "/run/app.pid",
            "--signal-process",
            "app",
            "--interval",
            "5m",
            "--max-staleness",
            "1m",
            "--request-timeout",
            "3m",
            "--ca-file",
            "/nonexistent/ca.pem",
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with("--config FILE"));
        assert!(errs[1].starts_with("--dir DIR"));
        assert!(errs[2].starts_with("CA file \"/nonexistent/ca.pem\""));
        assert!(errs[3].contains("--signal-pidfile and --signal-process"));
        assert!(errs[4].starts_with("--max-staleness (1m) must be longer than --interval (5m)"));
    }

    // reference: issue 12 item 4 (timeouts clamp each other with a note)
    #[test]
    fn a_request_timeout_longer_than_the_sync_is_clamped_with_a_note() {
        let inv = invocation(&["--config", "c", "--dir", "d", "--timeout", "20s"]).unwrap();
        assert_eq!(inv.settings.timeout, Duration::from_secs(20));
        assert_eq!(inv.settings.request_timeout, Duration::from_secs(20));
        assert_eq!(
            inv.notes,
            [
                "--request-timeout (30s) is longer than --timeout (20s): each request is limited to 20s instead"
            ]
        );
        let inv = invocation(&["--config", "c", "--dir", "d"]).unwrap();
        assert!(inv.notes.is_empty(), "{:?}", inv.notes);
        assert_eq!(inv.settings.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn signal_needs_a_target_and_a_target_needs_a_signal() {
        let errs =
            invocation(&["--config", "c", "--dir", "d", "--on-change-signal", "HUP"]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("needs --signal-pidfile FILE or --signal-process NAME"));
        let errs =
            invocation(&["--config", "c", "--dir", "d", "--signal-pidfile", "/p"]).unwrap_err();
        assert_eq!(errs, ["--signal-pidfile needs --on-change-signal SIG"]);
        assert!(
            invocation(&[
                "--config",
                "c",
                "--dir",
                "d",
                "--on-change-signal",
                "1",
                "--signal-pidfile",
                "/p"
            ])
            .is_ok()
        );
    }

    // reference: issue 11 item 4 (exec --config FILE [--env NAME=ALIAS]... [--env-all] -- CMD)
    #[test]
    fn exec_takes_env_maps_and_the_command_after_the_dashes() {
        let inv = invocation(&[
            "exec",
            "--config",
            "c.yaml",
            "--env",
            "DB=db-password",
            "--env-all",
            "--",
            "/app",
            "--port",
            "1",
        ])
        .unwrap();
        assert_eq!(inv.mode, Mode::Exec);
        let e = inv.exec.unwrap();
        assert_eq!(
            e.env,
            [crate::exec::EnvMap::parse("DB=db-password").unwrap()]
        );
        assert!(e.env_all);
        assert_eq!(e.command, ["/app", "--port", "1"]);
        // --dir is not needed; nothing to set is an error; the command is required.
        let errs = invocation(&["exec", "--config", "c", "--", "/app"]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("--env NAME=ALIAS"), "{errs:?}");
        assert!(parse(&["exec", "--config", "c", "--env-all"]).is_err());
        assert!(parse(&["exec", "--env", "9X=a", "--", "x"]).is_err());
    }

    // reference: issue 11 item 3 (--template SRC:DEST[:MODE], repeatable, for every mode)
    #[test]
    fn templates_are_repeatable_and_reach_check_and_exec() {
        let inv = invocation(&[
            "--config",
            "c",
            "--dir",
            "d",
            "--template",
            "a.tmpl:a.env:0600",
            "--template",
            "b.tmpl:b/url",
        ])
        .unwrap();
        let t = &inv.settings.templates;
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].dest.as_str(), t[0].mode), ("a.env", Some(0o600)));
        assert_eq!((t[1].dest.as_str(), t[1].mode), ("b/url", None));
        let inv = invocation(&["check", "--config", "c", "--template", "a:b"]).unwrap();
        assert_eq!(inv.settings.templates.len(), 1);
        let inv = invocation(&[
            "exec",
            "--config",
            "c",
            "--template",
            "a:b",
            "--env-all",
            "--",
            "x",
        ])
        .unwrap();
        assert_eq!(inv.settings.templates.len(), 1);
        assert!(parse(&["--template", "no-dest"]).is_err());
    }

    #[test]
    fn check_needs_only_a_config() {
        let inv = invocation(&["check", "--config", "spc.yaml"]).unwrap();
        assert_eq!(inv.mode, Mode::Check);
        assert_eq!(inv.settings.config_file, PathBuf::from("spc.yaml"));
        let inv = invocation(&["--config", "before.yaml", "check"]).unwrap();
        assert_eq!(inv.settings.config_file, PathBuf::from("before.yaml"));
        if std::env::var_os("KEYVAULT_AGENT_CONFIG").is_none() {
            let errs = invocation(&["check"]).unwrap_err();
            assert_eq!(
                errs,
                ["--config FILE (or KEYVAULT_AGENT_CONFIG) is required"]
            );
        }
    }
}
