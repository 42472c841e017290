//! Issue 11 item 4 end to end: the built binary's `exec` against the emulator. The command
//! runs in the agent's own process (same PID) with the variables set and nothing written to
//! disk; a failed fetch exits with the agent's exit code and never runs the command; a value
//! that cannot be an environment variable is an error naming it; no value reaches stderr.

use std::process::{Command, Stdio};

use keyvault_agent::error::{
    EXIT_CONFIG, EXIT_CONVERT, EXIT_EXEC_NOT_FOUND, EXIT_OBJECT, EXIT_USAGE,
};

use crate::util::*;

/// Secrets for exec: plain values, and one whose base64 decodes to bytes with a NUL.
const SEED_EXEC: &str = r#"
vaults:
  - name: demo
    secrets:
      - name: db-password
        value: "s3cr3t-db-password-value"
      - name: api-key
        value: "api-key-value-0xfeed"
      - name: nul-blob
        value: "AGhpZGRlbi1udWwtdmFsdWU="
identities:
  - name: sp
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: dev-client-secret-value-9f8e7d
    access: all
"#;

const OBJECTS: [&str; 2] = [
    "objectName: db-password\nobjectType: secret",
    "objectName: api-key\nobjectType: secret\nobjectAlias: api.key",
];

/// The binary with exactly the emulator's CA, the client-secret identity and `args`.
fn agent(h: &Harness, args: &[&str]) -> Command {
    let mut cmd = h.command(args);
    cmd.env("PATH", "/usr/bin:/bin")
        .env("KEYVAULT_AGENT_TIMEOUT", "20s")
        .env("KEYVAULT_AGENT_REQUEST_TIMEOUT", "10s")
        .envs(h.sp())
        .current_dir(h.tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `exec --config SPC OPTS -- CMD` run to its end (blocking this worker: the emulator
/// serves from the other).
fn exec(h: &Harness, spc: &std::path::Path, opts: &[&str], cmd: &[&str]) -> std::process::Output {
    let args = [
        &["exec", "--config", spc.to_str().unwrap()],
        opts,
        &["--"],
        cmd,
    ]
    .concat();
    tokio::task::block_in_place(|| agent(h, &args).output().unwrap())
}

/// Every path under `dir`, recursively (to prove exec wrote nothing).
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push(e.strip_prefix(dir).unwrap().display().to_string());
    }
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn secrets_absent(text: &str) {
    for s in SECRET_VALUES.iter().chain(&["hidden-nul-value"]) {
        assert!(
            !text.contains(s),
            "a value reached the output: {}",
            text.replace(s, "<SECRET>")
        );
    }
}

// reference: issue 11 item 4 (same PID, env vars set, nothing written to disk; --env-all
// upper-snake names; a template's output as a variable)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_replaces_the_agent_with_the_command_in_the_same_pid() {
    let h = Harness::with_seed(SEED_EXEC).await;
    let tmpl = h.write_file(
        "db-url.tmpl",
        "postgres://app:{{ objects[\"db-password\"] }}@db/app",
    );
    let spc = h.spc(&OBJECTS, &[]);
    let cwd = h.tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let child = agent(
        &h,
        &[
            "--template",
            &format!("{}:db.url", tmpl.display()),
            "exec",
            "--config",
            spc.to_str().unwrap(),
            "--env",
            "DB=db-password",
            "--env",
            "DATABASE_URL=db.url",
            "--env-all",
            "--",
            "/bin/sh",
            "-c",
            "echo \"pid=$$\"; env",
        ],
    )
    .current_dir(&cwd)
    .spawn()
    .unwrap();
    let pid = child.id();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // execve kept the process: the shell's $$ is the PID we spawned.
    assert_eq!(
        stdout.lines().next(),
        Some(format!("pid={pid}").as_str()),
        "{stdout}"
    );
    let vars: Vec<&str> = stdout.lines().skip(1).collect();
    assert!(vars.contains(&"DB=s3cr3t-db-password-value"), "{vars:?}");
    assert!(
        vars.contains(&"API_KEY=api-key-value-0xfeed"),
        "--env-all: {vars:?}"
    );
    assert!(
        vars.contains(&"DATABASE_URL=postgres://app:s3cr3t-db-password-value@db/app"),
        "{vars:?}"
    );
    // db-password is mapped explicitly, so --env-all leaves it to DB.
    assert!(
        !vars.iter().any(|v| v.starts_with("DB_PASSWORD=")),
        "{vars:?}"
    );
    assert!(
        vars.contains(&"AZURE_CLIENT_ID=22222222-2222-2222-2222-222222222222"),
        "inherited env kept"
    );
    // Nothing written: no set, no status manifest, no digest key, in the working directory
    // or where --dir would point.
    assert_eq!(tree(&cwd), Vec::<String>::new());
    assert!(!h.dir.exists());
    secrets_absent(&stderr);
}

// reference: issue 11 item 4 (a fetch failure exits with the agent's exit code and never
// runs CMD)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_failure_exits_with_the_agents_code_and_never_runs_the_command() {
    let h = Harness::with_seed(SEED_EXEC).await;
    let spc = h.spc(
        &[OBJECTS[0], "objectName: not-there\nobjectType: secret"],
        &[],
    );
    let marker = h.tmp.path().join("ran");
    let script = format!("echo RAN; touch {}", marker.display());
    let sh = ["/bin/sh", "-c", script.as_str()];
    let out = exec(&h, &spc, &["--env", "DB=db-password"], &sh);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_OBJECT), "{stderr}");
    assert!(stderr.contains("secret \"not-there\""), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RAN"));
    assert!(!marker.exists(), "the command ran");
    secrets_absent(&stderr);

    // A mapping problem is found before any request: exit 3, every problem listed.
    let spc_ok = h.spc(&OBJECTS, &[]);
    let out = exec(
        &h,
        &spc_ok,
        &[
            "--env",
            "X=nope",
            "--env",
            "API_KEY=db-password",
            "--env-all",
        ],
        &sh,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("--env X=nope: no file \"nope\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("API_KEY") && stderr.contains("already set"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command ran");

    // Nothing to set, or an invalid NAME: usage errors.
    let out = exec(&h, &spc, &[], &sh);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let out = exec(&h, &spc, &["--env", "1BAD=db-password"], &sh);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(!marker.exists(), "the command ran");
}

// reference: issue 11 item 4 (NUL bytes: an error naming the alias), docs/threat-model.md
// (no value in errors)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_with_a_nul_byte_is_an_error_naming_the_variable_and_file() {
    let h = Harness::with_seed(SEED_EXEC).await;
    let spc = h.spc(
        &["objectName: nul-blob\nobjectType: secret\nobjectEncoding: base64\nobjectAlias: blob"],
        &[],
    );
    let out = exec(&h, &spc, &["--env-all"], &["/bin/sh", "-c", "echo RAN"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONVERT), "{stderr}");
    assert!(
        stderr.contains("exec: BLOB (file \"blob\"): the content holds a NUL byte"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    secrets_absent(&stderr);
}

// reference: issue 11 item 4 (a command that cannot be run: env(1)'s exit codes)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_exits_127_after_a_good_fetch() {
    let h = Harness::with_seed(SEED_EXEC).await;
    let spc = h.spc(&OBJECTS, &[]);
    let out = exec(&h, &spc, &["--env-all"], &["/nonexistent/app"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_EXEC_NOT_FOUND), "{stderr}");
    assert!(stderr.contains("exec \"/nonexistent/app\""), "{stderr}");
    secrets_absent(&stderr);
}
