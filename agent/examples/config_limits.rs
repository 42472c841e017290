//! Timing figures for the config parser's limits (issue 9 item 5): how long hostile and
//! realistic inputs take to be refused or accepted. Prints figures, asserts nothing about
//! time (CI machines are loaded). Run: `cargo run --release -p keyvault-agent --example
//! config_limits` (or `make bench-config`).

use std::time::Instant;

use keyvault_agent::config::{Env, Parameters, Settings, from_parameters, limits};

fn time(label: &str, text: &str) {
    let start = Instant::now();
    let result = Parameters::from_yaml(text);
    let took = start.elapsed();
    let outcome = match &result {
        Ok(_) => "accepted".to_owned(),
        Err(e) => format!("refused: {}", e.chars().take(70).collect::<String>()),
    };
    println!(
        "{label:<44} {:>9} bytes  {:>9.3} ms  {outcome}",
        text.len(),
        took.as_secs_f64() * 1e3
    );
}

/// The `objects` parameter through full validation (shared token budget).
fn time_objects(label: &str, objects: &str) {
    let params = Parameters::from_pairs([
        ("keyvaultName", "kv1"),
        ("useVMManagedIdentity", "true"),
        ("objects", objects),
    ]);
    let settings = Settings::with_defaults("spc.yaml", "/out");
    let start = Instant::now();
    let result = from_parameters(
        &params,
        std::path::Path::new("."),
        &settings,
        &Env::default(),
    );
    let took = start.elapsed();
    let outcome = match &result {
        Ok(p) => format!("accepted ({} objects)", p.objects.len()),
        Err(e) => format!(
            "refused: {}",
            e.to_string().chars().take(70).collect::<String>()
        ),
    };
    println!(
        "{label:<44} {:>9} bytes  {:>9.3} ms  {outcome}",
        objects.len(),
        took.as_secs_f64() * 1e3
    );
}

fn main() {
    let realistic = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: app\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv1\n    objects: |\n      array:\n        - |\n          objectName: db-password\n          objectType: secret\n";
    time("realistic manifest", realistic);
    let many: String = (0..10_000)
        .map(|i| {
            format!("        - |\n          objectName: secret-{i}\n          objectType: secret\n")
        })
        .collect();
    time(
        "manifest with 10,000 objects",
        &format!(
            "{}{}",
            realistic.trim_end_matches(|c| c != '\n').trim_end(),
            many
        ),
    );
    time("flow nesting 65,536 deep", &"[".repeat(65_536));
    time("flow nesting 2 MiB deep", &"[".repeat(2 << 20));
    time("block '- ' nesting 65,536 deep", &"- ".repeat(65_536));
    time(
        "flow nesting 64 deep (at the limit)",
        &format!("{}{}", "[".repeat(64), "]".repeat(64)),
    );
    let wide = format!(
        "a: {}{}{}",
        "[".repeat(63),
        "x,".repeat((4 << 20) / 2 - 100),
        "]".repeat(63)
    );
    time("64 deep, then ~4 MiB of scalars", &wide);
    let flat: String = (0..((4 << 20) / 12))
        .map(|i| format!("k{i:08}: v\n"))
        .collect();
    time("flat map, ~4 MiB", &flat);
    let mut laughs = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        laughs.push_str(&format!(
            "l{i}: &l{i} [{}]\n",
            vec![format!("*l{}", i - 1); 9].join(", ")
        ));
    }
    time("billion laughs", &laughs);
    time("4 MiB + 1 byte", &"#".repeat(limits::MAX_YAML_BYTES + 1));
    time(
        "4 MiB comment (1 token)",
        &format!("a: b\n#{}", "x".repeat(limits::MAX_YAML_BYTES - 10)),
    );
    let element = |i: usize| {
        format!(
            "  - |\n    objectName: secret-{i}\n    objectType: secret\n    objectAlias: dir/s{i}\n    filePermission: \"0600\"\n    objectEncoding: utf-8\n    objectFormat: pem\n    objectVersion: \"\"\n    objectVersionHistory: 0\n"
        )
    };
    let objects = |n: usize| format!("array:\n{}", (0..n).map(element).collect::<String>());
    time_objects(
        "objects: one object and a ~4 MiB comment",
        &format!(
            "{}#{}",
            objects(1),
            "x".repeat(limits::MAX_YAML_BYTES - 400)
        ),
    );
    time(
        "~4 MiB quoted value",
        &format!(
            "keyvaultName: \"{}\"",
            "x".repeat(limits::MAX_YAML_BYTES - 20)
        ),
    );
    time_objects("objects: 900 objects of 8 fields", &objects(900));
    time_objects("objects: 20,000 objects of 8 fields", &objects(20_000));
    let small: String = (0..200_000).map(|_| "  - a: b\n").collect();
    time_objects(
        "objects: 200,000 tiny elements",
        &format!("array:\n{small}"),
    );
}
