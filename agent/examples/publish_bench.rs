//! Publish-path figures of the atomic writer (run by `bench/run.sh`, or
//! `cargo run --release -p keyvault-agent --example publish_bench [DISK_DIR]`):
//!
//! - time to publish 1,000 and 5,000 files into a fresh directory on a disk-backed file
//!   system (default `/var/tmp`, made durable) and on tmpfs (`/dev/shm`, no sync needed);
//! - an unchanged refresh of 2,000 files: time and files read back;
//! - one changed file in 2,000: files rewritten and linked, and time.
//!
//! Each figure is the median of a few runs. Disk speed on shared machines varies from
//! minute to minute: compare the disk and tmpfs rows of one run, not runs with each other.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyvault_agent::secret::SecretBytes;
use keyvault_agent::writer::{AtomicWriter, Durability, FileProjection, Payload, WriteOutcome};

const RUNS: usize = 3;

/// `n` files; the first `rotated` of them hold a new value.
fn payload(n: usize, rotated: usize) -> Payload {
    (0..n)
        .map(|i| {
            let tag = if i < rotated { "rotated" } else { "value" };
            // About the size of a password or a small PEM key.
            let data = format!("{tag}-{i:06}-{}", "x".repeat(200));
            (
                format!("objects{}/object-{i:05}", i % 10),
                FileProjection {
                    data: SecretBytes::new(data.as_bytes()),
                    mode: 0o600,
                },
            )
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fs_name(p: &Path) -> &'static str {
    #[allow(clippy::unnecessary_cast)]
    match rustix::fs::statfs(p).map(|s| s.f_type as i64) {
        Ok(0x0102_1994) => "tmpfs",
        Ok(0xEF53) => "ext4",
        Ok(0x5846_5342) => "xfs",
        Ok(0x9123_683E) => "btrfs",
        Ok(0x794C_7630) => "overlayfs",
        Ok(_) => "other",
        Err(_) => "unknown",
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Median time to publish `n` files into a fresh directory under `base`.
fn first_publish(base: &Path, n: usize, durability: Durability) -> Duration {
    let p = payload(n, 0);
    let times = (0..RUNS)
        .map(|_| {
            let dir = tempfile::Builder::new()
                .prefix("publish-bench")
                .tempdir_in(base)
                .expect("temporary directory");
            let w = AtomicWriter::new(dir.path().join("out")).with_durability(durability);
            let started = Instant::now();
            let outcome = w.write(&p).expect("publish");
            let took = started.elapsed();
            assert!(matches!(outcome, WriteOutcome::Published { .. }));
            took
        })
        .collect();
    median(times)
}

fn refresh_figures(base: &Path) {
    let n = 2000;
    let dir = tempfile::Builder::new()
        .prefix("publish-bench")
        .tempdir_in(base)
        .expect("temporary directory");
    let w = AtomicWriter::new(dir.path().join("out")).with_durability(Durability::Auto);
    w.write(&payload(n, 0)).expect("publish");

    // The first refresh after a publish reads back files whose ctime was too recent to
    // vouch for them (racy); later ones stat only.
    for which in ["first", "next"] {
        let before = w.stats();
        let started = Instant::now();
        assert_eq!(w.write(&payload(n, 0)).unwrap(), WriteOutcome::Unchanged);
        let unchanged = started.elapsed();
        let after = w.stats();
        println!(
            "  {which} unchanged refresh of {n}: {} ({} files read, {} written)",
            ms(unchanged),
            after.files_read - before.files_read,
            after.files_written - before.files_written
        );
    }

    let mut times = Vec::new();
    let mut written = 0;
    let mut linked = 0;
    let mut read = 0;
    for r in 0..RUNS {
        // A refresh in between, as in the sidecar (records every file as trusted).
        w.write(&payload(n, r)).unwrap();
        // Each run rotates one more object: exactly one file differs from the last set.
        let before = w.stats();
        let started = Instant::now();
        let outcome = w.write(&payload(n, r + 1)).unwrap();
        times.push(started.elapsed());
        assert!(matches!(outcome, WriteOutcome::Published { .. }));
        let after = w.stats();
        written = after.files_written - before.files_written;
        linked = after.files_linked - before.files_linked;
        read = after.files_read - before.files_read;
    }
    println!(
        "  1 of {n} changed: {} ({written} file rewritten, {linked} hard-linked)",
        ms(median(times))
    );
    println!("  (files read while publishing the change: {read})");
}

fn main() {
    let disk: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let mut targets = vec![("disk", disk)];
    if Path::new("/dev/shm").is_dir() {
        targets.push(("tmpfs", PathBuf::from("/dev/shm")));
    }
    println!("publish path of the atomic writer (median of {RUNS})");
    let mut rows = Vec::new();
    for (label, base) in &targets {
        println!("{label}: {} ({})", base.display(), fs_name(base));
        for n in [1000, 5000] {
            let t = first_publish(base, n, Durability::Auto);
            println!("  publish {n} files: {}", ms(t));
            rows.push((*label, n, t));
            if *label == "disk" {
                // What the sync pass costs, against creating the files at all.
                let t = first_publish(base, n, Durability::Never);
                println!("  publish {n} files without sync: {}", ms(t));
            }
        }
        refresh_figures(base);
    }
    for n in [1000, 5000] {
        let get = |l: &str| rows.iter().find(|r| r.0 == l && r.1 == n).map(|r| r.2);
        if let (Some(d), Some(t)) = (get("disk"), get("tmpfs")) {
            println!(
                "disk / tmpfs at {n} files: {:.2}x",
                d.as_secs_f64() / t.as_secs_f64().max(1e-9)
            );
        }
    }
}
