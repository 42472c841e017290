//! State dir reuse and lifecycle: the CA and the issuer key survive a restart on the same
//! address, and shutdown lets an in-flight request finish.

use std::time::Duration;

use keyvault_emulator::{Emulator, Fault, FaultKind, Route};

use crate::common::*;

#[tokio::test]
async fn restart_on_same_addr_reuses_ca_and_issuer_key() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_raw(Emulator::builder().state_dir(dir.path())).await;
    let addr = emu.addr();
    let ca = emu.ca_pem();
    let old_client = client(&emu);
    let assertion = emu.mint_token(SA, AUD, Duration::from_secs(600));
    emu.shutdown().await;

    let emu = start_raw(Emulator::builder().state_dir(dir.path()).addr(addr)).await;
    assert_eq!(emu.addr(), addr);
    assert_eq!(emu.ca_pem(), ca, "the CA is reused");
    // A client built before the restart still trusts the server, and an assertion minted
    // before the restart is still accepted (same issuer URL and key).
    let (st, _) = token_request(
        &emu,
        &old_client,
        &[
            ("client_assertion", &assertion),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_id", APP),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.localhost/.default"),
        ],
    )
    .await;
    assert_eq!(st, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn new_hostname_reissues_the_server_certificate_under_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start_raw(Emulator::builder().state_dir(dir.path())).await;
    let ca = emu.ca_pem();
    let before = std::fs::read_to_string(dir.path().join("server.pem")).unwrap();
    emu.shutdown().await;
    let emu = start_raw(
        Emulator::builder()
            .state_dir(dir.path())
            .hostname("emulator.test"),
    )
    .await;
    assert_eq!(emu.ca_pem(), ca);
    let after = std::fs::read_to_string(dir.path().join("server.pem")).unwrap();
    assert_ne!(before, after);
    let names = std::fs::read_to_string(dir.path().join("server-names.txt")).unwrap();
    assert!(names.contains("*.vault.emulator.test"));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let emu = start_raw(Emulator::builder()).await;
    let c = client(&emu);
    kv_get(&emu, &c, None, &format!("secrets?api-version={API}")).await;
    emu.add_fault(Fault::new(
        Route::List,
        FaultKind::Latency(Duration::from_millis(300)),
    ));
    let url = format!("{}secrets?api-version={API}", emu.vault_url("demo"));
    let inflight = tokio::spawn({
        let c = c.clone();
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // Wait until the request reached the server (it is counted before the delay).
    while emu.counts().route(Route::List) < 2 {
        tokio::task::yield_now().await;
    }
    let addr = emu.addr();
    emu.shutdown().await;
    assert_eq!(inflight.await.unwrap().unwrap(), 401);
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn refuses_non_loopback_addresses_by_default() {
    let err = Emulator::builder()
        .addr("0.0.0.0:0".parse().unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");
}

/// Agent tests pause tokio's clock; the emulator must not depend on timers to serve.
#[tokio::test(start_paused = true)]
async fn serves_while_the_test_clock_is_paused() {
    let emu = start().await;
    let c = client_builder(&emu.ca_pem(), emu.addr()).build().unwrap();
    let token = app_token(&emu, &c).await;
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/other?api-version={API}"),
    )
    .await;
    assert_eq!((st, body["value"].as_str()), (200, Some("x")));
}
