//! IMDS: Metadata header, string-typed expiry, identity selection and error shapes.
//! reference: docs/protocol.md §4

use crate::common::*;

async fn imds(
    emu: &keyvault_emulator::Emulator,
    query: &str,
    metadata: bool,
) -> (u16, serde_json::Value) {
    // Plain HTTP, as real IMDS.
    let c = plain_client();
    let url = format!(
        "{}metadata/identity/oauth2/token?{query}",
        emu.imds_endpoint()
    );
    let mut req = c.get(url);
    if metadata {
        req = req.header("Metadata", "true");
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn missing_metadata_header_is_bad_request_102() {
    let emu = start().await;
    let (st, body) = imds(
        &emu,
        "api-version=2018-02-01&resource=https://vault.localhost",
        false,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["error"], "bad_request_102");
    assert_eq!(
        body["error_description"],
        "Required metadata header not specified"
    );
}

#[tokio::test]
async fn token_fields_are_strings_and_the_token_works() {
    let emu = start().await;
    let (st, body) = imds(
        &emu,
        &format!("api-version=2019-08-01&resource=https://vault.localhost&client_id={APP}"),
        true,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    for f in ["expires_in", "expires_on", "not_before", "ext_expires_in"] {
        assert!(body[f].is_string(), "{f} must be a string: {body}");
    }
    let exp: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(exp > now());
    assert_eq!(body["resource"], "https://vault.localhost");
    assert_eq!(body["client_id"], APP);
    let c = client(&emu);
    let (st, _, _) = kv_get(
        &emu,
        &c,
        body["access_token"].as_str(),
        &format!("secrets/other?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(emu.counts().route(keyvault_emulator::Route::Imds), 1);
}

#[tokio::test]
async fn no_selector_picks_the_system_assigned_identity() {
    let emu = start().await;
    let (st, body) = imds(
        &emu,
        "api-version=2018-02-01&resource=https://vault.localhost",
        true,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["client_id"], VM);
}

#[tokio::test]
async fn unknown_identity_is_invalid_request() {
    let emu = start().await;
    for sel in [
        "client_id=99999999-9999-9999-9999-999999999999",
        "object_id=99999999-9999-9999-9999-999999999999",
        "msi_res_id=/subscriptions/x/nope",
    ] {
        let (st, body) = imds(
            &emu,
            &format!("api-version=2018-02-01&resource=https://vault.localhost&{sel}"),
            true,
        )
        .await;
        assert_eq!(st, 400, "{sel}");
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["error_description"], "Identity not found");
    }
    // The identity exists but is not a managed identity.
    let (st, _) = imds(
        &emu,
        &format!("api-version=2018-02-01&resource=https://vault.localhost&client_id={LIMITED}"),
        true,
    )
    .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn msi_res_id_selects_the_user_assigned_identity() {
    let emu = start().await;
    let res = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app";
    let (st, body) = imds(
        &emu,
        &format!("api-version=2018-02-01&resource=https://vault.localhost&msi_res_id={res}"),
        true,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["client_id"], APP);
}

#[tokio::test]
async fn imds_is_also_served_on_the_https_listener() {
    let emu = start().await;
    let c = client(&emu);
    let r = c
        .get(format!("{}metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.localhost&client_id={APP}", emu.authority_host()))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// reference: docs/protocol.md §4 (the JavaScript SDK's ManagedIdentityCredential calls
// `/metadata/identity/oauth2/token/`, with a trailing slash; issue 13)
#[tokio::test]
async fn the_token_path_with_a_trailing_slash_is_served_too() {
    let emu = start().await;
    let c = plain_client();
    let r = c
        .get(format!(
            "{}metadata/identity/oauth2/token/?api-version=2018-02-01&resource=https://vault.localhost",
            emu.imds_endpoint()
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    assert_eq!(emu.counts().route(keyvault_emulator::Route::Imds), 1);
}
