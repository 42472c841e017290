//! The top-level error and the process exit codes (documented in the README and `--help`;
//! a test keeps the three tables equal).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (a sidecar stopped by SIGTERM/SIGINT exits 0 too) |
//! | 1 | internal error: a bug (a panic in any task, the writer's included) or a broken runtime |
//! | 2 | command-line usage error (unknown flag, bad flag value) |
//! | 3 | invalid configuration (SecretProviderClass, identity settings, notifier settings) |
//! | 4 | authentication failed (Entra / IMDS refused the identity) |
//! | 5 | Key Vault refused an object (not found, disabled, forbidden) |
//! | 6 | Key Vault or Entra unavailable or throttling until the deadline |
//! | 7 | an object's content could not be converted |
//! | 8 | the output directory could not be written |
//! | 9 | the `--listen` address could not be bound (in use, or not permitted) |
//! | 10 | a certificate failed validation before the swap (key/leaf, chain order; validity with `--validate strict`) |
//! | 126, 127 | `exec`: the command could not be run (126) or was not found (127) |
//! | 130, 143 | `--once` or `check` stopped by SIGINT (130) or SIGTERM (143) before it finished |

// The codes live in `report` (with the precedence that maps a failed cycle to one of them), so
// the low modules that need a code do not import this edge module.
pub use crate::report::{
    EXIT_AUTH, EXIT_CODES, EXIT_CONFIG, EXIT_CONVERT, EXIT_EXEC_FAILED, EXIT_EXEC_NOT_FOUND,
    EXIT_INTERNAL, EXIT_LISTEN, EXIT_OBJECT, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_UNAVAILABLE,
    EXIT_USAGE, EXIT_VALIDATION, EXIT_WRITE,
};

/// Everything that can end a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (every problem is listed).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A sync failed.
    #[error(transparent)]
    Sync(#[from] crate::report::SyncError),
    /// The health server could not bind its address.
    #[error(
        "--listen {addr}: cannot bind the health server: {source}; pick another address or use --listen off"
    )]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `--once` was stopped by a signal before it finished.
    #[error(
        "stopped by {} before the sync finished; the directory holds the previous set or, if the swap had begun, the complete new one",
        crate::signal::signal_name(*.0)
    )]
    Interrupted(i32),
    /// `exec` could not replace itself with the command.
    #[error("exec {program:?}: {source}: check the command after `--` (a path, or a name on PATH)")]
    Exec {
        /// The program as given.
        program: String,
        /// Why execve(2) failed.
        source: std::io::Error,
    },
    /// Something unexpected (a bug, or the environment is broken).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Sync(e) => e.exit_code(),
            Error::Listen { .. } => EXIT_LISTEN,
            Error::Interrupted(sig) => EXIT_SIGNAL_BASE.saturating_add(*sig),
            Error::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                EXIT_EXEC_NOT_FOUND
            }
            Error::Exec { .. } => EXIT_EXEC_FAILED,
            Error::Internal(_) => EXIT_INTERNAL,
        }
    }
}

/// Makes a panic anywhere (the main thread, a runtime worker, the writer's blocking task)
/// end the process with [`EXIT_INTERNAL`] after one `error:` line, instead of 101 (or 134
/// under `panic = "abort"`), and instead of a sidecar running on with a dead task. The
/// published set stays intact: every write is crash-safe.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error (a bug): panic{at}: {}; the published set is intact; please report this line",
            message.replace('\n', "; ")
        );
        std::process::exit(EXIT_INTERNAL);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed_once() {
        let mut codes: Vec<i32> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
        let listen = Error::Listen {
            addr: "127.0.0.1:9090".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(listen.exit_code(), EXIT_LISTEN);
        assert!(listen.to_string().starts_with("--listen 127.0.0.1:9090: "));
        assert_eq!(Error::Interrupted(15).exit_code(), 143);
        assert_eq!(Error::Interrupted(2).exit_code(), 130);
    }
}
