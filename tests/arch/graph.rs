//! The module-graph checker behind `make arch-check`, shared by the agent's (`agent/tests/arch.rs`)
//! and the emulator's (`emulator/tests/arch.rs`) architecture tests through `#[path]`, so both
//! crates are held to one rule by one implementation.
//!
//! The graph is read from the source text: every `crate::X` path (in `use` items, grouped
//! `use crate::{X, Y}` imports and inline paths) outside comments is an edge from the file's
//! top-level module to `X`. Test code counts too: a test that needs a module above its own
//! says the layering is wrong. Files of one folder module are checked among themselves from
//! their `super::X` and `crate::<folder>::X` paths. A failure prints the cycle and the lines
//! that make it.
// Each test binary uses part of this file (the agent also tests the parser itself).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One edge `from -> to`, with where it was seen (for the failure message).
pub type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to; `None` for the crate roots.
pub fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    if rel.components().count() > 1 {
        return Some(first);
    }
    match first.strip_suffix(".rs")? {
        "lib" | "main" => None,
        m => Some(m.to_owned()),
    }
}

/// Identifier characters.
pub fn ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The modules a line (comments removed) names as `crate::X` or `crate::{X, ...}`.
pub fn referenced(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `keyvault_crate::x` is not `crate::x`.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(ident) {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|&c| ident(c)).collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| ident(c)).collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Strips `//` comments (doc comments included: an intra-doc link is not a dependency) and
/// string literals, roughly: enough for this code base, whose strings do not hold `crate::`.
pub fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

pub fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeSet::new();
    for f in &files {
        if let Some(m) = top_module(src, f) {
            modules.insert(m.trim_end_matches(".rs").to_owned());
        }
    }
    let mut g = Graph::new();
    for f in &files {
        let Some(from) = top_module(src, f) else {
            continue;
        };
        let from = from.trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(f).expect("source file");
        for (n, line) in text.lines().enumerate() {
            for to in referenced(code_of(line)) {
                // `crate::Error` and other root items are not modules.
                if to != from && modules.contains(&to) {
                    let at = format!(
                        "{}:{}: {}",
                        f.strip_prefix(src).unwrap().display(),
                        n + 1,
                        line.trim()
                    );
                    g.entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .push(at);
                }
            }
        }
    }
    g
}

/// One cycle in `g` (without the allowed edges), as the list of modules along it.
pub fn find_cycle(g: &Graph, allowed: &[(&str, &str)]) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        allowed: &[(&str, &str)],
        node: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for to in g.get(node).into_iter().flat_map(|m| m.keys()) {
            if allowed.contains(&(node, to.as_str())) {
                continue;
            }
            match state.get(to.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|m| m == to).expect("on stack");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(g, allowed, to, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in g.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(g, allowed, node, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

pub fn explain(g: &Graph, cycle: &[String]) -> String {
    let mut out = format!("module cycle: {}\n", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        let seen = &g[&pair[0]][&pair[1]];
        out.push_str(&format!("  {} -> {} at:\n", pair[0], pair[1]));
        for at in seen.iter().take(3) {
            out.push_str(&format!("    {at}\n"));
        }
    }
    out.push_str(
        "move the shared item down to a module both can use (see CONTRIBUTING.md, \"Layers\")",
    );
    out
}

/// Fails when the top-level modules under `src` have a cycle not made only of `allowed`
/// edges, or when an allowed edge no longer exists (so it cannot come back unnoticed).
pub fn check(src: &Path, allowed: &[(&str, &str)]) {
    let g = graph(src);
    assert!(
        g.len() > 5,
        "{}: parsed too few modules: {g:?}",
        src.display()
    );
    if let Some(cycle) = find_cycle(&g, allowed) {
        panic!("{}: {}", src.display(), explain(&g, &cycle));
    }
    for (a, b) in allowed {
        assert!(
            g.get(*a).is_some_and(|m| m.contains_key(*b)),
            "{}: allowed edge {a} -> {b} is gone: remove it from the exceptions",
            src.display()
        );
    }
}

/// Sibling files of one folder module (`convert/pkcs12.rs` -> `convert/null_password.rs`),
/// read from `super::X` and `crate::<folder>::X` paths in the product part of each file (up to
/// its first `#[cfg(test)]`: inside a test module `super` is the file itself).
pub fn sibling_graphs(src: &Path) -> BTreeMap<String, Graph> {
    let mut out = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(src)
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
        let siblings: BTreeSet<String> = files
            .iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .map(|p| stem(p))
            .filter(|s| s != "mod" && s != "tests")
            .collect();
        let mut g = Graph::new();
        for f in files.iter().filter(|p| p.parent() == Some(dir.as_path())) {
            let from = stem(f);
            if !siblings.contains(&from) {
                continue;
            }
            let text = std::fs::read_to_string(f).expect("source file");
            let own = format!("crate::{folder}::");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                let code = code_of(line)
                    .replace(&own, "crate::")
                    .replace("super::", "crate::");
                for to in referenced(&code) {
                    if to != from && siblings.contains(&to) {
                        g.entry(from.clone())
                            .or_default()
                            .entry(to)
                            .or_default()
                            .push(format!("{folder}/{from}.rs:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
        out.insert(folder, g);
    }
    out
}

/// Fails when the files of a folder module under `src` have a cycle not made only of
/// `allowed` `(folder, from, to)` edges, or when an allowed edge is gone.
pub fn check_siblings(src: &Path, allowed: &[(&str, &str, &str)]) {
    for (folder, g) in &sibling_graphs(src) {
        let allowed: Vec<(&str, &str)> = allowed
            .iter()
            .filter(|(f, _, _)| f == folder)
            .map(|(_, a, b)| (*a, *b))
            .collect();
        if let Some(cycle) = find_cycle(g, &allowed) {
            panic!("{}/{folder}: {}", src.display(), explain(g, &cycle));
        }
        for (a, b) in &allowed {
            assert!(
                g.get(*a).is_some_and(|m| m.contains_key(*b)),
                "{folder}: allowed edge {a} -> {b} is gone: remove it from the exceptions"
            );
        }
    }
}
