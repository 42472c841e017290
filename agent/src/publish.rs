//! The publisher: the one owner of an output directory's [`AtomicWriter`], shared by every
//! sync cycle of the process (the `--once` run, the sidecar's cycles, and the cycles built
//! for reloaded configurations), so the writer's lock, its record of what is published and
//! the volume's digest key are one per directory.
//!
//! A publish turns a cycle's converted files into one payload plus the status manifest
//! (`..status.json`) that describes it: keyed digests (HMAC-SHA256 under the volume's key,
//! never a plain hash of a secret; docs/threat-model.md rule 8), written inside the new
//! generation before the swap, so the manifest is atomic with the set. The manifest
//! describes the published set only: an unchanged or failed cycle does not rewrite it
//! (runtime fields such as the next refresh and the last error are served at `/status`).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::report::{AbsentObject, ObjectStatus};
use crate::telemetry::status::StatusDoc;
use crate::writer::{
    AtomicWriter, FileProjection, Payload, WriteOptions, WriteOutcome, WriterError,
};

/// Mode of the digest key when the set is empty.
const EMPTY_SET_KEY_MODE: u32 = 0o600;

/// One converted file with what the manifest says about it (its digest is filled in by
/// [`Publisher::publish`]).
#[derive(Debug)]
pub struct Prepared {
    /// Path relative to the output directory.
    pub path: String,
    /// Contents and mode.
    pub file: FileProjection,
    /// Manifest entry.
    pub status: ObjectStatus,
}

/// What the manifest of the published set says, minus fetch times, as a SHA-256 over
/// its fields: when this changes while the bytes do not (a new version with the same
/// value), the set is republished so the manifest stays true. A hash, not a copy of every
/// id, version, path and digest, because at thousands of objects the copies were a large
/// share of the agent's memory.
type Described = [u8; 32];

fn describe(vault: &str, absent: &[AbsentObject], objects: &[ObjectStatus]) -> Described {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    // Length-prefixed fields, so no two different manifests hash the same input.
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(vault.as_bytes());
    field(&(absent.len() as u64).to_le_bytes());
    for a in absent {
        field(a.id.as_bytes());
    }
    for o in objects {
        field(o.id.as_bytes());
        field(o.version.as_bytes());
        field(o.path.as_bytes());
        field(o.digest.as_bytes());
        match o.not_after {
            Some(t) => field(&t.to_le_bytes()),
            None => field(b""),
        }
    }
    h.finalize().into()
}

#[derive(Debug)]
struct Inner {
    writer: AtomicWriter,
    /// What the manifest this process last published or confirmed describes.
    described: Mutex<Option<Described>>,
}

/// Owns the writer of one output directory; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    /// A publisher for `writer`'s directory.
    pub fn new(writer: AtomicWriter) -> Self {
        Self {
            inner: Arc::new(Inner {
                writer,
                described: Mutex::new(None),
            }),
        }
    }

    /// A publisher writing into `dir` with default durability and owner.
    pub fn for_dir(dir: impl Into<std::path::PathBuf>) -> Self {
        Self::new(AtomicWriter::new(dir))
    }

    /// The writer.
    pub fn writer(&self) -> &AtomicWriter {
        &self.inner.writer
    }

    /// Whether `self` and `other` are the same publisher (one writer for both).
    pub fn same_as(&self, other: &Publisher) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Publishes `items` with their manifest, or nothing when it is all published
    /// already. Blocking (file I/O): call from a blocking thread. Returns the outcome and
    /// the manifest entries with their keyed digests.
    pub fn publish(
        &self,
        vault: &str,
        items: Vec<Prepared>,
    ) -> Result<(WriteOutcome, Vec<ObjectStatus>), WriterError> {
        self.publish_with_absent(vault, items, Vec::new())
    }

    /// Like [`publish`](Self::publish); the manifest also lists the optional objects that
    /// are `absent` from the vault.
    pub fn publish_with_absent(
        &self,
        vault: &str,
        items: Vec<Prepared>,
        absent: Vec<AbsentObject>,
    ) -> Result<(WriteOutcome, Vec<ObjectStatus>), WriterError> {
        let strictest = items
            .iter()
            .map(|i| i.file.mode)
            .reduce(|a, b| a & b)
            .unwrap_or(EMPTY_SET_KEY_MODE);
        let key = self.inner.writer.digest_key(strictest)?;
        let mut payload = Payload::new();
        let mut objects = Vec::with_capacity(items.len());
        for Prepared {
            path,
            file,
            mut status,
        } in items
        {
            status.digest = key.digest(file.data.expose());
            payload.insert(path, file);
            objects.push(status);
        }
        let described = describe(vault, &absent, &objects);
        let mut last = self
            .inner
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let republish = last.as_ref().is_some_and(|d| *d != described);
        let published_at = SystemTime::now();
        let render = |data_dir: &str, w: &mut dyn std::io::Write| {
            StatusDoc::write_set_json(w, vault, data_dir, published_at, &objects, &absent)
        };
        let outcome = self.inner.writer.write_with(
            &payload,
            &WriteOptions {
                status: Some(&render),
                republish,
            },
        )?;
        *last = Some(described);
        Ok((outcome, objects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;
    use crate::writer::Durability;

    fn item(version: &str, value: &str, mode: u32) -> Prepared {
        Prepared {
            path: "db-password".into(),
            file: FileProjection {
                data: SecretBytes::new(value.as_bytes()),
                mode,
            },
            status: ObjectStatus {
                id: "secret/db-password".into(),
                version: version.into(),
                path: "db-password".into(),
                digest: String::new(),
                fetched_at: 1,
                not_after: None,
                expires: None,
                validation: None,
            },
        }
    }

    fn manifest(dir: &std::path::Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("..status.json")).unwrap()).unwrap()
    }

    // reference: ISSUE9 item 8 (manifest atomic with the set, keyed digests)
    #[test]
    fn the_manifest_describes_the_set_with_keyed_digests() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(AtomicWriter::new(dir.path()).with_durability(Durability::Never));
        let (outcome, objects) = p
            .publish("demo", vec![item("v1", "hunter2", 0o600)])
            .unwrap();
        let WriteOutcome::Published { data_dir } = outcome else {
            panic!("not published")
        };
        let m = manifest(dir.path());
        assert_eq!(m["data_dir"], data_dir.as_str());
        assert_eq!(m["vault"], "demo");
        assert_eq!(m["objects"][0]["version"], "v1");
        let key = p.writer().digest_key(0o600).unwrap();
        assert_eq!(
            m["objects"][0]["hmac_sha256"],
            key.digest(b"hunter2").as_str()
        );
        assert_eq!(objects[0].digest, key.digest(b"hunter2"));
        let text = std::fs::read_to_string(dir.path().join("..status.json")).unwrap();
        assert!(!text.contains("hunter2"));
        use sha2::Digest as _;
        assert!(!text.contains(&hex::encode(sha2::Sha256::digest(b"hunter2"))));
    }

    #[test]
    fn a_new_version_with_the_same_bytes_republishes_only_the_manifest_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(AtomicWriter::new(dir.path()).with_durability(Durability::Never));
        p.publish("demo", vec![item("v1", "same", 0o644)]).unwrap();
        let before = std::fs::read(dir.path().join("..status.json")).unwrap();
        // Unchanged: nothing rewritten, the manifest included.
        let (outcome, _) = p.publish("demo", vec![item("v1", "same", 0o644)]).unwrap();
        assert_eq!(outcome, WriteOutcome::Unchanged);
        assert_eq!(
            std::fs::read(dir.path().join("..status.json")).unwrap(),
            before
        );
        // A new version with the same value: the manifest must not keep saying v1.
        let (outcome, _) = p.publish("demo", vec![item("v2", "same", 0o644)]).unwrap();
        assert!(matches!(outcome, WriteOutcome::Published { .. }));
        assert_eq!(manifest(dir.path())["objects"][0]["version"], "v2");
        let stats = p.writer().stats();
        assert_eq!(stats.files_written, 1, "{stats:?}");
        assert_eq!(stats.files_linked, 1, "{stats:?}");
    }
}
