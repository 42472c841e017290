//! The `keyvault-agent` binary: parse the command line, set up logging and the runtime, run
//! the library, and turn the outcome into an exit code (the table is in `error.rs`).
//! Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use keyvault_agent::cli::{Cli, Mode};
use keyvault_agent::config::{self, Env};
use keyvault_agent::error::{EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Error};

fn main() -> ExitCode {
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

    let settings = invocation.settings;
    let result = match invocation.mode {
        Mode::Check => config::load_with_warnings(&settings, &env)
            .map(|(plan, warnings)| {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("config ok: {}", settings.config_file.display());
                for line in plan.summary() {
                    println!("{line}");
                }
            })
            .map_err(Error::from),
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
            if invocation.mode == Mode::Once {
                runtime
                    .block_on(keyvault_agent::run_once(settings, env))
                    .map(drop)
            } else {
                runtime.block_on(keyvault_agent::run(settings, env, shutdown()))
            }
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

/// Resolves on SIGTERM or SIGINT (and logs which).
async fn shutdown() {
    keyvault_agent::signal::shutdown().await
}

/// Logging to stderr, so `check` output on stdout stays clean. Level from
/// `KEYVAULT_AGENT_LOG`, then `RUST_LOG`, default `info`; format from
/// `KEYVAULT_AGENT_LOG_FORMAT` (`plain` or `json`).
fn init_logging() {
    keyvault_agent::telemetry::init_logging();
}
