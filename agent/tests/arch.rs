//! Architecture check of the agent (`make arch-check`): its top-level modules form an acyclic
//! graph, and so do the files of each folder module, so a newcomer can read them bottom-up
//! and a change in one concern does not drag its dependants' dependants along (issue 13).
//! The checker is shared with the emulator's check (`emulator/tests/arch.rs`). No module of
//! either crate is named like a dependency or a std module (below).

use std::collections::BTreeSet;
use std::path::Path;

#[path = "../../tests/arch/graph.rs"]
mod graph;

use graph::*;

/// Cycles that exist today and are accepted until someone removes them, as `(a, b)` edges
/// that may close a cycle. Empty for the agent: keep it so.
const AGENT_ALLOWED: &[(&str, &str)] = &[];

/// Accepted cycles between sibling files, as `(folder, from, to)`.
/// Empty: keep it so (the last one, `convert/pkcs12.rs` <-> `null_password.rs`, became the
/// `convert/pkcs12/` folder in issue 13 item 3).
const AGENT_SIBLINGS_ALLOWED: &[(&str, &str, &str)] = &[];

#[test]
fn agent_files_within_a_folder_module_are_acyclic_but_for_the_listed_exceptions() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graphs = sibling_graphs(&src);
    assert!(graphs.contains_key("convert") && graphs.contains_key("keyvault"));
    check_siblings(&src, AGENT_SIBLINGS_ALLOWED);
}

#[test]
fn agent_top_level_modules_are_acyclic() {
    check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        AGENT_ALLOWED,
    );
}

#[test]
fn the_checker_sees_a_cycle_and_names_it() {
    let mut g = Graph::new();
    for (a, b) in [
        ("sync", "telemetry"),
        ("telemetry", "sync"),
        ("sync", "writer"),
    ] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .push(format!("{a}.rs:1: use crate::{b}::X;"));
    }
    let cycle = find_cycle(&g, &[]).expect("a cycle");
    let text = explain(&g, &cycle);
    assert!(text.contains("sync -> telemetry -> sync"), "{text}");
    assert!(
        text.contains("telemetry.rs:1: use crate::sync::X;"),
        "{text}"
    );
    assert_eq!(find_cycle(&g, &[("telemetry", "sync")]), None);
}

#[test]
fn references_are_read_from_paths_and_groups_not_comments() {
    assert_eq!(
        referenced("use crate::{config::Plan, report, writer::W};"),
        ["config", "report", "writer"]
    );
    assert_eq!(
        referenced("let x = crate::retry::deadline_in(d) + keyvault_crate::y;"),
        ["retry"]
    );
    assert!(referenced(code_of("/// see [`crate::syncer::Syncer`]")).is_empty());
}

/// std's modules, as a reader meets them in `use std::X` (issue 13: names that do not shadow
/// std or dependencies).
const STD_MODULES: &[&str] = &[
    "alloc",
    "any",
    "array",
    "ascii",
    "backtrace",
    "borrow",
    "boxed",
    "cell",
    "char",
    "clone",
    "cmp",
    "collections",
    "convert",
    "default",
    "env",
    "error",
    "f32",
    "f64",
    "ffi",
    "fmt",
    "fs",
    "future",
    "hash",
    "hint",
    "io",
    "iter",
    "marker",
    "mem",
    "net",
    "num",
    "ops",
    "option",
    "os",
    "panic",
    "path",
    "pin",
    "prelude",
    "primitive",
    "process",
    "ptr",
    "rc",
    "result",
    "slice",
    "str",
    "string",
    "sync",
    "task",
    "thread",
    "time",
    "vec",
];

/// Top-level modules named like a std module, accepted with their reason. A dependency's name
/// is never accepted: `use X::..` then means two things depending on the file.
const AGENT_STD_ALLOWED: &[(&str, &str)] = &[
    // The conventional name of a crate's error type's home; nobody reads `crate::error` as
    // `std::error`.
    ("error", "conventional"),
    // Conversions of Key Vault bundles; `std::convert` holds traits only, never imported by
    // module path here. Renaming it is the PKCS#12 rework's call (issue 13 item 3).
    ("convert", "owned by the PKCS#12 rework"),
];

/// The crate names a crate's `Cargo.toml` depends on (normal and dev), as Rust spells them.
fn dependency_names(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).expect("Cargo.toml");
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = matches!(line, "[dependencies]" | "[dev-dependencies]");
            continue;
        }
        if !in_deps || line.starts_with('#') {
            continue;
        }
        let name: String = line.chars().take_while(|&c| ident(c) || c == '-').collect();
        if !name.is_empty() {
            out.insert(name.replace('-', "_"));
        }
    }
    out
}

/// The crate's top-level modules: its files and folders under `src` but the roots.
fn modules(src: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .iter()
        .filter_map(|f| top_module(src, f))
        .map(|m| m.trim_end_matches(".rs").to_owned())
        .collect()
}

fn check_names(crate_dir: &str, std_allowed: &[(&str, &str)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir);
    let deps = dependency_names(&root.join("Cargo.toml"));
    assert!(
        deps.contains("tokio") && deps.contains("serde"),
        "{crate_dir}: parsed too few dependencies: {deps:?}"
    );
    let owned = modules(&root.join("src"));
    let modules: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
    let mut problems = Vec::new();
    for m in &modules {
        if deps.contains(*m) {
            problems.push(format!(
                "module `{m}` shadows the dependency `{m}`: rename the module"
            ));
        }
        if STD_MODULES.contains(m) && !std_allowed.iter().any(|(a, _)| a == m) {
            problems.push(format!(
                "module `{m}` shadows `std::{m}`: rename the module"
            ));
        }
    }
    for (a, _) in std_allowed {
        if !modules.contains(a) {
            problems.push(format!(
                "module `{a}` is gone: remove it from the accepted std names"
            ));
        }
    }
    assert!(problems.is_empty(), "{crate_dir}: {}", problems.join("; "));
}

// reference: issue 13 item 1 (names that do not shadow std or dependencies)
#[test]
fn agent_module_names_shadow_no_dependency_and_no_std_module_but_the_listed() {
    check_names("agent", AGENT_STD_ALLOWED);
}

// reference: issue 13 item 1 (names that do not shadow std or dependencies)
#[test]
fn emulator_module_names_shadow_no_dependency_and_no_std_module() {
    check_names("emulator", &[]);
}

// reference: issue 13 item 1 (the check reads dependency names as Rust spells them)
#[test]
fn dependency_names_are_read_from_both_tables_with_underscores() {
    let deps = dependency_names(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    assert!(deps.contains("notify"), "{deps:?}");
    assert!(deps.contains("signal_hook"), "{deps:?}");
    assert!(
        deps.contains("keyvault_emulator"),
        "dev-dependencies: {deps:?}"
    );
    assert!(
        !deps.contains("name"),
        "[package] is not a dependency table: {deps:?}"
    );
}
