//! Architecture check of the emulator (`make arch-check`): its top-level modules form an
//! acyclic graph, and so do the files of each folder module (`keyvault/`), with no accepted
//! exceptions. The layers are tabled in CONTRIBUTING.md ("Layers"): `routes` at the bottom with
//! `store` and the crypto modules, then `seed`, `faults`/`throttle`, `state`, `auth`, the
//! identity endpoints, `keyvault`, `inject`, `server`, `admin`. The checker is shared with the
//! agent's check (`tests/arch/graph.rs`).
// reference: issue 13 item 5 (no cycles between auth/keyvault/seed/state; one route table)

use std::path::Path;

#[path = "../../tests/arch/graph.rs"]
mod graph;

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn emulator_top_level_modules_are_acyclic() {
    graph::check(&src(), &[]);
}

#[test]
fn emulator_files_within_a_folder_module_are_acyclic() {
    let graphs = graph::sibling_graphs(&src());
    assert!(
        graphs.get("keyvault").is_some_and(|g| g.len() >= 4),
        "keyvault/ is split by object family: {graphs:?}"
    );
    graph::check_siblings(&src(), &[]);
}

#[test]
fn faults_and_throttle_sit_below_the_data_plane() {
    // The fault table and the buckets are keyed by the route table's classes: they must not
    // reach up into the router they guard (the cycle issue 13 named).
    let g = graph::graph(&src());
    for low in ["faults", "throttle", "routes", "seed", "state", "store"] {
        for high in ["keyvault", "server", "inject", "auth"] {
            assert!(
                !g.get(low).is_some_and(|m| m.contains_key(high)),
                "{low} uses {high}: {:?}",
                g[low][high]
            );
        }
    }
}
