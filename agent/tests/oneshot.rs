//! `--once` end to end against the emulator over TLS: the three identities, conversions over
//! the wire, history mode, failures that name every object and leave the directory exactly
//! as it was, throttling, token file rotation, parallelism, and no secret in any log line.

use std::time::{Duration, Instant};

use keyvault_agent::error::{EXIT_AUTH, EXIT_OBJECT};
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::{Fault, FaultKind, Route};

use crate::util::*;

fn all_objects() -> Vec<&'static str> {
    vec![
        "objectName: db-password\nobjectType: secret",
        "objectName: api-key\nobjectType: secret\nobjectAlias: app/api-key.txt\nfilePermission: \"0600\"",
        "objectName: hex-blob\nobjectType: secret\nobjectEncoding: hex",
        "objectName: rsa-key\nobjectType: key\nobjectAlias: rsa.pub.pem",
        "objectName: ec-key\nobjectType: key",
        "objectName: web-tls\nobjectType: cert\nobjectAlias: web-tls.crt",
        "objectName: web-tls\nobjectType: secret\nobjectAlias: web-tls.pem",
        "objectName: web-tls\nobjectType: secret\nobjectAlias: web-tls.pfx\nobjectFormat: pfx",
        "objectName: web-pem\nobjectType: secret",
    ]
}

fn begin_blocks(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| l.starts_with("-----BEGIN "))
        .collect()
}

// reference: docs/reference-provider.md §2.1–§2.5, §2.8; docs/protocol.md §2, §3.2
#[tokio::test]
async fn workload_identity_end_to_end_over_tls_with_every_conversion() {
    let logs = LogCapture::start();
    let h = Harness::full().await;
    let spc = h.spc(&all_objects(), &[]);
    let report = h.run_once(&spc, &h.wi_env()).await.expect("sync succeeds");

    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert_eq!(h.file("app/api-key.txt"), "api-key-value-0xfeed");
    assert_eq!(h.file("hex-blob"), "hello");
    for k in ["rsa.pub.pem", "ec-key"] {
        let pem = h.file(k);
        assert_eq!(begin_blocks(&pem), ["-----BEGIN PUBLIC KEY-----"], "{k}");
    }
    assert_eq!(
        begin_blocks(&h.file("web-tls.crt")),
        ["-----BEGIN CERTIFICATE-----"]
    );
    let pem = h.file("web-tls.pem");
    let blocks = begin_blocks(&pem);
    assert_eq!(blocks[0], "-----BEGIN PRIVATE KEY-----", "key first");
    assert!(
        blocks[1..]
            .iter()
            .all(|b| *b == "-----BEGIN CERTIFICATE-----")
    );
    assert!(
        h.file("web-tls.pfx").starts_with("MII"),
        "base64 pfx kept as is"
    );
    assert_eq!(
        begin_blocks(&h.file("web-pem"))[0],
        "-----BEGIN PRIVATE KEY-----"
    );

    assert_eq!(h.mode("app/api-key.txt"), 0o600);
    assert_eq!(h.mode("db-password"), 0o644);

    // Status: reference ids and versions, hashes, certificate expiry.
    assert_eq!(report.objects.len(), 9);
    let db = &report.objects[0];
    assert_eq!(
        (db.id.as_str(), db.version.as_str()),
        ("secret/db-password", DB_V3)
    );
    assert_eq!(db.path, "db-password");
    assert_eq!(db.digest.len(), 64);
    let crt = report
        .objects
        .iter()
        .find(|o| o.path == "web-tls.crt")
        .unwrap();
    assert_eq!(crt.id, "cert/web-tls");
    assert!(crt.not_after.is_some_and(|t| t > 1_700_000_000));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.dir.join("..status.json")).unwrap()).unwrap();
    // Same manifest shape as the sidecar's: one entry per output file, no values.
    assert_eq!(status["objects"].as_array().unwrap().len(), 9);
    assert_eq!(status["ready"], true);
    // Keyed digests only (reference: docs/threat-model.md rule 8): HMAC-SHA256 under the
    // volume's key, never the plain SHA-256 of a value.
    let on_disk = status["objects"][0]["hmac_sha256"].as_str().unwrap();
    assert_eq!(on_disk, db.digest);
    assert!(status["objects"][0].get("sha256").is_none());
    let key: [u8; 32] = std::fs::read(h.dir.join("..hmac.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let key = keyvault_agent::writer::DigestKey::from_bytes(key);
    let value = std::fs::read(h.dir.join("db-password")).unwrap();
    assert_eq!(on_disk, key.digest(&value));
    use sha2::Digest as _;
    assert_ne!(on_disk, hex::encode(sha2::Sha256::digest(&value)));
    // The manifest lives in the generation it describes; the name at the top is a link.
    assert_eq!(
        std::fs::read_link(h.dir.join("..status.json")).unwrap(),
        std::path::Path::new("..data/..status.json")
    );
    // The key is as private as the most private file of the set (app/api-key.txt: 0600).
    assert_eq!(h.mode("..hmac.key"), 0o600);
    assert!(
        !String::from_utf8_lossy(&std::fs::read(h.dir.join("..status.json")).unwrap())
            .contains("s3cr3t")
    );

    // 8 distinct objects (web-tls as a secret is mounted twice but fetched once) + the
    // challenge probe.
    assert_eq!(report.requests, 9);
    // One token exchange for the whole parallel set.
    assert_eq!(h.emu.counts().tokens(WI_CLIENT_ID), 1);
    assert!(h.emu.counts().route(Route::Token) >= 1);

    // No value, token or private key in any log line, at trace level.
    let token = std::fs::read_to_string(&h.token_file).unwrap();
    let mut needles: Vec<&str> = SECRET_VALUES.to_vec();
    needles.push(token.trim());
    needles.push(token.split('.').nth(1).unwrap());
    needles.push("PRIVATE KEY");
    needles.push(h.file("web-tls.pfx").leak());
    // Nor any digest.
    let digests: Vec<&str> = report.objects.iter().map(|o| o.digest.as_str()).collect();
    needles.extend(digests);
    logs.assert_absent(&needles);
    // Any JWT (service-account or access token) starts with base64 of `{"`.
    assert!(!logs.text().contains("eyJ"), "no jwt in logs");
    assert!(
        logs.text().contains("sync complete"),
        "the info line is logged"
    );
}

// reference: docs/protocol.md §2.2 (verify_challenge_resource; aka.ms/azsdk/blog/vault-uri)
#[tokio::test]
async fn a_vault_host_outside_the_challenge_resource_never_gets_a_token() {
    let h = Harness::with_builder(
        keyvault_emulator::Emulator::builder()
            .seed_yaml(SEED_LIGHT)
            .hostname("evil.localhost"),
    )
    .await;
    // Same server, same certificate, but the host is not under `vault.localhost`.
    let url = url::Url::parse(&format!("https://evil.localhost:{}/", h.emu.addr().port())).unwrap();
    let spc = h.spc_for(&url, &["objectName: db-password\nobjectType: secret"], &[]);
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("evil.localhost")
            && m.contains("vault.localhost")
            && m.contains("refusing to send a token"),
        "{m}"
    );
    assert_eq!(
        h.emu.counts().tokens(WI_CLIENT_ID),
        0,
        "no token was even requested"
    );
    assert_eq!(h.emu.counts().route(Route::Token), 0);
    assert!(!h.dir.join("..data").exists());
}

#[tokio::test]
async fn managed_identity_through_imds() {
    let h = Harness::start().await;
    let spc = h.spc(
        &["objectName: db-password\nobjectType: secret"],
        &[
            ("useVMManagedIdentity", "true"),
            ("userAssignedIdentityID", MI_CLIENT_ID),
        ],
    );
    h.run_once(&spc, &[]).await.expect("sync succeeds");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert!(h.emu.counts().route(Route::Imds) >= 1);
    assert_eq!(h.emu.counts().route(Route::Token), 0);

    // An identity that is not assigned: an actionable message, auth exit code.
    let spc = h.spc(
        &["objectName: db-password\nobjectType: secret"],
        &[
            ("useVMManagedIdentity", "true"),
            (
                "userAssignedIdentityID",
                "99999999-9999-9999-9999-999999999999",
            ),
        ],
    );
    let e = h.run_once(&spc, &[]).await.unwrap_err();
    let m = e.to_string();
    assert_eq!(e.exit_code(), EXIT_AUTH, "{m}");
    assert!(
        m.contains("99999999-9999-9999-9999-999999999999") && m.contains("not assigned"),
        "{m}"
    );
}

#[tokio::test]
async fn client_secret_flow_and_bad_secret_message() {
    let logs = LogCapture::start();
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    h.run_once(&spc, &h.sp_env(SP_CLIENT_ID, SP_SECRET))
        .await
        .expect("sync succeeds");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert_eq!(h.emu.counts().tokens(SP_CLIENT_ID), 1);

    let e = h
        .run_once(&spc, &h.sp_env(SP_CLIENT_ID, "wrong-secret-value"))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert_eq!(e.exit_code(), EXIT_AUTH, "{m}");
    assert!(
        m.contains("AADSTS7000215") && m.contains(SP_CLIENT_ID),
        "{m}"
    );
    logs.assert_absent(&[SP_SECRET, "wrong-secret-value", "s3cr3t-db-password-value"]);
}

// reference: docs/reference-provider.md §2.7 (with the N+1 and missing-start-version bugs fixed)
#[tokio::test]
async fn history_mode_writes_exactly_the_enabled_versions_newest_first() {
    let h = Harness::start().await;
    let spc = h.spc(
        &["objectName: db-password\nobjectType: secret\nobjectAlias: db\nobjectVersionHistory: 5"],
        &[],
    );
    let report = h.run_once(&spc, &h.wi_env()).await.unwrap();
    let files: Vec<String> = h.files().into_keys().collect();
    assert_eq!(
        files,
        ["db/0", "db/1"],
        "disabled version skipped, no extra file"
    );
    assert_eq!(h.file("db/0"), "s3cr3t-db-password-value");
    assert_eq!(h.file("db/1"), "old-db-password-value");
    assert_eq!(report.objects[0].id, "secret/db-password/0");
    assert_eq!(report.objects[1].version, DB_V1);

    // More versions than N: exactly N (the reference writes N+1), sorted by `created`.
    let spc = h.spc(
        &["objectName: many\nobjectType: secret\nobjectVersionHistory: 2"],
        &[],
    );
    h.run_once(&spc, &h.wi_env()).await.unwrap();
    let files: Vec<String> = h.files().into_keys().collect();
    assert_eq!(files, ["many/0", "many/1"]);
    assert_eq!(h.file("many/0"), "many-3");
    assert_eq!(h.file("many/1"), "many-2");

    // A start version that is disabled (or absent) is an error naming the object.
    let before = h.snapshot();
    let spc = h.spc(
        &[&format!(
            "objectName: db-password\nobjectType: secret\nobjectVersion: {DB_V2}\nobjectVersionHistory: 2"
        )],
        &[],
    );
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("db-password")
            && m.contains(DB_V2)
            && m.contains("not among the enabled versions"),
        "{m}"
    );
    assert_eq!(e.exit_code(), EXIT_OBJECT);
    assert_eq!(h.snapshot(), before);
}

// reference: docs/reference-provider.md §4 (fail closed, nothing written) — but every object named
#[tokio::test]
async fn failures_name_every_object_and_leave_the_directory_untouched() {
    let logs = LogCapture::start();
    let h = Harness::start().await;
    let good = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    h.run_once(&good, &h.wi_env()).await.unwrap();
    let before = h.snapshot();
    assert!(before.contains_key("/..data"));

    let bad = h.spc(
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: missing-one\nobjectType: secret",
            "objectName: off\nobjectType: secret",
            "objectName: missing-key\nobjectType: key",
        ],
        &[],
    );
    let e = h.run_once(&bad, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines.len(), 3, "{m}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("secret \"missing-one\": not found")),
        "{m}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("secret \"off\": is disabled")),
        "{m}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("key \"missing-key\": not found")),
        "{m}"
    );
    assert_eq!(e.exit_code(), EXIT_OBJECT);
    assert_eq!(h.snapshot(), before, "no partial set, nothing touched");

    // Forbidden: the identity may read db-password only; the message says which role.
    let e = h
        .run_once(
            &h.spc(
                &[
                    "objectName: db-password\nobjectType: secret",
                    "objectName: api-key\nobjectType: secret",
                ],
                &[],
            ),
            &h.sp_env(LIMITED_CLIENT_ID, "limited-secret"),
        )
        .await
        .unwrap_err();
    let m = e.to_string();
    assert_eq!(m.lines().count(), 1, "{m}");
    assert!(m.starts_with("secret \"api-key\": access denied"), "{m}");
    assert!(m.contains("Key Vault Secrets User"), "{m}");
    assert_eq!(e.exit_code(), EXIT_OBJECT);
    assert_eq!(h.snapshot(), before);
    logs.assert_absent(SECRET_VALUES);
}

// reference: docs/protocol.md §1.8
#[tokio::test]
async fn throttling_with_retry_after_is_waited_out() {
    let h = Harness::start().await;
    h.emu.add_fault(
        Fault::new(
            Route::SecretGet,
            FaultKind::Throttle {
                retry_after: Some(1),
            },
        )
        .times(2),
    );
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let t0 = Instant::now();
    h.run_once(&spc, &h.wi_env())
        .await
        .expect("succeeds after the throttling");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "both Retry-After: 1 honoured"
    );
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert!(h.emu.counts().route(Route::SecretGet) >= 4);

    // Throttling beyond the deadline: transient exit code, no sleeping past it.
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::Throttle {
            retry_after: Some(300),
        },
    ));
    let mut s = h.settings(&spc);
    s.timeout = Duration::from_secs(5);
    h.emu.reset_counts();
    let logs = LogCapture::start();
    let e = keyvault_agent::run_once(s, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    // Given up at the first answer, not slept on until the deadline: one GET, and the retry
    // module's line saying so (no clock read: a loaded machine stretches time).
    assert_eq!(h.emu.counts().route(Route::SecretGet), 1);
    let text = logs.text();
    assert!(
        text.contains("giving up now instead of waiting") && text.contains("requested_wait=300s"),
        "{text}"
    );
    assert_eq!(
        e.exit_code(),
        keyvault_agent::error::EXIT_UNAVAILABLE,
        "{e}"
    );
    assert!(e.to_string().contains("429"), "{e}");
}

// reference: docs/protocol.md §1.8 (x-ms-retry-after-ms read before Retry-After); issue 13
// item 5 (millisecond-granular throttling faults)
#[tokio::test]
async fn throttling_in_milliseconds_is_read_from_x_ms_retry_after_ms() {
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    // A sub-second wait, twice: waited out, then the value arrives.
    h.emu.add_fault(
        Fault::new(
            Route::SecretGet,
            FaultKind::ThrottleMs { retry_after_ms: 20 },
        )
        .times(2),
    );
    h.run_once(&spc, &h.wi_env())
        .await
        .expect("succeeds after the throttling");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    // Two 429s and the answer (plus the challenge round trip, when the agent makes one).
    assert!(h.emu.counts().route(Route::SecretGet) >= 3);

    // Ten minutes in milliseconds, past the 5 s deadline: the agent gives up at once and
    // names the wait, which only the millisecond header carried.
    h.emu.reset_counts();
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::ThrottleMs {
            retry_after_ms: 600_000,
        },
    ));
    let mut s = h.settings(&spc);
    s.timeout = Duration::from_secs(5);
    let e = keyvault_agent::run_once(s, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    assert_eq!(
        e.exit_code(),
        keyvault_agent::error::EXIT_UNAVAILABLE,
        "{e}"
    );
    assert!(e.to_string().contains("retry after 600s"), "{e}");
    assert_eq!(h.emu.counts().route(Route::SecretGet), 1);
}

#[tokio::test]
async fn a_rotated_token_file_is_read_again() {
    let h = Harness::with_builder(
        keyvault_emulator::Emulator::builder()
            .seed_yaml(SEED_LIGHT)
            .token_ttl(Duration::from_secs(1)),
    )
    .await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let settings = h.settings(&spc);
    let plan = keyvault_agent::config::load(&settings, &Harness::env(&h.wi_env())).unwrap();
    let syncer = Syncer::new(plan, &settings, Metrics::new()).unwrap();
    syncer.sync().await.unwrap();

    // The kubelet rotates the file (here: to a subject with no federated credential).
    let t0 = Instant::now();
    h.write_token("system:serviceaccount:other:intruder");
    // The 1 s access token must expire before another exchange is needed.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(t0.elapsed())).await;
    let e = syncer.sync().await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("subject system:serviceaccount:other:intruder")
            && m.contains("az identity federated-credential create"),
        "{m}"
    );
    assert_eq!(e.exit_code(), EXIT_AUTH);

    // Rotated again to a good token: the same syncer recovers without a restart.
    h.write_token(SA_SUBJECT);
    syncer.sync().await.expect("recovers after rotation");
}

#[tokio::test]
async fn objects_are_fetched_in_parallel() {
    let h = Harness::start().await;
    let names: Vec<String> = (0..10).map(|i| format!("par-{i}")).collect();
    for n in &names {
        h.emu.set_secret("demo", n, &format!("value-of-{n}"), None);
    }
    let objects: Vec<String> = names
        .iter()
        .map(|n| format!("objectName: {n}\nobjectType: secret"))
        .collect();
    let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
    let spc = h.spc(&refs, &[]);
    // Each GET is held half a second at the server, so GETs sent together overlap there even
    // on a loaded machine; the emulator counts requests answered at once (no clock involved).
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::Latency(Duration::from_millis(500)),
    ));
    let run = |concurrency: usize| {
        let mut s = h.settings(&spc);
        s.concurrency = concurrency;
        s.dir = h.tmp.path().join(format!("out-{concurrency}"));
        let env = Harness::env(&h.wi_env());
        let emu = &h.emu;
        async move {
            emu.reset_counts();
            keyvault_agent::run_once(s, env).await.unwrap();
            emu.counts().peak_in_flight()
        }
    };
    let parallel = run(16).await;
    assert!(
        parallel > 1,
        "10 objects, --concurrency 16: {parallel} request(s) at once"
    );
    h.emu.clear_faults();
    let sequential = run(1).await;
    assert_eq!(sequential, 1, "--concurrency 1: one request at a time");
}

#[test]
fn the_binary_runs_once_and_reports_failures_per_object() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(Harness::start());
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let dir = h.dir.display().to_string();
    // Every crate at trace level: still no value, token or key on stderr.
    let mut env = h.wi_env();
    env.push(("KEYVAULT_AGENT_LOG".into(), "trace".into()));
    let out = h.run_binary(
        &["--config", spc.to_str().unwrap(), "--dir", &dir, "--once"],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("TRACE"), "trace logging was on");
    let token = std::fs::read_to_string(&h.token_file).unwrap();
    for needle in [
        token.trim(),
        token.split('.').nth(1).unwrap(),
        // Any JWT (service-account or access token) starts with base64 of `{"`.
        "eyJ",
        "s3cr3t-db-password-value",
    ] {
        if let Some(line) = stderr.lines().find(|l| l.contains(needle)) {
            panic!(
                "secret material in a log line: {}",
                line.replace(needle, "<SECRET>")
            );
        }
    }
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    let before = h.snapshot();

    let spc = h.spc(
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: nope\nobjectType: secret",
        ],
        &[],
    );
    let out = h.run_binary(
        &["--config", spc.to_str().unwrap(), "--dir", &dir, "--once"],
        &h.wi_env(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(EXIT_OBJECT), "{stderr}");
    assert!(stderr.contains("secret \"nope\": not found"), "{stderr}");
    assert_eq!(h.snapshot(), before);
    for v in SECRET_VALUES {
        assert!(!stderr.contains(v));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(v));
    }
}

#[tokio::test]
async fn pinned_versions_are_fetched_once_per_process() {
    let h = Harness::start().await;
    let spc = h.spc(
        &[
            &format!("objectName: db-password\nobjectType: secret\nobjectVersion: {DB_V1}\nobjectAlias: pinned"),
            "objectName: api-key\nobjectType: secret",
        ],
        &[],
    );
    let settings = h.settings(&spc);
    let plan = keyvault_agent::config::load(&settings, &Harness::env(&h.wi_env())).unwrap();
    let syncer = Syncer::new(plan, &settings, Metrics::new()).unwrap();
    syncer.sync().await.unwrap();
    assert_eq!(h.file("pinned"), "old-db-password-value");
    let gets = h.emu.counts().route(Route::SecretGet);
    let report = syncer.sync().await.unwrap();
    // Only the unpinned object is fetched again.
    assert_eq!(h.emu.counts().route(Route::SecretGet), gets + 1);
    assert_eq!(report.requests, 1);
    assert_eq!(report.objects[0].version, DB_V1);
    assert_eq!(
        report.outcome,
        keyvault_agent::writer::WriteOutcome::Unchanged
    );
}

#[tokio::test]
async fn dropped_connections_and_imds_updates_are_retried() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::Drop).times(2));
    h.emu
        .add_fault(Fault::new(Route::Imds, FaultKind::Status(503)).times(1));
    let spc = h.spc(
        &["objectName: db-password\nobjectType: secret"],
        &[
            ("useVMManagedIdentity", "true"),
            ("userAssignedIdentityID", MI_CLIENT_ID),
        ],
    );
    h.run_once(&spc, &[]).await.expect("retried to success");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert_eq!(h.emu.counts().route(Route::Imds), 2);
    assert!(h.emu.counts().route(Route::SecretGet) >= 4);
}

#[tokio::test]
async fn an_untrusted_server_certificate_fails_fast_as_configuration() {
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let mut s = h.settings(&spc);
    s.ca_files.clear();
    let logs = LogCapture::start();
    let e = keyvault_agent::run_once(s, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    let m = e.to_string();
    // Not retried until the deadline: a failed handshake is permanent (a configuration
    // error, below), so neither the token nor the vault request logs a retry.
    let text = logs.text();
    assert!(!text.contains("retry"), "{text}");
    assert!(m.contains("certificate") && m.contains("--ca-file"), "{m}");
    assert_eq!(e.exit_code(), keyvault_agent::error::EXIT_CONFIG, "{m}");

    // A CA file that does not exist is named.
    let mut s = h.settings(&spc);
    s.ca_files.push(h.tmp.path().join("no-such-ca.pem"));
    let e = keyvault_agent::run_once(s, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no-such-ca.pem"), "{e}");
    assert_eq!(e.exit_code(), keyvault_agent::error::EXIT_CONFIG);
}

#[tokio::test]
async fn a_missing_or_empty_token_file_is_named() {
    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    std::fs::write(&h.token_file, "\n").unwrap();
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(&h.token_file.display().to_string()) && m.contains("is empty"),
        "{m}"
    );
    assert_eq!(e.exit_code(), keyvault_agent::error::EXIT_CONFIG, "{m}");
    std::fs::remove_file(&h.token_file).unwrap();
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("AZURE_FEDERATED_TOKEN_FILE") && m.contains("cannot read"),
        "{m}"
    );
    assert_eq!(h.emu.counts().route(Route::Token), 0);
}

// reference: docs/protocol.md §1.5 (nextLink with another api-version, replaced by ours)
#[tokio::test]
async fn history_follows_next_links_across_pages() {
    let h = Harness::with_builder(
        keyvault_emulator::Emulator::builder()
            .seed_yaml(SEED_LIGHT)
            .next_link_api_version("7.2"),
    )
    .await;
    for i in 0..30 {
        h.emu
            .set_secret("demo", "paged", &format!("paged-{i}"), None);
    }
    let spc = h.spc(
        &["objectName: paged\nobjectType: secret\nobjectVersionHistory: 28"],
        &[],
    );
    h.run_once(&spc, &h.wi_env()).await.unwrap();
    assert_eq!(h.files().len(), 28);
    assert_eq!(
        h.emu.counts().route(Route::SecretVersions),
        2 + 1,
        "challenge probe + 2 pages"
    );
}

#[tokio::test]
async fn an_expired_service_account_token_says_the_file_is_stale() {
    let h = Harness::start().await;
    let t = h
        .emu
        .mint_expired_token(SA_SUBJECT, "api://AzureADTokenExchange");
    std::fs::write(&h.token_file, &t).unwrap();
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("AADSTS700024") && m.contains("stale"), "{m}");
    assert!(m.contains(&h.token_file.display().to_string()), "{m}");
    assert!(
        !m.contains(&t) && !m.contains("eyJ"),
        "the token is never printed"
    );
    assert_eq!(e.exit_code(), EXIT_AUTH);
}

// reference: docs/protocol.md §3.5
#[tokio::test]
async fn entra_throttling_and_outages_are_retried() {
    let h = Harness::start().await;
    h.emu.add_fault(
        Fault::new(
            Route::Token,
            FaultKind::Throttle {
                retry_after: Some(1),
            },
        )
        .times(1),
    );
    h.emu
        .add_fault(Fault::new(Route::Token, FaultKind::Status(503)).times(1));
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let t0 = Instant::now();
    h.run_once(&spc, &h.sp_env(SP_CLIENT_ID, SP_SECRET))
        .await
        .expect("retried to success");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(h.emu.counts().route(Route::Token), 3);
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
}

// reference: docs/threat-model.md rule 10 ("a non-zero exit means the directory is as it was"),
// ISSUE9 item 8 (the manifest is written inside the new generation before the swap)
#[test]
fn a_manifest_that_cannot_be_written_fails_the_run_and_changes_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(Harness::start());
    let dir = h.dir.display().to_string();
    let run = |objects: &[&str]| {
        let spc = h.spc(objects, &[]);
        h.run_binary(
            &["--config", spc.to_str().unwrap(), "--dir", &dir, "--once"],
            &h.wi_env(),
        )
    };
    let out = run(&["objectName: db-password\nobjectType: secret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Someone put a directory where the manifest's link lives.
    std::fs::remove_file(h.dir.join("..status.json")).unwrap();
    std::fs::create_dir(h.dir.join("..status.json")).unwrap();
    let before = h.snapshot();
    let out = run(&[
        "objectName: db-password\nobjectType: secret",
        "objectName: api-key\nobjectType: secret",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(keyvault_agent::error::EXIT_WRITE),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"..status.json\" is a directory"),
        "{stderr}"
    );
    // The new set was not swapped in: exit 8 means the directory is as it was.
    assert_eq!(h.snapshot(), before);
}

/// `strace` on PATH, if any.
fn strace() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("strace"))
        .find(|p| p.is_file())
}

// reference: docs/threat-model.md "How to prove it" (a syscall trace shows no mutating call on a
// path under the output dir that is not relative to a directory fd)
#[test]
fn a_traced_run_mutates_the_output_dir_only_through_directory_fds() {
    let Some(strace) = strace() else {
        eprintln!("skipped: strace is not installed (apt-get install strace)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(Harness::start());
    let dir = h
        .dir
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
        .join(h.dir.file_name().unwrap());
    // Something to replace, remove and collect on the second run.
    let spc = h.spc(
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: api-key\nobjectType: secret\nobjectAlias: app/api-key.txt",
        ],
        &[],
    );
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut lines = Vec::new();
    for objects in [
        &["objectName: db-password\nobjectType: secret"][..],
        &[
            "objectName: db-password\nobjectType: secret\nobjectAlias: renamed",
            "objectName: api-key\nobjectType: secret\nobjectAlias: app/api-key.txt",
        ][..],
    ] {
        let spc = h.spc(objects, &[]);
        let mut cmd = std::process::Command::new(&strace);
        cmd.env_clear()
            .current_dir("/")
            .env("SSL_CERT_FILE", h.emu.ca_file())
            .env(
                "KEYVAULT_AGENT_IMDS_ENDPOINT",
                h.emu.imds_endpoint().to_string(),
            )
            .args(["-f", "-qq", "-e", "trace=%file", "-o"])
            .arg(trace.path())
            .arg(env!("CARGO_BIN_EXE_keyvault-agent"))
            .args(["--config", spc.to_str().unwrap(), "--dir"])
            .arg(&dir)
            .arg("--once");
        for (k, v) in h.wi_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("PTRACE_TRACEME") || stderr.contains("ptrace(") {
            eprintln!("skipped: ptrace is not permitted here: {stderr}");
            return;
        }
        assert!(out.status.success(), "{stderr}");
        lines.extend(
            std::fs::read_to_string(trace.path())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
    }
    drop(spc);
    assert_eq!(h.file("renamed"), "s3cr3t-db-password-value");

    let dir_s = dir.to_str().unwrap().to_owned();
    let under = |p: &str| p.starts_with(&format!("{dir_s}/"));
    // Calls that change the file system, with the index of their first path argument.
    let mutating = [
        "mkdir",
        "mkdirat",
        "rmdir",
        "unlink",
        "unlinkat",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "chmod",
        "fchmodat",
        "fchmodat2",
        "chown",
        "lchown",
        "fchownat",
        "truncate",
        "creat",
        "utimensat",
        "mknod",
        "mknodat",
    ];
    let call = regex_lite_call();
    let mut at_calls = 0;
    let mut violations = Vec::new();
    for line in &lines {
        let Some((name, args)) = call(line) else {
            continue;
        };
        let opens = matches!(name.as_str(), "open" | "openat" | "openat2");
        let writes = opens
            && (args.contains("O_CREAT")
                || args.contains("O_WRONLY")
                || args.contains("O_RDWR")
                || args.contains("O_TRUNC"));
        if !(mutating.contains(&name.as_str()) || writes || opens) {
            continue;
        }
        let quoted: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
        let relative_to_fd = name.ends_with("at") || name.ends_with("at2") || name == "openat2";
        let first_arg = args.split(',').next().unwrap_or("").trim();
        let via_fd = relative_to_fd && first_arg != "AT_FDCWD" && !name.starts_with("symlink");
        for p in &quoted {
            // The process runs in `/`: a relative path without a directory fd is `/<p>`.
            let abs = if p.starts_with('/') {
                (*p).to_owned()
            } else {
                format!("/{p}")
            };
            // Resolved from `/` (no directory fd, or an absolute path) to below the dir.
            let targets_dir = (!via_fd || p.starts_with('/')) && under(&abs);
            if opens && !writes {
                // Reads may name the output dir itself, but only to open it once, safely.
                if abs == dir_s && !(args.contains("O_NOFOLLOW") && args.contains("O_DIRECTORY")) {
                    violations.push(line.clone());
                }
                if targets_dir {
                    violations.push(line.clone());
                }
                continue;
            }
            if targets_dir {
                violations.push(line.clone());
            }
            if via_fd && p.contains('/') && name != "symlinkat" {
                // One component at a time.
                violations.push(line.clone());
            }
        }
        if via_fd && (mutating.contains(&name.as_str()) || writes) {
            at_calls += 1;
        }
    }
    assert!(
        violations.is_empty(),
        "path-based calls under {dir_s}:\n{}",
        violations.join("\n")
    );
    // The trace did see the writer's work (so an empty violation list means something).
    assert!(
        at_calls >= 10,
        "only {at_calls} fd-relative calls traced:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("\"..data_tmp\"")
            && l.contains("\"..data\"")
            && l.contains("rename")),
        "no ..data swap in the trace"
    );
}

/// Parses one strace line (`PID name(args) = ret`, or the start of an unfinished call)
/// into the syscall name and its raw argument text.
fn regex_lite_call() -> impl Fn(&str) -> Option<(String, String)> {
    |line: &str| {
        let line = line.trim_start();
        let rest = line.split_once(' ').map_or(line, |(pid, r)| {
            if pid.bytes().all(|b| b.is_ascii_digit()) {
                r
            } else {
                line
            }
        });
        // strace pads the pid column.
        let rest = rest.trim_start();
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            return None;
        }
        let (name, args) = rest.split_once('(')?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let args = args
            .rsplit_once(") =")
            .map(|(a, _)| a)
            .or_else(|| args.strip_suffix(" <unfinished ...>"))
            .unwrap_or(args);
        Some((name.to_owned(), args.to_owned()))
    }
}
