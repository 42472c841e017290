//! Requests per unchanged refresh, GET detection (the reference behaviour) against list
//! detection, for N latest secrets in a vault of 3×N secrets, against the in-process
//! emulator (throttling off, so every figure is the agent's own demand).
//!
//! `cargo run -p keyvault-agent --example request_budget --locked [-- N ...]` (default
//! 50 500 2000). Each mode gets a fresh syncer: a first sync, one warm-up refresh, then the
//! measured refresh; the figure is what the emulator counted (GETs and list pages).

use std::time::Duration;

use keyvault_agent::config::{Env, Settings};
use keyvault_agent::detect::ChangeDetection;
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::{Emulator, RequestKind};

const CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
const CLIENT_SECRET: &str = "bench-client-secret";

fn seed(v: usize) -> String {
    let mut s = String::from("vaults:\n  - name: demo\n    secrets:\n");
    for i in 0..v {
        s.push_str(&format!(
            "      - name: s{i}\n        versions: [{{ value: value-{i}, created: 1700000000 }}]\n"
        ));
    }
    s.push_str(&format!(
        "identities:\n  - name: sp\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    access: all\n"
    ));
    s
}

fn spc(emu: &Emulator, n: usize) -> String {
    let mut objs = String::new();
    for i in 0..n {
        objs.push_str(&format!(
            "        - |\n          objectName: s{i}\n          objectType: secret\n"
        ));
    }
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: bench\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: demo\n    keyvaultURL: \"{}\"\n    tenantID: \"{}\"\n    objects: |\n      array:\n{objs}",
        emu.vault_url("demo"),
        emu.tenant_id()
    )
}

async fn measure(emu: &Emulator, n: usize, mode: ChangeDetection) -> (u64, u64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("spc.yaml");
    std::fs::write(&config, spc(emu, n)).expect("write spc");
    let mut settings = Settings::with_defaults(&config, tmp.path().join("out"));
    settings.ca_files = vec![emu.ca_file()];
    settings.listen = None;
    settings.timeout = Duration::from_secs(600);
    settings.change_detection = mode;
    let env = Env([
        ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
        ("AZURE_TENANT_ID", emu.tenant_id()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("AZURE_AUTHORITY_HOST", emu.authority_host().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect());
    let plan = keyvault_agent::config::load(&settings, &env).expect("valid spc");
    let syncer = Syncer::new(plan, &settings, Metrics::new()).expect("syncer");
    syncer.sync().await.expect("first sync");
    syncer.sync().await.expect("warm-up refresh");
    emu.reset_counts();
    syncer.sync().await.expect("measured refresh");
    let c = emu.counts();
    (c.kind(RequestKind::Get), c.kind(RequestKind::List))
}

#[tokio::main]
async fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() {
        vec![50, 500, 2000]
    } else {
        ns
    };
    println!(
        "| N latest | vault V = 3N | get detection (before) | list detection (after) | ⌈V/25⌉ |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in ns {
        let v = 3 * n;
        let emu = Emulator::builder()
            .seed_yaml(seed(v))
            .start()
            .await
            .expect("emulator starts");
        let (get_gets, get_lists) = measure(&emu, n, ChangeDetection::Get).await;
        let (list_gets, list_lists) = measure(&emu, n, ChangeDetection::List).await;
        println!(
            "| {n} | {v} | {} ({get_gets} GET, {get_lists} list) | {} ({list_gets} GET, {list_lists} list) | {} |",
            get_gets + get_lists,
            list_gets + list_lists,
            v.div_ceil(25)
        );
        emu.shutdown().await;
    }
}
