//! Throttling like Key Vault: per-vault token buckets per operation family, 429 `Throttled`
//! with `Retry-After`, counted; configurable from the builder, the seed and the admin API.
//! reference: docs/protocol.md §1.6 (Throttled body), §1.8 (limits per vault per 10 s)

use keyvault_emulator::{Emulator, RequestKind, Route, ThrottleConfig};
use serde_json::json;

use crate::common::*;

/// A window of an hour, so no token comes back while the test runs.
const TIGHT: &str = "secrets=3,list=2,window=1h";

#[tokio::test]
async fn an_empty_bucket_answers_429_throttled_with_retry_after_per_vault_and_family() {
    let emu = start_with(Emulator::builder().throttle(TIGHT.parse().unwrap())).await;
    let c = client(&emu);
    let token = app_token(&emu, &c).await;
    let get = format!("secrets/other/?api-version={API}");
    for _ in 0..3 {
        let (st, _, _) = kv_get(&emu, &c, Some(&token), &get).await;
        assert_eq!(st, 200);
    }
    let (st, h, body) = kv_get(&emu, &c, Some(&token), &get).await;
    assert_eq!((st, error_code(&body).0), (429, "Throttled"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VaultRequestTypeLimitReached")
    );
    // 3 per hour: the next token is 20 minutes away.
    assert_eq!(h["retry-after"], "1200");
    assert!(h.contains_key("x-ms-request-id"));
    // Version lists are secret reads too.
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("secrets/other/versions?api-version={API}"),
    )
    .await;
    assert_eq!(st, 429);

    // Other families keep their own buckets: lists (2), keys (published default).
    for want in [200, 200, 429] {
        let (st, _, _) = kv_get(
            &emu,
            &c,
            Some(&token),
            &format!("secrets?api-version={API}"),
        )
        .await;
        assert_eq!(st, want);
    }
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&token),
        &format!("keys/ec-key/?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    // Another vault has its own buckets.
    let url = format!(
        "{}secrets/only-here/?api-version={API}",
        emu.vault_url("second")
    );
    let (st, _, _) = get_url(&c, Some(&token), &url).await;
    assert_eq!(st, 200);

    let counts = emu.counts();
    assert_eq!(counts.throttled(Route::SecretGet), 1);
    assert_eq!(counts.throttled(Route::SecretVersions), 1);
    assert_eq!(counts.throttled(Route::List), 1);
    assert_eq!(counts.throttled(Route::Any), 3);
    assert_eq!(counts.kind(RequestKind::List), 4);
    assert_eq!(counts.kind(RequestKind::Get), 6);
    assert!(counts.kind(RequestKind::Token) >= 1);

    // Off lifts it at once.
    emu.set_throttle(ThrottleConfig::Off);
    let (st, _, _) = kv_get(&emu, &c, Some(&token), &get).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn the_in_process_default_is_off_and_the_seed_can_turn_it_on() {
    let emu = start().await;
    assert_eq!(emu.throttle_config(), ThrottleConfig::Off);
    let seeded = Emulator::builder()
        .seed_yaml(format!(
            "throttle: \"{TIGHT}\"\nvaults: [{{name: demo, secrets: [{{name: a, value: b}}]}}]"
        ))
        .start()
        .await
        .unwrap();
    assert_eq!(seeded.throttle_config(), TIGHT.parse().unwrap());
    let bad = Emulator::builder()
        .seed_yaml("throttle: \"secrets=none\"")
        .start()
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("secrets"), "{bad}");
}

#[tokio::test]
async fn the_admin_api_reads_and_sets_the_throttle() {
    let emu = start().await;
    let c = client(&emu);
    let admin = emu.admin_url();
    let v: serde_json::Value = c
        .put(format!("{admin}/throttle"))
        .json(&json!({"throttle": "keyvault"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["limits"]["per_family"]["secrets"], 4000);
    assert_eq!(v["limits"]["per_family"]["certificates"], 1000);
    assert_eq!(v["limits"]["window"], 10.0);
    let st = c
        .put(format!("{admin}/throttle"))
        .json(&json!({"throttle": "bogus=1"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 400);
    let counts: serde_json::Value = c
        .get(format!("{admin}/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        counts.get("kinds").is_some() && counts.get("throttled_total").is_some(),
        "{counts}"
    );
}
