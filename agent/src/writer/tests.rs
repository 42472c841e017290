//! Unit tests of the writer: the upstream AtomicWriter test catalogue, ported case by case
//! (`docs/atomic-writer.md` §A.7), then one test per gap we fix (§B) and per failure path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::paths::{clean, validate_path, validate_payload};
use super::*;

// ---------------------------------------------------------------------------------------
// helpers

fn fp(data: &[u8], mode: u32) -> FileProjection {
    FileProjection {
        data: SecretBytes::new(data),
        mode,
    }
}

/// `[(path, data, mode)]` → payload.
fn payload(files: &[(&str, &[u8], u32)]) -> Payload {
    files
        .iter()
        .map(|(p, d, m)| ((*p).to_owned(), fp(d, *m)))
        .collect()
}

/// Text files with mode 0644, content = the given string.
fn p644(files: &[(&str, &str)]) -> Payload {
    files
        .iter()
        .map(|(p, d)| ((*p).to_owned(), fp(d.as_bytes(), 0o644)))
        .collect()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("atomic-write")
        .tempdir()
        .expect("tempdir")
}

/// Catalogue tests run without fsync: they are about layout, not durability.
fn writer(dir: &Path) -> AtomicWriter {
    AtomicWriter::new(dir).with_durability(Durability::Never)
}

/// Upstream `checkVolumeContents`, plus what it leaves implicit: walk every visible
/// link, rebuild `{path: (bytes, mode)}` and compare with the cleaned payload (so mode
/// bits are asserted); every visible name is a link `name -> ..data/name` for exactly the
/// payload's top-level names; `..data` names the only timestamped directory, mode 0755;
/// no `..data_tmp` is left.
fn check_volume_contents(target: &Path, name: &str, payload: &Payload) {
    let data = fs::read_link(target.join("..data"))
        .unwrap_or_else(|e| panic!("{name}: ..data is not a link: {e}"));
    let data = data.to_str().unwrap().to_owned();
    assert!(is_data_dir_name(&data), "{name}: ..data -> {data}");
    let ts_meta = fs::metadata(target.join(&data)).unwrap();
    assert_eq!(
        ts_meta.mode() & 0o7777,
        0o755,
        "{name}: timestamped dir mode"
    );
    assert!(
        fs::symlink_metadata(target.join("..data_tmp")).is_err(),
        "{name}: ..data_tmp left behind"
    );

    let mut ts_dirs = Vec::new();
    let mut visible = BTreeSet::new();
    let mut observed: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    for entry in fs::read_dir(target).unwrap() {
        let entry = entry.unwrap();
        let fname = entry.file_name().to_str().unwrap().to_owned();
        if fname.starts_with("..") {
            if is_data_dir_name(&fname) {
                ts_dirs.push(fname);
            }
            continue;
        }
        assert!(
            entry.file_type().unwrap().is_symlink(),
            "{name}: visible {fname} is not a symlink"
        );
        let link = fs::read_link(entry.path()).unwrap();
        assert_eq!(
            link,
            Path::new("..data").join(&fname),
            "{name}: link {fname}"
        );
        visible.insert(fname.clone());
        collect_files(&target.join("..data"), &fname, &mut observed);
    }
    assert_eq!(
        ts_dirs,
        vec![data.clone()],
        "{name}: timestamped directories"
    );

    let expected: BTreeMap<String, (Vec<u8>, u32)> = payload
        .iter()
        .map(|(k, v)| (clean(k), (v.data.expose().to_vec(), v.mode)))
        .collect();
    let expected_top: BTreeSet<String> = expected
        .keys()
        .map(|k| k.split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(visible, expected_top, "{name}: visible names");
    assert_eq!(
        observed, expected,
        "{name}: payload and observed payload differ"
    );
}

fn collect_files(base: &Path, rel: &str, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    let p = base.join(rel);
    let m = fs::metadata(&p).unwrap();
    if m.is_dir() {
        assert_eq!(m.mode() & 0o7777, 0o755, "directory {rel} mode");
        for e in fs::read_dir(&p).unwrap() {
            let n = e.unwrap().file_name().to_str().unwrap().to_owned();
            collect_files(base, &format!("{rel}/{n}"), out);
        }
    } else {
        out.insert(rel.to_owned(), (fs::read(&p).unwrap(), m.mode() & 0o7777));
    }
}

/// Everything observable in the target dir: names, link targets, file bytes and modes,
/// inode numbers. Equal snapshots mean nothing was touched.
fn snapshot(target: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(target.join(&rel)).unwrap() {
            let e = e.unwrap();
            let n = e.file_name().to_str().unwrap().to_owned();
            let r = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            let m = fs::symlink_metadata(e.path()).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(e.path()).unwrap().display())
            } else if m.is_dir() {
                stack.push(r.clone());
                format!("dir {:o} ino {}", m.mode() & 0o7777, m.ino())
            } else {
                format!(
                    "file {:o} ino {} {:?}",
                    m.mode() & 0o7777,
                    m.ino(),
                    fs::read(e.path()).unwrap()
                )
            };
            out.insert(r, desc);
        }
    }
    out
}

fn data_link(target: &Path) -> String {
    fs::read_link(target.join("..data"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Writes `p` with a manifest whose body is `body` (whatever the generation).
fn write_with_status(w: &AtomicWriter, p: &Payload, body: &[u8]) -> WriteOutcome {
    let render = |_: &str, w: &mut dyn std::io::Write| w.write_all(body);
    w.write_with(
        p,
        &WriteOptions {
            status: Some(&render),
            republish: false,
        },
    )
    .unwrap()
}

fn published(outcome: WriteOutcome) -> String {
    match outcome {
        WriteOutcome::Published { data_dir } => data_dir,
        WriteOutcome::Unchanged => panic!("expected a new set to be published"),
    }
}

// ---------------------------------------------------------------------------------------
// upstream catalogue

#[test]
fn new_atomic_writer() {
    // reference: docs/atomic-writer.md §A.7 TestNewAtomicWriter
    let dir = tempdir();
    AtomicWriter::open(dir.path()).expect("existing target dir");

    let missing = dir.path().join("does-not-exist");
    let err = AtomicWriter::open(&missing).unwrap_err();
    assert!(
        err.to_string().starts_with("open output directory "),
        "{err}"
    );

    // `new` is lazy instead: the first write creates the target.
    let w = writer(&missing);
    assert_eq!(w.target_dir(), missing);
    w.write(&p644(&[("foo", "foo")])).unwrap();
    check_volume_contents(&missing, "lazy", &p644(&[("foo", "foo")]));
}

#[test]
fn validate_path_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestValidatePath
    let cases: &[(&str, String, bool)] = &[
        ("valid 1", "i/am/well/behaved.txt".into(), true),
        (
            "valid 2",
            "keepyourheaddownandfollowtherules.txt".into(),
            true,
        ),
        ("max path length", "a".repeat(4097), false),
        ("max file length", "a".repeat(256), false),
        ("absolute failure", "/dev/null".into(), false),
        ("reserved path", "..sneaky.txt".into(), false),
        (
            "contains doubledot 1",
            "hello/there/../../../../../../etc/passwd".into(),
            false,
        ),
        (
            "contains doubledot 2",
            "hello/../etc/somethingbad".into(),
            false,
        ),
        ("empty", "".into(), false),
    ];
    for (name, path, valid) in cases {
        assert_eq!(validate_path(path).is_ok(), *valid, "{name}");
    }
}

#[test]
fn validate_path_error_texts() {
    // reference: docs/atomic-writer.md §A.4 (current texts, v1.20 and later)
    let cases: &[(String, &str)] = &[
        ("".into(), "invalid path: must not be empty: \"\""),
        (
            "/dev/null".into(),
            "invalid path: must be relative path: /dev/null",
        ),
        (
            "a".repeat(4097),
            "invalid path: must be less than or equal to 4096 characters",
        ),
        (
            "hello/../etc".into(),
            "invalid path: must not contain '..': hello/../etc",
        ),
        (
            format!("x/{}", "a".repeat(256)),
            "invalid path: filenames must be less than or equal to 255 characters",
        ),
        (
            "..sneaky.txt".into(),
            "invalid path: must not start with '..': ..sneaky.txt",
        ),
    ];
    for (path, text) in cases {
        let err = validate_path(path).unwrap_err();
        assert_eq!(err.to_string(), *text);
        assert!(!err.is_transient());
    }
    // Boundaries are inclusive, `..` as a prefix only matters in the first element, and
    // `..` alone is caught by the element rule (as upstream).
    assert!(validate_path(&"a".repeat(255)).is_ok());
    assert!(validate_path(&format!("{}/{}", "a".repeat(255), "b".repeat(255))).is_ok());
    assert!(validate_path("a/..b").is_ok());
    assert!(validate_path("foo//bar").is_ok());
    assert!(validate_path("./bar").is_ok());
    assert_eq!(
        validate_path("..").unwrap_err().to_string(),
        "invalid path: must not contain '..': .."
    );
}

/// TestPathsToRemove cases: (name, payload1, payload2, expected removals).
type RemoveCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn paths_to_remove_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestPathsToRemove
    let cases: &[RemoveCase] = &[
        (
            "simple",
            &["foo.txt", "bar.txt"],
            &["foo.txt"],
            &["bar.txt"],
        ),
        (
            "simple 2",
            &["foo.txt", "zip/bar.txt"],
            &["foo.txt"],
            &["zip/bar.txt", "zip"],
        ),
        (
            "subdirs 1",
            &["foo.txt", "zip/zap/bar.txt"],
            &["foo.txt"],
            &["zip/zap/bar.txt", "zip", "zip/zap"],
        ),
        (
            "subdirs 2",
            &["foo.txt", "zip/1/2/3/4/bar.txt"],
            &["foo.txt"],
            &[
                "zip/1/2/3/4/bar.txt",
                "zip",
                "zip/1",
                "zip/1/2",
                "zip/1/2/3",
                "zip/1/2/3/4",
            ],
        ),
        (
            "subdirs 3",
            &["foo.txt", "zip/1/2/3/4/bar.txt", "zap/a/b/c/bar.txt"],
            &["foo.txt"],
            &[
                "zip/1/2/3/4/bar.txt",
                "zip",
                "zip/1",
                "zip/1/2",
                "zip/1/2/3",
                "zip/1/2/3/4",
                "zap",
                "zap/a",
                "zap/a/b",
                "zap/a/b/c",
                "zap/a/b/c/bar.txt",
            ],
        ),
        (
            "subdirs 4",
            &[
                "foo.txt",
                "zap/1/2/3/4/bar.txt",
                "zap/1/2/c/bar.txt",
                "zap/1/2/magic.txt",
            ],
            &["foo.txt", "zap/1/2/magic.txt"],
            &[
                "zap/1/2/3/4/bar.txt",
                "zap/1/2/3",
                "zap/1/2/3/4",
                "zap/1/2/c",
                "zap/1/2/c/bar.txt",
            ],
        ),
        (
            "subdirs 5",
            &["foo.txt", "zap/1/2/3/4/bar.txt", "zap/1/2/c/bar.txt"],
            &["foo.txt", "zap/1/2/magic.txt"],
            &[
                "zap/1/2/3/4/bar.txt",
                "zap/1/2/3",
                "zap/1/2/3/4",
                "zap/1/2/c",
                "zap/1/2/c/bar.txt",
            ],
        ),
    ];
    for (name, first, second, expected) in cases {
        let dir = tempdir();
        let w = writer(dir.path());
        let first: Payload = first
            .iter()
            .map(|p| ((*p).to_owned(), fp(p.as_bytes(), 0o644)))
            .collect();
        let second: Payload = second
            .iter()
            .map(|p| ((*p).to_owned(), fp(b"x", 0o644)))
            .collect();
        w.write(&first).unwrap();
        let old = fs::File::open(dir.path().join(data_link(dir.path()))).unwrap();
        let entries = walk(std::os::fd::AsFd::as_fd(&old)).unwrap();
        let actual = paths_to_remove(&validate_payload(&second).unwrap(), &entries);
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(actual, expected, "{name}");
    }
}

/// The 125-byte ELF binary of the upstream test ("$1 if you can tell me what this is").
fn mystery_binary() -> Vec<u8> {
    let encoded = "f0VMRgIBAQAAAAAAAAAAAAIAPgABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAAB\
                   AAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAfQAAAAAAAAB9AAAAAAAAAAAA\
                   IAAAAAAAsDyZDwU=";
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(bytes.len(), 125);
    bytes
}

#[test]
fn write_once_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestWriteOnce
    let bin = mystery_binary();
    let cases: Vec<(&str, Payload, bool)> = vec![
        (
            "invalid payload 1",
            payload(&[
                ("foo", b"foo", 0o644),
                ("..bar", b"bar", 0o644),
                ("binary.bin", &bin, 0o644),
            ]),
            false,
        ),
        (
            "invalid payload 2",
            payload(&[("foo/../bar", b"foo", 0o644)]),
            false,
        ),
        ("basic 1", p644(&[("foo", "foo"), ("bar", "bar")]), true),
        (
            "basic 2",
            payload(&[("binary.bin", &bin, 0o644), (".binary.bin", &bin, 0o644)]),
            true,
        ),
        (
            "basic mode 1",
            payload(&[("foo", b"foo", 0o777), ("bar", b"bar", 0o400)]),
            true,
        ),
        (
            "dotfiles",
            p644(&[
                ("foo", "foo"),
                ("bar", "bar"),
                (".dotfile", "dotfile"),
                (".dotfile.file", "dotfile.file"),
            ]),
            true,
        ),
        (
            "dotfiles mode",
            payload(&[
                ("foo", b"foo", 0o407),
                ("bar", b"bar", 0o440),
                (".dotfile", b"dotfile", 0o777),
                (".dotfile.file", b"dotfile.file", 0o666),
            ]),
            true,
        ),
        (
            "subdirectories 1",
            p644(&[("foo/bar.txt", "foo/bar"), ("bar/zab.txt", "bar/zab.txt")]),
            true,
        ),
        (
            "subdirectories mode 1",
            payload(&[
                ("foo/bar.txt", b"foo/bar", 0o400),
                ("bar/zab.txt", b"bar/zab.txt", 0o644),
            ]),
            true,
        ),
        (
            "subdirectories 2",
            p644(&[
                ("foo//bar.txt", "foo//bar"),
                ("bar///bar/zab.txt", "bar/../bar/zab.txt"),
            ]),
            true,
        ),
        (
            "subdirectories 3",
            p644(&[
                ("foo/bar.txt", "foo/bar"),
                ("bar/zab.txt", "bar/zab.txt"),
                ("foo/blaz/bar.txt", "foo/blaz/bar"),
                ("bar/zib/zab.txt", "bar/zib/zab.txt"),
            ]),
            true,
        ),
        (
            "kitchen sink",
            payload(&[
                ("foo.log", b"foo", 0o644),
                ("bar.zap", b"bar", 0o644),
                (".dotfile", b"dotfile", 0o644),
                ("foo/bar.txt", b"foo/bar", 0o644),
                ("bar/zab.txt", b"bar/zab.txt", 0o644),
                ("foo/blaz/bar.txt", b"foo/blaz/bar", 0o644),
                ("bar/zib/zab.txt", b"bar/zib/zab.txt", 0o400),
                ("1/2/3/4/5/6/7/8/9/10/.dotfile.lib", b"1-2-3-dotfile", 0o777),
            ]),
            true,
        ),
    ];
    for (name, payload, success) in cases {
        let dir = tempdir();
        let result = writer(dir.path()).write(&payload);
        if !success {
            assert!(result.is_err(), "{name}: unexpected success");
            assert!(
                snapshot(dir.path()).is_empty(),
                "{name}: a refused payload touched the disk"
            );
            continue;
        }
        let outcome = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let data_dir = published(outcome);
        assert_eq!(data_link(dir.path()), data_dir, "{name}");
        check_volume_contents(dir.path(), name, &payload);
    }
}

#[test]
fn update_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestUpdate
    let base = || p644(&[("foo/bar.txt", "foo"), ("bar/zab.txt", "bar")]);
    let deep = || {
        p644(&[
            ("foo/bar.txt", "foo"),
            ("bar/1/2/sip.txt", "sip"),
            ("bar/1/2/3/4/5/6zab.txt", "bar"),
        ])
    };
    let with = |mut p: Payload, extra: &[(&str, &str)]| {
        p.extend(p644(extra));
        p
    };
    let cases: Vec<(&str, Payload, Payload, bool)> = vec![
        (
            "update",
            p644(&[("foo", "foo"), ("bar", "bar")]),
            payload(&[("foo", b"foo2", 0o644), ("bar", b"bar2", 0o640)]),
            true,
        ),
        (
            "no update",
            p644(&[("foo", "foo"), ("bar", "bar")]),
            p644(&[("foo", "foo"), ("bar", "bar")]),
            false,
        ),
        ("no update 2", base(), base(), false),
        (
            "add 1",
            base(),
            with(base(), &[("blu/zip.txt", "zip")]),
            true,
        ),
        (
            "add 2",
            base(),
            with(base(), &[("blu/two/2/3/4/5/zip.txt", "zip")]),
            true,
        ),
        (
            "add 3",
            base(),
            with(base(), &[("bar/2/3/4/5/zip.txt", "zip")]),
            true,
        ),
        ("delete 1", base(), p644(&[("foo/bar.txt", "foo")]), true),
        (
            "delete 2",
            p644(&[("foo/bar.txt", "foo"), ("bar/1/2/3/zab.txt", "bar")]),
            p644(&[("foo/bar.txt", "foo")]),
            true,
        ),
        (
            "delete 3",
            p644(&[
                ("foo/bar.txt", "foo"),
                ("bar/1/2/sip.txt", "sip"),
                ("bar/1/2/3/zab.txt", "bar"),
            ]),
            p644(&[("foo/bar.txt", "foo"), ("bar/1/2/sip.txt", "sip")]),
            true,
        ),
        (
            "delete 4",
            deep(),
            p644(&[("foo/bar.txt", "foo"), ("bar/1/2/sip.txt", "sip")]),
            true,
        ),
        ("delete all", deep(), Payload::new(), true),
        (
            "add and delete 1",
            p644(&[("foo/bar.txt", "foo")]),
            p644(&[("bar/baz.txt", "baz")]),
            true,
        ),
    ];
    for (name, first, next, should_write) in cases {
        let dir = tempdir();
        let w = writer(dir.path());
        let first_dir = published(w.write(&first).unwrap());
        check_volume_contents(dir.path(), name, &first);
        let before = snapshot(dir.path());
        let outcome = w.write(&next).unwrap_or_else(|e| panic!("{name}: {e}"));
        if should_write {
            let next_dir = published(outcome);
            assert_ne!(next_dir, first_dir, "{name}");
            assert!(
                !dir.path().join(&first_dir).exists(),
                "{name}: old dir kept"
            );
            check_volume_contents(dir.path(), name, &next);
        } else {
            assert_eq!(outcome, WriteOutcome::Unchanged, "{name}");
            assert_eq!(snapshot(dir.path()), before, "{name}: touched");
        }
    }
}

#[test]
fn multiple_updates_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestMultipleUpdates
    let sub2 = |suffix: &str| {
        let s = suffix.to_owned();
        vec![
            ("foo/bar.txt".to_owned(), format!("foo/bar{s}")),
            ("bar/zab.txt".to_owned(), format!("bar/zab.txt{s}")),
            ("foo/blaz/bar.txt".to_owned(), format!("foo/blaz/bar{s}")),
            ("bar/zib/zab.txt".to_owned(), format!("bar/zib/zab.txt{s}")),
        ]
    };
    let owned = |v: Vec<(String, String)>| -> Payload {
        v.into_iter()
            .map(|(k, d)| (k, fp(d.as_bytes(), 0o644)))
            .collect()
    };
    let with = |mut p: Payload, extra: &[(&str, &str)]| {
        p.extend(p644(extra));
        p
    };
    let cases: Vec<(&str, Vec<Payload>)> = vec![
        (
            "update 1",
            vec![
                p644(&[("foo", "foo"), ("bar", "bar")]),
                payload(&[("foo", b"foo2", 0o400), ("bar", b"bar2", 0o400)]),
                payload(&[("foo", b"foo3", 0o600), ("bar", b"bar3", 0o600)]),
            ],
        ),
        (
            "update 2",
            vec![
                p644(&[("foo/bar.txt", "foo/bar"), ("bar/zab.txt", "bar/zab.txt")]),
                payload(&[
                    ("foo/bar.txt", b"foo/bar2", 0o644),
                    ("bar/zab.txt", b"bar/zab.txt2", 0o400),
                ]),
            ],
        ),
        (
            "clear sentinel",
            (1..=4)
                .map(|i| {
                    let s = if i == 1 { String::new() } else { i.to_string() };
                    owned(vec![
                        ("foo".into(), format!("foo{s}")),
                        ("bar".into(), format!("bar{s}")),
                    ])
                })
                .collect(),
        ),
        ("subdirectories 2", vec![owned(sub2("")), owned(sub2("2"))]),
        (
            "add 1",
            vec![
                p644(&[
                    ("foo/bar.txt", "foo/bar"),
                    ("bar//zab.txt", "bar/zab.txt"),
                    ("foo/blaz/bar.txt", "foo/blaz/bar"),
                    ("bar/zib////zib/zab.txt", "bar/zib/zab.txt"),
                ]),
                with(owned(sub2("2")), &[("add/new/keys.txt", "addNewKeys")]),
            ],
        ),
        (
            "add 2",
            vec![
                with(owned(sub2("2")), &[("add/new/keys.txt", "addNewKeys")]),
                with(
                    owned(sub2("2")),
                    &[
                        ("add/new/keys.txt", "addNewKeys"),
                        ("add/new/keys2.txt", "addNewKeys2"),
                        ("add/new/keys3.txt", "addNewKeys3"),
                    ],
                ),
            ],
        ),
        (
            "remove 1",
            vec![
                p644(&[
                    ("foo/bar.txt", "foo/bar"),
                    ("bar//zab.txt", "bar/zab.txt"),
                    ("foo/blaz/bar.txt", "foo/blaz/bar"),
                    ("zip/zap/zup/fop.txt", "zip/zap/zup/fop.txt"),
                ]),
                p644(&[("foo/bar.txt", "foo/bar2"), ("bar/zab.txt", "bar/zab.txt2")]),
                p644(&[("foo/bar.txt", "foo/bar")]),
            ],
        ),
    ];
    for (name, payloads) in cases {
        let dir = tempdir();
        let w = writer(dir.path());
        for (i, p) in payloads.iter().enumerate() {
            let outcome = w.write(p).unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
            published(outcome);
            check_volume_contents(dir.path(), &format!("{name} #{i}"), p);
        }
    }
}

#[test]
fn validate_payload_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestValidatePayload
    let keys = |p: &Payload| validate_payload(p).map(|c| c.keys().cloned().collect::<Vec<_>>());
    let cases: Vec<(&str, Payload, Option<&[&str]>)> = vec![
        (
            "valid payload",
            p644(&[("foo", ""), ("bar", "")]),
            Some(&["bar", "foo"]),
        ),
        (
            "payload with path length > 4096 is invalid",
            p644(&[(&"a".repeat(4097), "")]),
            None,
        ),
        (
            "payload with absolute path is invalid",
            p644(&[("/dev/null", "")]),
            None,
        ),
        (
            "payload with reserved path is invalid",
            p644(&[("..sneaky.txt", "")]),
            None,
        ),
        (
            "payload with doubledot path is invalid",
            p644(&[("foo/../etc/password", "")]),
            None,
        ),
        (
            "payload with empty path is invalid",
            p644(&[("", "")]),
            None,
        ),
        (
            "payload with unclean path should be cleaned",
            p644(&[("foo////bar", "")]),
            Some(&["foo/bar"]),
        ),
    ];
    for (name, p, expected) in cases {
        match expected {
            Some(expected) => assert_eq!(keys(&p).unwrap(), expected.to_vec(), "{name}"),
            None => assert!(keys(&p).is_err(), "{name}: unexpected success"),
        }
    }
}

#[test]
fn create_user_visible_files_catalogue() {
    // reference: docs/atomic-writer.md §A.7 TestCreateUserVisibleFiles
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("simple path", &["foo", "bar"], &["foo", "bar"]),
        (
            "simple nested path",
            &["foo/bar", "foo/bar/txt", "bar/txt"],
            &["foo", "bar"],
        ),
        (
            "unclean nested path",
            &["./bar", "foo///bar"],
            &["bar", "foo"],
        ),
    ];
    for (name, paths, expected) in cases {
        let dir = tempdir();
        fs::create_dir(dir.path().join("..data")).unwrap();
        let w = writer(dir.path());
        let p: Payload = paths
            .iter()
            .map(|k| ((*k).to_owned(), fp(b"", 0)))
            .collect();
        let clean = validate_payload(&p).unwrap();
        let top: BTreeSet<&str> = clean.keys().map(|k| paths::first_component(k)).collect();
        let root = fs::File::open(dir.path()).unwrap();
        let root = std::os::fd::AsFd::as_fd(&root);
        let needed = w.check_visible_names(root, &top).unwrap();
        w.link_visible(root, &needed).unwrap();
        let mut made = Vec::new();
        for e in fs::read_dir(dir.path()).unwrap() {
            let n = e.unwrap().file_name().to_str().unwrap().to_owned();
            if !n.starts_with("..") {
                made.push(n);
            }
        }
        made.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(made, want, "{name}");
        for n in *expected {
            let dest = fs::read_link(dir.path().join(n)).unwrap();
            assert_eq!(dest, Path::new(&format!("..data/{n}")), "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// §B: the gaps we fix, and the tests §A.7 says upstream lacks

#[test]
fn mode_only_change_republishes() {
    // reference: docs/atomic-writer.md §A.3 step 4 (upstream compares bytes only), §B
    let dir = tempdir();
    let w = writer(dir.path());
    let first = published(w.write(&payload(&[("tls.key", b"k", 0o644)])).unwrap());
    let next = payload(&[("tls.key", b"k", 0o600)]);
    let second = published(w.write(&next).unwrap());
    assert_ne!(first, second);
    check_volume_contents(dir.path(), "mode only", &next);
    assert_eq!(w.write(&next).unwrap(), WriteOutcome::Unchanged);
}

#[test]
fn unchanged_write_touches_nothing() {
    // reference: docs/reference-provider.md §6.4 (skip if unchanged, mtimes untouched)
    let dir = tempdir();
    let w = writer(dir.path());
    let p = payload(&[("a", b"1", 0o644), ("d/b", b"2", 0o400)]);
    let data_dir = published(w.write(&p).unwrap());
    // Age every file so that any rewrite, however fast, shows in its mtime.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    for f in ["a", "d/b"] {
        let path = dir.path().join(&data_dir).join(f);
        let file = fs::OpenOptions::new().read(true).open(&path).unwrap();
        file.set_modified(old).unwrap();
    }
    let before = snapshot(dir.path());
    assert_eq!(w.write(&p).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(snapshot(dir.path()), before);
    for f in ["a", "d/b"] {
        let m = fs::metadata(dir.path().join(&data_dir).join(f)).unwrap();
        assert_eq!(m.modified().unwrap(), old, "{f} rewritten");
    }
}

#[test]
fn content_change_of_same_length_republishes() {
    let dir = tempdir();
    let w = writer(dir.path());
    w.write(&p644(&[("a", "one")])).unwrap();
    published(w.write(&p644(&[("a", "two")])).unwrap());
    check_volume_contents(dir.path(), "same length", &p644(&[("a", "two")]));
}

#[test]
fn stale_data_tmp_is_cleared() {
    // reference: docs/atomic-writer.md §A.5 (a crash between steps 8 and 9 wedges upstream)
    for as_dir in [false, true] {
        let dir = tempdir();
        let w = writer(dir.path());
        w.write(&p644(&[("a", "1")])).unwrap();
        let stale = dir.path().join("..data_tmp");
        if as_dir {
            fs::create_dir(&stale).unwrap();
            fs::write(stale.join("junk"), "x").unwrap();
        } else {
            std::os::unix::fs::symlink("..2020_01_01_00_00_00.1", &stale).unwrap();
        }
        let next = p644(&[("a", "2")]);
        published(w.write(&next).unwrap());
        check_volume_contents(dir.path(), "stale ..data_tmp", &next);
    }
}

#[test]
fn orphaned_generations_are_collected() {
    // reference: docs/atomic-writer.md §A.5 (orphans of a crash between steps 5 and 9)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    write_with_status(&w, &p644(&[("a", "1")]), b"{}");
    let orphan = t.join("..2020_01_01_00_00_00.42");
    fs::create_dir_all(orphan.join("nested")).unwrap();
    fs::write(orphan.join("nested/a"), "old").unwrap();
    fs::write(t.join("..status.json.tmpXYZ"), "partial").unwrap();
    // Not ours: other hidden names and plain files are left alone.
    fs::create_dir(t.join("..keep-me")).unwrap();

    fs::write(t.join("..hmac.key.123"), "partial").unwrap();
    // An unchanged write collects them too.
    assert_eq!(
        w.write(&p644(&[("a", "1")])).unwrap(),
        WriteOutcome::Unchanged
    );
    assert!(!t.join("..hmac.key.123").exists());
    assert!(!orphan.exists());
    assert!(!t.join("..status.json.tmpXYZ").exists());
    assert!(t.join("..keep-me").is_dir());
    assert_eq!(fs::read(t.join("..status.json")).unwrap(), b"{}");

    let orphan2 = t.join("..2021_02_03_04_05_06.7");
    fs::create_dir(&orphan2).unwrap();
    published(write_with_status(&w, &p644(&[("a", "2")]), b"{2}"));
    assert!(!orphan2.exists());
    assert!(t.join("..keep-me").is_dir());
    assert_eq!(fs::read(t.join("..status.json")).unwrap(), b"{2}");
}

#[test]
fn empty_payload_creates_data_link() {
    // reference: docs/atomic-writer.md §A.2 (PR #57422: ..data even for an empty payload)
    let dir = tempdir();
    let w = writer(dir.path());
    let data_dir = published(w.write(&Payload::new()).unwrap());
    assert_eq!(data_link(dir.path()), data_dir);
    assert_eq!(fs::read_dir(dir.path().join(&data_dir)).unwrap().count(), 0);
    check_volume_contents(dir.path(), "empty", &Payload::new());
    assert_eq!(w.write(&Payload::new()).unwrap(), WriteOutcome::Unchanged);
}

#[test]
fn missing_visible_links_are_recreated_when_data_is_current() {
    // reference: docs/atomic-writer.md §A.3 step 4 (kubernetes#121472, PR #122807)
    let dir = tempdir();
    let w = writer(dir.path());
    let p = p644(&[("a", "1"), ("d/b", "2")]);
    w.write(&p).unwrap();
    fs::remove_file(dir.path().join("a")).unwrap();
    fs::remove_file(dir.path().join("d")).unwrap();
    // A link to the wrong place is corrected too.
    std::os::unix::fs::symlink("..data/elsewhere", dir.path().join("d")).unwrap();
    assert_eq!(w.write(&p).unwrap(), WriteOutcome::Unchanged);
    check_volume_contents(dir.path(), "repaired", &p);
}

#[test]
fn stale_visible_links_are_removed_and_foreign_entries_kept() {
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    w.write(&p644(&[("a", "1"), ("b", "2")])).unwrap();
    fs::write(t.join("readme"), "not ours").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", t.join("foreign")).unwrap();
    w.write(&p644(&[("a", "1")])).unwrap();
    assert!(fs::symlink_metadata(t.join("b")).is_err());
    assert_eq!(fs::read(t.join("readme")).unwrap(), b"not ours");
    assert_eq!(
        fs::read_link(t.join("foreign")).unwrap(),
        Path::new("/etc/hostname")
    );
}

#[test]
fn name_taken_by_a_regular_file_is_refused_before_writing() {
    // reference: docs/atomic-writer.md §A.5 "Non-symlink entries" (upstream skips silently)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    w.write(&p644(&[("a", "1")])).unwrap();
    fs::write(t.join("tls.crt"), "legacy").unwrap();
    let before = snapshot(t);
    let err = w
        .write(&p644(&[("a", "2"), ("tls.crt", "new")]))
        .unwrap_err();
    assert!(matches!(err, WriterError::Conflict { .. }), "{err}");
    assert!(
        err.to_string().contains("\"tls.crt\" already exists"),
        "{err}"
    );
    assert_eq!(snapshot(t), before);
}

#[test]
fn invalid_payloads_are_refused_before_any_write() {
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    w.write(&p644(&[("a", "1")])).unwrap();
    let before = snapshot(t);
    let cases: Vec<(Payload, &str)> = vec![
        // Valid entries sort before the bad one: nothing of them may land.
        (
            p644(&[("a", "2"), ("b", "2"), ("c/../d", "x")]),
            "invalid path: must not contain '..': c/../d",
        ),
        (
            p644(&[("a", "2"), (&format!("x/{}", "y".repeat(256)), "x")]),
            "invalid path: filenames must be less than or equal to 255 characters",
        ),
        (
            p644(&[("a", "2"), ("./..y", "x")]),
            "invalid path: must not start with '..': ./..y",
        ),
        (
            p644(&[("a", "2"), (".", "x")]),
            "invalid path: must name a file: \".\"",
        ),
        (
            p644(&[("a//b", "2"), ("a/b", "x")]),
            "invalid payload: \"a//b\" and \"a/b\" are the same file \"a/b\" once cleaned",
        ),
        (
            p644(&[("a", "2"), ("a/b", "x")]),
            "invalid payload: \"a\" is a file, so \"a/b\" cannot be written below it",
        ),
        (
            payload(&[("a", b"2", 0o100644)]),
            "invalid payload: \"a\" has mode 0o100644",
        ),
        (
            p644(&[("a", "2"), ("nul\0", "x")]),
            "invalid path: must not contain a NUL byte",
        ),
    ];
    for (p, text) in cases {
        let err = w.write(&p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(text), "{msg} !~ {text}");
        assert!(!err.is_transient());
        assert_eq!(snapshot(t), before, "{msg}");
    }
}

#[test]
fn a_failing_hook_leaves_the_previous_set() {
    // reference: docs/atomic-writer.md §A.3 steps 7-8 (failure before the swap)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    let first = p644(&[("a", "1"), ("d/b", "1")]);
    w.write(&first).unwrap();
    let before = snapshot(t);
    let mut seen = None;
    let err = w
        .write_with_hook(&p644(&[("a", "2"), ("c", "2")]), |dir| {
            seen = Some(dir.to_owned());
            // The new generation is complete when the hook runs.
            assert_eq!(fs::read(dir.join("a"))?, b"2");
            Err(io::Error::from_raw_os_error(
                rustix::io::Errno::INTR.raw_os_error(),
            ))
        })
        .unwrap_err();
    assert!(matches!(err, WriterError::Hook { .. }), "{err}");
    assert!(err.is_transient());
    assert!(!seen.unwrap().exists(), "abandoned directory kept");
    assert_eq!(snapshot(t), before);
    check_volume_contents(t, "after hook failure", &first);
}

#[test]
fn a_failing_swap_leaves_the_previous_set_and_the_next_write_recovers() {
    // reference: docs/atomic-writer.md §A.3 step 8 (creating ..data_tmp fails)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    let first = p644(&[("a", "1")]);
    w.write(&first).unwrap();
    let before = snapshot(t);
    let next = p644(&[("a", "2")]);
    let err = w
        .write_with_hook(&next, |_| {
            // Something occupies ..data_tmp between the cleanup and the link.
            fs::create_dir(t.join("..data_tmp"))?;
            fs::write(t.join("..data_tmp/x"), "x")
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("create link "), "{err}");
    let mut after = snapshot(t);
    after.retain(|k, _| !k.starts_with("..data_tmp"));
    assert_eq!(after, before);
    // The next write clears the obstacle.
    published(w.write(&next).unwrap());
    check_volume_contents(t, "recovered", &next);
}

#[test]
fn a_failure_after_the_swap_rolls_back() {
    // reference: docs/atomic-writer.md §A.3 step 10 (visible links are made after the swap)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    let first = p644(&[("a", "1"), ("d/b", "1")]);
    let old_dir = published(w.write(&first).unwrap());
    let before = snapshot(t);
    let err = w
        .write_with_hook(&p644(&[("a", "2"), ("new", "2")]), |_| {
            // Makes creating the visible link for `new` fail, after the swap.
            fs::create_dir(t.join("..link_tmp"))?;
            fs::write(t.join("..link_tmp/x"), "x")
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("create link "), "{err}");
    assert_eq!(data_link(t), old_dir);
    let mut after = snapshot(t);
    after.retain(|k, _| !k.starts_with("..link_tmp"));
    assert_eq!(after, before);
    check_volume_contents(t, "rolled back", &first);
}

#[test]
fn a_read_only_target_fails_without_touching_the_set() {
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    let first = p644(&[("a", "1")]);
    w.write(&first).unwrap();
    fs::set_permissions(t, fs::Permissions::from_mode(0o555)).unwrap();
    let probe = fs::write(t.join("probe"), "");
    if probe.is_ok() {
        // Running with CAP_DAC_OVERRIDE (root): permissions cannot fail a write here;
        // the hook tests above inject the failures instead.
        fs::remove_file(t.join("probe")).unwrap();
        fs::set_permissions(t, fs::Permissions::from_mode(0o755)).unwrap();
        return;
    }
    let before = snapshot(t);
    let err = w.write(&p644(&[("a", "2")])).unwrap_err();
    fs::set_permissions(t, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("no permission"), "{err}");
    assert_eq!(snapshot(t), before);
}

#[test]
fn data_that_is_not_a_symlink_is_refused() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("..data")).unwrap();
    let err = writer(dir.path()).write(&p644(&[("a", "1")])).unwrap_err();
    assert!(matches!(err, WriterError::NotALayout { .. }), "{err}");
    assert!(err.to_string().contains("..data is not a symlink"), "{err}");
}

#[test]
fn exact_modes_whatever_the_umask_and_setid_bits_survive() {
    // reference: docs/reference-provider.md §6.5 (write, then chmod to the exact mode)
    let dir = tempdir();
    let p = payload(&[
        ("a", b"x", 0o4750),
        ("b", b"x", 0o000),
        ("c/d", b"x", 0o777),
    ]);
    writer(dir.path()).write(&p).unwrap();
    check_volume_contents(dir.path(), "modes", &p);
}

#[test]
fn owner_is_applied_and_an_owner_change_republishes() {
    // reference: docs/reference-provider.md §6.6 [GAP] (chown to the pod's user)
    let dir = tempdir();
    let t = dir.path();
    let me = rustix::process::geteuid().as_raw();
    let (uid, gid) = if me == 0 {
        (4242, 4343)
    } else {
        (me, rustix::process::getegid().as_raw())
    };
    let p = p644(&[("a", "1"), ("d/b", "2")]);
    writer(t).write(&p).unwrap();
    let w = writer(t).with_owner(Owner {
        uid: Some(uid),
        gid: Some(gid),
    });
    let data_dir = data_link(t);
    let outcome = w.write(&p).unwrap();
    if me == 0 {
        assert_ne!(published(outcome), data_dir, "owner change not published");
    }
    for f in ["a", "d/b"] {
        let m = fs::metadata(t.join("..data").join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{f}");
    }
    assert_eq!(w.write(&p).unwrap(), WriteOutcome::Unchanged);
    write_with_status(&w, &p, b"{}");
    let m = fs::metadata(t.join("..status.json")).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid));
    w.digest_key(0o600).unwrap();
    let m = fs::symlink_metadata(t.join("..hmac.key")).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid));
}

fn is_tmpfs(p: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)]
    let t = rustix::fs::statfs(p).unwrap().f_type as i64;
    t == 0x0102_1994
}

#[test]
fn fsync_unless_tmpfs() {
    // reference: docs/atomic-writer.md §A.5 (no fsync upstream), §B
    let p = p644(&[("a", "1"), ("d/b", "2")]);

    let dir = tempdir();
    let auto = AtomicWriter::new(dir.path());
    auto.write(&p).unwrap();
    if is_tmpfs(dir.path()) {
        assert_eq!(auto.fsync_count(), 0);
    } else {
        // One batched pass for the generation, the target after the swap.
        assert_eq!(auto.fsync_count(), 2);
    }
    let n = auto.fsync_count();
    assert_eq!(auto.write(&p).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(auto.fsync_count(), n, "an unchanged write fsynced");

    if Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        if is_tmpfs(shm.path()) {
            let w = AtomicWriter::new(shm.path());
            write_with_status(&w, &p, b"{}");
            w.digest_key(0o644).unwrap();
            assert_eq!(w.fsync_count(), 0, "fsync on tmpfs");
            let always = AtomicWriter::new(shm.path()).with_durability(Durability::Always);
            always.write(&p644(&[("a", "changed")])).unwrap();
            assert_eq!(always.fsync_count(), 2);
        }
    }

    let dir = tempdir();
    let never = AtomicWriter::new(dir.path()).with_durability(Durability::Never);
    write_with_status(&never, &p, b"{}");
    never.digest_key(0o644).unwrap();
    assert_eq!(never.fsync_count(), 0);
}

#[test]
fn status_file_is_inside_the_generation_and_linked_from_the_target() {
    // reference: ISSUE9 item 8 (the manifest is atomic with the set)
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    let p = p644(&[("a", "1")]);
    let render =
        |data_dir: &str, w: &mut dyn std::io::Write| write!(w, "{{\"data_dir\":\"{data_dir}\"}}");
    let opts = WriteOptions {
        status: Some(&render),
        republish: false,
    };
    let first = published(w.write_with(&p, &opts).unwrap());
    let inside = t.join(&first).join("..status.json");
    let m = fs::symlink_metadata(&inside).unwrap();
    assert!(m.is_file());
    assert_eq!(m.mode() & 0o7777, 0o644);
    assert_eq!(
        fs::read_link(t.join("..status.json")).unwrap(),
        Path::new("..data/..status.json")
    );
    assert_eq!(
        fs::read_to_string(t.join("..status.json")).unwrap(),
        format!("{{\"data_dir\":\"{first}\"}}")
    );
    check_volume_contents(t, "with status", &p);

    // Unchanged: nothing rewritten, the manifest included.
    let before = snapshot(t);
    assert_eq!(w.write_with(&p, &opts).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(snapshot(t), before);

    // Metadata-only change: a new generation with the new manifest.
    let forced = WriteOptions {
        status: Some(&render),
        republish: true,
    };
    let second = published(w.write_with(&p, &forced).unwrap());
    assert_ne!(second, first);
    assert!(
        fs::read_to_string(t.join("..status.json"))
            .unwrap()
            .contains(&second)
    );

    // The manifest is not payload: a plain write of the same files does not remove it.
    assert_eq!(w.write(&p).unwrap(), WriteOutcome::Unchanged);
    let names: BTreeSet<String> = fs::read_dir(t)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = ["..data", "..status.json", "a", second.as_str()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(names, want, "temporaries left");
}

#[test]
fn data_dir_names_have_the_upstream_shape() {
    // reference: docs/atomic-writer.md §A.2 (MkdirTemp with "..2006_01_02_15_04_05.")
    let dir = tempdir();
    let name = published(writer(dir.path()).write(&p644(&[("a", "1")])).unwrap());
    assert!(is_data_dir_name(&name), "{name}");
    let (stamp, random) = name[2..].split_once('.').unwrap();
    assert_eq!(stamp.len(), 19);
    assert!(random.bytes().all(|b| b.is_ascii_digit()), "{name}");
    let year: i32 = stamp[..4].parse().unwrap();
    assert_eq!(year, time::OffsetDateTime::now_utc().year());
    assert!(is_data_dir_name("..2016_02_01_15_04_05.12345678"));
    for not in [
        "..data",
        "..data_tmp",
        "..status.json",
        "..2016_02_01_15_04_05.",
        "..2016-02-01_15_04_05.1",
        "2016_02_01_15_04_05.1",
    ] {
        assert!(!is_data_dir_name(not), "{not}");
    }
}

#[test]
fn clones_share_the_lock_and_counters() {
    let dir = tempdir();
    let w = AtomicWriter::new(dir.path()).with_durability(Durability::Always);
    let c = w.clone();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    c.write(&p644(&[("a", &format!("{i}-{j}"))])).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(w.fsync_count(), c.fsync_count());
    assert!(w.fsync_count() > 0);
    let content = fs::read_to_string(dir.path().join("a")).unwrap();
    check_volume_contents(dir.path(), "concurrent", &p644(&[("a", &content)]));
}

#[test]
fn a_dangling_data_link_is_republished() {
    let dir = tempdir();
    let t = dir.path();
    let w = writer(t);
    for p in [Payload::new(), p644(&[("a", "1")])] {
        let data_dir = published(w.write(&p).unwrap());
        fs::remove_dir_all(t.join(&data_dir)).unwrap();
        published(w.write(&p).unwrap());
        check_volume_contents(t, "dangling", &p);
    }
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_name_paths_and_counts_never_contents() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let secret = "s3cr3t-value-that-must-not-leak";
    tracing::subscriber::with_default(subscriber, || {
        let dir = tempdir();
        let t = dir.path();
        let w = writer(t);
        w.write(&p644(&[("a", secret), ("d/b", secret)])).unwrap();
        w.write(&p644(&[("a", secret), ("d/b", secret)])).unwrap();
        fs::create_dir(t.join("..data_tmp")).unwrap();
        w.write(&p644(&[("a", "other")])).unwrap();
        write_with_status(&w, &p644(&[("a", "third")]), secret.as_bytes());
        let _ = w.write_with_hook(&p644(&[("a", secret)]), |_| Err(io::Error::other("no")));
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("published a new set"), "{logs}");
    assert!(logs.contains("files=2"), "{logs}");
    assert!(logs.contains("write not required"), "{logs}");
    assert!(logs.contains("leftover of an interrupted write"), "{logs}");
    assert!(!logs.contains(secret), "{logs}");
}
