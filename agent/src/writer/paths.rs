//! Payload path rules of the Kubernetes AtomicWriter (`validatePath`, `validatePayload`),
//! with the same error texts, plus the checks upstream leaves to chance (duplicates after
//! cleaning, a file that is also a directory, modes beyond permission bits). Everything
//! here is pure, so a bad payload is refused before the disk is touched.

use std::collections::{BTreeMap, BTreeSet};

use super::{FileProjection, Payload, WriterError};

/// Upstream `maxPathLength`.
pub(crate) const MAX_PATH_LENGTH: usize = 4096;
/// Upstream `maxFileNameLength`.
pub(crate) const MAX_FILE_NAME_LENGTH: usize = 255;

fn invalid(path: &str, message: String) -> WriterError {
    WriterError::InvalidPath {
        path: path.to_owned(),
        message,
    }
}

/// Upstream `validatePath`: the same rules, in the same order, with the same texts.
pub(crate) fn validate_path(path: &str) -> Result<(), WriterError> {
    if path.is_empty() {
        return Err(invalid(
            path,
            format!("invalid path: must not be empty: {path:?}"),
        ));
    }
    if path.starts_with('/') {
        return Err(invalid(
            path,
            format!("invalid path: must be relative path: {path}"),
        ));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(invalid(
            path,
            format!("invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"),
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(invalid(
                path,
                format!("invalid path: must not contain '..': {path}"),
            ));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(invalid(
                path,
                format!(
                    "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
                ),
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(invalid(
            path,
            format!("invalid path: must not start with '..': {path}"),
        ));
    }
    // Not upstream: a NUL byte would only fail later, in the middle of writing.
    if path.contains('\0') {
        return Err(invalid(
            path,
            format!("invalid path: must not contain a NUL byte: {path:?}"),
        ));
    }
    Ok(())
}

/// Go's `filepath.Clean` for a path that already passed [`validate_path`] (so it has no
/// `..` element): drop empty and `.` elements.
pub(crate) fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// Upstream `validatePayload`: validate every key and key the result by the cleaned path.
/// Also refuses what only cleaning reveals (`.`, `./..x`) and two keys that clean to the
/// same path (upstream keeps one of them at random).
pub(crate) fn validate_payload(
    payload: &Payload,
) -> Result<BTreeMap<String, &FileProjection>, WriterError> {
    let mut clean_payload: BTreeMap<String, &FileProjection> = BTreeMap::new();
    for (key, file) in payload {
        validate_path(key)?;
        let cleaned = clean(key);
        if cleaned == "." {
            return Err(invalid(
                key,
                format!("invalid path: must name a file: {key:?}"),
            ));
        }
        if cleaned.starts_with("..") {
            return Err(invalid(
                key,
                format!("invalid path: must not start with '..': {key}"),
            ));
        }
        if clean_payload.contains_key(&cleaned) {
            // Which key came first is looked up on this error path only, not kept for every
            // path (at thousands of files a second map of them is a megabyte; issue 10
            // item 6).
            let first = payload
                .keys()
                .take_while(|k| *k != key)
                .find(|k| clean(k) == cleaned)
                .cloned()
                .unwrap_or_default();
            return Err(WriterError::DuplicatePath {
                first,
                second: key.clone(),
                clean: cleaned,
            });
        }
        clean_payload.insert(cleaned, file);
    }
    Ok(clean_payload)
}

/// Checks a cleaned payload for what would fail halfway through writing: a file that is
/// also a parent directory, and modes with bits beyond `0o7777`.
pub(crate) fn check_writable(
    clean_payload: &BTreeMap<String, &FileProjection>,
) -> Result<(), WriterError> {
    for (path, file) in clean_payload {
        if file.mode & !0o7777 != 0 {
            return Err(WriterError::InvalidMode {
                path: path.clone(),
                mode: file.mode,
            });
        }
        for dir in ancestors(path) {
            if clean_payload.contains_key(dir) {
                return Err(WriterError::FileDirCollision {
                    file: dir.to_owned(),
                    nested: path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// `a/b/c` → `a`, `a/b` (proper ancestors, shortest first).
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The first path component: the name that gets a visible symlink.
pub(crate) fn first_component(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Every path the new set keeps: each file plus all of its ancestor directories.
pub(crate) fn kept_paths<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<&'a str> {
    let mut kept = BTreeSet::new();
    for p in paths {
        kept.insert(p.as_str());
        kept.extend(ancestors(p));
    }
    kept
}
