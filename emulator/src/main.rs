//! `keyvault-emulator`: `serve` runs the emulator and prints one JSON ready line on stdout;
//! `token` mints a projected-style service-account JWT with the issuer key of a state dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keyvault-emulator",
    version,
    about = "Local Azure Key Vault + Entra + IMDS emulator over TLS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the emulator; prints one JSON line with its endpoints once listening.
    Serve {
        /// HTTPS listen address (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8443", env = "KEYVAULT_EMULATOR_ADDR")]
        addr: SocketAddr,
        /// Plain-HTTP IMDS listen address.
        #[arg(
            long,
            default_value = "127.0.0.1:0",
            env = "KEYVAULT_EMULATOR_IMDS_ADDR"
        )]
        imds_addr: SocketAddr,
        /// Seed YAML file (vaults, objects, identities).
        #[arg(long, env = "KEYVAULT_EMULATOR_SEED")]
        seed: Option<PathBuf>,
        /// Directory for the CA, server certificate and signing keys (reused across restarts).
        #[arg(
            long,
            default_value = ".keyvault-emulator",
            env = "KEYVAULT_EMULATOR_STATE_DIR"
        )]
        state_dir: PathBuf,
        /// Extra name for the TLS certificate (also adds *.vault.NAME). Repeatable.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Lifetime of issued access tokens, e.g. 1h, 10m.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        token_ttl: Duration,
        /// Allow listening on a non-loopback address (containers only).
        #[arg(long)]
        allow_non_loopback: bool,
        /// Write this api-version into every nextLink (the service sometimes says 7.2).
        #[arg(long)]
        next_link_api_version: Option<String>,
        /// Throttling per vault and operation family: `keyvault` (Key Vault's published
        /// limits per 10 s), `off`, or overrides such as `keyvault,secrets=400,window=10s`.
        /// Default: the seed's `throttle:`, else `keyvault`.
        #[arg(long, env = "KEYVAULT_EMULATOR_THROTTLE")]
        throttle: Option<keyvault_emulator::ThrottleConfig>,
    },
    /// Mint a projected-style service-account token signed by the state dir's issuer key.
    Token {
        /// Subject, e.g. system:serviceaccount:default:app.
        #[arg(long)]
        sub: String,
        /// Audience.
        #[arg(long, default_value = "api://AzureADTokenExchange")]
        aud: String,
        /// Lifetime, e.g. 1h.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// State dir of the emulator whose issuer should sign.
        #[arg(
            long,
            default_value = ".keyvault-emulator",
            env = "KEYVAULT_EMULATOR_STATE_DIR"
        )]
        state_dir: PathBuf,
        /// Issuer URL (default: the one the last `serve` wrote into the state dir).
        #[arg(long)]
        issuer: Option<String>,
        /// Output file (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // RUST_LOG as `level,target=level` (tracing-subscriber's `Targets`), default info.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs redirected to files stay readable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(filter)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyvault-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve {
            addr,
            imds_addr,
            seed,
            state_dir,
            hostnames,
            token_ttl,
            allow_non_loopback,
            next_link_api_version,
            throttle,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting runtime: {e}"))?;
            rt.block_on(async move {
                let mut b = keyvault_emulator::Emulator::builder()
                    .addr(addr)
                    .imds_addr(imds_addr)
                    .state_dir(state_dir)
                    .token_ttl(token_ttl)
                    .allow_non_loopback(allow_non_loopback);
                let seeded = match &seed {
                    Some(s) => std::fs::read_to_string(s)
                        .ok()
                        .and_then(|t| keyvault_emulator::Seed::from_yaml(&t).ok())
                        .and_then(|s| s.throttle)
                        .is_some(),
                    None => false,
                };
                if let Some(s) = seed {
                    b = b.seed_file(s);
                }
                match throttle {
                    Some(t) => b = b.throttle(t),
                    None if !seeded => {
                        b = b.throttle(keyvault_emulator::ThrottleConfig::On(
                            keyvault_emulator::Limits::key_vault(),
                        ))
                    }
                    None => {}
                }
                if let Some(v) = next_link_api_version {
                    b = b.next_link_api_version(v);
                }
                for h in hostnames {
                    b = b.hostname(h);
                }
                let emu = b.start().await.map_err(|e| e.to_string())?;
                println!("{}", emu.ready_line());
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                wait_for_signal().await;
                tracing::info!("shutting down");
                emu.shutdown().await;
                Ok(())
            })
        }
        Cmd::Token {
            sub,
            aud,
            ttl,
            state_dir,
            issuer,
            out,
        } => {
            let issuer = match issuer {
                Some(i) => i,
                None => std::fs::read_to_string(state_dir.join("issuer-url"))
                    .map(|s| s.trim().to_string())
                    .map_err(|e| {
                        format!(
                            "{}: {e} (start `keyvault-emulator serve --state-dir {}` once, or pass --issuer)",
                            state_dir.join("issuer-url").display(),
                            state_dir.display()
                        )
                    })?,
            };
            std::fs::create_dir_all(&state_dir)
                .map_err(|e| format!("{}: {e}", state_dir.display()))?;
            let key = keyvault_emulator::jwt::SigningKey::load_or_create(
                &state_dir.join("issuer-key.pem"),
            )
            .map_err(|e| e.to_string())?;
            let token = keyvault_emulator::issuer::mint(&key, &issuer, &sub, &aud, ttl);
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, token).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
