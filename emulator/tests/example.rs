//! The documented example seed (`emulator/examples/seed.yaml`, used by `make demo`) loads and
//! serves what its comments promise.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn example_seed_serves_what_it_documents() {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed.yaml");
    let emu = keyvault_emulator::Emulator::builder()
        .seed_file(seed)
        .start()
        .await
        .unwrap();
    let c = client(&emu);
    // Workload identity for system:serviceaccount:default:app.
    let sa = emu.mint_token(SA, AUD, Duration::from_secs(600));
    let (st, tok) = token_request(
        &emu,
        &c,
        &[
            ("client_assertion", sa.as_str()),
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
    assert_eq!(st, 200, "{tok}");
    let t = tok["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        secret_token(&emu, &c, APP, "dev-secret")
            .await
            .split('.')
            .count(),
        3
    );

    let (_, _, versions) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/db-password/versions?api-version={API}"),
    )
    .await;
    let items = versions["value"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(
        items
            .iter()
            .filter(|i| i["attributes"]["enabled"] == false)
            .count(),
        1
    );
    let (_, _, b64) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/b64-secret?api-version={API}"),
    )
    .await;
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64["value"].as_str().unwrap())
            .unwrap(),
        b"hello from base64"
    );
    let (_, _, hexs) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/hex-secret?api-version={API}"),
    )
    .await;
    assert_eq!(
        hex::decode(hexs["value"].as_str().unwrap()).unwrap(),
        b"hello from hex"
    );
    let (_, _, rsa) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("keys/rsa-key?api-version={API}"),
    )
    .await;
    assert_eq!(rsa["key"]["kty"], "RSA");
    let (_, _, ec) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("keys/ec-key?api-version={API}"),
    )
    .await;
    assert_eq!(ec["key"]["crv"], "P-256");
    let (_, _, web) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/web-tls?api-version={API}"),
    )
    .await;
    assert_eq!(web["contentType"], "application/x-pkcs12");
    let (_, _, api) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/api-tls?api-version={API}"),
    )
    .await;
    assert_eq!(api["contentType"], "application/x-pem-file");
    assert_eq!(
        api["value"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    // The user-assigned managed identity through IMDS.
    let r = plain_client()
        .get(format!("{}metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.localhost", emu.imds_endpoint()))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
