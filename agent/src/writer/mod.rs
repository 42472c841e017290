//! The Kubernetes AtomicWriter, ported and hardened: publishes a whole [`Payload`] (and
//! the status manifest describing it) into the target directory with one `..data` symlink
//! swap, or changes nothing.
//!
//! # Layout (the same as the kubelet's and the Secrets Store CSI driver's)
//!
//! ```text
//! <target>/..2026_11_28_12_00_00.3923374511/   real files and subdirectories (mode 0755)
//! <target>/..2026_11_28_12_00_00.3923374511/..status.json   the manifest of this set
//! <target>/..data -> ..2026_11_28_12_00_00.3923374511
//! <target>/..status.json -> ..data/..status.json
//! <target>/..hmac.key                           key of the manifest's digests (see below)
//! <target>/tls.crt -> ..data/tls.crt            one link per top-level name
//! <target>/certs -> ..data/certs                `certs/a/b.pem` gets only `certs`
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
//! # The volume is shared ground (docs/threat-model.md rule 5)
//!
//! A neighbour container may write the volume and swap anything in it for a symlink at any
//! moment. So the target directory is opened once (`O_DIRECTORY|O_NOFOLLOW`; its own path is
//! the operator's and its parents are trusted) and every later call is relative to a
//! directory descriptor, one component at a time, never following a symlink: `mkdirat`,
//! `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `fchmod`/`fchown` on descriptors, `symlinkat`,
//! `renameat`, `unlinkat`, `readlinkat`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `linkat`.
//! Nothing outside the target is created, changed or chmod-ed, whatever is swapped in.
//! Before the swap every entry of the new generation is checked to still be the inode
//! this writer made ([`WriterError::Tampered`] otherwise, and the old set stays).
//!
//! Names starting with `..` belong to the writer. Rules for what it finds at a name:
//! - a visible name (`tls.crt`) that is a symlink to anything but `..data/tls.crt` is
//!   replaced (the link itself, never its target); a regular file or directory there is
//!   someone else's: the write fails naming it ([`WriterError::Conflict`]);
//! - `..data` that is not a symlink fails the write ([`WriterError::NotALayout`]); a
//!   symlink to anything but a timestamped sibling is replaced;
//! - `..status.json` and `..hmac.key` are replaced when they are not what the writer made
//!   (a regular file of an older agent, a symlink elsewhere, a key of the wrong size or
//!   owner); a directory there fails the write, naming it;
//! - garbage collection removes timestamped directories other than the current one by
//!   descriptor; a symlink named like one loses the link, never its target.
//!
//! # Status manifest and digests
//!
//! `..status.json` is written *inside* the new generation before the swap, so it is atomic
//! with the files it describes, and a failure to write it leaves the old set in place. Its
//! digests are HMAC-SHA256 under `..hmac.key` ([`AtomicWriter::digest_key`]): 32 random
//! bytes made once per volume with `O_EXCL`, at the strictest mode of the set, owned by the
//! configured owner, and reused by later runs so the init container and the sidecar agree.
//!
//! # Beyond upstream (`docs/atomic-writer.md` §B)
//!
//! - modes (and the owner, when one is set) are compared as well as bytes, so a mode-only
//!   change is published;
//! - unchanged sets cost no file read: what was published is kept in memory (keyed content
//!   fingerprint, mode, owner, inode, size, ctime of each file) and re-verified with
//!   `fstatat` only; anything that looks touched falls back to a byte compare, and so does
//!   a file whose ctime was too recent to vouch for it when recorded (coarse timestamps;
//!   [`AtomicWriter::with_racy_window`]), once;
//! - files of unchanged objects are hard-linked from the previous generation (same bytes,
//!   mode and owner), so one changed object in N rewrites one file;
//! - durability is one batched pass (`syncfs` once the generation is complete, `fsync` of
//!   the target after the swap) unless the target is tmpfs ([`Durability`]);
//! - a stale `..data_tmp` left by a crash is cleared; orphaned timestamped directories are
//!   collected;
//! - `..data` is created by the first write even for an empty payload;
//! - nested directories are 0755 whatever the umask, like the timestamped directory;
//! - a failure after the swap (creating the visible links) rolls `..data` back, so an
//!   error always means the previous set is what readers see.
//!
//! Writes through one [`AtomicWriter`] (and its clones) are serialised; two writers on the
//! same directory from different processes are not supported (as upstream).

mod digest;
mod error;
mod fsops;
#[cfg(test)]
mod hostile_tests;
mod paths;
#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{AtFlags, FileType, Mode, Stat};
use rustix::io::Errno;
use tracing::{debug, info, warn};

use crate::secret::SecretBytes;

pub use digest::{DigestKey, KEY_LEN};
pub use error::WriterError;
use paths::{check_writable, first_component, kept_paths, validate_payload};

/// The symlink to the current timestamped directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The link renamed over `..data`; exists only during a swap (or after a crash).
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";
/// The status manifest: inside each generation, and a link of that name in the target.
pub const STATUS_FILE_NAME: &str = "..status.json";
/// The per-volume key of the manifest's digests.
pub const KEY_FILE_NAME: &str = "..hmac.key";
/// Temporary link used to replace a visible link in one rename.
const LINK_TMP_NAME: &str = "..link_tmp";
/// Prefix of the status temporaries of earlier versions (collected as garbage).
const STATUS_TMP_PREFIX: &str = "..status.json.";
/// Prefix of a key being created.
const KEY_TMP_PREFIX: &str = "..hmac.key.";
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

/// When the new generation is made durable before the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Sync unless the target is tmpfs (where it is a no-op that still costs a syscall).
    #[default]
    Auto,
    /// Always sync.
    Always,
    /// Never sync (tests and throwaway volumes).
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

/// Points of a write at which a [`StageHook`] is called: the seam through which tests play
/// a neighbour that swaps things in the middle of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// The published generation was inspected; nothing has been created yet.
    Inspected,
    /// The new timestamped directory exists, still empty.
    DataDirCreated {
        /// Its name.
        data_dir: &'a str,
    },
    /// A directory inside the new generation was created.
    DirCreated {
        /// The generation.
        data_dir: &'a str,
        /// Relative path of the directory.
        path: &'a str,
    },
    /// A file of the new generation is complete (written or linked).
    FileWritten {
        /// The generation.
        data_dir: &'a str,
        /// Relative path of the file.
        path: &'a str,
    },
    /// The generation is complete and verified; `..data` is swapped next.
    BeforeSwap {
        /// The generation.
        data_dir: &'a str,
    },
    /// Old generations are collected next.
    BeforeCollect,
}

/// Called at each [`Stage`] (a runtime value, so tests use the real code path).
pub type StageHook = Arc<dyn Fn(Stage<'_>) + Send + Sync>;

/// Counters of what this writer (and its clones) did to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// `syncfs`/`fsync` calls.
    pub syncs: u64,
    /// Files written with new contents.
    pub files_written: u64,
    /// Files hard-linked from the previous generation.
    pub files_linked: u64,
    /// Published files read back to compare contents.
    pub files_read: u64,
}

/// Renders the manifest of a new generation, given its directory name, into the file
/// (streamed: at thousands of objects the manifest is megabytes, never held whole).
pub type RenderStatus<'a> = &'a dyn Fn(&str, &mut dyn std::io::Write) -> std::io::Result<()>;

/// Options of [`AtomicWriter::write_with`].
#[derive(Default)]
pub struct WriteOptions<'a> {
    /// Renders `..status.json` for a new generation, given its directory name; written
    /// inside it before the swap. With `None` no manifest is written.
    pub status: Option<RenderStatus<'a>>,
    /// Publish a new generation even when every file matches (the manifest's metadata,
    /// such as a version, changed while the bytes did not).
    pub republish: bool,
}

#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    files_written: AtomicU64,
    files_linked: AtomicU64,
    files_read: AtomicU64,
}

struct Shared {
    /// Serialises writes through this writer and its clones, and holds what they share.
    state: Mutex<State>,
    counters: Counters,
    /// Key of the in-memory content fingerprints (never stored).
    memo_key: DigestKey,
}

#[derive(Default)]
struct State {
    /// The target, opened once.
    root: Option<OwnedFd>,
    /// What the last write published or confirmed.
    published: Option<Published>,
    /// The volume's digest key once loaded, with the mode its file was given.
    key: Option<(DigestKey, u32)>,
}

/// What is on disk for the current generation, as this writer last saw it.
struct Published {
    data_dir: String,
    /// By path, sorted (built in the payload's order): a vector of exactly the set's size,
    /// where a tree map took half as much again in node slack (issue 10 item 6).
    files: Vec<(String, PublishedFile)>,
}

impl Published {
    fn file(&self, path: &str) -> Option<&PublishedFile> {
        self.files
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
            .map(|(_, f)| f)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct PublishedFile {
    /// Keyed fingerprint of the contents (memory only).
    mac: [u8; 32],
    fp: Fingerprint,
    /// Whether an unchanged stat proves unchanged contents. Not when the file's ctime was
    /// within [`AtomicWriter::with_racy_window`] of the moment it was recorded: file
    /// timestamps come from a coarse clock, so a change in the same tick as our own last
    /// one leaves the stat as it was ("racy clean", as git calls it). Such a file is read
    /// back once by the next write, then trusted.
    trusted: bool,
}

/// The stat fields any change of a file moves: a write moves size/ctime, chmod/chown/link
/// counts move ctime, a replacement moves the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: i64,
    ctime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Fingerprint {
    fn of(st: &Stat) -> Self {
        #[allow(clippy::unnecessary_cast)] // field widths differ per architecture
        Self {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
        }
    }

    fn is_file(&self) -> bool {
        FileType::from_raw_mode(self.mode as _) == FileType::RegularFile
    }

    fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.mode as _) == FileType::Directory
    }

    fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Writes payloads into one target directory.
#[derive(Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
    durability: Durability,
    owner: Option<Owner>,
    stage: Option<StageHook>,
    racy_window: std::time::Duration,
    shared: Arc<Shared>,
}

/// Default of [`AtomicWriter::with_racy_window`]: several ticks of the kernel's coarse
/// clock (4 ms at HZ=250, 10 ms at HZ=100).
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

impl std::fmt::Debug for AtomicWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWriter")
            .field("target_dir", &self.target_dir)
            .field("durability", &self.durability)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What the previous generation holds at one relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldEntry {
    fp: Fingerprint,
}

impl OldEntry {
    fn is_file(&self) -> bool {
        self.fp.is_file()
    }
}

/// A generation being built: descriptors of its directories and what was made in it.
struct Building {
    name: String,
    fd: OwnedFd,
    /// Relative directory path → descriptor ("" is `fd`).
    dirs: BTreeMap<String, OwnedFd>,
    /// Relative path → inode made (or linked) for it.
    made: BTreeMap<String, u64>,
}

impl Building {
    fn dir(&self, rel: &str) -> BorrowedFd<'_> {
        if rel.is_empty() {
            self.fd.as_fd()
        } else {
            // Every parent is created before its children (ancestors come first).
            self.dirs.get(rel).map_or(self.fd.as_fd(), |fd| fd.as_fd())
        }
    }
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split_parent(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

fn errno_of(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

impl AtomicWriter {
    /// A writer for `target_dir` (created by the first write if missing).
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            durability: Durability::Auto,
            owner: None,
            stage: None,
            racy_window: RACY_WINDOW,
            shared: Arc::new(Shared {
                state: Mutex::default(),
                counters: Counters::default(),
                memo_key: DigestKey::random(),
            }),
        }
    }

    /// A writer for a directory that must already exist (upstream `NewAtomicWriter`).
    pub fn open(target_dir: impl Into<PathBuf>) -> Result<Self, WriterError> {
        let target_dir = target_dir.into();
        let fd = rustix::fs::open(
            &target_dir,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| WriterError::io("open output directory", &target_dir, e.into()))?;
        let w = Self::new(target_dir);
        w.lock().root = Some(fd);
        Ok(w)
    }

    /// Sets when to sync (default [`Durability::Auto`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Chowns every published file (and the status file and key) to `owner`.
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner).filter(|o| o.uid.is_some() || o.gid.is_some());
        self
    }

    /// How recent a file's ctime may be, when it is recorded, for its stat alone to vouch
    /// for its contents on the next write (default 50 ms; zero trusts every stat, which
    /// tests use to count reads).
    pub fn with_racy_window(mut self, window: std::time::Duration) -> Self {
        self.racy_window = window;
        self
    }

    /// Calls `hook` at each [`Stage`] of a write (tests: a neighbour acting mid-write).
    pub fn with_stage_hook(mut self, hook: StageHook) -> Self {
        self.stage = Some(hook);
        self
    }

    /// The target directory.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// How many syncs this writer (and its clones) issued so far; shows whether the
    /// target was treated as durable storage.
    pub fn fsync_count(&self) -> u64 {
        self.shared.counters.syncs.load(Ordering::Relaxed)
    }

    /// What this writer (and its clones) did so far.
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            syncs: c.syncs.load(Ordering::Relaxed),
            files_written: c.files_written.load(Ordering::Relaxed),
            files_linked: c.files_linked.load(Ordering::Relaxed),
            files_read: c.files_read.load(Ordering::Relaxed),
        }
    }

    /// Publishes `payload` atomically, or does nothing when it is already published.
    pub fn write(&self, payload: &Payload) -> Result<WriteOutcome, WriterError> {
        self.write_inner(payload, &WriteOptions::default(), |_| Ok(()))
    }

    /// Publishes `payload` with the options (status manifest, forced republish).
    pub fn write_with(
        &self,
        payload: &Payload,
        options: &WriteOptions<'_>,
    ) -> Result<WriteOutcome, WriterError> {
        self.write_inner(payload, options, |_| Ok(()))
    }

    /// Like [`write`](Self::write), calling `prepare` on the new timestamped directory
    /// after the files are written and before the swap (upstream's `setPerms` hook). An
    /// error from it abandons the write; the previous set stays published.
    pub fn write_with_hook(
        &self,
        payload: &Payload,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<WriteOutcome, WriterError> {
        self.write_inner(payload, &WriteOptions::default(), prepare)
    }

    fn stage(&self, stage: Stage<'_>) {
        if let Some(hook) = &self.stage {
            hook(stage);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.target_dir.join(rel)
    }

    /// The target's descriptor: opened (and created) once, reopened only if the
    /// directory it names was removed.
    fn root(&self, state: &mut State) -> Result<OwnedFd, WriterError> {
        if let Some(fd) = &state.root {
            match rustix::fs::fstat(fd) {
                Ok(st) if st.st_nlink > 0 => {
                    return fd.try_clone().map_err(|e| {
                        WriterError::io("open output directory", &self.target_dir, e)
                    });
                }
                _ => {
                    state.root = None;
                    state.published = None;
                    state.key = None;
                }
            }
        }
        let fd = fsops::open_root(&self.target_dir)
            .map_err(|e| WriterError::io("open output directory", &self.target_dir, e))?;
        let out = fd
            .try_clone()
            .map_err(|e| WriterError::io("open output directory", &self.target_dir, e))?;
        state.root = Some(fd);
        Ok(out)
    }

    fn write_inner(
        &self,
        payload: &Payload,
        options: &WriteOptions<'_>,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<WriteOutcome, WriterError> {
        // (1) Validate everything before the disk is touched.
        let clean = validate_payload(payload)?;
        check_writable(&clean)?;
        let macs: BTreeMap<&str, [u8; 32]> = clean
            .iter()
            .map(|(p, f)| (p.as_str(), self.shared.memo_key.mac(f.data.expose())))
            .collect();

        let mut state = self.lock();
        let root = self.root(&mut state)?;
        let root = root.as_fd();
        let durable = self.is_durable(root);
        self.clear_stale_tmp(root)?;

        // (2) What is published now. A timestamped directory swapped for a symlink does
        // not open (O_NOFOLLOW): it counts as missing, and a new set is published.
        let old = self.read_data_link(root)?;
        let old_dir = old.as_deref().and_then(|name| match fsops::open_dir_at(root, name) {
            Ok(fd) => Some(fd),
            Err(e) => {
                if errno_of(&e) != Some(Errno::NOENT) {
                    warn!(path = %self.path(name).display(), error = %e, "the published generation is not a directory of this writer; publishing a new one");
                }
                None
            }
        });
        let top: BTreeSet<&str> = clean.keys().map(|p| first_component(p)).collect();
        let links_needed = self.check_visible_names(root, &top)?;

        // (3) What the new set no longer has, and which files are the same as published.
        let old_entries = match &old_dir {
            Some(fd) => walk(fd.as_fd()).map_err(|e| {
                WriterError::io(
                    "read data directory",
                    self.path(old.as_deref().unwrap_or_default()),
                    e,
                )
            })?,
            None => BTreeMap::new(),
        };
        let to_remove = paths_to_remove(&clean, &old_entries);
        let memo = state
            .published
            .as_ref()
            .filter(|p| Some(p.data_dir.as_str()) == old.as_deref());
        let same = match &old_dir {
            Some(fd) => self.unchanged_files(fd.as_fd(), &clean, &macs, &old_entries, memo),
            None => BTreeSet::new(),
        };
        let status_ok = match (&old_dir, options.status.is_some()) {
            (Some(fd), true) => fsops::lstat_at(fd.as_fd(), STATUS_FILE_NAME)
                .ok()
                .flatten()
                .is_some_and(|st| Fingerprint::of(&st).is_file()),
            _ => true,
        };
        self.stage(Stage::Inspected);

        // (4) Whether anything changed: bytes, modes, owner, removals, the manifest.
        let changed = old_dir.is_none()
            || options.republish
            || !to_remove.is_empty()
            || same.len() != clean.len()
            || !status_ok;
        if !changed {
            // Recreate links lost to a crash after an earlier swap (kubernetes#121472).
            let repaired = self.link_visible(root, &links_needed)?;
            if options.status.is_some() {
                self.ensure_status_link(root)?;
            }
            let removed = self.remove_stale_links(root, &top);
            let data_dir = old.clone().unwrap_or_default();
            self.collect_garbage(root, Some(&data_dir));
            if durable
                && (!repaired.is_empty() || removed > 0)
                && let Err(e) = self.fsync_fd(root)
            {
                warn!(error = %e, "cannot fsync the output directory after repairing links");
            }
            if let Some(fd) = &old_dir {
                // What the compare needed goes before the new record is built: this is the
                // moment of the cycle's peak memory (issue 10 item 6).
                drop((same, to_remove, old_entries));
                state.published = None;
                state.published = self.remember(fd.as_fd(), &data_dir, &clean, &macs);
            }
            debug!(dir = %self.target_dir.display(), files = clean.len(), repaired_links = repaired.len(), "write not required");
            return Ok(WriteOutcome::Unchanged);
        }

        // (5)-(8) A new timestamped directory, filled, checked, then `..data_tmp`.
        let mut generation = self.create_data_dir(root)?;
        let new_name = generation.name.clone();
        let new_path = self.path(&new_name);
        let staged = self
            .fill_data_dir(
                &mut generation,
                &clean,
                old_dir.as_ref(),
                &old_entries,
                &same,
            )
            .and_then(|()| match options.status {
                Some(render) => self.write_status_file(&mut generation, &|w| render(&new_name, w)),
                None => Ok(()),
            })
            .and_then(|()| {
                prepare(&new_path).map_err(|source| WriterError::Hook {
                    path: new_path.clone(),
                    source,
                })
            })
            .and_then(|()| self.verify(root, &generation))
            .and_then(|()| if durable { self.sync_fs(root) } else { Ok(()) })
            .and_then(|()| {
                if options.status.is_some() {
                    self.ensure_status_link(root)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| {
                self.stage(Stage::BeforeSwap {
                    data_dir: &new_name,
                });
                rustix::fs::symlinkat(new_name.as_str(), root, NEW_DATA_DIR_NAME).map_err(|e| {
                    WriterError::io("create link", self.path(NEW_DATA_DIR_NAME), e.into())
                })
            });
        if let Err(e) = staged {
            self.discard(root, &new_name);
            return Err(e);
        }

        // (9) The publish point.
        if let Err(e) = rustix::fs::renameat(root, NEW_DATA_DIR_NAME, root, DATA_DIR_NAME) {
            let _ = rustix::fs::unlinkat(root, NEW_DATA_DIR_NAME, AtFlags::empty());
            self.discard(root, &new_name);
            return Err(WriterError::io("swap", self.path(DATA_DIR_NAME), e.into()));
        }

        // (10) Visible links for new top-level names; roll back if that fails, so an
        // error keeps meaning "the previous set is what readers see".
        if let Err(e) = self.link_visible(root, &links_needed) {
            self.roll_back(root, old.as_deref(), &new_name, &links_needed);
            state.published = None;
            return Err(e);
        }
        // (11)-(12) Links of names that are gone, the old directory and any orphans.
        let removed_links = self.remove_stale_links(root, &top);
        // The set is published; a failed fsync here must not report it as not published.
        if durable && let Err(e) = self.fsync_fd(root) {
            warn!(error = %e, "cannot fsync the output directory after the swap");
        }
        self.stage(Stage::BeforeCollect);
        self.collect_garbage(root, Some(&new_name));
        // Fingerprints last: unlinking the old generation moved the ctime of linked files.
        // The old record, the compare's maps and the generation's inode list go first: at
        // thousands of files each is most of a megabyte, and this is the moment of the
        // cycle's peak memory (issue 10 item 6).
        let (linked, removed_paths) = (gen_linked(&same, &clean), to_remove.len());
        drop((same, to_remove, old_entries));
        let Building {
            fd: gen_fd,
            dirs,
            made,
            ..
        } = generation;
        drop((dirs, made));
        state.published = None;
        state.published = self.remember(gen_fd.as_fd(), &new_name, &clean, &macs);
        info!(
            dir = %self.target_dir.display(),
            data_dir = %new_name,
            files = clean.len(),
            linked,
            removed_paths,
            removed_links,
            fsync = durable,
            "published a new set"
        );
        Ok(WriteOutcome::Published { data_dir: new_name })
    }

    /// The key of the manifest's digests, `..hmac.key`: loaded (once per process) or made.
    ///
    /// `strictest_mode` is the strictest file mode of the set (the AND of all modes); the
    /// key gets its read/write bits plus owner-read (so the agent can read it back), and
    /// an existing key is tightened, never loosened, to match. A key that is not a regular
    /// file of exactly [`KEY_LEN`] bytes owned by the expected user (the configured owner,
    /// else this process) was not made by the agent: it is replaced (a planted key would
    /// let its author test guesses against the digests), and digests change once.
    pub fn digest_key(&self, strictest_mode: u32) -> Result<DigestKey, WriterError> {
        let want = (strictest_mode & 0o666) | 0o400;
        let mut state = self.lock();
        let root = self.root(&mut state)?;
        let root = root.as_fd();
        if let Some((key, mode)) = &state.key
            && mode & !want == 0
        {
            return Ok(key.clone());
        }
        let key = self.load_or_make_key(root, want)?;
        state.key = Some((key.clone(), want));
        Ok(key)
    }

    fn load_or_make_key(&self, root: BorrowedFd<'_>, want: u32) -> Result<DigestKey, WriterError> {
        let path = self.path(KEY_FILE_NAME);
        let expected_uid = self
            .owner
            .and_then(|o| o.uid)
            .unwrap_or_else(|| rustix::process::geteuid().as_raw());
        for _ in 0..3 {
            match fsops::lstat_at(root, KEY_FILE_NAME)
                .map_err(|e| WriterError::io("inspect", &path, e))?
            {
                None => match self.make_key(root, want, false)? {
                    Some(key) => return Ok(key),
                    // Another writer made one meanwhile: read that.
                    None => continue,
                },
                Some(st) if Fingerprint::of(&st).is_dir() => {
                    return Err(WriterError::Reserved {
                        dir: self.target_dir.clone(),
                        name: KEY_FILE_NAME.to_owned(),
                    });
                }
                Some(_) => {}
            }
            match self.read_key(root, expected_uid) {
                Ok((key, file, mode)) => {
                    if mode & !want != 0 {
                        // Stricter than before: tighten, on the descriptor.
                        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & want))
                            .map_err(|e| WriterError::io("set mode of", &path, e.into()))?;
                    }
                    return Ok(key);
                }
                Err(why) => {
                    warn!(path = %path.display(), problem = why, "the digest key was not made by this agent; replacing it (digests in ..status.json change once)");
                    if let Some(key) = self.make_key(root, want, true)? {
                        return Ok(key);
                    }
                }
            }
        }
        Err(WriterError::io(
            "create digest key",
            path,
            io::Error::other("the key keeps changing under the agent"),
        ))
    }

    /// Reads the key if it is one the agent made; else says why not.
    fn read_key(
        &self,
        root: BorrowedFd<'_>,
        expected_uid: u32,
    ) -> Result<(DigestKey, File, u32), &'static str> {
        let (mut file, st) =
            fsops::open_regular(root, KEY_FILE_NAME).map_err(|_| "not a regular file")?;
        let fp = Fingerprint::of(&st);
        if fp.size != KEY_LEN as i64 {
            return Err("wrong size");
        }
        if fp.uid != expected_uid {
            return Err("wrong owner");
        }
        let mut bytes = [0u8; KEY_LEN];
        file.read_exact(&mut bytes).map_err(|_| "unreadable")?;
        Ok((DigestKey::from_bytes(bytes), file, fp.perm()))
    }

    /// Makes a key under a temporary name and puts it in place: `linkat` (fails if a key
    /// appeared meanwhile: `Ok(None)`) or, replacing a foreign one, `renameat`.
    fn make_key(
        &self,
        root: BorrowedFd<'_>,
        mode: u32,
        replace: bool,
    ) -> Result<Option<DigestKey>, WriterError> {
        let key = DigestKey::random();
        let tmp = format!("{KEY_TMP_PREFIX}{}", rand::random::<u32>());
        let tmp_path = self.path(&tmp);
        let io_err = |e| WriterError::io("create digest key", &tmp_path, e);
        let file = fsops::write_new(root, &tmp, key.bytes()).map_err(io_err)?;
        let done = self
            .chown(&file)
            .and_then(|()| {
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(io::Error::from)
            })
            .and_then(|()| {
                if self.is_durable(root) {
                    self.fsync_file(&file)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = done {
            let _ = rustix::fs::unlinkat(root, tmp.as_str(), AtFlags::empty());
            return Err(io_err(e));
        }
        let placed = if replace {
            rustix::fs::renameat(root, tmp.as_str(), root, KEY_FILE_NAME)
        } else {
            let r = rustix::fs::linkat(root, tmp.as_str(), root, KEY_FILE_NAME, AtFlags::empty());
            let _ = rustix::fs::unlinkat(root, tmp.as_str(), AtFlags::empty());
            r
        };
        match placed {
            Ok(()) => {
                debug!(path = %self.path(KEY_FILE_NAME).display(), mode = format!("{mode:o}"), "digest key created");
                Ok(Some(key))
            }
            Err(Errno::EXIST) => Ok(None),
            Err(e) => {
                let _ = rustix::fs::unlinkat(root, tmp.as_str(), AtFlags::empty());
                Err(WriterError::io(
                    "create digest key",
                    self.path(KEY_FILE_NAME),
                    e.into(),
                ))
            }
        }
    }

    fn is_durable(&self, root: BorrowedFd<'_>) -> bool {
        match self.durability {
            Durability::Always => true,
            Durability::Never => false,
            Durability::Auto => match rustix::fs::fstatfs(root) {
                #[allow(clippy::unnecessary_cast)] // f_type's width differs per architecture
                Ok(st) => st.f_type as i64 != TMPFS_MAGIC,
                Err(e) => {
                    debug!(dir = %self.target_dir.display(), error = %e, "statfs failed; syncing to be safe");
                    true
                }
            },
        }
    }

    /// Removes a `..data_tmp` (and `..link_tmp`) left behind by a crash mid-swap;
    /// upstream fails every later write on it.
    fn clear_stale_tmp(&self, root: BorrowedFd<'_>) -> Result<(), WriterError> {
        for name in [NEW_DATA_DIR_NAME, LINK_TMP_NAME] {
            let p = self.path(name);
            match fsops::lstat_at(root, name) {
                Ok(Some(_)) => {
                    warn!(path = %p.display(), "removing a leftover of an interrupted write");
                    fsops::remove_tree_at(root, name)
                        .map_err(|e| WriterError::io("remove leftover", &p, e))?;
                }
                Ok(None) => {}
                Err(e) => return Err(WriterError::io("inspect", &p, e)),
            }
        }
        Ok(())
    }

    /// The timestamped directory `..data` points at, or `None` before the first write.
    /// A link to anything but a `..` sibling is not ours to compare with or delete.
    fn read_data_link(&self, root: BorrowedFd<'_>) -> Result<Option<String>, WriterError> {
        let p = self.path(DATA_DIR_NAME);
        match fsops::read_link_at(root, DATA_DIR_NAME) {
            Ok(Some(target)) => {
                if is_data_dir_name(&target) {
                    Ok(Some(target))
                } else {
                    warn!(path = %p.display(), "..data points outside this layout; replacing it");
                    Ok(None)
                }
            }
            Ok(None) => Ok(None),
            Err(e) if errno_of(&e) == Some(Errno::INVAL) => Err(WriterError::NotALayout {
                dir: self.target_dir.clone(),
            }),
            Err(e) => Err(WriterError::io("read link", p, e)),
        }
    }

    /// Top-level names whose visible link is missing or wrong; refuses names taken by
    /// anything that is not a symlink (upstream silently leaves a stale file there).
    pub(crate) fn check_visible_names(
        &self,
        root: BorrowedFd<'_>,
        top: &BTreeSet<&str>,
    ) -> Result<Vec<String>, WriterError> {
        let mut needed = Vec::new();
        for name in top {
            let p = self.path(name);
            match fsops::lstat_at(root, name).map_err(|e| WriterError::io("inspect", &p, e))? {
                Some(st) if fsops::kind(&st) == FileType::Symlink => {
                    let target = fsops::read_link_at(root, name)
                        .map_err(|e| WriterError::io("read link", &p, e))?;
                    if target.as_deref() != Some(visible_target(name).as_str()) {
                        needed.push((*name).to_owned());
                    }
                }
                Some(_) => {
                    return Err(WriterError::Conflict {
                        dir: self.target_dir.clone(),
                        name: (*name).to_owned(),
                    });
                }
                None => needed.push((*name).to_owned()),
            }
        }
        Ok(needed)
    }

    /// Payload paths whose published file has the same bytes, mode and owner. A file this
    /// writer published and whose stat is unchanged is trusted without reading it; any
    /// other is read back (an unreadable one is republished rather than trusted).
    fn unchanged_files<'c>(
        &self,
        old_dir: BorrowedFd<'_>,
        clean: &'c BTreeMap<String, &FileProjection>,
        macs: &BTreeMap<&str, [u8; 32]>,
        old: &BTreeMap<String, OldEntry>,
        memo: Option<&Published>,
    ) -> BTreeSet<&'c str> {
        let mut parents: BTreeMap<&str, Option<OwnedFd>> = BTreeMap::new();
        let mut same = BTreeSet::new();
        for (path, file) in clean {
            let Some(e) = old.get(path) else { continue };
            if !e.is_file() || e.fp.perm() != file.mode || e.fp.size != file.data.len() as i64 {
                continue;
            }
            if let Some(owner) = self.owner
                && (owner.uid.is_some_and(|u| u != e.fp.uid)
                    || owner.gid.is_some_and(|g| g != e.fp.gid))
            {
                continue;
            }
            let remembered = memo.and_then(|m| m.file(path)).is_some_and(|p| {
                p.trusted && p.fp == e.fp && Some(&p.mac) == macs.get(path.as_str())
            });
            if remembered {
                same.insert(path.as_str());
                continue;
            }
            let (parent, name) = split_parent(path);
            let fd = parents
                .entry(parent)
                .or_insert_with(|| fsops::open_dir_beneath(old_dir, parent).ok());
            let Some(fd) = fd else { continue };
            self.shared
                .counters
                .files_read
                .fetch_add(1, Ordering::Relaxed);
            if fsops::same_contents(fd.as_fd(), name, file.data.expose()) {
                same.insert(path.as_str());
            }
        }
        same
    }

    /// Fingerprints of the generation `dir` as it is now, for the next write.
    fn remember(
        &self,
        dir: BorrowedFd<'_>,
        data_dir: &str,
        clean: &BTreeMap<String, &FileProjection>,
        macs: &BTreeMap<&str, [u8; 32]>,
    ) -> Option<Published> {
        // Taken before the stats: a change after this instant has a later ctime.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let racy_after = now.saturating_sub(self.racy_window);
        let mut parents: BTreeMap<&str, Option<OwnedFd>> = BTreeMap::new();
        // `clean` iterates in path order: `files` comes out sorted.
        let mut files = Vec::with_capacity(clean.len());
        for path in clean.keys() {
            let (parent, name) = split_parent(path);
            let fd = parents
                .entry(parent)
                .or_insert_with(|| fsops::open_dir_beneath(dir, parent).ok());
            let st = fsops::lstat_at(fd.as_ref()?.as_fd(), name).ok()??;
            let fp = Fingerprint::of(&st);
            let ctime = u64::try_from(fp.ctime.0)
                .ok()
                .map(|s| std::time::Duration::new(s, u32::try_from(fp.ctime.1).unwrap_or(0)));
            files.push((
                path.clone(),
                PublishedFile {
                    mac: *macs.get(path.as_str())?,
                    fp,
                    trusted: self.racy_window.is_zero() || ctime.is_some_and(|c| c < racy_after),
                },
            ));
        }
        Some(Published {
            data_dir: data_dir.to_owned(),
            files,
        })
    }

    /// `..YYYY_MM_DD_HH_MM_SS.<random>` with mode 0755 (as Go's `os.MkdirTemp`).
    fn create_data_dir(&self, root: BorrowedFd<'_>) -> Result<Building, WriterError> {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]_[month]_[day]_[hour]_[minute]_[second]"
            ))
            .unwrap_or_else(|_| "0000_00_00_00_00_00".to_owned());
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for _ in 0..10_000 {
            let name = format!("..{stamp}.{}", rand::random::<u32>());
            match fsops::mkdir_open(root, &name, DIR_MODE) {
                Ok(fd) => {
                    self.stage(Stage::DataDirCreated { data_dir: &name });
                    return Ok(Building {
                        name,
                        fd,
                        dirs: BTreeMap::new(),
                        made: BTreeMap::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => {
                    // Made but not opened (swapped already): remove the entry, not a target.
                    let _ = fsops::remove_tree_at(root, &name);
                    return Err(WriterError::io(
                        "create data directory",
                        self.path(&name),
                        e,
                    ));
                }
            }
        }
        Err(WriterError::io(
            "create data directory in",
            &self.target_dir,
            last,
        ))
    }

    /// Writes every file with its exact mode (and owner) into the new generation, or
    /// hard-links it from the old one when its bytes, mode and owner are unchanged.
    fn fill_data_dir(
        &self,
        generation: &mut Building,
        clean: &BTreeMap<String, &FileProjection>,
        old_dir: Option<&OwnedFd>,
        old: &BTreeMap<String, OldEntry>,
        same: &BTreeSet<&str>,
    ) -> Result<(), WriterError> {
        let gen_path = self.path(&generation.name);
        let mut old_parents: BTreeMap<String, Option<OwnedFd>> = BTreeMap::new();
        for (rel, file) in clean {
            for dir in paths::ancestors(rel) {
                if generation.dirs.contains_key(dir) {
                    continue;
                }
                let (parent, name) = split_parent(dir);
                let fd = fsops::mkdir_open(generation.dir(parent), name, DIR_MODE)
                    .map_err(|e| WriterError::io("create directory", gen_path.join(dir), e))?;
                let st = rustix::fs::fstat(&fd)
                    .map_err(|e| WriterError::io("inspect", gen_path.join(dir), e.into()))?;
                generation
                    .made
                    .insert(dir.to_owned(), Fingerprint::of(&st).ino);
                generation.dirs.insert(dir.to_owned(), fd);
                self.stage(Stage::DirCreated {
                    data_dir: &generation.name,
                    path: dir,
                });
            }
            let (parent, name) = split_parent(rel);
            let linked = match (old_dir, old.get(rel.as_str())) {
                (Some(old_dir), Some(entry)) if same.contains(rel.as_str()) => {
                    let old_parent = old_parents
                        .entry(parent.to_owned())
                        .or_insert_with(|| fsops::open_dir_beneath(old_dir.as_fd(), parent).ok());
                    old_parent.as_ref().and_then(|op| {
                        self.link_file(op.as_fd(), generation.dir(parent), name, entry)
                    })
                }
                _ => None,
            };
            let ino = match linked {
                Some(ino) => {
                    self.shared
                        .counters
                        .files_linked
                        .fetch_add(1, Ordering::Relaxed);
                    ino
                }
                None => {
                    let ino = self
                        .write_file(generation.dir(parent), name, file)
                        .map_err(|e| WriterError::io("write", gen_path.join(rel), e))?;
                    self.shared
                        .counters
                        .files_written
                        .fetch_add(1, Ordering::Relaxed);
                    ino
                }
            };
            generation.made.insert(rel.clone(), ino);
            self.stage(Stage::FileWritten {
                data_dir: &generation.name,
                path: rel,
            });
        }
        Ok(())
    }

    /// Hard-links `name` from the old generation's directory into the new one, if it is
    /// still the file that was compared; returns its inode. `None`: write it instead.
    fn link_file(
        &self,
        old_parent: BorrowedFd<'_>,
        new_parent: BorrowedFd<'_>,
        name: &str,
        entry: &OldEntry,
    ) -> Option<u64> {
        rustix::fs::linkat(old_parent, name, new_parent, name, AtFlags::empty()).ok()?;
        let st = fsops::lstat_at(new_parent, name).ok().flatten();
        match st.map(|s| Fingerprint::of(&s)) {
            Some(fp) if fp.is_file() && fp.ino == entry.fp.ino && fp.dev == entry.fp.dev => {
                Some(fp.ino)
            }
            _ => {
                // Swapped between the compare and the link: write the file instead.
                let _ = rustix::fs::unlinkat(new_parent, name, AtFlags::empty());
                None
            }
        }
    }

    /// A new file `name` in `dir` with `file`'s bytes, owner and exact mode; its inode.
    fn write_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        file: &FileProjection,
    ) -> io::Result<u64> {
        let f = fsops::write_new(dir, name, file.data.expose())?;
        // chown before chmod: chown clears set-id bits.
        self.chown(&f)?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(file.mode))?;
        Ok(Fingerprint::of(&rustix::fs::fstat(&f)?).ino)
    }

    /// `..status.json` inside the new generation (mode 0644, the configured owner).
    fn write_status_file(
        &self,
        generation: &mut Building,
        render: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), WriterError> {
        let p = self.path(&generation.name).join(STATUS_FILE_NAME);
        let mut bytes = 0u64;
        let ino = fsops::create_file(generation.fd.as_fd(), STATUS_FILE_NAME)
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(CountingWriter {
                    inner: f,
                    count: &mut bytes,
                });
                render(&mut w)?;
                let f = w.into_inner().map_err(|e| e.into_error())?.inner;
                Ok(f)
            })
            .and_then(|f| {
                self.chown(&f)?;
                rustix::fs::fchmod(&f, Mode::from_raw_mode(STATUS_MODE))?;
                Ok(Fingerprint::of(&rustix::fs::fstat(&f)?).ino)
            })
            .map_err(|e| WriterError::io("write status file", &p, e))?;
        generation.made.insert(STATUS_FILE_NAME.to_owned(), ino);
        debug!(path = %p.display(), bytes, "status written");
        Ok(())
    }

    /// Checks that every entry of the new generation, and the generation itself, is still
    /// the inode this writer made: what `..data` is about to point at is what was written.
    fn verify(&self, root: BorrowedFd<'_>, generation: &Building) -> Result<(), WriterError> {
        let tampered = |rel: &str| WriterError::Tampered {
            path: if rel.is_empty() {
                self.path(&generation.name)
            } else {
                self.path(&generation.name).join(rel)
            },
        };
        let gen_ino = rustix::fs::fstat(&generation.fd)
            .map(|st| Fingerprint::of(&st).ino)
            .map_err(|e| WriterError::io("inspect", self.path(&generation.name), e.into()))?;
        match fsops::lstat_at(root, &generation.name) {
            Ok(Some(st))
                if Fingerprint::of(&st).ino == gen_ino && Fingerprint::of(&st).is_dir() => {}
            _ => return Err(tampered("")),
        }
        for (rel, ino) in &generation.made {
            let (parent, name) = split_parent(rel);
            match fsops::lstat_at(generation.dir(parent), name) {
                Ok(Some(st)) if Fingerprint::of(&st).ino == *ino => {}
                _ => return Err(tampered(rel)),
            }
        }
        Ok(())
    }

    /// `<target>/..status.json -> ..data/..status.json`, made once. A regular file there
    /// (an older agent's manifest) or a symlink elsewhere is replaced; a directory is not
    /// ours to remove.
    fn ensure_status_link(&self, root: BorrowedFd<'_>) -> Result<(), WriterError> {
        let p = self.path(STATUS_FILE_NAME);
        let target = visible_target(STATUS_FILE_NAME);
        match fsops::lstat_at(root, STATUS_FILE_NAME)
            .map_err(|e| WriterError::io("inspect", &p, e))?
        {
            Some(st) if fsops::kind(&st) == FileType::Symlink => {
                let current = fsops::read_link_at(root, STATUS_FILE_NAME)
                    .map_err(|e| WriterError::io("read link", &p, e))?;
                if current.as_deref() == Some(target.as_str()) {
                    return Ok(());
                }
            }
            Some(st) if fsops::kind(&st) == FileType::Directory => {
                return Err(WriterError::Reserved {
                    dir: self.target_dir.clone(),
                    name: STATUS_FILE_NAME.to_owned(),
                });
            }
            _ => {}
        }
        fsops::replace_symlink(root, &target, LINK_TMP_NAME, STATUS_FILE_NAME)
            .map_err(|e| WriterError::io("create link", &p, e))
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
        self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        f.sync_all()
    }

    fn fsync_fd(&self, fd: BorrowedFd<'_>) -> Result<(), WriterError> {
        self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        rustix::fs::fsync(fd).map_err(|e| WriterError::io("fsync", &self.target_dir, e.into()))
    }

    /// One pass that makes every file and directory written so far durable (instead of
    /// one fsync per file, which costs a journal commit each on ext4).
    fn sync_fs(&self, root: BorrowedFd<'_>) -> Result<(), WriterError> {
        self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        rustix::fs::syncfs(root).map_err(|e| WriterError::io("syncfs", &self.target_dir, e.into()))
    }

    /// Creates (or corrects) `name -> ..data/name`, each with one rename so that a
    /// reader never sees the name missing. Returns the names linked.
    pub(crate) fn link_visible(
        &self,
        root: BorrowedFd<'_>,
        names: &[String],
    ) -> Result<Vec<String>, WriterError> {
        for name in names {
            fsops::replace_symlink(root, &visible_target(name), LINK_TMP_NAME, name)
                .map_err(|e| WriterError::io("create link", self.path(name), e))?;
        }
        Ok(names.to_vec())
    }

    /// Removes visible links made by this writer whose name is no longer in the payload.
    /// Failures are logged: the set is already published and the next write retries.
    fn remove_stale_links(&self, root: BorrowedFd<'_>, top: &BTreeSet<&str>) -> usize {
        let entries = match fsops::list(root) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(dir = %self.target_dir.display(), error = %e, "cannot list the output directory to remove stale links");
                return 0;
            }
        };
        let mut removed = 0;
        for (name, _) in entries {
            if name.starts_with("..") || top.contains(name.as_str()) {
                continue;
            }
            let ours = fsops::read_link_at(root, &name)
                .is_ok_and(|t| t.as_deref() == Some(visible_target(&name).as_str()));
            if !ours {
                continue;
            }
            match rustix::fs::unlinkat(root, name.as_str(), AtFlags::empty()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    warn!(path = %self.path(&name).display(), error = %e, "cannot remove a stale link")
                }
            }
        }
        removed
    }

    /// Deletes every timestamped directory except `keep` (the previous generation and
    /// orphans of interrupted writes) and leftover temporaries, by descriptor: a symlink
    /// named like a generation is unlinked, never followed. Logged, not fatal.
    fn collect_garbage(&self, root: BorrowedFd<'_>, keep: Option<&str>) {
        let Ok(entries) = fsops::list(root) else {
            return;
        };
        for (name, _) in entries {
            if Some(name.as_str()) == keep {
                continue;
            }
            let temporary = name.starts_with(STATUS_TMP_PREFIX) || name.starts_with(KEY_TMP_PREFIX);
            if !is_data_dir_name(&name) && !temporary {
                continue;
            }
            let r = if temporary {
                // A temporary is a file; a directory of that name is not ours to empty.
                match fsops::lstat_at(root, &name) {
                    Ok(Some(st)) if fsops::kind(&st) != FileType::Directory => {
                        rustix::fs::unlinkat(root, name.as_str(), AtFlags::empty())
                            .map_err(io::Error::from)
                    }
                    _ => continue,
                }
            } else {
                fsops::remove_tree_at(root, &name)
            };
            let p = self.path(&name);
            match r {
                Ok(()) => debug!(path = %p.display(), "removed an old generation"),
                Err(e) => warn!(path = %p.display(), error = %e, "cannot remove an old generation"),
            }
        }
    }

    /// Removes a timestamped directory that never got published.
    fn discard(&self, root: BorrowedFd<'_>, name: &str) {
        if let Err(e) = fsops::remove_tree_at(root, name) {
            warn!(path = %self.path(name).display(), error = %e, "cannot remove an abandoned data directory");
        }
    }

    /// Points `..data` back at `old` after a failure that followed the swap.
    fn roll_back(
        &self,
        root: BorrowedFd<'_>,
        old: Option<&str>,
        new_name: &str,
        linked: &[String],
    ) {
        let result = match old {
            Some(old) => rustix::fs::symlinkat(old, root, NEW_DATA_DIR_NAME)
                .and_then(|()| rustix::fs::renameat(root, NEW_DATA_DIR_NAME, root, DATA_DIR_NAME)),
            None => rustix::fs::unlinkat(root, DATA_DIR_NAME, AtFlags::empty()),
        };
        if let Err(e) = result {
            warn!(dir = %self.target_dir.display(), error = %e, "cannot roll ..data back after a failed write");
            return;
        }
        let old_entries = old
            .and_then(|o| fsops::open_dir_at(root, o).ok())
            .and_then(|fd| walk(fd.as_fd()).ok())
            .unwrap_or_default();
        for name in linked {
            if !old_entries.contains_key(name) {
                let _ = rustix::fs::unlinkat(root, name.as_str(), AtFlags::empty());
            }
        }
        self.discard(root, new_name);
    }
}

/// How many of the new set's files could be linked (for the log line).
fn gen_linked(same: &BTreeSet<&str>, clean: &BTreeMap<String, &FileProjection>) -> usize {
    same.iter().filter(|p| clean.contains_key(**p)).count()
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

/// Every path below the generation `dir` (relative, `/`-separated), files and directories
/// both, by descriptor: a symlink is an entry, never followed. Top-level `..` names (the
/// manifest) are the writer's, not payload.
pub(crate) fn walk(dir: BorrowedFd<'_>) -> io::Result<BTreeMap<String, OldEntry>> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(Option<OwnedFd>, String)> = vec![(None, String::new())];
    while let Some((fd, rel)) = stack.pop() {
        let here = fd.as_ref().map_or(dir, |f| f.as_fd());
        for (name, _) in fsops::list(here)? {
            if rel.is_empty() && name.starts_with("..") {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Some(st) = fsops::lstat_at(here, &name)? else {
                continue;
            };
            let fp = Fingerprint::of(&st);
            if fp.is_dir()
                && let Ok(child) = fsops::open_dir_at(here, &name)
            {
                stack.push((Some(child), child_rel.clone()));
            }
            out.insert(child_rel, OldEntry { fp });
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

/// A writer that counts the bytes it passes on (for the status file's log line).
struct CountingWriter<'a, W> {
    inner: W,
    count: &'a mut u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
