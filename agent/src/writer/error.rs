//! Errors of the atomic writer: what went wrong, on which path, and what to do about it.
//!
//! Whenever one of these is returned, the previously published set is intact: validation
//! happens before anything touches the disk, and every later failure removes what the
//! failed attempt created before `..data` was swapped.

use std::io;
use std::path::PathBuf;

use rustix::io::Errno;

/// Errors while publishing a payload or the status file.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A payload path breaks the AtomicWriter path rules. `message` is the upstream text,
    /// e.g. `invalid path: must not contain '..': foo/../bar`.
    #[error("{message}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// The full message (upstream wording).
        message: String,
    },

    /// Two payload keys name the same file once cleaned (`foo//bar` and `foo/bar`).
    #[error(
        "invalid payload: {first:?} and {second:?} are the same file {clean:?} once cleaned: keep one"
    )]
    DuplicatePath {
        /// First key (sorted order).
        first: String,
        /// Second key.
        second: String,
        /// What both clean to.
        clean: String,
    },

    /// A payload file is also needed as a directory (`foo` and `foo/bar`).
    #[error(
        "invalid payload: {file:?} is a file, so {nested:?} cannot be written below it: rename one of them"
    )]
    FileDirCollision {
        /// The path that is a file.
        file: String,
        /// A path that needs it to be a directory.
        nested: String,
    },

    /// A mode with bits outside `0o7777`.
    #[error(
        "invalid payload: {path:?} has mode {mode:#o}: only permission bits (at most 0o7777) are allowed"
    )]
    InvalidMode {
        /// The file.
        path: String,
        /// The mode given.
        mode: u32,
    },

    /// A top-level name of the payload is taken by something this writer did not create.
    #[error(
        "output directory {}: {name:?} already exists and is not a link made by this writer: remove it, or rename the object that writes it",
        dir.display()
    )]
    Conflict {
        /// The target directory.
        dir: PathBuf,
        /// The top-level name.
        name: String,
    },

    /// A name the writer reserves (`..status.json`, `..hmac.key`) is taken by a directory,
    /// which the writer does not remove.
    #[error(
        "output directory {}: {name:?} is a directory, where the agent keeps a file of its own: remove it",
        dir.display()
    )]
    Reserved {
        /// The target directory.
        dir: PathBuf,
        /// The reserved name.
        name: String,
    },

    /// An entry of the generation being written was replaced by someone else (a container
    /// sharing the volume) before the swap; nothing was published.
    #[error(
        "{}: replaced by someone else while the agent was writing it (a container sharing the volume?); the previous set stays published",
        path.display()
    )]
    Tampered {
        /// The entry that changed.
        path: PathBuf,
    },

    /// `..data` exists but is not a symlink, so this directory is not an AtomicWriter layout.
    #[error(
        "output directory {}: ..data is not a symlink: point the agent at an empty directory or remove ..data",
        dir.display()
    )]
    NotALayout {
        /// The target directory.
        dir: PathBuf,
    },

    /// A file-system operation failed.
    #[error("{action} {}: {source}{}", path.display(), hint(source))]
    Io {
        /// What was being done, e.g. `create data directory`.
        action: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The caller's hook (run on the new data directory before the swap) failed.
    #[error("preparing {}: {source}", path.display())]
    Hook {
        /// The new data directory.
        path: PathBuf,
        /// What the hook returned.
        #[source]
        source: io::Error,
    },
}

impl WriterError {
    /// Whether trying the same write again later may succeed (interrupted, busy,
    /// temporarily out of memory). A full disk, a read-only volume, missing permissions
    /// and invalid payloads are not transient: they need someone to act.
    pub fn is_transient(&self) -> bool {
        match self {
            WriterError::Io { source, .. } | WriterError::Hook { source, .. } => {
                io_is_transient(source)
            }
            _ => false,
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WriterError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

fn io_is_transient(e: &io::Error) -> bool {
    if let Some(code) = e.raw_os_error() {
        let errno = Errno::from_raw_os_error(code);
        return [
            Errno::INTR,
            Errno::AGAIN,
            Errno::BUSY,
            Errno::NOMEM,
            Errno::TXTBSY,
        ]
        .contains(&errno);
    }
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What to fix, for the errors people hit in pods.
fn hint(e: &io::Error) -> &'static str {
    let Some(code) = e.raw_os_error() else {
        return "";
    };
    match Errno::from_raw_os_error(code) {
        Errno::NOSPC | Errno::DQUOT => {
            " (the volume is full: raise the emptyDir sizeLimit or free space)"
        }
        Errno::ROFS => {
            " (the volume is read-only here: mount it read-write in the agent container)"
        }
        Errno::ACCESS | Errno::PERM => {
            " (no permission: check the volume's owner and the pod's securityContext runAsUser/fsGroup)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_err(errno: Errno) -> WriterError {
        WriterError::io(
            "create data directory",
            "/out/..x",
            io::Error::from_raw_os_error(errno.raw_os_error()),
        )
    }

    #[test]
    fn transient_classification() {
        assert!(io_err(Errno::INTR).is_transient());
        assert!(io_err(Errno::AGAIN).is_transient());
        assert!(io_err(Errno::BUSY).is_transient());
        assert!(!io_err(Errno::NOSPC).is_transient());
        assert!(!io_err(Errno::ROFS).is_transient());
        assert!(!io_err(Errno::ACCESS).is_transient());
        assert!(
            !WriterError::InvalidMode {
                path: "a".into(),
                mode: 0o10000
            }
            .is_transient()
        );
    }

    #[test]
    fn messages_are_context_first_and_say_what_to_fix() {
        let msg = io_err(Errno::NOSPC).to_string();
        assert!(msg.starts_with("create data directory /out/..x: "), "{msg}");
        assert!(msg.contains("raise the emptyDir sizeLimit"), "{msg}");
        let msg = io_err(Errno::ROFS).to_string();
        assert!(msg.contains("mount it read-write"), "{msg}");
        let msg = WriterError::Conflict {
            dir: "/out".into(),
            name: "tls.crt".into(),
        }
        .to_string();
        assert_eq!(
            msg,
            "output directory /out: \"tls.crt\" already exists and is not a link made by this writer: remove it, or rename the object that writes it"
        );
    }
}
