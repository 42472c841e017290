//! The Kubernetes AtomicWriter, ported: publishes a whole [`Payload`] into the target
//! directory with one `..data` symlink swap, or changes nothing.
//!
//! (Placeholder API; the implementation lands with the writer work.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::secret::SecretBytes;

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

/// Errors while publishing. The previous set stays intact whenever one is returned.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Placeholder.
    #[error("{0}")]
    Io(String),
}

/// Writes payloads into one target directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
}

impl AtomicWriter {
    /// A writer for `target_dir` (created if missing).
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
        }
    }

    /// The target directory.
    pub fn target_dir(&self) -> &std::path::Path {
        &self.target_dir
    }

    /// Publishes `payload` atomically, or does nothing when it is already published.
    pub fn write(&self, _payload: &Payload) -> Result<WriteOutcome, WriterError> {
        Err(WriterError::Io("not implemented".into()))
    }

    /// Atomically replaces the hidden status file `<target>/..status.json`.
    pub fn write_status(&self, _json: &[u8]) -> Result<(), WriterError> {
        Err(WriterError::Io("not implemented".into()))
    }
}
