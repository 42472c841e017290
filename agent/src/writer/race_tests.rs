//! A neighbour racing the writer with nothing but the public `new`/`write` API (so the same
//! test runs against the path-based writer of earlier versions, where it fails: files land
//! in the neighbour's directory).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;

/// Enough files that writing them takes longer than the neighbour needs to notice.
const FILES: usize = 2000;

/// Names and modes of everything below `dir`.
fn listing(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), m.permissions().mode() & 0o7777));
        }
    }
    out.sort();
    out
}

#[test]
fn a_neighbour_swapping_directories_for_symlinks_mid_write_never_gets_a_file() {
    // reference: docs/threat-model.md rule 5 (CVE-2017-1002101, CVE-2021-25741: writes that
    // follow a symlink a container swapped in)
    let base = tempfile::tempdir().unwrap();
    let t = base.path().join("volume");
    let outside = base.path().join("neighbour");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("mine"), "neighbour's").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
    let before = listing(&outside);

    let w = AtomicWriter::new(&t).with_durability(Durability::Never);
    let payload = |g: usize| -> Payload {
        let mut p = Payload::new();
        p.insert(
            "top".into(),
            FileProjection {
                data: SecretBytes::new(format!("{g}").as_bytes()),
                mode: 0o644,
            },
        );
        for i in 0..FILES {
            p.insert(
                format!("d/e/f{i:03}"),
                FileProjection {
                    data: SecretBytes::new(format!("secret {g} {i}").as_bytes()),
                    mode: 0o600,
                },
            );
        }
        p
    };
    w.write(&payload(0)).unwrap();

    // The neighbour: whenever a generation being written has `d/e` as a real directory,
    // move it aside and put a symlink to its own directory in its place.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let neighbour = {
        let (t, outside, stop, swaps) = (t.clone(), outside.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let Ok(entries) = fs::read_dir(&t) else {
                    continue;
                };
                let current = fs::read_link(t.join("..data")).ok();
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    // Only a generation being written (not the published one).
                    if !name.starts_with("..20") || current.as_deref() == Some(Path::new(&name)) {
                        continue;
                    }
                    let victim = e.path().join("d/e");
                    let is_dir = fs::symlink_metadata(&victim).is_ok_and(|m| m.is_dir());
                    n += 1;
                    if is_dir
                        && fs::rename(&victim, e.path().join(format!("moved{n}"))).is_ok()
                        && std::os::unix::fs::symlink(&outside, &victim).is_ok()
                    {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    for g in 1..=30 {
        // Failures are expected (the writer notices the swaps); only the outside matters.
        let _ = w.write(&payload(g));
        if swaps.load(Ordering::Relaxed) >= 5 {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    neighbour.join().unwrap();
    assert!(
        swaps.load(Ordering::Relaxed) > 0,
        "the neighbour never acted"
    );
    let after = listing(&outside);
    let extra: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
    assert!(
        extra.is_empty(),
        "the writer created or changed {} entries in the neighbour's directory, e.g. {:?}",
        extra.len(),
        &extra[..extra.len().min(3)]
    );
    assert_eq!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
        0o700
    );
}
