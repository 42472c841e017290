//! Whole-configuration tests: fixtures on disk, the reference's error-precedence table, and
//! every problem reported in one run.

use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn wi_env() -> Env {
    Env::from_pairs(&[
        ("AZURE_CLIENT_ID", "env-client"),
        ("AZURE_TENANT_ID", "env-tenant"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
    ])
}

fn load_file(name: &str, env: &Env) -> Result<Plan, ConfigErrors> {
    load(&Settings::with_defaults(fixture(name), "/out"), env)
}

fn params_errors(pairs: &[(&str, &str)], env: &Env) -> Vec<String> {
    let settings = Settings::with_defaults("spc.yaml", "/out");
    match from_parameters(
        &Parameters::from_pairs(pairs.iter().copied()),
        Path::new("."),
        &settings,
        env,
    ) {
        Ok(plan) => panic!("expected errors, got {plan:?}"),
        Err(e) => e.messages(),
    }
}

const ONE_OBJECT: &str = "array:\n  - |\n    objectName: secret1\n    objectType: secret\n";

#[test]
fn full_manifest_loads_into_a_plan() {
    let plan = load_file("spc-full.yaml", &wi_env()).unwrap();
    assert_eq!(plan.vault_name, "kvname");
    assert_eq!(plan.vault_url.as_str(), "https://kvname.vault.azure.net/");
    assert_eq!(plan.cloud.name, "AzurePublicCloud");
    // Parameters override the webhook's env vars.
    let Identity::WorkloadIdentity {
        client_id,
        tenant_id,
        token_file,
        authority_host,
    } = &plan.identity
    else {
        panic!("{:?}", plan.identity)
    };
    assert_eq!(client_id, "00000000-0000-0000-0000-000000000001");
    assert_eq!(tenant_id, "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(
        token_file,
        Path::new("/var/run/secrets/azure/tokens/azure-identity-token")
    );
    assert_eq!(
        authority_host.as_str(),
        "https://login.microsoftonline.com/"
    );

    let summary: Vec<_> = plan
        .objects
        .iter()
        .map(|o| (o.id(), o.path.as_str(), o.mode, o.history))
        .collect();
    assert_eq!(
        summary,
        [
            ("secret/db-password".to_string(), "db-password", 0o644, 0),
            ("key/signing-key".to_string(), "keys/signing.pem", 0o600, 0),
            ("secret/tls".to_string(), "tls.pfx", 0o644, 0),
            ("cert/api-cert".to_string(), "api-cert", 0o440, 3),
        ]
    );
    assert_eq!(plan.objects[0].version, None);
    assert_eq!(plan.objects[2].format, ObjectFormat::Pfx);
    assert_eq!(plan.objects[2].encoding, ObjectEncoding::Base64);
}

#[test]
fn parameters_only_file_loads_with_managed_identity() {
    let mut settings = Settings::with_defaults(fixture("params-only.yaml"), "/out");
    settings.imds_endpoint = Url::parse("http://127.0.0.1:9").unwrap();
    // No tenant anywhere: managed identity does not need one (the reference requires it).
    let plan = load(&settings, &Env::default()).unwrap();
    assert_eq!(
        plan.vault_url.as_str(),
        "https://kv-params.vault.azure.net/"
    );
    assert_eq!(
        plan.identity,
        Identity::ManagedIdentity {
            client_id: Some("11111111-1111-1111-1111-111111111111".into()),
            endpoint: Url::parse("http://127.0.0.1:9").unwrap(),
        }
    );
    assert_eq!(plan.objects.len(), 2);
    assert_eq!(plan.objects[1].path, "k1");
}

#[test]
fn config_file_is_read_through_a_configmap_style_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2026_01_01_00_00_00.1");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(fixture("params-only.yaml"), data.join("spc.yaml")).unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/spc.yaml", dir.path().join("spc.yaml")).unwrap();
    let plan = load(
        &Settings::with_defaults(dir.path().join("spc.yaml"), "/out"),
        &Env::default(),
    )
    .unwrap();
    assert_eq!(plan.vault_name, "kv-params");
}

#[test]
fn azure_stack_file_relative_to_the_config() {
    let plan = load_file("spc-stack.yaml", &Env::default()).unwrap();
    assert_eq!(plan.cloud.name, "AzureStackCloud");
    assert_eq!(
        plan.vault_url.as_str(),
        "https://kvstack.vault.local.azurestack.external/"
    );
    assert_eq!(
        plan.cloud.authority_host.as_str(),
        "https://login.local.azurestack.external/"
    );
    assert_eq!(
        plan.cloud.keyvault_resource,
        "https://vault.local.azurestack.external"
    );
}

#[test]
fn azure_stack_errors() {
    let base = [
        ("keyvaultName", "kv1"),
        ("useVMManagedIdentity", "true"),
        ("objects", ONE_OBJECT),
    ];
    let mut p = base.to_vec();
    p.push(("cloudName", "AzureStackCloud"));
    let errs = params_errors(&p, &Env::default());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "cloudName AzureStackCloud is not valid, error: cloudEnvFileName is required"
        ),
        "{errs:?}"
    );
    p.push(("cloudEnvFileName", "/etc/kubernetes/akscustom-missing.json"));
    let errs = params_errors(&p, &Env::default());
    assert!(
        errs[0].starts_with("cloudName AzureStackCloud is not valid, error: cannot read cloudEnvFileName \"/etc/kubernetes/akscustom-missing.json\""),
        "{errs:?}"
    );
}

#[test]
fn keyvault_url_overrides_the_vault_host_but_the_name_is_still_checked() {
    let settings = Settings::with_defaults("spc.yaml", "/out");
    let p = Parameters::from_pairs([
        ("keyvaultName", "kv1"),
        ("keyvaultURL", "https://127.0.0.1:8443"),
        ("objects", ONE_OBJECT),
    ]);
    let plan = from_parameters(&p, Path::new("."), &settings, &wi_env()).unwrap();
    assert_eq!(plan.vault_url.as_str(), "https://127.0.0.1:8443/");
    assert_eq!(plan.vault_name, "kv1");

    let errs = params_errors(
        &[
            ("keyvaultName", "k"),
            ("keyvaultURL", "http://127.0.0.1:8443"),
            ("objects", ONE_OBJECT),
        ],
        &wi_env(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("keyvaultURL \"http://127.0.0.1:8443\" is not valid"));
    assert_eq!(
        errs[1],
        "failed to get vault: Invalid vault name: \"k\", must be between 3 and 24 chars"
    );
}

// reference: docs/reference-provider.md §1.5 GetSecretsStoreObjectContent error cases, in order.
// Pod name/namespace are not required (the agent runs in the pod), so the first two rows
// do not apply; every other row's error must be the first one we report.
#[test]
fn reference_error_precedence_table() {
    let none = Env::default();
    let vault = ("keyvaultName", "kv1");
    let tid = ("tenantID", "tid");
    let vm = ("useVMManagedIdentity", "true");

    // Rows 1–2 (pod info): never required.
    let errs = params_errors(&[], &none);
    assert!(
        !errs
            .iter()
            .any(|e| e.contains("pod name") || e.contains("pod namespace"))
    );
    // Row 3: pod info only → keyvaultName.
    assert_eq!(errs[0], "keyvaultName is not provided");
    // Row 4: + keyvaultName → tenant.
    let errs = params_errors(&[vault], &none);
    assert_eq!(errs[0], "tenantId is not provided");
    // Rows 5–6: bad booleans.
    let errs = params_errors(&[vault, tid, ("usePodIdentity", "tru")], &none);
    assert_eq!(
        errs[0],
        "usePodIdentity \"tru\": not a boolean: use \"true\" or \"false\""
    );
    let errs = params_errors(&[vault, tid, ("useVMManagedIdentity", "tru")], &none);
    assert_eq!(
        errs[0],
        "useVMManagedIdentity \"tru\": not a boolean: use \"true\" or \"false\""
    );
    // Row 7: unknown cloud.
    let errs = params_errors(&[vault, tid, ("cloudName", "AzureCloud1")], &none);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("cloudName AzureCloud1 is not valid")),
        "{errs:?}"
    );
    assert_eq!(
        errs.iter().find(|e| e.starts_with("cloudName")).unwrap(),
        "cloudName AzureCloud1 is not valid, error: there is no cloud named \"AzureCloud1\": use one of AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud (or AzureStackCloud with cloudEnvFileName)"
    );
    // Row 8: vmMI, no objects.
    let errs = params_errors(&[vault, tid, vm], &none);
    assert_eq!(errs, ["objects is not set"]);
    // Row 9: bare list.
    let errs = params_errors(&[vault, tid, vm, ("objects", "- a\n- b\n")], &none);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("failed to yaml unmarshal objects, error: yaml: unmarshal errors"),
        "{errs:?}"
    );
    // Row 10: `array:` → no error, no files.
    let settings = Settings::with_defaults("spc.yaml", "/out");
    let plan = from_parameters(
        &Parameters::from_pairs([vault, tid, vm, ("objects", "array:")]),
        Path::new("."),
        &settings,
        &none,
    )
    .unwrap();
    assert!(plan.objects.is_empty());
    // Rows 11–12: wrapped format / encoding errors.
    let obj = |extra: &str| {
        format!("array:\n  - |\n    objectName: secret1\n    objectType: secret\n    {extra}\n")
    };
    let o = obj("objectFormat: pkcs");
    let errs = params_errors(&[vault, tid, vm, ("objects", &o)], &none);
    assert_eq!(
        errs,
        [
            "failed to get objectType:secret, objectName:secret1, objectVersion:: invalid objectFormat: pkcs, should be PEM or PFX"
        ]
    );
    let o = obj("objectEncoding: utf-16");
    let errs = params_errors(&[vault, tid, vm, ("objects", &o)], &none);
    assert_eq!(
        errs,
        [
            "failed to get objectType:secret, objectName:secret1, objectVersion:: invalid objectEncoding: utf-16, should be hex, base64 or utf-8"
        ]
    );
    // Row 13 (Key Vault unreachable) is a fetch error, not a configuration one.
}

// reference: docs/reference-provider.md §1.5 parameter getters (trimming)
#[test]
fn parameters_are_trimmed() {
    let settings = Settings::with_defaults("spc.yaml", "/out");
    let plan = from_parameters(
        &Parameters::from_pairs([
            ("keyvaultName", " kv1 "),
            ("tenantID", " test "),
            ("clientID", "  app  "),
            ("cloudName", " AzureChinaCloud "),
            ("useVMManagedIdentity", " false "),
            ("objects", &format!("  {ONE_OBJECT}  ")),
        ]),
        Path::new("."),
        &settings,
        &Env::from_pairs(&[("AZURE_FEDERATED_TOKEN_FILE", "/t")]),
    )
    .unwrap();
    assert_eq!(plan.vault_url.as_str(), "https://kv1.vault.azure.cn/");
    assert!(
        matches!(&plan.identity, Identity::WorkloadIdentity { client_id, tenant_id, authority_host, .. }
        if client_id == "app" && tenant_id == "test" && authority_host.as_str() == "https://login.chinacloudapi.cn/")
    );
}

#[test]
fn every_problem_is_reported_in_one_run_in_precedence_order() {
    let errs = load_file("spc-broken.yaml", &Env::default())
        .unwrap_err()
        .messages();
    assert_eq!(
        errs,
        [
            "useVMManagedIdentity \"yes\": not a boolean: use \"true\" or \"false\"",
            "cloudName AzureMoonCloud is not valid, error: there is no cloud named \"AzureMoonCloud\": use one of AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud (or AzureStackCloud with cloudEnvFileName)",
            "failed to get objectType:secret, objectName:secret1, objectVersion:: invalid objectFormat: pkcs, should be PEM or PFX",
            "failed to get objectType:Secret, objectName:secret2, objectVersion:: Invalid vaultObjectTypes. Should be secret, key, or cert",
            "failed to get objectType:Secret, objectName:secret2, objectVersion:: filePermission \"0900\": not an octal number: use a mode such as \"0644\" or \"0440\"",
            "failed to get objectType:secret, objectName:dup, objectVersion:: output path \"secret1\" is also written by objectType:secret, objectName:secret1: give one of them a different objectAlias",
            "failed to get objectType:secret, objectName:escape, objectVersion:: file name must not contain '..'",
            "failed to get vault: Invalid vault name: \"kv_bad\", must match [-a-zA-Z0-9]{3,24}",
        ]
    );
    // `dup` clashes with `secret1` although secret1 has another problem: paths are checked
    // for every object whose path is itself valid.
}

#[test]
fn duplicate_reported_next_to_other_problems() {
    let objects = "array:\n  - |\n    objectName: a\n    objectType: secret\n  - |\n    objectName: b\n    objectAlias: a\n    objectType: secret\n";
    let errs = params_errors(
        &[("keyvaultName", "kv1"), ("objects", objects)],
        &Env::default(),
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0], "tenantId is not provided");
    assert!(errs[1].starts_with("no identity configured: "));
    assert!(
        errs[2].contains("output path \"a\" is also written by objectType:secret, objectName:a")
    );
}

#[test]
fn unreadable_and_invalid_files() {
    let errs = load_file("does-not-exist.yaml", &Env::default()).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    let msg = errs.to_string();
    assert!(
        msg.starts_with("cannot read config file \"") && msg.contains("does-not-exist.yaml"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("spc.yaml");
    std::fs::write(&f, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: gcp\n  parameters: {}\n").unwrap();
    let msg = load(&Settings::with_defaults(&f, "/out"), &Env::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spec.provider is \"gcp\"") && msg.contains("spc.yaml"),
        "{msg}"
    );
}

#[test]
fn config_errors_display_one_line_each_and_convert_from_strings() {
    let e = ConfigErrors(vec!["first".into(), ConfigError::ObjectsNotSet]);
    assert_eq!(e.to_string(), "first\nobjects is not set");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().lines().count() == 2);
}

#[test]
fn plan_debug_never_shows_a_client_secret() {
    let settings = Settings::with_defaults("spc.yaml", "/out");
    let plan = from_parameters(
        &Parameters::from_pairs([
            ("keyvaultName", "kv1"),
            ("tenantID", "t"),
            ("clientID", "c"),
            ("objects", ONE_OBJECT),
        ]),
        Path::new("."),
        &settings,
        &Env::from_pairs(&[("AZURE_CLIENT_SECRET", "very-secret-value")]),
    )
    .unwrap();
    assert!(matches!(plan.identity, Identity::ClientSecret { .. }));
    assert!(!format!("{plan:?} {plan:#?}").contains("very-secret-value"));
}

#[test]
fn summary_names_objects_paths_and_modes_only() {
    let plan = load_file("spc-full.yaml", &wi_env()).unwrap();
    let lines = plan.summary();
    assert_eq!(
        lines[0],
        "vault kvname (https://kvname.vault.azure.net/, cloud AzurePublicCloud)"
    );
    assert!(
        lines[1].starts_with(
            "identity: workload identity (client 00000000-0000-0000-0000-000000000001"
        )
    );
    assert_eq!(lines[2], "4 object(s)");
    assert_eq!(
        &lines[3..],
        [
            "secret/db-password -> db-password (mode 0644)",
            "key/signing-key -> keys/signing.pem (mode 0600)",
            "secret/tls -> tls.pfx (mode 0644)",
            "cert/api-cert -> api-cert/0..api-cert/2 (3 versions, mode 0440)",
        ]
    );
}

#[test]
fn identity_problems_are_reported_even_with_a_broken_cloud() {
    let errs = params_errors(
        &[
            ("keyvaultName", "kv1"),
            ("tenantID", "t"),
            ("cloudName", "Nowhere"),
            ("objects", ONE_OBJECT),
        ],
        &Env::default(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("cloudName Nowhere is not valid"));
    assert!(errs[1].starts_with("no identity configured"));
}

#[test]
fn v1alpha1_manifest_with_comments_inside_objects() {
    let (plan, warnings) = load_with_warnings(
        &Settings::with_defaults(fixture("spc-v1alpha1-comments.yaml"), "/out"),
        &Env::default(),
    )
    .unwrap();
    assert_eq!(
        warnings,
        ["parameter \"tenantId\" is deprecated: use \"tenantID\""]
    );
    assert!(matches!(
        plan.identity,
        Identity::ManagedIdentity {
            client_id: None,
            ..
        }
    ));
    let got: Vec<_> = plan
        .objects
        .iter()
        .map(|o| {
            (
                o.object_type,
                o.path.as_str(),
                o.format,
                o.encoding,
                o.version.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                ObjectType::Cert,
                "web",
                ObjectFormat::Pem,
                ObjectEncoding::Utf8,
                None
            ),
            (
                ObjectType::Key,
                "web-pub.pem",
                ObjectFormat::Pem,
                ObjectEncoding::Utf8,
                None
            ),
            (
                ObjectType::Secret,
                "web-bundle.pem",
                ObjectFormat::Pem,
                ObjectEncoding::Utf8,
                None
            ),
            (
                ObjectType::Secret,
                "web.pfx.b64",
                ObjectFormat::Pfx,
                ObjectEncoding::Utf8,
                None
            ),
            (
                ObjectType::Secret,
                "web.pfx",
                ObjectFormat::Pfx,
                ObjectEncoding::Base64,
                None
            ),
        ]
    );
}

// ---- Limits on hostile input (issue 9 items 5 and 6) ----

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    f
}

fn load_path(path: &Path) -> Result<Plan, ConfigErrors> {
    load(
        &Settings::with_defaults(path, "/out"),
        &Env::from_pairs(&[("KEYVAULT_AGENT_IMDS_ENDPOINT", "http://127.0.0.1:9")]),
    )
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// A manifest whose `metadata` nests `depth` block mappings in all (the root is level 1).
fn deep_manifest(depth: usize) -> String {
    let mut s = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv1\n    useVMManagedIdentity: \"true\"\n    objects: |\n{}metadata:\n",
        indent(ONE_OBJECT, 6)
    );
    for d in 2..depth {
        s.push_str(&"  ".repeat(d - 1));
        s.push_str(&format!("k{d}:\n"));
    }
    s.push_str(&"  ".repeat(depth - 1));
    s.push_str("leaf: value\n");
    s
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

// reference: docs/threat-model.md rule 4 (depth capped before parsing; 64k levels took 38.6 s)
#[test]
fn sixty_four_thousand_levels_are_refused_with_the_depth_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "deep.yaml",
        &format!("keyvaultName: {}", "[".repeat(65_536)),
    );
    let errs = load_path(&f).unwrap_err();
    assert_eq!(
        errs.messages(),
        [format!(
            "config file \"{}\": nests collections deeper than the limit of 64 levels at line 1, column 78: a SecretProviderClass needs only a few levels",
            f.display()
        )]
    );
}

#[test]
fn sixty_five_levels_are_refused_and_a_realistic_ten_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(dir.path(), "ok.yaml", &deep_manifest(64));
    assert!(load_path(&ok).is_ok(), "{:?}", load_path(&ok));
    let deep = write(dir.path(), "deep.yaml", &deep_manifest(65));
    let msg = load_path(&deep).unwrap_err().to_string();
    assert!(
        msg.contains("deep.yaml") && msg.contains("limit of 64 levels at line 77, column 129"),
        "{msg}"
    );
    // A realistic manifest: 10 levels with the objects' own, comments, block scalars.
    let realistic = write(
        dir.path(),
        "spc.yaml",
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: app\n  labels: {team: a, tier: [x, {y: [z]}]}\n  annotations:\n    note: \"it's [fine]\"\nspec:\n  provider: azure\n  secretObjects:\n    - secretName: s\n      data:\n        - key: k\n          objectName: db-password\n          extra: {a: {b: {c: [1]}}}\n  parameters:\n    keyvaultName: kv1\n    useVMManagedIdentity: \"true\"   # [comment]\n    objects: |\n      array:\n        - |\n          objectName: db-password\n          objectType: secret\n",
    );
    assert_eq!(
        limits::estimate_depth(&std::fs::read_to_string(&realistic).unwrap()),
        10
    );
    assert!(load_path(&realistic).is_ok(), "{:?}", load_path(&realistic));
}

#[test]
fn deep_objects_parameter_and_elements_are_refused() {
    let deep = format!("array: {}", "[".repeat(100));
    let errs = params_errors(
        &[
            ("keyvaultName", "kv1"),
            ("useVMManagedIdentity", "true"),
            ("objects", &deep),
        ],
        &Env::default(),
    );
    assert_eq!(
        errs,
        [
            "failed to yaml unmarshal objects, error: the objects parameter nests collections deeper than the limit of 64 levels at line 1, column 71: a SecretProviderClass needs only a few levels"
        ]
    );
    let element = format!("array:\n  - 'objectName: {}'\n", "{a: ".repeat(70));
    let errs = params_errors(
        &[
            ("keyvaultName", "kv1"),
            ("useVMManagedIdentity", "true"),
            ("objects", &element),
        ],
        &Env::default(),
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("objects[0]: the object nests collections deeper than the limit of 64 levels at line 1, column "),
        "{errs:?}"
    );
}

// reference: docs/threat-model.md rule 4 (YAML anchors/aliases: "billion laughs")
#[test]
fn billion_laughs_is_refused_before_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        String::from("keyvaultName: kv1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 9].join(", ");
        text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    let f = write(dir.path(), "laughs.yaml", &text);
    let msg = load_path(&f).unwrap_err().to_string();
    assert!(
        msg.contains("laughs.yaml") && msg.contains("uses a YAML alias at line 3, column 10"),
        "{msg}"
    );
}

// reference: docs/threat-model.md rule 1 (config file bounded, regular files only)
#[test]
fn oversized_config_file_is_refused_by_size() {
    let dir = tempfile::tempdir().unwrap();
    // Valid YAML: a comment pads it past 4 MiB.
    let mut text = std::fs::read_to_string(fixture("params-only.yaml")).unwrap();
    text.push('#');
    text.push_str(&"x".repeat(4 << 20));
    let f = write(dir.path(), "big.yaml", &text);
    let msg = load_path(&f).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "config file \"{}\" is larger than the limit of 4194304 bytes: is this the right file?",
            f.display()
        )
    );
}

#[test]
fn config_file_must_be_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spc.yaml");
    mkfifo(&fifo);
    // On main this open blocked forever (no writer).
    let msg = load_path(&fifo).unwrap_err().to_string();
    assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
    let msg = load_path(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(
        msg.starts_with("config file \"/dev/zero\" is a character device, not a regular file"),
        "{msg}"
    );
    let msg = load_path(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("is a directory, not a regular file"), "{msg}");
}

#[test]
fn cloud_env_file_must_be_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let params = |cloud_file: &str| {
        format!(
            "keyvaultName: kv1\nuseVMManagedIdentity: \"true\"\ncloudName: AzureStackCloud\ncloudEnvFileName: {cloud_file}\nobjects: |\n{}",
            indent(ONE_OBJECT, 2)
        )
    };
    mkfifo(&dir.path().join("fifo.json"));
    let f = write(dir.path(), "a.yaml", &params("fifo.json"));
    let msg = load_path(&f).unwrap_err().to_string();
    assert!(
        msg.starts_with("cloudName AzureStackCloud is not valid, error: cloudEnvFileName \"")
            && msg.contains("fifo.json\" is a FIFO, not a regular file"),
        "{msg}"
    );
    let f = write(dir.path(), "b.yaml", &params("/dev/zero"));
    let msg = load_path(&f).unwrap_err().to_string();
    assert!(msg.contains("\"/dev/zero\" is a character device"), "{msg}");
    // Valid JSON padded past 1 MiB with whitespace.
    let cloud = std::fs::read_to_string(fixture("akscustom.json")).unwrap();
    std::fs::write(
        dir.path().join("big.json"),
        format!("{cloud}{}", " ".repeat(1 << 20)),
    )
    .unwrap();
    let f = write(dir.path(), "c.yaml", &params("big.json"));
    let msg = load_path(&f).unwrap_err().to_string();
    assert!(
        msg.contains("big.json\" is larger than the limit of 1048576 bytes"),
        "{msg}"
    );
}

// reference: docs/threat-model.md rule 4; issue 9 item 6 (all name problems in one run)
#[test]
fn name_problems_of_every_object_are_reported_in_one_run() {
    let objects = "array:\n  - |\n    objectName: ..\n    objectAlias: a\n    objectType: secret\n  - |\n    objectName: b\n    objectType: secret\n    objectVersion: 1234\n  - '{\"objectName\": \"c\", \"objectAlias\": \"evil\\u202etxt\", \"objectType\": \"secret\"}'\n  - |\n    objectName: ok\n    objectType: secret\n";
    let errs = params_errors(
        &[
            ("keyvaultName", "kv1"),
            ("useVMManagedIdentity", "true"),
            ("objects", objects),
        ],
        &Env::default(),
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].contains("objects[0]: objectName \"..\" is not a Key Vault object name"));
    assert!(errs[1].contains("objects[1]: objectVersion \"1234\" is not a Key Vault version"));
    assert!(
        errs[2].contains("objects[2]: output path \"evil\\u{202e}txt\" contains U+202E"),
        "{}",
        errs[2]
    );
}

// ---- Property tests (fuzzing) of the config parser (issue 9 item 10) ----

// reference: docs/threat-model.md "How to prove it" (fuzz the config parser). Whatever the
// bytes, loading ends in a plan or a list of one-line problems, never a panic; and the
// pre-scan never lets a document deeper than the limit through.
mod props {
    use proptest::prelude::*;

    use super::*;

    fn assert_one_line(r: &Result<Plan, ConfigErrors>) {
        if let Err(e) = r {
            assert!(!e.0.is_empty());
            for m in e.messages() {
                assert!(!m.contains('\n') && !m.contains('\r'), "{m:?}");
            }
        }
    }

    fn load_text(dir: &Path, bytes: &[u8]) -> Result<Plan, ConfigErrors> {
        let f = dir.join("spc.yaml");
        std::fs::write(&f, bytes).unwrap();
        load_path(&f)
    }

    /// Scalars that stress names, paths, numbers and YAML syntax.
    fn nasty() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "",
                ".",
                "..",
                "a/b",
                "../x",
                "/abs",
                "a//b",
                "./a",
                "a/",
                "x\u{202e}y",
                "\u{feff}",
                "0900",
                "0755",
                "-1",
                "99999999999999999999",
                "1e300",
                "true",
                "yes",
                "~",
                "null",
                "[",
                "]",
                "{",
                "}",
                "*a",
                "&a x",
                "!!binary x",
                "|",
                ">-",
                "- x",
                "? x",
                ": x",
                "#",
                "'",
                "\"",
                "%YAML 1.2",
                "---",
                "...",
                "\t",
                "secret",
                "key",
                "cert",
                "pfx",
                "PEM",
                "hex",
                "base64",
                "latest",
                "0123456789abcdef0123456789abcdef",
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,12}",
            any::<String>().prop_map(|s| s.chars().take(12).collect()),
        ]
    }

    /// A YAML-quoted form of `s` (JSON strings are YAML).
    fn q(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    /// Near-valid SecretProviderClasses: the right shape, hostile values, random extras.
    fn near_valid() -> impl Strategy<Value = String> {
        let field = prop::sample::select(vec![
            "objectName",
            "objectAlias",
            "objectType",
            "objectVersion",
            "objectVersionHistory",
            "objectFormat",
            "objectEncoding",
            "filePermission",
            "other",
        ]);
        let element = prop::collection::vec((field, nasty(), any::<bool>()), 0..6).prop_map(|fs| {
            fs.into_iter()
                .map(|(k, v, quoted)| {
                    if quoted {
                        format!("{k}: {}\n", q(&v))
                    } else {
                        format!("{k}: {v}\n")
                    }
                })
                .collect::<String>()
        });
        let params = prop::sample::select(vec![
            "keyvaultName",
            "tenantID",
            "cloudName",
            "useVMManagedIdentity",
            "clientID",
            "userAssignedIdentityID",
            "keyvaultURL",
            "usePodIdentity",
            "cloudEnvFileName",
            "x",
        ]);
        (
            prop::collection::vec(element, 0..4),
            prop::collection::vec((params, nasty()), 0..5),
            any::<bool>(),
        )
            .prop_map(|(elements, params, manifest)| {
                let mut objects = String::from("array:\n");
                for e in elements {
                    objects.push_str(&format!("  - {}\n", q(&e)));
                }
                let mut p = format!("keyvaultName: kv1\nobjects: {}\n", q(&objects));
                for (k, v) in params {
                    p.push_str(&format!("{k}: {}\n", q(&v)));
                }
                if manifest {
                    format!(
                        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n{}",
                        indent(&p, 4)
                    )
                } else {
                    p
                }
            })
    }

    /// A YAML value tree and its nesting depth (collections only).
    fn tree() -> impl Strategy<Value = serde_yaml::Value> {
        let leaf = prop_oneof![
            Just(serde_yaml::Value::Null),
            any::<bool>().prop_map(serde_yaml::Value::Bool),
            any::<i32>().prop_map(|i| serde_yaml::Value::Number(i.into())),
            nasty().prop_map(serde_yaml::Value::String),
        ];
        leaf.prop_recursive(80, 400, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_yaml::Value::Sequence),
                prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|kv| {
                    serde_yaml::Value::Mapping(
                        kv.into_iter()
                            .map(|(k, v)| (serde_yaml::Value::String(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// A spine of 50 to 80 nested collections (mixed kinds) around the limit, with a
    /// hostile scalar beside each level.
    fn deep_tree() -> impl Strategy<Value = serde_yaml::Value> {
        (
            prop::collection::vec((any::<bool>(), "[a-z]{1,2}", nasty()), 50..80),
            nasty(),
        )
            .prop_map(|(spine, leaf)| {
                let mut v = serde_yaml::Value::String(leaf);
                for (is_seq, key, sibling) in spine {
                    v = if is_seq {
                        serde_yaml::Value::Sequence(vec![serde_yaml::Value::String(sibling), v])
                    } else {
                        let mut m = serde_yaml::Mapping::new();
                        m.insert(
                            serde_yaml::Value::String(format!("s{key}")),
                            serde_yaml::Value::String(sibling),
                        );
                        m.insert(serde_yaml::Value::String(key), v);
                        serde_yaml::Value::Mapping(m)
                    };
                }
                v
            })
    }

    fn depth(v: &serde_yaml::Value) -> usize {
        match v {
            serde_yaml::Value::Sequence(s) => 1 + s.iter().map(depth).max().unwrap_or(0),
            serde_yaml::Value::Mapping(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_and_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), text in any::<String>()) {
            let dir = tempfile::tempdir().unwrap();
            assert_one_line(&load_text(dir.path(), &bytes));
            assert_one_line(&load_text(dir.path(), text.as_bytes()));
            let _ = limits::check(&text);
        }

        #[test]
        fn yaml_punctuation_soup_never_panics(text in "[-\\[\\]{}:,?|>'\"#&*!%@` \\n\\ta-c0-9]{0,300}") {
            let dir = tempfile::tempdir().unwrap();
            assert_one_line(&load_text(dir.path(), text.as_bytes()));
            assert_one_line(&load_text(dir.path(), format!("keyvaultName: kv\nobjects: {}\n", q(&text)).as_bytes()));
        }

        #[test]
        fn near_valid_manifests_never_panic(text in near_valid()) {
            let dir = tempfile::tempdir().unwrap();
            assert_one_line(&load_text(dir.path(), text.as_bytes()));
        }

        // The pre-scan over-approximates: a document deeper than the limit is always refused,
        // whichever way it is written; within the limit, canonical forms are accepted.
        #[test]
        fn depth_estimate_is_never_below_the_real_depth(v in prop_oneof![tree(), deep_tree()]) {
            let real = depth(&v);
            for text in [
                serde_yaml::to_string(&v).unwrap(),
                serde_json::to_string(&v).unwrap(),
                serde_json::to_string_pretty(&v).unwrap(),
            ] {
                let back: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
                prop_assert_eq!(depth(&back), real);
                let estimate = limits::estimate_depth(&text);
                prop_assert!(estimate >= real, "estimate {} < real {} for {:?}", estimate, real, text);
                prop_assert_eq!(limits::check(&text).is_ok(), real <= limits::MAX_DEPTH, "{}", text);
            }
        }
    }
}

/// Writes `text` as a config file in a fresh directory.
fn config_file(text: &str) -> (tempfile::TempDir, Settings) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spc.yaml");
    std::fs::write(&path, text).unwrap();
    let settings = Settings::with_defaults(path, "/out");
    (dir, settings)
}

const WI_SPC: &str = "keyvaultName: kv1\nclientID: c\nobjects: |\n  array:\n    - |\n      objectName: db\n      objectType: secret\n";

// reference: issue 12 item 4 (`check` validates offline; a missing identity is a note unless --strict)
#[test]
fn check_notes_a_missing_identity_env_and_strict_fails_on_it() {
    let (_d, settings) = config_file(WI_SPC);
    let checked = check_offline(&settings, &Env::default(), false);
    let plan = checked.result.as_ref().expect("valid offline");
    assert_eq!(plan.objects.len(), 1);
    // The tenant and the token file come from the webhook: both noted, neither an error.
    assert_eq!(checked.notes.len(), 3, "{:?}", checked.notes);
    assert!(
        checked.notes[0].starts_with("tenantId is not provided"),
        "{:?}",
        checked.notes
    );
    assert!(
        checked.notes[1].contains("AZURE_FEDERATED_TOKEN_FILE is not"),
        "{:?}",
        checked.notes
    );
    assert!(
        checked.notes[2].contains("check --strict"),
        "{:?}",
        checked.notes
    );
    let summary = checked.summary();
    assert!(
        summary[1].contains("from the pod's environment"),
        "{summary:?}"
    );
    assert!(
        !summary.iter().any(|l| l.contains("00000000")),
        "{summary:?}"
    );

    let strict = check_offline(&settings, &Env::default(), true);
    assert!(strict.notes.is_empty());
    let errs = strict.result.unwrap_err().messages();
    assert_eq!(errs.len(), 2, "{errs:?}");

    // With the webhook's variables the check is clean, strict or not.
    let full = check_offline(&settings, &wi_env(), true);
    assert!(full.result.is_ok() && full.notes.is_empty());

    // A real problem next to the missing identity is still an error (exit 3), and only it.
    let (_d, settings) = config_file(&WI_SPC.replace("objectType: secret", "objectType: secrets"));
    let checked = check_offline(&settings, &Env::default(), false);
    let errs = checked.result.unwrap_err().messages();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with("Should be secret, key, or cert"),
        "{errs:?}"
    );
    assert_eq!(checked.notes.len(), 3, "{:?}", checked.notes);
}

// reference: issue 12 item 4 (unknown parameters and object keys get a did-you-mean)
#[test]
fn misspelt_keys_are_suggested_with_the_errors_they_cause() {
    let (_d, settings) = config_file(&WI_SPC.replace("keyvaultName", "keyVaultName"));
    let checked = check_offline(&settings, &wi_env(), false);
    let errs = checked.result.unwrap_err().messages();
    assert_eq!(
        errs,
        [
            "keyvaultName is not provided",
            "parameter \"keyVaultName\" is ignored: keys are case-sensitive, did you mean \"keyvaultName\"?"
        ]
    );
    // Said once: not repeated as a warning.
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);

    let (_d, settings) = config_file(&WI_SPC.replace(
        "objectType: secret",
        "objectType: secret\n      objectAlais: db.txt\n      colour: red",
    ));
    let (_, warnings) = load_with_warnings(&settings, &wi_env()).unwrap();
    assert_eq!(
        warnings,
        [
            "objects[0]: unknown key \"objectAlais\" is ignored: did you mean \"objectAlias\"?",
            "objects[0]: unknown key \"colour\" is ignored",
        ]
    );
}
