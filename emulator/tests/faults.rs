//! Faults (status, throttle with/without Retry-After or in milliseconds, latency, drop) and counters, through the
//! builder and through the loopback-only admin API.
//! reference: docs/protocol.md §1.6 (Throttled), §3.5, §4

use std::time::{Duration, Instant};

use keyvault_emulator::{Fault, FaultKind, Route};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn status_fault_hits_the_next_n_requests_only_and_precedes_auth() {
    let emu = start().await;
    let c = client(&emu);
    emu.add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)).times(2));
    // Faults apply before auth: no token needed to see them.
    for _ in 0..2 {
        let (st, h, body) =
            kv_get(&emu, &c, None, &format!("secrets/other?api-version={API}")).await;
        assert_eq!(st, 503);
        assert_eq!(error_code(&body).0, "ServiceUnavailable");
        assert!(h.contains_key("x-ms-request-id"));
    }
    let (st, _, _) = kv_get(&emu, &c, None, &format!("secrets/other?api-version={API}")).await;
    assert_eq!(st, 401, "the fault expired after two requests");
    assert_eq!(emu.counts().route(Route::SecretGet), 3);
}

#[tokio::test]
async fn throttle_with_and_without_retry_after() {
    let emu = start().await;
    let c = client(&emu);
    emu.add_fault(
        Fault::new(
            Route::SecretVersions,
            FaultKind::Throttle {
                retry_after: Some(7),
            },
        )
        .times(1),
    );
    emu.add_fault(
        Fault::new(
            Route::SecretVersions,
            FaultKind::Throttle { retry_after: None },
        )
        .times(1),
    );
    let (st, h, body) = kv_get(
        &emu,
        &c,
        None,
        &format!("secrets/other/versions?api-version={API}"),
    )
    .await;
    assert_eq!((st, error_code(&body).0), (429, "Throttled"));
    assert_eq!(h["retry-after"], "7");
    let (st, h, body) = kv_get(
        &emu,
        &c,
        None,
        &format!("secrets/other/versions?api-version={API}"),
    )
    .await;
    assert_eq!((st, error_code(&body).0), (429, "Throttled"));
    assert!(!h.contains_key("retry-after"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VaultRequestTypeLimitReached")
    );
}

// reference: issue 13 item 5 (millisecond-granular throttling faults, `x-ms-retry-after-ms`);
// docs/protocol.md §1.6 (Throttled body)
#[tokio::test]
async fn throttle_ms_answers_x_ms_retry_after_ms_on_every_route_shape() {
    let emu = start().await;
    let c = client(&emu);
    let ms = |n| FaultKind::ThrottleMs { retry_after_ms: n };
    emu.add_fault(Fault::new(Route::SecretGet, ms(250)).times(1));
    emu.add_fault(Fault::new(Route::Imds, ms(40)).times(1));
    // Key Vault's shape: 429 `Throttled`, the millisecond header, no whole-second one.
    let (st, h, body) = kv_get(&emu, &c, None, &format!("secrets/other?api-version={API}")).await;
    assert_eq!((st, error_code(&body).0), (429, "Throttled"));
    assert_eq!(h["x-ms-retry-after-ms"], "250");
    assert!(!h.contains_key("retry-after"));
    assert!(h.contains_key("x-ms-request-id"));
    // IMDS keeps its own body and gets the same header.
    let url = format!(
        "{}metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.localhost",
        emu.imds_endpoint()
    );
    let r = plain_client()
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ms-retry-after-ms"], "40");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    // The admin API takes the same fault as JSON.
    let r = c
        .post(format!("{}/faults", emu.admin_url()))
        .json(&json!({"route": "key_get", "kind": {"throttle_ms": {"retry_after_ms": 5}}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (st, h, _) = kv_get(&emu, &c, None, &format!("keys/k?api-version={API}")).await;
    assert_eq!(st, 429);
    assert_eq!(h["x-ms-retry-after-ms"], "5");
}

#[tokio::test]
async fn token_route_throttle_uses_entra_body() {
    let emu = start().await;
    let c = client(&emu);
    emu.add_fault(
        Fault::new(
            Route::Token,
            FaultKind::Throttle {
                retry_after: Some(60),
            },
        )
        .times(1),
    );
    let r = c
        .post(token_url(&emu))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "dev-secret"),
            ("scope", "https://vault.localhost/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error_codes"].is_array(), "{body}");
    // Next one goes through.
    app_token(&emu, &c).await;
    assert_eq!(emu.counts().route(Route::Token), 2);
    assert_eq!(emu.counts().tokens(APP), 1);
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let emu = start().await;
    let c = client(&emu);
    emu.add_fault(Fault::new(Route::KeyGet, FaultKind::Drop).times(1));
    let err = c
        .get(format!(
            "{}keys/ec-key?api-version={API}",
            emu.vault_url("demo")
        ))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let (st, _, _) = kv_get(&emu, &c, None, &format!("keys/ec-key?api-version={API}")).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let emu = start().await;
    let c = client(&emu);
    // Warm the connection so the handshake is not measured.
    kv_get(&emu, &c, None, &format!("secrets?api-version={API}")).await;
    emu.add_fault(Fault::new(Route::Any, FaultKind::Latency(Duration::from_millis(300))).times(1));
    let t0 = Instant::now();
    let (st, _, _) = kv_get(&emu, &c, None, &format!("secrets?api-version={API}")).await;
    assert_eq!(st, 401);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn imds_faults_use_imds_bodies_on_the_plain_listener() {
    let emu = start().await;
    emu.add_fault(
        Fault::new(Route::Imds, FaultKind::Status(410))
            .fraction(1.0)
            .times(1),
    );
    let c = plain_client();
    let url = format!(
        "{}metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.localhost",
        emu.imds_endpoint()
    );
    let r = c.get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(r.status(), 410);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].is_string() && body["error_description"].is_string());
    let r = c.get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn admin_api_adds_faults_and_reads_counters() {
    let emu = start().await;
    let c = client(&emu);
    let admin = emu.admin_url();
    let r = c
        .post(format!("{admin}/faults"))
        .json(&json!({"route": "secret_get", "kind": {"status": 500}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (st, _, _) = kv_get(&emu, &c, None, &format!("secrets/other?api-version={API}")).await;
    assert_eq!(st, 500);
    let r = c
        .post(format!("{admin}/faults"))
        .json(&json!({"route": "any", "kind": {"latency": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let faults: serde_json::Value = c
        .get(format!("{admin}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        faults.as_array().unwrap().len(),
        1,
        "the status fault expired: {faults}"
    );
    assert_eq!(
        c.delete(format!("{admin}/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let token = app_token(&emu, &c).await;
    kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/other?api-version={API}"),
    )
    .await;
    let counts: serde_json::Value = c
        .get(format!("{admin}/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["routes"]["secret_get"], 2, "{counts}");
    assert_eq!(counts["identities"][APP], 1, "{counts}");
    assert_eq!(counts["tokens"][APP], 1, "{counts}");
    // Admin requests are not counted.
    assert_eq!(counts["total"], 3, "{counts}");
    // Secret changes and token minting through the admin API.
    let r = c
        .put(format!("{admin}/vaults/demo/secrets/from-admin"))
        .json(&json!({"value": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let version = v["version"].as_str().unwrap();
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/from-admin/{version}?api-version={API}"),
    )
    .await;
    assert_eq!((st, body["value"].as_str()), (200, Some("hello")));
    let r = c
        .patch(format!("{admin}/vaults/demo/secrets/from-admin/{version}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/from-admin/{version}?api-version={API}"),
    )
    .await;
    assert_eq!(st, 403);
    let minted: serde_json::Value = c
        .post(format!("{admin}/token"))
        .json(&json!({"sub": SA}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assertion = minted["token"].as_str().unwrap();
    let (st, _) = token_request(
        &emu,
        &c,
        &[
            ("client_assertion", assertion),
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
}

#[tokio::test]
async fn builder_set_secret_enabled_toggles_a_version() {
    let emu = start().await;
    let c = client(&emu);
    let token = app_token(&emu, &c).await;
    let v = emu.set_secret("demo", "toggle", "on", Some("text/plain"));
    assert_eq!(v.len(), 32);
    emu.set_secret_enabled("demo", "toggle", &v, false);
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/toggle?api-version={API}"),
    )
    .await;
    assert_eq!(st, 403);
    emu.set_secret_enabled("demo", "toggle", &v, true);
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/toggle?api-version={API}"),
    )
    .await;
    assert_eq!(
        (st, body["contentType"].as_str()),
        (200, Some("text/plain"))
    );
}
