//! Architecture check of the agent (`make arch-check`): its top-level modules form an acyclic
//! graph, and so do the files of each folder module, so a newcomer can read them bottom-up
//! and a change in one concern does not drag its dependants' dependants along (issue 13).
//! The checker is shared with the emulator's check (`emulator/tests/arch.rs`).

use std::path::Path;

#[path = "../../tests/arch/graph.rs"]
mod graph;

use graph::*;

/// Cycles that exist today and are accepted until someone removes them, as `(a, b)` edges
/// that may close a cycle. Empty for the agent: keep it so.
const AGENT_ALLOWED: &[(&str, &str)] = &[];

/// Accepted cycles between sibling files, as `(folder, from, to)`.
const AGENT_SIBLINGS_ALLOWED: &[(&str, &str, &str)] = &[
    // `pkcs12::decode` falls back to `null_password::decode`, which reuses `pkcs12`'s
    // `Contents`, OIDs and DER writer. Breaking it means moving that shared vocabulary into
    // its own file; left for the PKCS#12 rework of issue 13 item 3, which owns convert/.
    ("convert", "pkcs12", "null_password"),
];

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
    assert!(referenced(code_of("/// see [`crate::sync::Syncer`]")).is_empty());
}
