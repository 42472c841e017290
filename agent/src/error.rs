//! The top-level error and the process exit codes (documented in the README).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | unexpected internal error |
//! | 2 | command-line usage error (unknown flag, bad flag value) |
//! | 3 | invalid configuration (SecretProviderClass, identity settings) |
//! | 4 | authentication failed (Entra / IMDS refused the identity) |
//! | 5 | Key Vault refused an object (not found, disabled, forbidden) |
//! | 6 | Key Vault or Entra unavailable or throttling until the deadline |
//! | 7 | an object's content could not be converted |
//! | 8 | the output directory could not be written |

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: unexpected internal error.
pub const EXIT_INTERNAL: i32 = 1;
/// Exit code: command-line usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: invalid configuration.
pub const EXIT_CONFIG: i32 = 3;
/// Exit code: authentication failed.
pub const EXIT_AUTH: i32 = 4;
/// Exit code: Key Vault refused an object.
pub const EXIT_OBJECT: i32 = 5;
/// Exit code: unavailable / throttled until the deadline.
pub const EXIT_UNAVAILABLE: i32 = 6;
/// Exit code: conversion failed.
pub const EXIT_CONVERT: i32 = 7;
/// Exit code: writing failed.
pub const EXIT_WRITE: i32 = 8;

/// Everything that can end a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (every problem is listed).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A sync failed.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
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
            Error::Internal(_) => EXIT_INTERNAL,
        }
    }
}
