//! The `keyvault-agent` binary: install the signal handlers, parse the command line, set up
//! logging and the runtime, run the library, and turn the outcome into an exit code (the
//! table is in `error.rs`). Everything else lives in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keyvault_agent::cli::{Cli, Mode};
use keyvault_agent::config::{self, Env};
use keyvault_agent::error::{EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Error};
use keyvault_agent::signal;

/// How long the runtime may take to stop after the run returned (a blocked config read on
/// a background thread must not hold the exit).
const RUNTIME_STOP: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    // First of all (docs/threat-model.md rule 7): from here on SIGHUP never kills and an early
    // SIGTERM is remembered, whatever phase the process is in.
    let signals = signal::install();
    keyvault_agent::error::exit_on_panic();

    // Usage errors exit 2; --help and --version exit 0 (clap's own codes).
    let mut cli = Cli::parse();
    if let Some(listen) = cli.probe_listen() {
        return probe(listen);
    }
    if let Some(args) = cli.take_migrate() {
        return code(migrate(&args));
    }
    let env = Env::from_process();
    let invocation = match cli.into_invocation(&env) {
        Ok(i) => i,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            eprintln!("For more information, try '--help'.");
            return code(EXIT_USAGE);
        }
    };
    for note in &invocation.notes {
        eprintln!("note: {note}");
    }
    init_logging();
    if let Err(e) = signals {
        tracing::error!(error = %e, "cannot install the signal handlers; SIGHUP will terminate");
    }

    let settings = invocation.settings;
    let result = match invocation.mode {
        Mode::Check => {
            signal::exit_on_shutdown();
            let checked = config::check_offline(&settings, &env, invocation.strict);
            for w in &checked.warnings {
                eprintln!("warning: {w}");
            }
            for n in &checked.notes {
                eprintln!("note: {n}");
            }
            let summary = checked.summary();
            checked
                .result
                .map(|_| {
                    println!("config ok: {}", settings.config_file.display());
                    for line in summary.into_iter().chain(settings.summary()) {
                        println!("{line}");
                    }
                })
                .map_err(Error::from)
        }
        Mode::Exec => {
            let Some(req) = invocation.exec else {
                eprintln!("error: internal error (a bug): exec without its request");
                return code(EXIT_INTERNAL);
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return code(EXIT_INTERNAL);
                }
            };
            let prepared = runtime.block_on(async {
                tokio::select! {
                    r = keyvault_agent::exec::prepare(&settings, &env, &req) => r,
                    () = signal::shutdown() => Err(Error::Interrupted(
                        signal::shutdown_signal().unwrap_or(signal_hook::consts::SIGTERM),
                    )),
                }
            });
            // No worker thread may outlive the exec with a copy of a value in flight.
            runtime.shutdown_timeout(RUNTIME_STOP);
            match prepared {
                Ok(vars) => {
                    tracing::info!(
                        variables = vars.len(),
                        command = %req.command.first().map(|c| c.to_string_lossy()).unwrap_or_default(),
                        "exec: set the environment, running the command"
                    );
                    Err(keyvault_agent::exec::exec(&req.command, vars))
                }
                Err(e) => Err(e),
            }
        }
        Mode::Once | Mode::Run => {
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return code(EXIT_INTERNAL);
                }
            };
            let grace = settings.shutdown_grace;
            let result = if invocation.mode == Mode::Once {
                // SIGHUP is ignored here (nothing reloads); SIGTERM/SIGINT stop the sync.
                runtime.block_on(async {
                    tokio::select! {
                        r = keyvault_agent::run_once(settings, env) => r.map(drop),
                        () = signal::shutdown() => Err(Error::Interrupted(
                            signal::shutdown_signal().unwrap_or(signal_hook::consts::SIGTERM),
                        )),
                    }
                })
            } else {
                runtime.block_on(keyvault_agent::run(settings, env, signal::shutdown()))
            };
            // An in-flight swap on a blocking thread finishes within the grace period.
            runtime.shutdown_timeout(grace.max(RUNTIME_STOP));
            result
        }
    };

    match result {
        Ok(()) => code(EXIT_OK),
        Err(e) => {
            // One line per problem (a configuration error lists all of them).
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            code(e.exit_code())
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // One worker: the agent is I/O bound and its sync runs in `block_on` on the main
        // thread; the worker serves connections and the health server. Each thread that
        // allocates gets a glibc arena of its own, and fewer arenas hold fewer fragments
        // (issue 10 item 6).
        .worker_threads(1)
        .thread_name("keyvault-agent")
        .enable_all()
        .build()
}

/// How long `probe` waits for each of connect, write and read.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `keyvault-agent probe`: 0 when ready, 1 otherwise (what Docker's and podman's health checks
/// read; 2 stays clap's usage error).
fn probe(listen: keyvault_agent::cli::Listen) -> ExitCode {
    use keyvault_agent::telemetry::probe;
    let Some(addr) = listen.0 else {
        eprintln!(
            "error: probe: the health server is off (--listen off): nothing to ask; pass --listen ADDR"
        );
        return code(EXIT_INTERNAL);
    };
    match probe::ready(probe::target(addr), PROBE_TIMEOUT) {
        Ok(()) => code(EXIT_OK),
        Err(e) => {
            eprintln!("error: {e}");
            code(EXIT_INTERNAL)
        }
    }
}

/// `migrate`: the converted stream on stdout, warnings and errors on stderr. An input that
/// cannot be read or parsed is a configuration error (exit 3); warnings do not change the
/// exit code.
fn migrate(args: &keyvault_agent::cli::MigrateArgs) -> i32 {
    use std::io::Write;
    let result = keyvault_agent::migrate::read_input(&args.input)
        .map_err(|e| vec![e])
        .and_then(|text| keyvault_agent::migrate::convert(&text, &args.options()));
    match result {
        Ok(converted) => {
            for w in &converted.warnings {
                eprintln!("warning: {w}");
            }
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(converted.yaml.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("error: cannot write the converted manifests to stdout: {e}");
                return keyvault_agent::error::EXIT_WRITE;
            }
            eprintln!(
                "migrate: {} document(s) converted, {} warning(s)",
                converted.converted,
                converted.warnings.len()
            );
            EXIT_OK
        }
        Err(problems) => {
            for p in problems {
                eprintln!("error: {}: {p}", args.input.display());
            }
            keyvault_agent::error::EXIT_CONFIG
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Logging to stderr, so `check` output on stdout stays clean. Level from
/// `KEYVAULT_AGENT_LOG`, then `RUST_LOG`, default `info`; format from
/// `KEYVAULT_AGENT_LOG_FORMAT` (`plain` or `json`).
fn init_logging() {
    keyvault_agent::telemetry::init_logging();
}
