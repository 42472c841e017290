//! File-system calls relative to directory descriptors, never following a symlink.
//!
//! The output directory is shared with containers we do not trust (docs/threat-model.md rule 5):
//! anything in it may be swapped for a symlink at any moment, so no call here takes a path
//! with more than one component, and none follows a symlink in its last one (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`, `O_CREAT|O_EXCL`, `unlinkat`, `renameat`, `symlinkat`,
//! `linkat` without `AT_SYMLINK_FOLLOW`). Modes and owners are set with `fchmod`/`fchown`
//! on descriptors we opened, never on paths. Only [`open_root`] takes a full path: the
//! operator's `--dir`, whose parent components are trusted.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, mkdirat, openat, openat2, readlinkat,
    renameat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;

/// Deepest directory tree [`remove_tree_at`] descends into (each level holds a descriptor).
/// Payload paths are at most 4096 bytes, so the agent never makes trees this deep; a
/// neighbour's deeper tree is left for someone to look at.
const MAX_REMOVE_DEPTH: usize = 256;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the operator's output directory, creating it (and missing parents) first if it
/// does not exist. The directory itself must not be a symlink.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    match rustix::fs::open(path, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => {
            std::fs::create_dir_all(path)?;
            Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `name` in `dir`; a symlink there is refused (`ELOOP`/`ENOTDIR`).
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory at relative path `rel` below `dir` without following any symlink
/// and without leaving `dir`: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the
/// kernel has it (Linux ≥ 5.6), else one component at a time with `O_NOFOLLOW`.
pub(crate) fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    if rel.is_empty() {
        return Ok(openat(dir, ".", DIR_FLAGS, Mode::empty())?);
    }
    match openat2(
        dir,
        rel,
        DIR_FLAGS,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => return Ok(fd),
        // Not available (old kernel, seccomp profile): walk instead.
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG) => {}
        Err(e) => return Err(e.into()),
    }
    let mut parts = rel.split('/').filter(|p| !p.is_empty());
    let first = parts.next().unwrap_or(".");
    let mut fd = open_dir_at(dir, first)?;
    for part in parts {
        fd = open_dir_at(fd.as_fd(), part)?;
    }
    Ok(fd)
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Stat>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The file type of a stat result.
pub(crate) fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The target of symlink `name` in `dir`: `Ok(None)` when missing, `EINVAL` when it is
/// not a symlink. Targets that are not UTF-8 come back lossily (they are never ours).
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<String>> {
    match readlinkat(dir, name, Vec::new()) {
        Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates directory `name` in `dir` (exactly `mode`, whatever the umask) and opens it.
pub(crate) fn mkdir_open(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<OwnedFd> {
    mkdirat(dir, name, Mode::from_raw_mode(mode))?;
    let fd = open_dir_at(dir, name)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// Creates the new file `name` in `dir` (`O_CREAT|O_EXCL`: never follows, never reuses)
/// with mode 0600 until the caller sets the final one.
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<std::fs::File> {
    let fd = openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(std::fs::File::from(fd))
}

/// Writes `data` into a new file `name` in `dir`.
pub(crate) fn write_new(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<std::fs::File> {
    let mut f = create_file(dir, name)?;
    f.write_all(data)?;
    Ok(f)
}

/// Opens regular file `name` in `dir` for reading; a symlink, FIFO or device is refused
/// (`O_NONBLOCK` so that opening a FIFO cannot hang).
pub(crate) fn open_regular(dir: BorrowedFd<'_>, name: &str) -> io::Result<(std::fs::File, Stat)> {
    let fd = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if kind(&st) != FileType::RegularFile {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    Ok((std::fs::File::from(fd), st))
}

/// Whether regular file `name` in `dir` holds exactly `expected` (reads at most one byte
/// more than expected, so a file that grew costs nothing extra).
pub(crate) fn same_contents(dir: BorrowedFd<'_>, name: &str, expected: &[u8]) -> bool {
    let Ok((f, _)) = open_regular(dir, name) else {
        return false;
    };
    let mut buf = Vec::with_capacity(expected.len().saturating_add(1));
    let limit = (expected.len() as u64).saturating_add(1);
    match f.take(limit).read_to_end(&mut buf) {
        Ok(_) => buf == expected,
        Err(_) => false,
    }
}

/// Points `name` in `dir` at `target` in one rename, through the temporary `tmp`, so the
/// name is never missing. Whatever `name` was (a symlink of a neighbour, a file) is
/// replaced, never followed.
pub(crate) fn replace_symlink(
    dir: BorrowedFd<'_>,
    target: &str,
    tmp: &str,
    name: &str,
) -> io::Result<()> {
    symlinkat(target, dir, tmp)?;
    if let Err(e) = renameat(dir, tmp, dir, name) {
        let _ = unlinkat(dir, tmp, AtFlags::empty());
        return Err(e.into());
    }
    Ok(())
}

/// Entry names of `dir` (without `.` and `..`), with the type the directory reports.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<(String, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // Names we did not make may be any bytes; ours are UTF-8.
        let Some(name) = OsStr::from_bytes(name).to_str() else {
            continue;
        };
        out.push((name.to_owned(), entry.file_type()));
    }
    Ok(out)
}

/// Removes `name` from `dir`: a directory with everything below it, anything else
/// (a symlink included) by unlinking the entry itself. Never follows a symlink, so a
/// neighbour's link named like one of our directories costs the link, not its target.
pub(crate) fn remove_tree_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    remove_tree_depth(dir, name, 0)
}

fn remove_tree_depth(dir: BorrowedFd<'_>, name: &str, depth: usize) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if kind(&st) != FileType::Directory {
        return match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!(
            "directory tree deeper than {MAX_REMOVE_DEPTH} levels"
        )));
    }
    let child = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        // Swapped for something else since the lstat: remove that entry instead.
        Err(e)
            if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
        {
            return remove_tree_depth(dir, name, depth + 1);
        }
        Err(e) => return Err(e),
    };
    for (entry, _) in list(child.as_fd())? {
        remove_tree_depth(child.as_fd(), &entry, depth + 1)?;
    }
    match unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
