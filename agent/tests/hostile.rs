//! The hostile-server suite (issue 9 item 10): the emulator answers as an attacker or a
//! broken proxy would (absurd `Retry-After`, huge and endless bodies, slow drips, oversized
//! headers, resets, a vault name that does not exist) and the agent must neither panic nor
//! grow without bound, must name the object and the limit, and must exit with the
//! documented code. Memory is shown bounded by what the emulator managed to hand to the
//! connection before the agent hung up (`Counts::body_bytes`); waits by counting requests,
//! never by wall-clock time.

use std::time::Duration;

use keyvault_agent::error::{EXIT_AUTH, EXIT_OBJECT, EXIT_OK, EXIT_UNAVAILABLE};
use keyvault_emulator::{Fault, FaultKind, Route};

use crate::util::*;

const MIB: u64 = 1024 * 1024;
/// Whatever HTTP/2 flow-control windows and socket buffers let a server push before the
/// reader stops (hyper's client windows are 2 MiB per stream, 5 MiB per connection).
const IN_FLIGHT_MARGIN: u64 = 8 * MIB;

fn db() -> Vec<&'static str> {
    vec!["objectName: db-password\nobjectType: secret"]
}

fn raw(route: Route, name: &str, value: &str) -> Fault {
    Fault::new(
        route,
        FaultKind::RawHeader {
            status: 429,
            name: name.into(),
            value: value.into(),
        },
    )
}

/// Exit code and stderr of `--once` as the built binary (so a panic shows as exit 101).
fn once(h: &Harness, spc: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let dir = h.dir.display().to_string();
    let mut args = vec!["--config", spc.to_str().unwrap(), "--dir", &dir, "--once"];
    args.extend_from_slice(extra);
    let out = h.run_binary(&args, &h.wi_env());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// reference: issue 9 item 1 ("a 429 with Retry-After: 99999999999999999999 or
// x-ms-retry-after-ms: 1e300 panics the agent"; the binary exited 134/101 on main)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_server_waits_end_the_sync_at_once_with_exit_6() {
    let h = Harness::start().await;
    let spc = h.spc(&db(), &[]);
    for (route, name, value) in [
        (Route::SecretGet, "retry-after", "99999999999999999999"),
        (Route::SecretGet, "x-ms-retry-after-ms", "1e300"),
        (Route::SecretGet, "retry-after-ms", "18446744073709551616"),
        (
            Route::SecretGet,
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ),
        (Route::SecretGet, "retry-after", "86400"),
        (Route::Token, "x-ms-retry-after-ms", "1e300"),
        (Route::Token, "retry-after", "99999999999999999999"),
    ] {
        h.emu.clear_faults();
        h.emu.reset_counts();
        h.emu.add_fault(raw(route, name, value));
        // A long deadline: a sleeping agent would hang this test, not pass it.
        let (code, stderr) = once(&h, &spc, &["--timeout", "10m"]);
        assert_eq!(code, Some(EXIT_UNAVAILABLE), "{name}: {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let object = if route == Route::Token {
            "workload_identity"
        } else {
            "secret \"db-password\""
        };
        assert!(stderr.contains(object), "{name}: {value}: {stderr}");
        // One throttled answer, no retry (no sleeping into a certain failure).
        assert_eq!(h.emu.counts().route(route), 1, "{name}: {value}: {stderr}");
        assert!(
            stderr.contains("longer than the time left before the deadline"),
            "the clamp is logged: {stderr}"
        );
        assert!(!h.dir.join("db-password").exists());
    }
}

// reference: issue 9 item 1 (odd values are ignored: backoff applies and the sync succeeds)
#[tokio::test]
async fn odd_server_waits_fall_back_to_backoff() {
    let h = Harness::start().await;
    let spc = h.spc(&db(), &[]);
    for (name, value) in [
        ("retry-after", "-5"),
        ("retry-after", "NaN"),
        ("x-ms-retry-after-ms", "inf"),
        ("retry-after", "soon"),
        ("retry-after", "0.25"),
    ] {
        h.emu.clear_faults();
        h.emu.add_fault(raw(Route::SecretGet, name, value).times(1));
        h.run_once(&spc, &h.wi_env())
            .await
            .unwrap_or_else(|e| panic!("{name}: {value}: {e}"));
        assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    }
}

// reference: issue 9 item 2 ("a 100 MB secret is published")
#[tokio::test]
async fn a_100_mb_secret_is_refused_naming_the_object_and_the_limit() {
    let h = Harness::start().await;
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::HugeBody { bytes: 100 * MIB },
    ));
    let spc = h.spc(&db(), &[]);
    let e = h.run_once(&spc, &h.wi_env()).await.unwrap_err();
    let m = e.to_string();
    assert!(m.starts_with("secret \"db-password\""), "{m}");
    assert!(
        m.contains("4 MiB") && m.contains("--max-response-size"),
        "{m}"
    );
    assert_eq!(e.exit_code(), EXIT_OBJECT, "{m}");
    assert!(!h.dir.join("db-password").exists());
    let sent = h.emu.counts().body_bytes;
    assert!(
        sent < 4 * MIB + IN_FLIGHT_MARGIN,
        "{sent} bytes left the emulator"
    );
    assert_eq!(h.emu.counts().route(Route::SecretGet), 1, "not retried");
}

// reference: issue 9 item 2 ("an endless chunked body grows to 665 MB")
#[tokio::test]
async fn an_endless_body_is_cut_at_the_configured_limit() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::EndlessBody));
    let spc = h.spc(&db(), &[]);
    let mut settings = h.settings(&spc);
    settings.max_response_size = MIB;
    let e = keyvault_agent::run_once(settings, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(m.starts_with("secret \"db-password\""), "{m}");
    assert!(m.contains("1 MiB"), "{m}");
    assert_eq!(e.exit_code(), EXIT_OBJECT);
    let sent = h.emu.counts().body_bytes;
    assert!(
        sent < MIB + IN_FLIGHT_MARGIN,
        "{sent} bytes left the emulator"
    );
}

// reference: issue 9 item 2 (Entra/IMDS ≤ 1 MiB)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_token_answer_is_an_auth_error_naming_the_endpoint_and_limit() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::Token, FaultKind::EndlessBody));
    let spc = h.spc(&db(), &[]);
    let (code, stderr) = once(&h, &spc, &["--timeout", "10m"]);
    assert_eq!(code, Some(EXIT_AUTH), "{stderr}");
    assert!(
        stderr.contains("1 MiB") && stderr.contains("--max-token-response-size"),
        "{stderr}"
    );
    assert!(stderr.contains("localhost"), "names the endpoint: {stderr}");
    assert_eq!(h.emu.counts().route(Route::Token), 1, "not retried");
    let sent = h.emu.counts().body_bytes;
    assert!(sent < MIB + IN_FLIGHT_MARGIN, "{sent}");
}

// reference: issue 9 item 2 ("response time bounded")
#[tokio::test]
async fn a_slow_drip_body_cannot_outlast_the_request_timeout() {
    let h = Harness::start().await;
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::SlowBody { every_ms: 100 },
    ));
    let spc = h.spc(&db(), &[]);
    let mut settings = h.settings(&spc);
    settings.request_timeout = Duration::from_secs(1);
    settings.timeout = Duration::from_secs(3);
    let e = keyvault_agent::run_once(settings, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), EXIT_UNAVAILABLE, "{e}");
    assert!(e.to_string().contains("db-password"), "{e}");
    // At most ~10 bytes a second for at most the 3 s deadline (the drip cannot extend it).
    let sent = h.emu.counts().body_bytes;
    assert!(sent <= 40, "{sent} bytes dripped");
}

// reference: issue 9 item 2 ("header size bounded")
#[tokio::test]
async fn oversized_headers_are_refused_and_retried() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::HugeHeaders { bytes: MIB }).times(2));
    let spc = h.spc(&db(), &[]);
    h.run_once(&spc, &h.wi_env())
        .await
        .expect("retried after the oversized answers");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");
    assert!(h.emu.counts().route(Route::SecretGet) >= 3);
}

// reference: issue 9 item 10 (connection reset mid-body, and no answer at all)
#[tokio::test]
async fn resets_are_transient() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::ResetBody { after_bytes: 10 }).times(2));
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::Drop).times(1));
    let spc = h.spc(&db(), &[]);
    h.run_once(&spc, &h.wi_env())
        .await
        .expect("retried after the resets");
    assert_eq!(h.file("db-password"), "s3cr3t-db-password-value");

    // Resets until the deadline: unavailable, exit 6.
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::ResetBody { after_bytes: 10 },
    ));
    let mut settings = h.settings(&spc);
    settings.timeout = Duration::from_secs(2);
    let e = keyvault_agent::run_once(settings, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), EXIT_UNAVAILABLE, "{e}");
}

// reference: issue 9 item 9 ("a vault host that does not exist is retried as transient for
// ~2 minutes, then exit 6 with a misleading hint")
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_host_that_does_not_exist_exits_5_at_once() {
    let h = Harness::start().await;
    // RFC 6761 §6.4: `.invalid` never resolves, whatever DNS this machine has.
    let url = url::Url::parse("https://nosuch.vault.invalid/").unwrap();
    let spc = h.spc_for(&url, &db(), &[]);
    // With the default 2 minute deadline a retrying agent would take 2 minutes; we only
    // count that it made no token request (it stopped at the first, failed, lookup).
    let (code, stderr) = once(&h, &spc, &[]);
    assert_eq!(code, Some(EXIT_OBJECT), "{stderr}");
    assert!(stderr.contains("nosuch.vault.invalid"), "{stderr}");
    assert!(
        stderr.contains("keyvaultName") && stderr.contains("cloudName"),
        "{stderr}"
    );
    assert_eq!(h.emu.counts().route(Route::Token), 0);
    assert_eq!(code.filter(|c| *c != EXIT_OK), Some(EXIT_OBJECT));
}

// reference: issue 9 items 1 and 2 for IMDS (managed identity): an absurd wait is not slept,
// and a huge answer is refused at 1 MiB
#[tokio::test]
async fn imds_absurd_waits_and_huge_answers() {
    let h = Harness::start().await;
    let spc = h.spc(
        &db(),
        &[
            ("useVMManagedIdentity", "true"),
            ("userAssignedIdentityID", MI_CLIENT_ID),
        ],
    );
    let mut settings = h.settings(&spc);
    settings.timeout = Duration::from_secs(600);

    h.emu
        .add_fault(raw(Route::Imds, "x-ms-retry-after-ms", "1e300"));
    let e = keyvault_agent::run_once(settings.clone(), Harness::env(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), EXIT_UNAVAILABLE, "{e}");
    assert!(e.to_string().contains("managed_identity"), "{e}");
    assert_eq!(h.emu.counts().route(Route::Imds), 1, "not retried");

    h.emu.clear_faults();
    h.emu.reset_counts();
    h.emu.add_fault(Fault::new(
        Route::Imds,
        FaultKind::HugeBody { bytes: 100 * MIB },
    ));
    let e = keyvault_agent::run_once(settings, Harness::env(&[]))
        .await
        .unwrap_err();
    let m = e.to_string();
    assert_eq!(e.exit_code(), EXIT_AUTH, "{m}");
    assert!(m.contains("imds") && m.contains("1 MiB"), "{m}");
    assert_eq!(h.emu.counts().route(Route::Imds), 1, "not retried");
    assert!(h.emu.counts().body_bytes < MIB + IN_FLIGHT_MARGIN);
}
