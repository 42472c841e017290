//! Issue 11 items 6 and 8 end to end against the emulator: certificate validation before the
//! swap (`--once` and the sidecar), `SSL_CERT_DIR` trust, a vault in another tenant (token
//! from that tenant only at the configured authority host) and `--notify-on-start`.

use std::path::{Path, PathBuf};

use keyvault_agent::config::ValidateMode;
use keyvault_agent::error::{EXIT_CONFIG, EXIT_USAGE, EXIT_VALIDATION};
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::GuestTenant;

use crate::util::*;

const PEM: &str = "application/x-pem-file";

/// Certificates that expired 60 days ago and that start in 30 days, next to a current one.
const SEED_VALIDITY: &str = r#"
vaults:
  - name: demo
    secrets:
      - name: db-password
        versions:
          - { value: "s3cr3t-db-password-value", created: 1700000000 }
      - name: api-key
        versions:
          - { value: "api-key-value-0xfeed", created: 1700000000 }
    certificates:
      - name: current
        generate: { subject: "CN=current.demo.local", kty: EC, content_type: application/x-pem-file }
      - name: expired
        generate: { subject: "CN=expired.demo.local", kty: EC, valid_from_days: -90, validity_months: 1 }
      - name: early
        generate: { subject: "CN=early.demo.local", kty: EC, valid_from_days: 30 }
identities:
  - name: sp
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: dev-client-secret-value-9f8e7d
    access: all
  - name: app
    client_id: 11111111-1111-1111-1111-111111111111
    federated_credentials:
      - { subject: "system:serviceaccount:default:app", audience: api://AzureADTokenExchange }
    access: all
"#;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/convert")
            .join(name),
    )
    .unwrap()
}

fn pem(parts: &[&str]) -> String {
    parts.iter().map(|p| fixture(p)).collect()
}

fn syncer(h: &Harness, objects: &[&str], mode: ValidateMode) -> (Syncer, std::sync::Arc<Metrics>) {
    let mut settings = h.settings(&h.spc(objects, &[]));
    settings.validate = mode;
    h.syncer(&settings)
}

// reference: issue 11 item 6 (a key/leaf mismatch and a disordered chain are always errors,
// naming the object; nothing is written)
#[tokio::test]
async fn once_refuses_a_key_mismatch_and_a_disordered_chain_in_either_mode() {
    let h = Harness::start().await;
    let good = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
    let mismatch = pem(&["demo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
    let disordered = pem(&["foo.key", "foo-leaf.pem", "foo-root.pem", "foo-int.pem"]);
    h.emu.set_secret("demo", "good", &good, Some(PEM));
    h.emu.set_secret("demo", "mismatch", &mismatch, Some(PEM));
    h.emu
        .set_secret("demo", "disordered", &disordered, Some(PEM));
    // The same disordered text without a certificate content type is a plain secret.
    h.emu.set_secret("demo", "plain", &disordered, None);

    let ok = h.spc(
        &[
            "objectName: good\nobjectType: secret",
            "objectName: plain\nobjectType: secret",
        ],
        &[],
    );
    let report = h.run_once(&ok, &h.sp()).await.unwrap();
    assert!(report.objects.iter().all(|o| o.validation.is_none()));
    assert_eq!(h.file("good"), good);
    let before = h.snapshot();

    let log = LogCapture::start();
    for mode in [ValidateMode::Warn, ValidateMode::Strict] {
        let spc = h.spc(
            &[
                "objectName: good\nobjectType: secret",
                "objectName: mismatch\nobjectType: secret",
                "objectName: disordered\nobjectType: secret",
            ],
            &[],
        );
        let mut settings = h.settings(&spc);
        settings.validate = mode;
        let e = h.run_once_with(settings).await.unwrap_err();
        assert_eq!(e.exit_code(), EXIT_VALIDATION, "{e}");
        let m = e.to_string();
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 2, "{m}");
        assert!(
            lines[0].starts_with("secret \"mismatch\"")
                && lines[0].contains("does not match the leaf")
                && lines[0].contains("(always refused)"),
            "{m}"
        );
        assert!(
            lines[1].starts_with("secret \"disordered\"")
                && lines[1].contains("the chain is not in order")
                && lines[1].contains("certificate 2"),
            "{m}"
        );
        assert_eq!(h.snapshot(), before, "nothing written");
    }
    // Never key material in an error or a log line.
    let key_line = fixture("demo.key").lines().nth(1).unwrap().to_owned();
    log.assert_absent(&[key_line.as_str()]);
}

// reference: issue 11 item 6 (expired / not yet valid: warned by default, refused by strict)
// The binary blocks this thread: the emulator needs another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_early_certificates_warn_by_default_and_fail_strict() {
    let h = Harness::with_seed(SEED_VALIDITY).await;
    let objects = [
        "objectName: current\nobjectType: cert",
        "objectName: expired\nobjectType: cert",
        "objectName: early\nobjectType: secret",
    ];
    let spc = h.spc(&objects, &[]);
    let report = h.run_once(&spc, &h.sp()).await.unwrap();
    let by_id = |id: &str| {
        report
            .objects
            .iter()
            .find(|o| o.id == id)
            .unwrap()
            .validation
            .clone()
    };
    assert_eq!(by_id("cert/current"), None);
    let w = by_id("cert/expired").unwrap();
    assert!(
        w.starts_with("expired: certificate 1 (CN=expired.demo.local) expired at "),
        "{w}"
    );
    let w = by_id("secret/early").unwrap();
    assert!(w.starts_with("not_yet_valid: "), "{w}");
    // Published with the set: ..status.json carries the warning.
    let m = h.manifest();
    let objects_json = m["objects"].as_array().unwrap();
    let expired = objects_json
        .iter()
        .find(|o| o["id"] == "cert/expired")
        .unwrap();
    assert!(
        expired["validation"]
            .as_str()
            .unwrap()
            .starts_with("expired: ")
    );
    assert!(
        objects_json
            .iter()
            .any(|o| o["id"] == "cert/current" && o.get("validation").is_none())
    );

    // Strict: both refused, named, exit 10; the previous set stays.
    let before = h.snapshot();
    let mut settings = h.settings(&spc);
    settings.validate = ValidateMode::Strict;
    let e = h.run_once_with(settings).await.unwrap_err();
    assert_eq!(e.exit_code(), EXIT_VALIDATION);
    let m = e.to_string();
    assert!(
        m.contains("cert \"expired\"") && m.contains("expired at"),
        "{m}"
    );
    assert!(
        m.contains("secret \"early\"") && m.contains("is not valid before"),
        "{m}"
    );
    assert!(m.contains("refused by --validate strict"), "{m}");
    assert!(!m.contains("cert \"current\""), "{m}");
    assert_eq!(h.snapshot(), before);

    // The binary: the env var selects strict, the exit code is 10, stderr names the object.
    let out = h.run_binary(
        &[
            "--once",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            h.dir.to_str().unwrap(),
        ],
        &[
            h.sp(),
            vec![("KEYVAULT_AGENT_VALIDATE".into(), "strict".into())],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_VALIDATION), "{stderr}");
    assert!(stderr.contains("error: cert \"expired\""), "{stderr}");
    let out = h.run_binary(
        &[
            "--validate",
            "strict",
            "check",
            "--config",
            spc.to_str().unwrap(),
        ],
        &h.sp(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("certificate validation: strict (")
            && stdout.contains("notify on first publish: no"),
        "{stdout}"
    );
    let out = h.run_binary(
        &[
            "--validate",
            "sometimes",
            "check",
            "--config",
            spc.to_str().unwrap(),
        ],
        &h.sp(),
    );
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
}

// reference: issue 11 item 6 (TLS layout: validated as tls.crt + tls.key; a PFX's chain is
// ordered before it is checked)
#[tokio::test]
async fn the_tls_layout_and_pfx_output_are_validated_as_written() {
    let h = Harness::with_seed(SEED_VALIDITY).await;
    let spc = h.spc(
        &[
            "objectName: current\nobjectType: cert\nobjectAlias: web\nobjectLayout: tls",
            "objectName: current\nobjectType: secret\nobjectAlias: web.pfx\nobjectFormat: pfx",
            "objectName: expired\nobjectType: secret\nobjectAlias: old.pfx\nobjectFormat: pfx",
        ],
        &[],
    );
    let report = h.run_once(&spc, &h.sp()).await.unwrap();
    let v = |path: &str| {
        report
            .objects
            .iter()
            .find(|o| o.path == path)
            .unwrap()
            .validation
            .clone()
    };
    assert_eq!(v("web/tls.crt"), None);
    assert_eq!(v("web.pfx"), None);
    assert!(v("old.pfx").unwrap().starts_with("expired: "));
}

// reference: issue 11 item 6 (sidecar: a refused update keeps the last good set, counts a
// metric, and the next good version is published)
#[tokio::test]
async fn the_sidecar_cycle_keeps_the_last_good_set_when_an_update_is_refused() {
    let h = Harness::start().await;
    let good = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
    h.emu.set_secret("demo", "web", &good, Some(PEM));
    let (syncer, metrics) = syncer(
        &h,
        &["objectName: web\nobjectType: secret"],
        ValidateMode::Warn,
    );
    syncer.sync().await.unwrap();
    assert_eq!(h.file("web"), good);
    let before = h.snapshot();

    let bad = pem(&["demo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
    h.emu.set_secret("demo", "web", &bad, Some(PEM));
    for _ in 0..2 {
        let e = syncer.sync().await.unwrap_err();
        let refused = e.refused();
        assert_eq!(refused.len(), 1, "{e}");
        assert_eq!(
            (refused[0].id.as_str(), refused[0].reason),
            ("secret/web", "key_mismatch")
        );
        assert_eq!(h.snapshot(), before, "the last good set stays");
    }
    let text = metrics.encode();
    assert!(
        text.contains(
            "keyvault_agent_validation_failures_total{id=\"secret/web\",reason=\"key_mismatch\"} 2"
        ),
        "{text}"
    );

    let fixed = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem"]);
    h.emu.set_secret("demo", "web", &fixed, Some(PEM));
    syncer.sync().await.unwrap();
    assert_eq!(h.file("web"), fixed);
}

// reference: issue 11 item 6 in the real sidecar loop: `refused` at /status, last_error names
// the object, the metric is served, and ..status.json still describes the mounted set
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_shows_a_refused_update_at_status() {
    let h = Harness::start().await;
    let good = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
    let first = h.emu.set_secret("demo", "web", &good, Some(PEM));
    let spc = h.spc(&["objectName: web\nobjectType: secret"], &[]);
    let run = h.start_sidecar(h.settings(&spc)).await;
    eventually!(30, "first set", h.dir.join("web").exists());

    let bad = pem(&["foo.key", "foo-leaf.pem", "foo-root.pem", "foo-int.pem"]);
    h.emu.set_secret("demo", "web", &bad, Some(PEM));
    eventually!(30, "refused at /status", {
        let v = run.status().await;
        v["refused"][0]["id"] == "secret/web" && v["refused"][0]["reason"] == "chain_order"
    });
    let v: serde_json::Value = serde_json::from_str(&run.get("/status").await.1).unwrap();
    assert!(
        v["last_error"].as_str().unwrap().contains("secret \"web\""),
        "{v}"
    );
    assert_eq!(v["ready"], true, "the last good set is still served");
    assert_eq!(v["objects"][0]["version"], first.as_str());
    let (_, metrics) = run.get("/metrics").await;
    assert!(
        metrics.contains(
            "keyvault_agent_validation_failures_total{id=\"secret/web\",reason=\"chain_order\"}"
        ),
        "{metrics}"
    );
    assert_eq!(h.manifest()["objects"][0]["version"], first.as_str());
    assert_eq!(h.file("web"), good);
    run.stop().await;
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

// reference: issue 11 item 8 (notifiers skip the first publish unless --notify-on-start)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifiers_fire_on_the_first_publish_only_with_notify_on_start() {
    for on_start in [false, true] {
        let h = Harness::start().await;
        let spc = h.spc(
            &[
                "objectName: db-password\nobjectType: secret",
                "objectName: api-key\nobjectType: secret",
            ],
            &[],
        );
        let execs = h.tmp.path().join("execs");
        let mut settings = h.settings(&spc);
        settings.notify.exec = Some(vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"$KEYVAULT_AGENT_CHANGED\" >> {}", execs.display()),
        ]);
        settings.notify.on_start = on_start;
        let run = h.start_sidecar(settings).await;
        eventually!(30, "first set", h.dir.join("api-key").exists());
        if on_start {
            eventually!(30, "the first publish notifies", lines(&execs).len() == 1);
        }
        h.emu.set_secret("demo", "api-key", "key-2", None);
        let want = usize::from(on_start) + 1;
        eventually!(30, "the rotation notifies", lines(&execs).len() == want);
        let got = lines(&execs);
        // Had the first publish notified too, its event (every object) would be here, or
        // merged into the rotation's.
        assert_eq!(got.last().unwrap(), "secret/api-key", "{got:?}");
        if on_start {
            assert!(got[0].contains("secret/db-password"), "{got:?}");
        }
        run.stop().await;
    }
}

// reference: issue 11 item 8 (a vault in another tenant: the token comes from that tenant, at
// the configured authority host only)
#[tokio::test]
async fn a_challenge_naming_another_tenant_is_followed_only_at_the_configured_host() {
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let guest = "99999999-9999-9999-9999-999999999999";
    h.emu.set_vault_tenant(Some(GuestTenant {
        tenant_id: guest.into(),
        authority: None,
    }));
    // Client secret and workload identity both ask the guest tenant.
    h.run_once(&spc, &h.sp()).await.unwrap();
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    h.run_once(&spc, &h.wi_env()).await.unwrap();
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");

    // Another host in the challenge: refused before any token is requested there.
    h.emu.set_vault_tenant(Some(GuestTenant {
        tenant_id: guest.into(),
        authority: Some("https://login.evil.localhost:1".into()),
    }));
    let e = h.run_once(&spc, &h.sp()).await.unwrap_err();
    assert_eq!(e.exit_code(), EXIT_CONFIG, "{e}");
    let m = e.to_string();
    let configured = format!("localhost:{}", h.emu.addr().port());
    assert!(
        m.contains("login.evil.localhost:1") && m.contains(&configured) && m.contains(guest),
        "{m}"
    );

    // Back home: the configured tenant's token again.
    h.emu.set_vault_tenant(None);
    h.run_once(&spc, &h.sp()).await.unwrap();
}

/// A state dir copy of the emulator's CA as an OpenSSL-style directory: the PEM file, a hash
/// link to it, a CRL-like file without certificates and a subdirectory.
fn ca_dir(h: &Harness) -> PathBuf {
    let dir = h.tmp.path().join("certs");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(h.emu.ca_file(), dir.join("emulator-ca.pem")).unwrap();
    std::os::unix::fs::symlink("emulator-ca.pem", dir.join("a1b2c3d4.0")).unwrap();
    std::fs::write(
        dir.join("revoked.r0"),
        "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n",
    )
    .unwrap();
    dir
}

/// The binary trusting only what `trust` (`SSL_CERT_DIR`) names, not the emulator's CA file.
fn run_with_trust(h: &Harness, args: &[&str], trust: &[(&str, String)]) -> std::process::Output {
    h.command(args)
        .env_remove("SSL_CERT_FILE")
        .envs(h.sp())
        .envs(trust.iter().cloned())
        .output()
        .unwrap()
}

// reference: issue 11 item 8 (SSL_CERT_DIR adds trusted CAs, read bounded)
// The binary blocks this thread: the emulator needs another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_dir_trusts_the_emulator_ca() {
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let args = [
        "--once",
        "--config",
        spc.to_str().unwrap(),
        "--dir",
        h.dir.to_str().unwrap(),
    ];
    let dir = ca_dir(&h);
    let missing = h.tmp.path().join("nope");
    let out = run_with_trust(
        &h,
        &args,
        &[(
            "SSL_CERT_DIR",
            format!("{}::{}", missing.display(), dir.display()),
        )],
    );
    assert_eq!(
        out.status.code(),
        Some(EXIT_USAGE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSL_CERT_DIR"));

    let out = run_with_trust(&h, &args, &[("SSL_CERT_DIR", dir.display().to_string())]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");

    // Without the CA the emulator is not trusted (exit 3, the TLS error).
    let empty = h.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_with_trust(&h, &args, &[("SSL_CERT_DIR", empty.display().to_string())]);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));

    let out = run_with_trust(
        &h,
        &["check", "--config", spc.to_str().unwrap()],
        &[("SSL_CERT_DIR", dir.display().to_string())],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("SSL_CERT_DIR [{}]", dir.display())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
