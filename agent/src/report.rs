//! What a sync cycle reports, and the process exit code it maps to.
//!
//! The outcome of one cycle (what is mounted per output file, or every object that failed)
//! is read by the sidecar loop, the status server, the metrics, the notifiers and `main`;
//! keeping it here, apart from the fetch/convert/write machinery in [`crate::syncer`], lets
//! those readers depend on data instead of on the pipeline (no `syncer` ↔ `telemetry` cycle).
//! The exit codes (table in [`crate::error`], the README and `--help`) and their precedence
//! for a failed cycle live here for the same reason.

use std::time::{Duration, SystemTime};

use crate::auth::AuthError;
use crate::convert::ConvertError;
use crate::keyvault::KeyVaultError;
use crate::metrics::MountedObject;
use crate::shape::ShapeError;
use crate::template::TemplateError;
use crate::writer::{WriteOutcome, WriterError};

/// Exit codes, documented in [`crate::error`] (and re-exported there).
/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: internal error (a bug, e.g. a panic; or the runtime could not start).
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
/// Exit code: the health server's `--listen` address could not be bound.
pub const EXIT_LISTEN: i32 = 9;
/// Exit code: a certificate failed validation before the swap (`--validate`).
pub const EXIT_VALIDATION: i32 = 10;
/// Exit code: `exec` could not run its command (found but not executable, or exec failed),
/// as env(1) and shells report it.
pub const EXIT_EXEC_FAILED: i32 = 126;
/// Exit code: `exec`'s command was not found.
pub const EXIT_EXEC_NOT_FOUND: i32 = 127;
/// Exit code base for `--once` or `check` stopped by a signal: 128 + the signal number, as a shell
/// reports a process killed by it (SIGINT 130, SIGTERM 143).
pub const EXIT_SIGNAL_BASE: i32 = 128;

/// Every documented exit code and its one-line meaning, in table order (the README and
/// `--help` list the same).
pub const EXIT_CODES: &[(i32, &str)] = &[
    (EXIT_OK, "success"),
    (EXIT_INTERNAL, "internal error (a bug, e.g. a panic)"),
    (EXIT_USAGE, "command-line usage error"),
    (EXIT_CONFIG, "invalid configuration"),
    (EXIT_AUTH, "authentication failed"),
    (EXIT_OBJECT, "Key Vault refused an object"),
    (EXIT_UNAVAILABLE, "Key Vault or Entra unavailable"),
    (EXIT_CONVERT, "an object's content could not be converted"),
    (EXIT_WRITE, "the output directory could not be written"),
    (EXIT_LISTEN, "the --listen address could not be bound"),
    (
        EXIT_VALIDATION,
        "a certificate failed validation (key/leaf, chain order, or validity with --validate strict)",
    ),
    (EXIT_EXEC_FAILED, "exec: the command could not be run"),
    (EXIT_EXEC_NOT_FOUND, "exec: the command was not found"),
    (130, "--once or check stopped by SIGINT"),
    (143, "--once or check stopped by SIGTERM"),
];

/// What is mounted for one output file's object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectStatus {
    /// Reference object id (`secret/name` or `secret/name/0`).
    pub id: String,
    /// Key Vault version.
    pub version: String,
    /// Output path relative to the target dir.
    pub path: String,
    /// HMAC-SHA256 (hex) of the file contents under the volume's key (`..hmac.key`), as
    /// written to `..status.json`; never a plain hash, never a value. Empty until the set
    /// is published, and left out of anything serialised when empty (`/status` and
    /// notifications clear it).
    #[serde(rename = "hmac_sha256", skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    /// Certificate `notAfter` (Unix seconds), when the object is or holds a certificate.
    pub not_after: Option<i64>,
    /// The version's `exp` attribute (Unix seconds), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// A validation warning published with the set (`--validate warn`: an expired or
    /// not-yet-valid certificate), e.g. `expired: certificate 1 (CN=web) expired at ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
}

impl ObjectStatus {
    /// The labels and gauges the metrics keep for this object.
    pub fn mounted(&self) -> MountedObject<'_> {
        MountedObject {
            id: &self.id,
            version: &self.version,
            not_after: self.not_after,
            expires: self.expires,
        }
    }
}

/// Result of a successful cycle.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// Whether files were swapped.
    pub outcome: WriteOutcome,
    /// Status per output file, in plan order; shared (not copied) with `/status` and the
    /// sidecar's record of what is published, since at thousands of objects each copy
    /// is megabytes.
    pub objects: std::sync::Arc<Vec<ObjectStatus>>,
    /// Key Vault HTTP requests sent this cycle (challenge probes and retries included;
    /// pinned versions are served from memory).
    pub requests: usize,
    /// Wall time of the cycle.
    pub duration: Duration,
    /// When the cycle finished.
    pub finished_at: SystemTime,
    /// Object types whose list was refused (403), so their changes are detected by GETs
    /// (`secret`, `key`, `cert`).
    pub list_fallback: Vec<&'static str>,
    /// The next refresh should start within this, because a latest object expires (`exp`)
    /// before the normal schedule would look again.
    pub refresh_within: Option<Duration>,
    /// Optional objects missing or disabled in the vault (not mounted).
    pub absent: Vec<AbsentObject>,
}

/// An optional object that is not in the vault (404) or is disabled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AbsentObject {
    /// Reference object id (`secret/name`).
    pub id: String,
    /// The output path it would have.
    pub path: String,
}

/// An object whose new content failed validation, so the set was not published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedObject {
    /// Reference object id (`secret/name`).
    pub id: String,
    /// `key_mismatch`, `chain_order`, `unparseable` (always refused), `chain_incomplete`,
    /// `expired` or `not_yet_valid` (refused with `--validate strict`).
    pub reason: &'static str,
    /// What is wrong and how to fix it (no key material).
    pub message: String,
}

/// Why an object's content could not become its file(s): the typed cause, so callers and
/// tests can match it. Each variant's message is the cause's own; none is also a `source`,
/// so the edge (`main`, which prints messages) shows the chain once.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The conversion of the Key Vault bundle (`objectFormat`, `objectEncoding`).
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// `objectJsonPointer` or `objectLayout`.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// `exec --env`: the content cannot be an environment variable.
    #[error(
        "the content holds a NUL byte, which an environment variable cannot hold: use objectEncoding, or a template with | b64encode"
    )]
    NulInEnvironment,
}

/// Why one object failed.
#[derive(Debug)]
pub enum FailureKind {
    /// Key Vault (or the token for it).
    KeyVault(KeyVaultError),
    /// The content could not be converted.
    Convert(ContentError),
    /// History mode: the start version is not among the enabled versions.
    StartVersion(String),
    /// A template could not be rendered: the line in it, never a value (exit code of a
    /// conversion). The failure's label names the template.
    Template(TemplateError),
    /// A certificate failed validation before the swap.
    Validation(RefusedObject),
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::KeyVault(e) => write!(f, "{e}"),
            FailureKind::Convert(e) => write!(f, "{e}"),
            FailureKind::Template(e) => write!(f, "{e}"),
            FailureKind::Validation(r) => write!(
                f,
                "certificate validation: {}{}",
                r.message,
                if matches!(r.reason, "expired" | "not_yet_valid" | "chain_incomplete") {
                    " (refused by --validate strict; --validate warn publishes it with a warning)"
                } else {
                    " (always refused)"
                }
            ),
            FailureKind::StartVersion(v) => write!(
                f,
                "start version {v} is not among the enabled versions: check objectVersion"
            ),
        }
    }
}

/// One failed object, e.g. `secret "db-password" (version 3f2a…): not found ...`: always
/// `label: cause`, for templates too (`template "app.env.tmpl": line 2: ...`).
#[derive(Debug)]
pub struct ObjectFailure {
    /// The object's label.
    pub label: String,
    /// What went wrong.
    pub kind: FailureKind,
}

impl std::fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.label, self.kind)
    }
}

/// How many object labels a grouped failure line names before `and N more`.
pub const GROUP_NAMES: usize = 3;

/// One line per distinct cause, in the order causes first appear. A cause that hit one
/// object reads `secret "x": cause`; one that hit several names the first
/// [`GROUP_NAMES`] objects and counts the rest.
pub fn group_failures(failures: &[ObjectFailure]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for f in failures {
        let cause = f.kind.to_string();
        match groups.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, labels)) => labels.push(&f.label),
            None => groups.push((cause, vec![&f.label])),
        }
    }
    groups
        .into_iter()
        .map(|(cause, labels)| match labels.as_slice() {
            [] => cause,
            [one] => format!("{one}: {cause}"),
            _ => format!(
                "{} objects ({}): {cause}",
                labels.len(),
                name_list(&labels, GROUP_NAMES)
            ),
        })
        .collect()
}

/// `a, b, c and 47 more` (at most `max` names), or all of them when they fit.
pub fn name_list<S: AsRef<str>>(names: &[S], max: usize) -> String {
    let shown: Vec<&str> = names.iter().take(max).map(AsRef::as_ref).collect();
    let rest = names.len().saturating_sub(shown.len());
    if rest == 0 {
        shown.join(", ")
    } else {
        format!("{} and {rest} more", shown.join(", "))
    }
}

/// A failed cycle; nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The HTTP client or identity could not be set up (configuration).
    #[error("{0}")]
    Setup(String),
    /// One or more objects failed. Each distinct cause is one line, naming the objects it
    /// hit (`50 objects (secret "a", secret "b", secret "c" and 47 more): ...`), so one
    /// identity problem is not repeated once per object.
    #[error("{}", group_failures(.0).join("\n"))]
    Objects(Vec<ObjectFailure>),
    /// The overall deadline passed.
    #[error("the sync did not finish within --timeout ({}s)", .0.as_secs())]
    Deadline(Duration),
    /// Publishing failed; the previous set is intact.
    #[error("writing {dir}: {source}")]
    Write {
        /// Target directory.
        dir: String,
        /// Why.
        source: WriterError,
    },
    /// A bug: a task of the cycle panicked or was cancelled (exit 1, not a config error).
    #[error("internal error (a bug): {0}")]
    Internal(String),
}

impl SyncError {
    /// The writer's blocking task did not return (it panicked): a bug, reported as one.
    pub fn writer_task(e: tokio::task::JoinError) -> Self {
        let what = if e.is_panic() {
            "panicked"
        } else {
            "was cancelled"
        };
        SyncError::Internal(format!(
            "the writer task {what}; the previously published set is intact"
        ))
    }

    /// Whether retrying later may succeed (throttling, 5xx, network, deadline).
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Objects(fs) => fs
                .iter()
                .all(|f| matches!(&f.kind, FailureKind::KeyVault(e) if e.is_transient())),
            SyncError::Deadline(_) => true,
            SyncError::Setup(_) | SyncError::Write { .. } | SyncError::Internal(_) => false,
        }
    }

    /// The objects refused by validation (empty for other failures).
    pub fn refused(&self) -> Vec<RefusedObject> {
        match self {
            SyncError::Objects(fs) => fs
                .iter()
                .filter_map(|f| match &f.kind {
                    FailureKind::Validation(r) => Some(r.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Server-requested delay before the next attempt (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::Objects(fs) => fs
                .iter()
                .filter_map(|f| match &f.kind {
                    FailureKind::KeyVault(e) => e.retry_after(),
                    _ => None,
                })
                .max(),
            _ => None,
        }
    }

    /// Process exit code for `--once` (see [`crate::error`]): authentication beats object
    /// refusals, which beat conversion failures, which beat unavailability.
    pub fn exit_code(&self) -> i32 {
        match self {
            SyncError::Setup(_) => EXIT_CONFIG,
            SyncError::Internal(_) => EXIT_INTERNAL,
            SyncError::Write { .. } => EXIT_WRITE,
            SyncError::Deadline(_) => EXIT_UNAVAILABLE,
            SyncError::Objects(fs) => fs
                .iter()
                .map(|f| match &f.kind {
                    FailureKind::KeyVault(KeyVaultError::Auth(a)) if !a.is_transient() => {
                        if matches!(a, AuthError::Config { .. } | AuthError::TokenFile { .. }) {
                            EXIT_CONFIG
                        } else {
                            EXIT_AUTH
                        }
                    }
                    FailureKind::KeyVault(
                        KeyVaultError::Tls { .. } | KeyVaultError::ChallengeAuthority { .. },
                    ) => EXIT_CONFIG,
                    FailureKind::KeyVault(e) if e.is_transient() => EXIT_UNAVAILABLE,
                    FailureKind::KeyVault(_) | FailureKind::StartVersion(_) => EXIT_OBJECT,
                    FailureKind::Convert(_) | FailureKind::Template(_) => EXIT_CONVERT,
                    FailureKind::Validation(_) => EXIT_VALIDATION,
                })
                .min_by_key(|c| match *c {
                    EXIT_CONFIG => 0,
                    EXIT_AUTH => 1,
                    EXIT_OBJECT => 2,
                    EXIT_CONVERT => 3,
                    EXIT_VALIDATION => 4,
                    _ => 5,
                })
                .unwrap_or(EXIT_UNAVAILABLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        let f = |kind| ObjectFailure {
            label: "secret \"x\"".into(),
            kind,
        };
        let nf = || {
            FailureKind::KeyVault(KeyVaultError::NotFound {
                code: "SecretNotFound".into(),
            })
        };
        let thr = || {
            FailureKind::KeyVault(KeyVaultError::Throttled {
                retry_after: Some(Duration::from_secs(7)),
            })
        };
        let auth = FailureKind::KeyVault(KeyVaultError::Auth(AuthError::Rejected {
            mode: "workload_identity",
            message: "no".into(),
        }));
        let e = SyncError::Objects(vec![f(thr())]);
        assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = SyncError::Objects(vec![f(thr()), f(nf())]);
        assert_eq!(e.exit_code(), EXIT_OBJECT);
        assert!(!e.is_transient());
        let bad = || FailureKind::Convert(ConvertError::PrivateKey.into());
        let e = SyncError::Objects(vec![f(nf()), f(auth), f(bad())]);
        assert_eq!(e.exit_code(), EXIT_AUTH);
        assert_eq!(SyncError::Objects(vec![f(bad())]).exit_code(), EXIT_CONVERT);
        let m = e.to_string();
        assert_eq!(m.lines().count(), 3, "{m}");
        assert!(m.lines().all(|l| l.starts_with("secret \"x\": ")), "{m}");
    }

    // reference: issue 12 item 4 (one failing cause printed once, with the affected objects)
    #[test]
    fn one_cause_for_many_objects_is_one_line() {
        let auth = || {
            FailureKind::KeyVault(KeyVaultError::Auth(AuthError::Rejected {
                mode: "workload_identity",
                message: "AADSTS70021: no matching federated identity record".into(),
            }))
        };
        let mut fs: Vec<ObjectFailure> = (0..50)
            .map(|i| ObjectFailure {
                label: format!("secret \"s{i}\""),
                kind: auth(),
            })
            .collect();
        fs.push(ObjectFailure {
            label: "cert \"tls\"".into(),
            kind: FailureKind::Convert(ConvertError::NoLeaf.into()),
        });
        let m = SyncError::Objects(fs).to_string();
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 2, "{m}");
        assert!(
            lines[0].starts_with(
                "50 objects (secret \"s0\", secret \"s1\", secret \"s2\" and 47 more): "
            ),
            "{m}"
        );
        assert_eq!(lines[0].matches("AADSTS70021").count(), 1, "{m}");
        assert_eq!(lines[1], format!("cert \"tls\": {}", ConvertError::NoLeaf));
        assert_eq!(name_list(&["a", "b"], 3), "a, b");
    }

    // reference: issue 11 item 6 (a refused certificate has its own exit code; refused()
    // lists it for /status)
    #[test]
    fn a_validation_failure_exits_10_after_conversion_failures() {
        let f = |kind| ObjectFailure {
            label: "secret \"web\"".into(),
            kind,
        };
        let refused = RefusedObject {
            id: "secret/web".into(),
            reason: "expired",
            message: "certificate 1 (CN=web) expired at 2020-01-01T00:00:00Z: renew it".into(),
        };
        let e = SyncError::Objects(vec![f(FailureKind::Validation(refused.clone()))]);
        assert_eq!(e.exit_code(), EXIT_VALIDATION);
        assert!(!e.is_transient());
        assert_eq!(e.refused(), vec![refused.clone()]);
        assert!(
            e.to_string().contains("refused by --validate strict"),
            "{e}"
        );
        let e = SyncError::Objects(vec![
            f(FailureKind::Validation(refused)),
            f(FailureKind::Convert(ContentError::NulInEnvironment)),
        ]);
        assert_eq!(e.exit_code(), EXIT_CONVERT);
        assert!(EXIT_CODES.iter().any(|(c, _)| *c == EXIT_VALIDATION));
    }

    // reference: issue 13 item 2 (typed causes; one `label: cause` shape for every object,
    // templates included, so a cause is printed once)
    #[test]
    fn every_failure_is_label_colon_cause_and_its_cause_can_be_matched() {
        let tmpl = |name: &str| {
            let spec = crate::template::TemplateSpec {
                name: name.into(),
                dest: "app.env".into(),
                mode: 0o600,
                source: "ok\n{{ objects.nope }}".into(),
            };
            ObjectFailure {
                label: crate::template::label(name),
                kind: FailureKind::Template(crate::template::render(&spec, &[]).unwrap_err()),
            }
        };
        let one = tmpl("app.env.tmpl");
        assert!(
            matches!(
                one.kind,
                FailureKind::Template(TemplateError::Render { line: Some(2), .. })
            ),
            "{one:?}"
        );
        assert!(
            one.to_string()
                .starts_with("template \"app.env.tmpl\": line 2: undefined value"),
            "{one}"
        );
        // The same cause in two templates is one line naming both, like any other cause.
        let m = SyncError::Objects(vec![tmpl("a.tmpl"), tmpl("b.tmpl")]).to_string();
        assert_eq!(m.lines().count(), 1, "{m}");
        assert!(
            m.starts_with("2 objects (template \"a.tmpl\", template \"b.tmpl\"): line 2: "),
            "{m}"
        );
        assert_eq!(m.matches("undefined value").count(), 1, "{m}");

        let shaped = ObjectFailure {
            label: "cert \"web\"".into(),
            kind: FailureKind::Convert(ShapeError::Convert(ConvertError::PrivateKey).into()),
        };
        assert!(matches!(
            &shaped.kind,
            FailureKind::Convert(ContentError::Shape(ShapeError::Convert(
                ConvertError::PrivateKey
            )))
        ));
        assert_eq!(
            shaped.to_string(),
            format!(
                "cert \"web\": objectLayout tls: {}",
                ConvertError::PrivateKey
            )
        );
        assert_eq!(shaped.to_string().matches("failed to parse key").count(), 1);
    }

    // reference: docs/threat-model.md rule 10 (every path maps to the documented exit code)
    #[tokio::test]
    async fn a_panicking_writer_task_is_an_internal_error_not_a_config_error() {
        let join = tokio::task::spawn_blocking(|| -> Result<(), ()> {
            std::panic::panic_any("writer bug")
        })
        .await
        .unwrap_err();
        let e = SyncError::writer_task(join);
        assert_eq!(e.exit_code(), EXIT_INTERNAL);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("writer task panicked"), "{e}");
    }
}
