//! Bounded reads of small files named by the operator: the config file, `cloudEnvFileName`,
//! `AZURE_CLIENT_SECRET_FILE`, `AZURE_FEDERATED_TOKEN_FILE`, CA bundles.
//!
//! Such a path may point anywhere a manifest author or a neighbour container can reach, so
//! (docs/threat-model.md rule 1) a read must neither hang nor grow without bound:
//! - the file is opened with `O_NONBLOCK`, so a FIFO with no writer cannot block the open;
//! - the *opened* descriptor is `fstat`-ed and anything but a regular file (FIFO, socket,
//!   device such as `/dev/zero`, directory) is refused, so nothing is swapped between check
//!   and read;
//! - the content is read through a streaming limit (`take(limit + 1)`), never read whole and
//!   checked afterwards.
//!
//! Symlinks are followed on purpose: ConfigMap, Secret and projected volumes present every
//! file as a symlink into `..data/`. Only the final target must be a regular file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest config file (the SecretProviderClass or its parameters map), 4 MiB.
pub const MAX_CONFIG_FILE: u64 = 4 << 20;
/// Largest small side file (cloud environment JSON, client secret, federated token), 1 MiB.
/// A Kubernetes service-account token is a few KiB; a cloud file a few hundred bytes.
pub const MAX_SMALL_FILE: u64 = 1 << 20;
/// Largest CA bundle file, 4 MiB (a full Mozilla bundle is about 220 KiB).
pub const MAX_CA_FILE: u64 = 4 << 20;

/// Why a file was not read. `Display` is one line: `<what> "<path>": <problem>: <fix>`.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// open(2) or read(2) failed.
    #[error("cannot read {what} \"{}\": {source}", path.display())]
    Io {
        /// What the file is (`config file`, `cloudEnvFileName`, ...).
        what: String,
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path (after following symlinks) is not a regular file.
    #[error(
        "{what} \"{}\" is a {kind}, not a regular file: point it at a regular file (symlinks to one are fine)",
        path.display()
    )]
    NotRegular {
        /// What the file is.
        what: String,
        /// The path as given.
        path: PathBuf,
        /// `FIFO`, `directory`, `character device`, ...
        kind: &'static str,
    },
    /// The file is larger than the limit.
    #[error(
        "{what} \"{}\" is larger than the limit of {limit} bytes: is this the right file?",
        path.display()
    )]
    TooLarge {
        /// What the file is.
        what: String,
        /// The path as given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text ([`read_to_string`] only).
    #[error("{what} \"{}\" is not UTF-8 text", path.display())]
    NotUtf8 {
        /// What the file is.
        what: String,
        /// The path as given.
        path: PathBuf,
    },
}

impl FileError {
    /// The underlying OS error kind, when the failure came from the OS (e.g. `NotFound`).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            FileError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

fn kind_name(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Opens `path` without blocking and checks the opened descriptor is a regular file.
fn open_regular(path: &Path, what: &str) -> Result<File, FileError> {
    let io = |source| FileError::Io {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    };
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            what: what.to_owned(),
            path: path.to_owned(),
            kind: kind_name(meta.file_type()),
        });
    }
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes. `what` names the file in errors
/// (`config file`, `cloudEnvFileName`, ...).
pub fn read(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path, what)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0).min(limit);
    let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    // One byte past the limit tells "exactly at the limit" from "over it" without ever
    // holding more than limit + 1 bytes, however the file grows while we read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| FileError::Io {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(FileError::TooLarge {
            what: what.to_owned(),
            path: path.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64, what: &str) -> Result<String, FileError> {
    let bytes = read(path, limit, what)?;
    String::from_utf8(bytes).map_err(|_| FileError::NotUtf8 {
        what: what.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/threat-model.md rule 1 (files named by config: regular files only, bounded)
    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cloud.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // A blocking open of a FIFO with no writer never returns; this one must.
        let e = read(&fifo, MAX_SMALL_FILE, "cloudEnvFileName").unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&fifo.display().to_string()), "{msg}");
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read(Path::new("/dev/zero"), MAX_SMALL_FILE, "cloudEnvFileName").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), MAX_SMALL_FILE, "config file").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("config file \""), "{e}");
    }

    #[test]
    fn size_limit_is_enforced_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![b'x'; 100]).unwrap();
        assert_eq!(read(&f, 100, "file").unwrap().len(), 100);
        let e = read(&f, 99, "client secret file").unwrap_err();
        assert!(matches!(e, FileError::TooLarge { limit: 99, .. }), "{e}");
        assert!(e.to_string().contains("limit of 99 bytes"), "{e}");
    }

    #[test]
    fn symlinks_to_regular_files_are_followed_like_configmap_volumes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..2026_01_01")).unwrap();
        std::fs::write(dir.path().join("..2026_01_01/spc.yaml"), "a: b").unwrap();
        std::os::unix::fs::symlink("..2026_01_01", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/spc.yaml", dir.path().join("spc.yaml")).unwrap();
        let text = read_to_string(&dir.path().join("spc.yaml"), 10, "config file").unwrap();
        assert_eq!(text, "a: b");
        // A symlink to a FIFO is still a FIFO.
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink(&fifo, dir.path().join("link")).unwrap();
        assert!(matches!(
            read(&dir.path().join("link"), 10, "x"),
            Err(FileError::NotRegular { kind: "FIFO", .. })
        ));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read(Path::new("/definitely/missing"), 10, "cloudEnvFileName").unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(
            e.to_string()
                .starts_with("cannot read cloudEnvFileName \"/definitely/missing\": "),
            "{e}"
        );
    }

    #[test]
    fn not_utf8_is_refused_by_read_to_string() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_to_string(&f, 10, "config file"),
            Err(FileError::NotUtf8 { .. })
        ));
    }
}
