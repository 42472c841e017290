//! Concurrent readers never see a torn or mixed set.
//!
//! Reader threads follow the documented reader contract while the writer publishes
//! thousands of generations: resolve `..data` once (readlink), read every file through
//! that one resolution. Each generation writes its number into every file and changes
//! which files exist (top-level names and a nested directory come and go), so a mixed
//! set, a half-written generation or a missing file shows as a mismatch.
//!
//! The one thing a reader may see is its generation being retired: the writer deletes
//! the previous directory right after a swap, so a slow reader can find files gone. The
//! contract says to re-read `..data` then: if it moved on, read again; if it did not, a
//! file is genuinely missing, and this test fails.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use keyvault_agent::secret::SecretBytes;
use keyvault_agent::writer::{AtomicWriter, Durability, FileProjection, Payload, WriteOutcome};

/// Bounded by count, not time.
const SWAPS: u64 = 3000;
const READERS: usize = 3;

/// The files of generation `g`: always `gen`, `tls.crt`, `tls.key`; 2 to 6 top-level
/// `fN` files; `sub/xN` for 0 to 2 files (so `sub` itself comes and goes).
fn expected_files(g: u64) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = ["gen", "tls.crt", "tls.key"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    files.extend((0..2 + g % 5).map(|i| format!("f{i}")));
    files.extend((0..g % 3).map(|i| format!("sub/x{i}")));
    files
}

fn content(g: u64, name: &str) -> Vec<u8> {
    // Sizes vary with the generation so that a mix of old and new bytes cannot match.
    format!("{g} {name} {}\n", "#".repeat((g % 64) as usize)).into_bytes()
}

fn payload(g: u64) -> Payload {
    expected_files(g)
        .into_iter()
        .map(|name| {
            let mode = if name == "tls.key" && g.is_multiple_of(2) {
                0o600
            } else {
                0o644
            };
            let data = SecretBytes::new(content(g, &name));
            (name, FileProjection { data, mode })
        })
        .collect()
}

/// Every file below `dir`, relative, `/`-separated.
fn list(dir: &Path, rel: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            list(dir, &child, out)?;
        } else {
            out.insert(child);
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ReaderReport {
    consistent: u64,
    retired: u64,
    generations: BTreeSet<u64>,
}

enum Read {
    Consistent(u64),
    /// Something was missing, and `..data` had moved on: read again.
    Retired,
}

/// One read of the whole set through one resolution of `..data`. Panics on anything the
/// contract says cannot happen.
fn read_set(target: &Path) -> Read {
    let resolved = fs::read_link(target.join("..data")).expect("..data must always resolve");
    let dir: PathBuf = target.join(&resolved);
    let retired_or_panic = |what: &str| -> Read {
        let now = fs::read_link(target.join("..data")).expect("..data must always resolve");
        assert_ne!(
            now, resolved,
            "{what} through {resolved:?}, which is still the published generation"
        );
        Read::Retired
    };

    let generation = match fs::read(dir.join("gen")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return retired_or_panic("gen missing"),
        Err(e) => panic!("reading gen through {resolved:?}: {e}"),
    };
    let g: u64 = String::from_utf8_lossy(&generation)
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("torn gen file through {resolved:?}"));
    let expected = expected_files(g);
    for name in &expected {
        match fs::read(dir.join(name)) {
            Ok(bytes) => assert_eq!(
                bytes,
                content(g, name),
                "mixed set: {name} through {resolved:?} is not from generation {g}"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return retired_or_panic(&format!("{name} missing"));
            }
            Err(e) => panic!("reading {name} through {resolved:?}: {e}"),
        }
    }
    let mut present = BTreeSet::new();
    match list(&dir, "", &mut present) {
        Ok(()) if present == expected => Read::Consistent(g),
        // A directory being deleted lists as a shrinking subset.
        Ok(()) => retired_or_panic(&format!(
            "files {present:?} instead of {expected:?} (generation {g})"
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => retired_or_panic("directory gone"),
        Err(e) => panic!("listing {resolved:?}: {e}"),
    }
}

fn reader(target: PathBuf, stop: Arc<AtomicBool>) -> ReaderReport {
    let mut report = ReaderReport::default();
    let mut last = 0;
    while !stop.load(Ordering::Acquire) {
        match read_set(&target) {
            Read::Consistent(g) => {
                assert!(g >= last, "generation went back from {last} to {g}");
                last = g;
                report.consistent += 1;
                report.generations.insert(g);
            }
            Read::Retired => report.retired += 1,
        }
    }
    report
}

/// tmpfs when there is one (the common emptyDir medium for secrets, and what the CSI
/// driver mounts); elsewhere without fsync, since this test is about readers.
fn target_dir() -> (tempfile::TempDir, Durability) {
    if let Ok(dir) = tempfile::Builder::new()
        .prefix("stress")
        .tempdir_in("/dev/shm")
    {
        return (dir, Durability::Auto);
    }
    (tempfile::tempdir().unwrap(), Durability::Never)
}

#[test]
fn concurrent_readers_never_see_a_torn_or_mixed_set() {
    let (dir, durability) = target_dir();
    let target = dir.path().join("secrets");
    let writer = AtomicWriter::new(&target).with_durability(durability);
    writer.write(&payload(0)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (target, stop) = (target.clone(), stop.clone());
            std::thread::spawn(move || reader(target, stop))
        })
        .collect();

    let started = Instant::now();
    for g in 1..=SWAPS {
        let outcome = writer.write(&payload(g)).unwrap();
        assert!(
            matches!(outcome, WriteOutcome::Published { .. }),
            "generation {g} not published"
        );
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    let reports: Vec<ReaderReport> = readers.into_iter().map(|r| r.join().unwrap()).collect();

    // The final state is generation SWAPS exactly, with only one generation on disk.
    assert!(matches!(read_set(&target), Read::Consistent(SWAPS)));
    let hidden: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data" && n != "..status.json")
        .collect();
    assert_eq!(hidden.len(), 1, "generations left: {hidden:?}");

    let consistent: u64 = reports.iter().map(|r| r.consistent).sum();
    let retired: u64 = reports.iter().map(|r| r.retired).sum();
    let seen: BTreeSet<u64> = reports.iter().flat_map(|r| r.generations.clone()).collect();
    for (i, r) in reports.iter().enumerate() {
        assert!(r.consistent > 0, "reader {i} never completed a read");
    }
    // The readers really raced the writer: they saw many different generations.
    assert!(
        seen.len() > 20,
        "readers saw only {} generations",
        seen.len()
    );

    println!(
        "stress: {SWAPS} swaps in {:.2?} ({:.0} swaps/s, {durability:?} durability, fsyncs {}); \
         {READERS} readers: {consistent} consistent sets over {} generations, \
         {retired} reads retried after their generation was retired",
        elapsed,
        SWAPS as f64 / elapsed.as_secs_f64(),
        writer.fsync_count(),
        seen.len(),
    );
}
