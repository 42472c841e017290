//! The Kubernetes AtomicWriter, ported: publishes a whole [`Payload`] into the target
//! directory with one `..data` symlink swap, or changes nothing.
//!
//! # Layout (the same as the kubelet's and the Secrets Store CSI driver's)
//!
//! ```text
//! <target>/..2026_11_28_12_00_00.3923374511/   real files and subdirectories (mode 0755)
//! <target>/..data -> ..2026_11_28_12_00_00.3923374511
//! <target>/tls.crt -> ..data/tls.crt            one link per top-level name
//! <target>/certs -> ..data/certs                `certs/a/b.pem` gets only `certs`
//! <target>/..status.json                        written by [`AtomicWriter::write_status`]
//! ```
//!
//! # Reader contract
//!
//! The swap is atomic per path lookup, not per reader session. To read a consistent set,
//! resolve `..data` once (readlink, or open it as a directory) and read every file through
//! that one resolution. If a file is then missing, re-read `..data`: if it changed, the
//! generation was retired under you (old directories are deleted right after a swap) and
//! you should read again; if it did not change, that is a bug. Watch the target
//! *directory* for `..data` being created or moved in, not the files.
//!
//! # Beyond upstream (`atomic-writer.md` §E)
//!
//! - modes (and the owner, when one is set) are compared as well as bytes, so a mode-only
//!   change is published;
//! - files and directories are fsynced unless the target is tmpfs ([`Durability`]);
//! - a stale `..data_tmp` left by a crash is cleared; orphaned timestamped directories are
//!   collected;
//! - `..data` is created by the first write even for an empty payload;
//! - nested directories are 0755 whatever the umask, like the timestamped directory;
//! - a failure after the swap (creating the visible links) rolls `..data` back, so an
//!   error always means the previous set is what readers see.
//!
//! Writes through one [`AtomicWriter`] (and its clones) are serialised; two writers on the
//! same directory from different processes are not supported (as upstream).

mod error;
mod paths;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, info, warn};

use crate::secret::SecretBytes;

pub use error::WriterError;
use paths::{check_writable, first_component, kept_paths, validate_payload};

/// The symlink to the current timestamped directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The link renamed over `..data`; exists only during a swap (or after a crash).
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";
/// The hidden status file beside `..data`.
pub const STATUS_FILE_NAME: &str = "..status.json";
/// Temporary link used to replace a visible link in one rename.
const LINK_TMP_NAME: &str = "..link_tmp";
/// Prefix of the status file's temporary files.
const STATUS_TMP_PREFIX: &str = "..status.json.";
/// `statfs` f_type of tmpfs (linux/magic.h `TMPFS_MAGIC`).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Mode of the timestamped directory and of every directory inside it.
const DIR_MODE: u32 = 0o755;
/// Mode of the status file.
const STATUS_MODE: u32 = 0o644;

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// File contents.
    pub data: SecretBytes,
    /// Exact file mode (umask does not apply), e.g. 0o644.
    pub mode: u32,
}

/// Relative path (validated, clean) → file. The whole set is published atomically.
pub type Payload = BTreeMap<String, FileProjection>;

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Contents and modes matched what is published; nothing was touched.
    Unchanged,
    /// A new set was published; the name of the new timestamped directory.
    Published {
        /// e.g. `..2026_11_28_12_00_00.123456789`
        data_dir: String,
    },
}

/// When files and directories are fsynced before the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync unless the target is tmpfs (where it is a no-op that still costs a syscall).
    #[default]
    Auto,
    /// Always fsync.
    Always,
    /// Never fsync (tests and throwaway volumes).
    Never,
}

/// Owner given to every published file (the pod's user, so a non-root application can
/// read files with mode 0400). `None` leaves that id as the agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Serialises writes through this writer and its clones.
    lock: Mutex<()>,
    fsyncs: AtomicU64,
}

/// Writes payloads into one target directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
    durability: Durability,
    owner: Option<Owner>,
    shared: Arc<Shared>,
}

/// What the previous generation holds at one relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldEntry {
    is_file: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    len: u64,
}

impl AtomicWriter {
    /// A writer for `target_dir` (created by the first write if missing).
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            durability: Durability::Auto,
            owner: None,
            shared: Arc::default(),
        }
    }

    /// A writer for a directory that must already exist (upstream `NewAtomicWriter`).
    pub fn open(target_dir: impl Into<PathBuf>) -> Result<Self, WriterError> {
        let target_dir = target_dir.into();
        match fs::metadata(&target_dir) {
            Ok(m) if m.is_dir() => Ok(Self::new(target_dir)),
            Ok(_) => Err(WriterError::io(
                "open output directory",
                target_dir,
                io::Error::from(io::ErrorKind::NotADirectory),
            )),
            Err(e) => Err(WriterError::io("open output directory", target_dir, e)),
        }
    }

    /// Sets when to fsync (default [`Durability::Auto`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Chowns every published file (and the status file) to `owner`.
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner).filter(|o| o.uid.is_some() || o.gid.is_some());
        self
    }

    /// The target directory.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// How many fsyncs this writer (and its clones) issued so far; shows whether the
    /// target was treated as durable storage.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Publishes `payload` atomically, or does nothing when it is already published.
    pub fn write(&self, payload: &Payload) -> Result<WriteOutcome, WriterError> {
        self.write_with_hook(payload, |_| Ok(()))
    }

    /// Like [`write`](Self::write), calling `prepare` on the new timestamped directory
    /// after the files are written and before the swap (upstream's `setPerms` hook). An
    /// error from it abandons the write; the previous set stays published.
    pub fn write_with_hook(
        &self,
        payload: &Payload,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<WriteOutcome, WriterError> {
        // (1) Validate everything before the disk is touched.
        let clean = validate_payload(payload)?;
        check_writable(&clean)?;

        let _guard = self.lock();
        let t = &self.target_dir;
        fs::create_dir_all(t).map_err(|e| WriterError::io("create output directory", t, e))?;
        let durable = self.is_durable();
        self.clear_stale_tmp()?;

        // (2) What is published now.
        let old = self.read_data_link()?;
        let top: BTreeSet<&str> = clean.keys().map(|p| first_component(p)).collect();
        let links_needed = self.check_visible_names(&top)?;

        // (3) What the new set no longer has.
        let old_entries = match &old {
            Some(name) => walk(&t.join(name))?,
            None => BTreeMap::new(),
        };
        let to_remove = paths_to_remove(&clean, &old_entries);

        // (4) Whether anything changed: bytes, modes, owner, or removals.
        let changed = match &old {
            None => true,
            // `..data` dangles (its directory was deleted): publish again.
            Some(name) if !t.join(name).is_dir() => true,
            Some(name) => {
                !to_remove.is_empty() || self.differs(&clean, &t.join(name), &old_entries)
            }
        };
        if !changed {
            // Recreate links lost to a crash after an earlier swap (kubernetes#121472).
            let repaired = self.link_visible(&links_needed)?;
            let removed = self.remove_stale_links(&top);
            self.collect_garbage(old.as_deref());
            if durable
                && (!repaired.is_empty() || removed > 0)
                && let Err(e) = self.fsync_dir(t)
            {
                warn!(error = %e, "cannot fsync the output directory after repairing links");
            }
            debug!(dir = %t.display(), files = clean.len(), repaired_links = repaired.len(), "write not required");
            return Ok(WriteOutcome::Unchanged);
        }

        // (5)-(8) A new timestamped directory, filled, then `..data_tmp` pointing at it.
        let new_name = self.create_data_dir()?;
        let new_path = t.join(&new_name);
        let staged = self
            .fill_data_dir(&new_path, &clean, durable)
            .and_then(|()| {
                prepare(&new_path).map_err(|source| WriterError::Hook {
                    path: new_path.clone(),
                    source,
                })
            })
            .and_then(|()| if durable { self.fsync_dir(t) } else { Ok(()) })
            .and_then(|()| {
                std::os::unix::fs::symlink(&new_name, t.join(NEW_DATA_DIR_NAME))
                    .map_err(|e| WriterError::io("create link", t.join(NEW_DATA_DIR_NAME), e))
            });
        if let Err(e) = staged {
            self.discard(&new_path);
            return Err(e);
        }

        // (9) The publish point.
        if let Err(e) = fs::rename(t.join(NEW_DATA_DIR_NAME), t.join(DATA_DIR_NAME)) {
            let _ = fs::remove_file(t.join(NEW_DATA_DIR_NAME));
            self.discard(&new_path);
            return Err(WriterError::io("swap", t.join(DATA_DIR_NAME), e));
        }

        // (10) Visible links for new top-level names; roll back if that fails, so an
        // error keeps meaning "the previous set is what readers see".
        if let Err(e) = self.link_visible(&links_needed) {
            self.roll_back(old.as_deref(), &new_path, &links_needed);
            return Err(e);
        }
        // (11)-(12) Links of names that are gone, the old directory and any orphans.
        let removed_links = self.remove_stale_links(&top);
        // The set is published; a failed fsync here must not report it as not published.
        if durable && let Err(e) = self.fsync_dir(t) {
            warn!(error = %e, "cannot fsync the output directory after the swap");
        }
        self.collect_garbage(Some(&new_name));
        info!(
            dir = %t.display(),
            data_dir = %new_name,
            files = clean.len(),
            removed_paths = to_remove.len(),
            removed_links,
            fsync = durable,
            "published a new set"
        );
        Ok(WriteOutcome::Published { data_dir: new_name })
    }

    /// Atomically replaces the hidden status file `<target>/..status.json` (mode 0644).
    pub fn write_status(&self, json: &[u8]) -> Result<(), WriterError> {
        let _guard = self.lock();
        let t = &self.target_dir;
        fs::create_dir_all(t).map_err(|e| WriterError::io("create output directory", t, e))?;
        let durable = self.is_durable();
        let dest = t.join(STATUS_FILE_NAME);
        let mut tmp = tempfile::Builder::new()
            .prefix(STATUS_TMP_PREFIX)
            .tempfile_in(t)
            .map_err(|e| WriterError::io("create temporary status file in", t, e))?;
        let tmp_path = tmp.path().to_owned();
        let io_err = |e| WriterError::io("write status file", &tmp_path, e);
        tmp.write_all(json).map_err(io_err)?;
        self.chown(tmp.as_file()).map_err(io_err)?;
        tmp.as_file()
            .set_permissions(Permissions::from_mode(STATUS_MODE))
            .map_err(io_err)?;
        if durable {
            self.fsync_file(tmp.as_file()).map_err(io_err)?;
        }
        tmp.persist(&dest)
            .map_err(|e| WriterError::io("replace status file", &dest, e.error))?;
        if durable {
            self.fsync_dir(t)?;
        }
        debug!(path = %dest.display(), bytes = json.len(), "status written");
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.shared.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_durable(&self) -> bool {
        match self.durability {
            Durability::Always => true,
            Durability::Never => false,
            Durability::Auto => match rustix::fs::statfs(&self.target_dir) {
                #[allow(clippy::unnecessary_cast)] // f_type's width differs per architecture
                Ok(st) => st.f_type as i64 != TMPFS_MAGIC,
                Err(e) => {
                    debug!(dir = %self.target_dir.display(), error = %e, "statfs failed; fsyncing to be safe");
                    true
                }
            },
        }
    }

    /// Removes a `..data_tmp` (and `..link_tmp`) left behind by a crash mid-swap;
    /// upstream fails every later write on it.
    fn clear_stale_tmp(&self) -> Result<(), WriterError> {
        for name in [NEW_DATA_DIR_NAME, LINK_TMP_NAME] {
            let p = self.target_dir.join(name);
            match fs::symlink_metadata(&p) {
                Ok(m) => {
                    warn!(path = %p.display(), "removing a leftover of an interrupted write");
                    let r = if m.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    r.map_err(|e| WriterError::io("remove leftover", &p, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WriterError::io("inspect", &p, e)),
            }
        }
        Ok(())
    }

    /// The timestamped directory `..data` points at, or `None` before the first write.
    /// A link to anything but a `..` sibling is not ours to compare with or delete.
    fn read_data_link(&self) -> Result<Option<String>, WriterError> {
        let p = self.target_dir.join(DATA_DIR_NAME);
        match fs::read_link(&p) {
            Ok(target) => {
                let name = target.to_str().unwrap_or_default();
                if is_data_dir_name(name) {
                    Ok(Some(name.to_owned()))
                } else {
                    warn!(path = %p.display(), "..data points outside this layout; replacing it");
                    Ok(None)
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                Err(WriterError::NotALayout {
                    dir: self.target_dir.clone(),
                })
            }
            Err(e) => Err(WriterError::io("read link", p, e)),
        }
    }

    /// Top-level names whose visible link is missing or wrong; refuses names taken by
    /// anything that is not a symlink (upstream silently leaves a stale file there).
    fn check_visible_names(&self, top: &BTreeSet<&str>) -> Result<Vec<String>, WriterError> {
        let mut needed = Vec::new();
        for name in top {
            let p = self.target_dir.join(name);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&p).map_err(|e| WriterError::io("read link", &p, e))?;
                    if target != Path::new(&visible_target(name)) {
                        needed.push((*name).to_owned());
                    }
                }
                Ok(_) => {
                    return Err(WriterError::Conflict {
                        dir: self.target_dir.clone(),
                        name: (*name).to_owned(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => needed.push((*name).to_owned()),
                Err(e) => return Err(WriterError::io("inspect", &p, e)),
            }
        }
        Ok(needed)
    }

    /// Whether any payload file differs from the published one in bytes, mode or owner.
    fn differs(
        &self,
        clean: &BTreeMap<String, &FileProjection>,
        old_dir: &Path,
        old: &BTreeMap<String, OldEntry>,
    ) -> bool {
        clean.iter().any(|(path, file)| {
            let Some(e) = old.get(path) else {
                return true;
            };
            if !e.is_file || e.mode != file.mode || e.len != file.data.len() as u64 {
                return true;
            }
            if let Some(owner) = self.owner
                && (owner.uid.is_some_and(|u| u != e.uid) || owner.gid.is_some_and(|g| g != e.gid))
            {
                return true;
            }
            // An unreadable old file is republished rather than trusted.
            !same_contents(&old_dir.join(path), file.data.expose())
        })
    }

    /// `..YYYY_MM_DD_HH_MM_SS.<random>` with mode 0755 (as Go's `os.MkdirTemp`).
    fn create_data_dir(&self) -> Result<String, WriterError> {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]_[month]_[day]_[hour]_[minute]_[second]"
            ))
            .unwrap_or_else(|_| "0000_00_00_00_00_00".to_owned());
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for _ in 0..10_000 {
            let name = format!("..{stamp}.{}", rand::random::<u32>());
            let p = self.target_dir.join(&name);
            match DirBuilder::new().mode(DIR_MODE).create(&p) {
                Ok(()) => {
                    fs::set_permissions(&p, Permissions::from_mode(DIR_MODE)).map_err(|e| {
                        let _ = fs::remove_dir(&p);
                        WriterError::io("set mode of", &p, e)
                    })?;
                    return Ok(name);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(WriterError::io("create data directory", p, e)),
            }
        }
        Err(WriterError::io(
            "create data directory in",
            &self.target_dir,
            last,
        ))
    }

    /// Writes every file with its exact mode (and owner), then fsyncs the tree if asked.
    fn fill_data_dir(
        &self,
        dir: &Path,
        clean: &BTreeMap<String, &FileProjection>,
        durable: bool,
    ) -> Result<(), WriterError> {
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for (rel, file) in clean {
            for parent in paths::ancestors(rel) {
                if dirs.insert(parent) {
                    let p = dir.join(parent);
                    DirBuilder::new()
                        .mode(DIR_MODE)
                        .create(&p)
                        .and_then(|()| fs::set_permissions(&p, Permissions::from_mode(DIR_MODE)))
                        .map_err(|e| WriterError::io("create directory", &p, e))?;
                }
            }
            let p = dir.join(rel);
            self.write_file(&p, file, durable)
                .map_err(|e| WriterError::io("write", &p, e))?;
        }
        if durable {
            for parent in dirs.iter().rev() {
                self.fsync_dir(&dir.join(parent))?;
            }
            self.fsync_dir(dir)?;
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, file: &FileProjection, durable: bool) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(file.data.expose())?;
        // chown before chmod: chown clears set-id bits.
        self.chown(&f)?;
        f.set_permissions(Permissions::from_mode(file.mode))?;
        if durable {
            self.fsync_file(&f)?;
        }
        Ok(())
    }

    fn chown(&self, f: &File) -> io::Result<()> {
        if let Some(owner) = self.owner {
            rustix::fs::fchown(
                f,
                owner.uid.map(rustix::fs::Uid::from_raw),
                owner.gid.map(rustix::fs::Gid::from_raw),
            )?;
        }
        Ok(())
    }

    fn fsync_file(&self, f: &File) -> io::Result<()> {
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        f.sync_all()
    }

    fn fsync_dir(&self, dir: &Path) -> Result<(), WriterError> {
        File::open(dir)
            .and_then(|f| self.fsync_file(&f))
            .map_err(|e| WriterError::io("fsync", dir, e))
    }

    /// Creates (or corrects) `name -> ..data/name`, each with one rename so that a
    /// reader never sees the name missing. Returns the names linked.
    pub(crate) fn link_visible(&self, names: &[String]) -> Result<Vec<String>, WriterError> {
        let tmp = self.target_dir.join(LINK_TMP_NAME);
        for name in names {
            let p = self.target_dir.join(name);
            std::os::unix::fs::symlink(visible_target(name), &tmp)
                .map_err(|e| WriterError::io("create link", &tmp, e))?;
            if let Err(e) = fs::rename(&tmp, &p) {
                let _ = fs::remove_file(&tmp);
                return Err(WriterError::io("create link", p, e));
            }
        }
        Ok(names.to_vec())
    }

    /// Removes visible links made by this writer whose name is no longer in the payload.
    /// Failures are logged: the set is already published and the next write retries.
    fn remove_stale_links(&self, top: &BTreeSet<&str>) -> usize {
        let entries = match fs::read_dir(&self.target_dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %self.target_dir.display(), error = %e, "cannot list the output directory to remove stale links");
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with("..") || top.contains(name.as_str()) {
                continue;
            }
            let p = entry.path();
            let ours = fs::read_link(&p).is_ok_and(|t| t == Path::new(&visible_target(&name)));
            if !ours {
                continue;
            }
            match fs::remove_file(&p) {
                Ok(()) => removed += 1,
                Err(e) => warn!(path = %p.display(), error = %e, "cannot remove a stale link"),
            }
        }
        removed
    }

    /// Deletes every timestamped directory except `keep` (the previous generation and
    /// orphans of interrupted writes) and leftover status temporaries. Logged, not fatal.
    fn collect_garbage(&self, keep: Option<&str>) {
        let Ok(entries) = fs::read_dir(&self.target_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if Some(name.as_str()) == keep {
                continue;
            }
            let p = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let r = if is_dir && is_data_dir_name(&name) {
                fs::remove_dir_all(&p)
            } else if !is_dir && name.starts_with(STATUS_TMP_PREFIX) {
                fs::remove_file(&p)
            } else {
                continue;
            };
            match r {
                Ok(()) => debug!(path = %p.display(), "removed an old generation"),
                Err(e) => warn!(path = %p.display(), error = %e, "cannot remove an old generation"),
            }
        }
    }

    /// Removes a timestamped directory that never got published.
    fn discard(&self, dir: &Path) {
        if let Err(e) = fs::remove_dir_all(dir) {
            warn!(path = %dir.display(), error = %e, "cannot remove an abandoned data directory");
        }
    }

    /// Points `..data` back at `old` after a failure that followed the swap.
    fn roll_back(&self, old: Option<&str>, new_dir: &Path, linked: &[String]) {
        let t = &self.target_dir;
        let result = match old {
            Some(old) => std::os::unix::fs::symlink(old, t.join(NEW_DATA_DIR_NAME))
                .and_then(|()| fs::rename(t.join(NEW_DATA_DIR_NAME), t.join(DATA_DIR_NAME))),
            None => fs::remove_file(t.join(DATA_DIR_NAME)),
        };
        if let Err(e) = result {
            warn!(dir = %t.display(), error = %e, "cannot roll ..data back after a failed write");
            return;
        }
        let old_entries = old
            .map(|o| walk(&t.join(o)).unwrap_or_default())
            .unwrap_or_default();
        for name in linked {
            if !old_entries.contains_key(name) {
                let _ = fs::remove_file(t.join(name));
            }
        }
        self.discard(new_dir);
    }
}

/// `..data/<name>`, the target of a visible link.
fn visible_target(name: &str) -> String {
    format!("{DATA_DIR_NAME}/{name}")
}

/// Whether `name` looks like `..YYYY_MM_DD_HH_MM_SS.<suffix>`.
pub(crate) fn is_data_dir_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let b = rest.as_bytes();
    if b.len() < 21 || b[19] != b'.' {
        return false;
    }
    let shape_ok = b[..19].iter().enumerate().all(|(i, c)| match i {
        4 | 7 | 10 | 13 | 16 => *c == b'_',
        _ => c.is_ascii_digit(),
    });
    shape_ok && !rest.contains('/')
}

/// Every path below `dir` (relative, `/`-separated), files and directories both.
pub(crate) fn walk(dir: &Path) -> Result<BTreeMap<String, OldEntry>, WriterError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = match fs::read_dir(&abs) {
            Ok(entries) => entries,
            // `..data` dangling (its directory deleted by hand): nothing to compare with.
            Err(e) if e.kind() == io::ErrorKind::NotFound && rel.is_empty() => return Ok(out),
            Err(e) => return Err(WriterError::io("read data directory", abs, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| WriterError::io("read data directory", &abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = entry
                .metadata()
                .map_err(|e| WriterError::io("inspect", entry.path(), e))?;
            if m.is_dir() {
                stack.push((entry.path(), child_rel.clone()));
            }
            out.insert(
                child_rel,
                OldEntry {
                    is_file: m.is_file(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    len: m.len(),
                },
            );
        }
    }
    Ok(out)
}

/// Upstream `pathsToRemove`: old paths that are neither a new file nor an ancestor of one.
pub(crate) fn paths_to_remove(
    clean: &BTreeMap<String, &FileProjection>,
    old: &BTreeMap<String, OldEntry>,
) -> BTreeSet<String> {
    let kept = kept_paths(clean.keys());
    old.keys()
        .filter(|p| !kept.contains(p.as_str()))
        .cloned()
        .collect()
}

fn same_contents(path: &Path, expected: &[u8]) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut buf = Vec::with_capacity(expected.len() + 1);
    // Read one byte past the expected length to notice a file that grew.
    match Read::take(&mut f, expected.len() as u64 + 1).read_to_end(&mut buf) {
        Ok(_) => buf == expected,
        Err(_) => false,
    }
}
