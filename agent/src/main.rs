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
    let cli = Cli::parse();
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
    init_logging();
    if let Err(e) = signals {
        tracing::error!(error = %e, "cannot install the signal handlers; SIGHUP will terminate");
    }

    let settings = invocation.settings;
    let result = match invocation.mode {
        Mode::Check => {
            signal::exit_on_shutdown();
            config::load_with_warnings(&settings, &env)
                .map(|(plan, warnings)| {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("config ok: {}", settings.config_file.display());
                    for line in plan.summary().into_iter().chain(settings.summary()) {
                        println!("{line}");
                    }
                })
                .map_err(Error::from)
        }
        Mode::Once | Mode::Run => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("keyvault-agent")
                .enable_all()
                .build()
            {
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

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Logging to stderr, so `check` output on stdout stays clean. Level from
/// `KEYVAULT_AGENT_LOG`, then `RUST_LOG`, default `info`; format from
/// `KEYVAULT_AGENT_LOG_FORMAT` (`plain` or `json`).
fn init_logging() {
    keyvault_agent::telemetry::init_logging();
}
