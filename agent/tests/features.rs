//! Issue 11 object extensions end to end against the emulator: optional objects (absent,
//! then published, then removed), JSON pointers (one GET for many entries, errors that never
//! hold the value) and the TLS layout (tls.crt / tls.key / ca.crt from a CA-signed chain).
//! Each runs through `--once` (in-process `run_once`) and through the sidecar's cycle
//! (`Syncer::sync` repeated, the refresh loop's unit of work).

use keyvault_agent::error::{EXIT_CONFIG, EXIT_CONVERT, EXIT_OBJECT};
use keyvault_agent::syncer::Syncer;
use keyvault_agent::telemetry::metrics::Metrics;
use keyvault_emulator::RequestKind;

use crate::util::*;

const APP_CONFIG: &str =
    r#"{"db":{"password":"json-pw-value-42","port":5432},"features":["a","b"]}"#;

/// Secrets created long ago (settled list entries), one disabled, and certificates signed by
/// the emulator's CA (leaf + CA) and self-signed (leaf only).
const SEED_FEATURES: &str = r#"
vaults:
  - name: demo
    secrets:
      - name: db-password
        versions:
          - { value: "s3cr3t-db-password-value", created: 1700000000 }
      - name: off
        versions:
          - { value: "disabled-value", enabled: false, created: 1700000000 }
      - name: plain
        versions:
          - { value: "not-json-hunter2", created: 1700000000 }
    certificates:
      - name: web-ca
        generate: { subject: "CN=web.demo.local", issuer: ca, content_type: application/x-pkcs12 }
      - name: web-self
        generate: { subject: "CN=self.demo.local", content_type: application/x-pem-file }
identities:
  - name: sp
    client_id: 22222222-2222-2222-2222-222222222222
    client_secret: dev-client-secret-value-9f8e7d
    access: all
"#;

/// The sidecar's unit of work for `objects`.
fn syncer(h: &Harness, objects: &[&str]) -> (Syncer, std::sync::Arc<Metrics>) {
    h.syncer(&h.settings(&h.spc(objects, &[])))
}

fn absent_ids(v: &serde_json::Value) -> Vec<String> {
    v["absent"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn blocks(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| l.starts_with("-----BEGIN "))
        .collect()
}

// reference: issue 11 item 1 (optional objects): missing and disabled are absent, not errors;
// the list re-checks them without a GET; appearing publishes, disappearing removes
#[tokio::test]
async fn optional_objects_are_absent_then_published_then_removed_in_the_sidecar() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    let (s, metrics) = syncer(
        &h,
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: later\nobjectType: secret\nobjectOptional: \"true\"",
            "objectName: off\nobjectType: secret\nobjectOptional: \"true\"",
        ],
    );
    let r = s
        .sync()
        .await
        .expect("absent optional objects are not errors");
    let ids: Vec<&str> = r.absent.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["secret/later", "secret/off"]);
    assert_eq!(h.files().keys().collect::<Vec<_>>(), ["db-password"]);
    assert_eq!(absent_ids(&h.manifest()), ["secret/later", "secret/off"]);
    let text = metrics.encode();
    assert!(
        text.contains("keyvault_agent_object_absent{id=\"secret/later\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keyvault_agent_object_absent{id=\"secret/off\"} 1"),
        "{text}"
    );

    // Unchanged refresh: the list shows `later` still missing and `off` still disabled.
    h.emu.reset_counts();
    let r = s.sync().await.unwrap();
    assert_eq!(r.absent.len(), 2);
    let c = h.emu.counts();
    assert_eq!(
        (c.kind(RequestKind::List), c.kind(RequestKind::Get)),
        (1, 0)
    );

    // It appears: the next refresh publishes it.
    h.emu.set_secret("demo", "later", "later-value", None);
    let r = s.sync().await.unwrap();
    assert_eq!(h.file("later"), "later-value");
    assert_eq!(
        r.absent.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["secret/off"]
    );
    assert_eq!(absent_ids(&h.manifest()), ["secret/off"]);
    assert!(
        !metrics
            .encode()
            .contains("keyvault_agent_object_absent{id=\"secret/later\"}")
    );

    // It disappears: the next set no longer holds it.
    assert!(h.emu.delete_secret("demo", "later"));
    let r = s.sync().await.unwrap();
    assert!(!h.dir.join("later").exists());
    assert_eq!(r.absent.len(), 2);
    assert_eq!(absent_ids(&h.manifest()), ["secret/later", "secret/off"]);
}

// reference: issue 11 item 1 (required objects keep today's behaviour; --once)
#[tokio::test]
async fn once_skips_an_optional_object_but_fails_on_a_required_one() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    let env = h.sp();
    let spc = h.spc(
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: nope\nobjectType: secret\nobjectOptional: \"true\"",
        ],
        &[],
    );
    let r = h.run_once(&spc, &env).await.unwrap();
    assert_eq!(r.absent.len(), 1);
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");

    let spc = h.spc(
        &["objectName: nope\nobjectType: secret\nobjectOptional: \"false\""],
        &[],
    );
    let e = h.run_once(&spc, &env).await.unwrap_err();
    assert_eq!(e.exit_code(), EXIT_OBJECT, "{e}");
}

// reference: issue 11 item 2 (JSON keys: one fetch, strings raw, other values compact)
#[tokio::test]
async fn json_pointers_share_one_fetch_and_write_single_values() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    h.emu
        .set_secret("demo", "app-config", APP_CONFIG, Some("application/json"));
    let spc = h.spc(
        &[
            "objectName: app-config\nobjectType: secret\nobjectAlias: db-password\nobjectJsonPointer: /db/password",
            "objectName: app-config\nobjectType: secret\nobjectAlias: db-port\nobjectJsonPointer: /db/port",
            "objectName: app-config\nobjectType: secret\nobjectAlias: features.json\nobjectJsonPointer: /features",
            "objectName: app-config\nobjectType: secret\nobjectAlias: whole.json",
        ],
        &[],
    );
    h.emu.reset_counts();
    let r = h.run_once(&spc, &h.sp()).await.unwrap();
    // One GET for four entries, plus the challenge probe.
    assert_eq!(h.emu.counts().kind(RequestKind::Get), 2);
    assert_eq!(r.requests, 2);
    assert_eq!(h.file("db-password"), "json-pw-value-42");
    assert_eq!(h.file("db-port"), "5432");
    assert_eq!(h.file("features.json"), r#"["a","b"]"#);
    assert_eq!(h.file("whole.json"), APP_CONFIG);
    assert_eq!(r.objects.len(), 4);
    assert!(r.objects.iter().all(|o| o.id == "secret/app-config"));
}

// reference: issue 11 item 2 (an error names object and pointer, never the value);
// docs/threat-model.md rule 8 (no secret in any message)
#[tokio::test]
async fn a_missing_pointer_or_a_non_json_secret_is_an_error_without_the_value() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    h.emu.set_secret("demo", "app-config", APP_CONFIG, None);
    let env = h.sp();
    let spc = h.spc(
        &[
            "objectName: app-config\nobjectType: secret\nobjectAlias: u\nobjectJsonPointer: /db/user",
            "objectName: plain\nobjectType: secret\nobjectJsonPointer: /db/password",
        ],
        &[],
    );
    let e = h.run_once(&spc, &env).await.unwrap_err();
    assert_eq!(e.exit_code(), EXIT_CONVERT);
    let m = e.to_string();
    assert!(
        m.contains("secret \"app-config\"") && m.contains("\"/db/user\""),
        "{m}"
    );
    assert!(
        m.contains("secret \"plain\"") && m.contains("not JSON"),
        "{m}"
    );
    for value in ["json-pw-value-42", "5432", "not-json-hunter2", "hunter2"] {
        assert!(!m.contains(value), "{m}");
    }
    assert!(!h.dir.join("..data").exists(), "nothing published");
}

// reference: issue 11 item 5 (TLS layout, kubernetes.io/tls): a PFX-backed certificate
// signed by a CA, and a PEM secret that is self-signed (empty ca.crt)
#[tokio::test]
async fn tls_layout_writes_crt_key_and_ca() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    let env = h.sp();
    let spc = h.spc(
        &[
            "objectName: web-ca\nobjectType: cert\nobjectAlias: ingress\nobjectLayout: tls\nfilePermission: \"0600\"",
            "objectName: web-ca\nobjectType: secret\nobjectAlias: web-ca.pem",
            "objectName: web-self\nobjectType: secret\nobjectAlias: self\nobjectLayout: tls",
        ],
        &[],
    );
    let r = h.run_once(&spc, &env).await.unwrap();
    let files: Vec<String> = h.files().into_keys().collect();
    for f in [
        "ingress/tls.crt",
        "ingress/tls.key",
        "ingress/ca.crt",
        "self/tls.crt",
        "self/tls.key",
        "self/ca.crt",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} in {files:?}");
    }
    // The same bytes as the reference's PEM conversion, split: key, then leaf → CA.
    let pem = h.file("web-ca.pem");
    let key_end =
        pem.find("-----END PRIVATE KEY-----\n").unwrap() + "-----END PRIVATE KEY-----\n".len();
    assert_eq!(h.file("ingress/tls.key"), pem[..key_end]);
    assert_eq!(h.file("ingress/tls.crt"), pem[key_end..]);
    assert_eq!(blocks(&h.file("ingress/tls.crt")).len(), 2, "leaf then CA");
    let crt = h.file("ingress/tls.crt");
    let second = crt
        .match_indices("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .unwrap()
        .0;
    assert_eq!(
        h.file("ingress/ca.crt"),
        crt[second..],
        "ca.crt is the chain's CA"
    );
    assert_eq!(blocks(&h.file("self/tls.crt")).len(), 1);
    assert_eq!(
        h.file("self/ca.crt"),
        "",
        "a self-signed leaf has no CA to write"
    );
    assert_eq!(h.mode("ingress/tls.key"), 0o600);
    let st: Vec<(&str, &str)> = r
        .objects
        .iter()
        .map(|o| (o.id.as_str(), o.path.as_str()))
        .collect();
    assert!(st.contains(&("cert/web-ca", "ingress/tls.key")), "{st:?}");

    // The sidecar's cycle writes the same set (and stays unchanged on the next refresh).
    let (s, _) = syncer(
        &h,
        &["objectName: web-ca\nobjectType: cert\nobjectAlias: ingress\nobjectLayout: tls"],
    );
    s.sync().await.unwrap();
    assert_eq!(h.file("ingress/tls.crt"), crt);
    let again = s.sync().await.unwrap();
    assert!(matches!(
        again.outcome,
        keyvault_agent::writer::WriteOutcome::Unchanged
    ));
}

// reference: issue 11 (config validation of the new keys: exit 3 naming the object; check
// prints them)
#[test]
fn check_validates_and_prints_the_new_keys() {
    let h = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Harness::with_seed(SEED_FEATURES));
    let env = h.sp();
    let good = h.spc(
        &[
            "objectName: app-config\nobjectType: secret\nobjectAlias: pw\nobjectJsonPointer: /db/password\nobjectOptional: \"true\"",
            "objectName: web-ca\nobjectType: cert\nobjectAlias: ingress\nobjectLayout: tls",
        ],
        &[],
    );
    let out = h.run_binary(&["check", "--config", good.to_str().unwrap()], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "secret/app-config -> pw (mode 0644), json pointer \"/db/password\", optional"
        ),
        "{text}"
    );
    assert!(text.contains("cert/web-ca -> ingress/tls.crt, ingress/tls.key, ingress/ca.crt (tls layout, mode 0644)"), "{text}");

    let bad = h.spc(
        &[
            "objectName: a\nobjectType: secret\nobjectOptional: maybe",
            "objectName: b\nobjectType: secret\nobjectJsonPointer: db/password",
            "objectName: c\nobjectType: key\nobjectLayout: tls",
            "objectName: d\nobjectType: secret\nobjectLayout: zip",
            "objectName: e\nobjectType: cert\nobjectJsonPointer: /x",
            "objectName: f\nobjectType: secret\nobjectLayout: tls\nobjectAlias: a/tls.crt",
        ],
        &[],
    );
    let out = h.run_binary(&["check", "--config", bad.to_str().unwrap()], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    for needle in [
        "objectName:a, objectVersion:: objectOptional must be \"true\" or \"false\"",
        "objectName:b, objectVersion:: objectJsonPointer \"db/password\" is not a JSON pointer",
        "objectName:c, objectVersion:: objectLayout: tls is only supported",
        "objectName:d, objectVersion:: invalid objectLayout: \"zip\"",
        "objectName:e, objectVersion:: objectJsonPointer is only supported for objectType: secret",
        "objectName:f, objectVersion:: output path \"a/tls.crt/tls.crt\" collides",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
}

// reference: issue 11 item 1 in the real sidecar loop: `absent` at /status and the metric,
// then the object is published by a later refresh when it appears
#[tokio::test]
async fn the_sidecar_shows_absent_at_status_and_publishes_the_object_when_it_appears() {
    let h = Harness::with_seed(SEED_FEATURES).await;
    let spc = h.spc(
        &[
            "objectName: db-password\nobjectType: secret",
            "objectName: later\nobjectType: secret\nobjectOptional: \"true\"",
        ],
        &[],
    );
    let run = h.start_sidecar(h.settings(&spc)).await;

    eventually!(30, "absent at /status", {
        let v = run.status().await;
        v["ready"] == true && absent_ids(&v) == ["secret/later"]
    });
    let (_, metrics) = run.get("/metrics").await;
    assert!(
        metrics.contains("keyvault_agent_object_absent{id=\"secret/later\"} 1"),
        "{metrics}"
    );
    assert_eq!(absent_ids(&h.manifest()), ["secret/later"]);
    assert!(!h.dir.join("later").exists());

    h.emu.set_secret("demo", "later", "later-value", None);
    eventually!(
        30,
        "the object published",
        std::fs::read_to_string(h.dir.join("later")).is_ok_and(|v| v == "later-value")
    );
    eventually!(30, "absent cleared at /status", {
        let v = run.status().await;
        v["ready"] == true && absent_ids(&v).is_empty()
    });
    assert!(absent_ids(&h.manifest()).is_empty());
    assert!(
        !run.get("/metrics")
            .await
            .1
            .contains("keyvault_agent_object_absent{")
    );

    run.stop().await;
}
