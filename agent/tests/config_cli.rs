//! The command-line contract, through the built binary with a cleared environment:
//! `check` (every problem in one run, exit 3; a per-object summary on success), `--help`,
//! `--version`, env-var equivalents of flags, and usage errors (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// Runs the agent with exactly `env` as its environment.
fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyvault-agent"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run keyvault-agent")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const WI_ENV: &[(&str, &str)] = &[
    ("AZURE_CLIENT_ID", "env-client"),
    ("AZURE_TENANT_ID", "env-tenant"),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "/var/run/secrets/azure/tokens/azure-identity-token",
    ),
];

#[test]
fn check_success_prints_one_line_per_object() {
    let spc = fixture("spc-full.yaml");
    let out = agent(&["check", "--config", spc.to_str().unwrap()], WI_ENV);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("config ok: "), "{text}");
    assert!(
        text.contains("vault kvname (https://kvname.vault.azure.net/, cloud AzurePublicCloud)")
    );
    for object in [
        "secret/db-password -> db-password (mode 0644)",
        "key/signing-key -> keys/signing.pem (mode 0600)",
        "secret/tls -> tls.pfx (mode 0644)",
        "cert/api-cert -> api-cert/0..api-cert/2 (3 versions, mode 0440)",
    ] {
        assert!(lines.contains(&object), "missing {object:?} in:\n{text}");
    }
}

#[test]
fn check_reports_every_problem_in_one_run_and_exits_3() {
    let spc = fixture("spc-broken.yaml");
    let out = agent(&["check", "--config", spc.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 8, "{err}");
    for needle in [
        "useVMManagedIdentity \"yes\": not a boolean",
        "cloudName AzureMoonCloud is not valid",
        "objectName:secret1, objectVersion:: invalid objectFormat: pkcs, should be PEM or PFX",
        "objectName:secret2, objectVersion:: Invalid vaultObjectTypes",
        "filePermission \"0900\": not an octal number",
        "output path \"secret1\" is also written by",
        "objectName:escape, objectVersion:: file name must not contain '..'",
        "failed to get vault: Invalid vault name: \"kv_bad\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn check_never_prints_a_client_secret() {
    let spc = fixture("params-only.yaml");
    let dir = tempfile::tempdir().unwrap();
    // A parameters file without the managed-identity flag, so the client secret is used.
    let text = std::fs::read_to_string(&spc)
        .unwrap()
        .replace("useVMManagedIdentity: \"true\"", "tenantID: t1");
    let f = dir.path().join("spc.yaml");
    std::fs::write(&f, text).unwrap();
    let out = agent(
        &["check", "--config", f.to_str().unwrap()],
        &[
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_CLIENT_SECRET", "hunter2-top-secret"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stdout(&out).contains("identity: client secret (client app, tenant t1"));
    assert!(!stdout(&out).contains("hunter2") && !stderr(&out).contains("hunter2"));
}

#[test]
fn check_without_identity_explains_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("params.yaml");
    std::fs::write(
        &f,
        "keyvaultName: kv1\ntenantID: t\nobjects: |\n  array:\n    - |\n      objectName: a\n      objectType: secret\n",
    )
    .unwrap();
    // reference: issue 12 item 4 (offline, a missing identity env is a note; --strict fails)
    let out = agent(&["check", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("note: no identity configured: "), "{err}");
    assert!(
        err.contains("azure.workload.identity/use: \"true\""),
        "{err}"
    );
    assert!(!err.contains("error:"), "{err}");
    assert!(stdout(&out).contains("identity: workload identity from the pod's environment"));
    let out = agent(&["check", "--strict", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.starts_with("error: no identity configured: "), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn missing_config_file_is_a_configuration_error() {
    let out = agent(&["check", "--config", "/nonexistent/spc.yaml"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).starts_with("error: cannot read config file \"/nonexistent/spc.yaml\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn env_vars_stand_in_for_flags() {
    let spc = fixture("params-only.yaml");
    // KEYVAULT_AGENT_CONFIG instead of --config; the IMDS endpoint from its variable.
    let out = agent(
        &["check"],
        &[
            ("KEYVAULT_AGENT_CONFIG", spc.to_str().unwrap()),
            ("KEYVAULT_AGENT_IMDS_ENDPOINT", "http://127.0.0.1:40000"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("IMDS http://127.0.0.1:40000/"),
        "{}",
        stdout(&out)
    );

    // A bad value in a variable is a usage error naming the flag.
    let out = agent(
        &["check"],
        &[
            ("KEYVAULT_AGENT_CONFIG", spc.to_str().unwrap()),
            ("KEYVAULT_AGENT_INTERVAL", "soon"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("--interval"), "{}", stderr(&out));

    // Boolean variables take the usual spellings and refuse others.
    let out = agent(
        &["check"],
        &[
            ("KEYVAULT_AGENT_CONFIG", spc.to_str().unwrap()),
            ("KEYVAULT_AGENT_ONCE", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let out = agent(
        &["check"],
        &[
            ("KEYVAULT_AGENT_CONFIG", spc.to_str().unwrap()),
            ("KEYVAULT_AGENT_ONCE", "perhaps"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));

    // Cross-flag validation sees variables too.
    let out = agent(
        &[],
        &[
            ("KEYVAULT_AGENT_CONFIG", spc.to_str().unwrap()),
            ("KEYVAULT_AGENT_DIR", "/tmp/unused"),
            ("KEYVAULT_AGENT_SIGNAL_PIDFILE", "/run/app.pid"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error: --signal-pidfile needs --on-change-signal SIG"));
}

#[test]
fn usage_errors_exit_2_and_list_every_problem() {
    let out = agent(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"));

    let out = agent(&["--on-change-signal", "HUP", "--max-staleness", "1m"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[0].contains("--config FILE (or KEYVAULT_AGENT_CONFIG) is required"));
    assert!(lines[1].contains("--dir DIR (or KEYVAULT_AGENT_DIR) is required"));
    assert!(
        lines[2]
            .contains("--on-change-signal needs --signal-pidfile FILE or --signal-process NAME")
    );
    assert!(lines[3].contains("--max-staleness (1m) must be longer than --interval (2m)"));
}

#[test]
fn help_documents_flags_env_vars_and_exit_codes() {
    let out = agent(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for needle in [
        "--config",
        "KEYVAULT_AGENT_CONFIG",
        "--dir",
        "KEYVAULT_AGENT_DIR",
        "--once",
        "--ca-file",
        "SSL_CERT_FILE",
        "--on-change-signal",
        "KEYVAULT_AGENT_IMDS_ENDPOINT",
        "check",
        "Exit codes",
        "3  invalid configuration",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}");
    }
    let out = agent(&["check", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("--config"));
}

#[test]
fn version_prints_the_crate_version() {
    let out = agent(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("keyvault-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_warns_about_misspelt_parameters_but_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("params.yaml");
    std::fs::write(
        &f,
        "keyvaultName: kv1\nuseVMManagedIdentity: \"true\"\nclientId: abc\nobjects: |\n  array:\n    - |\n      objectName: a\n      objectType: secret\n",
    )
    .unwrap();
    let out = agent(&["check", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: parameter \"clientId\" is ignored: keys are case-sensitive, did you mean \"clientID\"?"
        ),
        "{}",
        stderr(&out)
    );
}

// reference: docs/threat-model.md rule 4; issue 9 item 6 (names refused by `check`, all at once)
#[test]
fn check_refuses_invalid_names_versions_and_aliases_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("spc.yaml");
    std::fs::write(
        &f,
        "keyvaultName: kv1\nuseVMManagedIdentity: \"true\"\nobjects: |\n  array:\n    - |\n      objectName: .\n      objectAlias: dot\n      objectType: secret\n    - |\n      objectName: pinned\n      objectType: secret\n      objectVersion: 1234\n    - '{\"objectName\": \"x\", \"objectType\": \"secret\", \"objectAlias\": \"a\\nb\"}'\n    - '{\"objectName\": \"y\", \"objectType\": \"secret\", \"objectAlias\": \"invoice\\u202efdp.exe\"}'\n",
    )
    .unwrap();
    let out = agent(&["check", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[0].contains("objects[0]: objectName \".\" is not a Key Vault object name"));
    assert!(lines[1].contains("objects[1]: objectVersion \"1234\" is not a Key Vault version"));
    assert!(
        lines[2].contains("objects[2]: output path \"a\\nb\" contains U+000A"),
        "{err}"
    );
    assert!(
        lines[3].contains("objects[3]: output path \"invoice\\u{202e}fdp.exe\" contains U+202E"),
        "{err}"
    );
    assert!(!err.contains('\u{202e}'));
}

// reference: docs/threat-model.md rules 1 and 4 (config bounded and depth-limited before parsing)
#[test]
fn check_refuses_a_deep_config_with_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("deep.yaml");
    std::fs::write(&f, format!("keyvaultName: {}", "[".repeat(65_536))).unwrap();
    let out = agent(&["check", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: config file \"{}\": nests collections deeper than the limit of 64 levels at line 1, column 78: a SecretProviderClass needs only a few levels",
            f.display()
        )
    );
}
