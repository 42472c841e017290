//! Entra token endpoint: workload identity assertions and client secrets, with AADSTS errors.
//! reference: docs/protocol.md §3.2–3.4

use std::time::Duration;

use crate::common::*;

fn wi_form<'a>(client_id: &'a str, assertion: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_assertion", assertion),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_id", client_id),
        ("grant_type", "client_credentials"),
        ("scope", "https://vault.localhost/.default"),
    ]
}

fn assert_aadsts(status: u16, body: &serde_json::Value, want_status: u16, error: &str, code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"][0], code, "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains("\r\nTrace ID: ") && desc.contains("\r\nCorrelation ID: "),
        "{desc}"
    );
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
}

#[tokio::test]
async fn workload_identity_exchange_issues_a_token_the_vault_accepts() {
    let emu = start().await;
    let c = client(&emu);
    let sa = emu.mint_token(SA, AUD, Duration::from_secs(3600));
    let (st, body) = token_request(&emu, &c, &wi_form(APP, &sa)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["ext_expires_in"].is_number());
    let token = body["access_token"].as_str().unwrap();
    let claims = keyvault_emulator::jwt::peek_claims(token).unwrap();
    assert_eq!(claims["aud"], "https://vault.localhost");
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], APP);
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT}/"));
    let (st, _, secret) = kv_get(
        &emu,
        &c,
        Some(token),
        &format!("secrets/other?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(secret["value"], "x");
    assert_eq!(emu.counts().tokens(APP), 1);
}

#[tokio::test]
async fn wrong_subject_is_aadsts70021_naming_the_assertion() {
    let emu = start().await;
    let c = client(&emu);
    let sa = emu.mint_token(
        "system:serviceaccount:default:other",
        AUD,
        Duration::from_secs(600),
    );
    let (st, body) = token_request(&emu, &c, &wi_form(APP, &sa)).await;
    assert_aadsts(st, &body, 400, "invalid_request", 70021);
    let desc = body["error_description"].as_str().unwrap();
    assert!(
        desc.contains("Assertion Subject: 'system:serviceaccount:default:other'"),
        "{desc}"
    );
    assert!(
        desc.contains(&format!(
            "Assertion Issuer: '{}'",
            emu.issuer().as_str().trim_end_matches('/')
        )),
        "{desc}"
    );
}

#[tokio::test]
async fn wrong_audience_is_also_70021() {
    let emu = start().await;
    let c = client(&emu);
    let sa = emu.mint_token(SA, "api://something-else", Duration::from_secs(600));
    let (st, body) = token_request(&emu, &c, &wi_form(APP, &sa)).await;
    assert_aadsts(st, &body, 400, "invalid_request", 70021);
}

#[tokio::test]
async fn expired_assertion_is_aadsts700024() {
    let emu = start().await;
    let c = client(&emu);
    let sa = emu.mint_expired_token(SA, AUD);
    let (st, body) = token_request(&emu, &c, &wi_form(APP, &sa)).await;
    assert_aadsts(st, &body, 400, "invalid_client", 700024);
}

#[tokio::test]
async fn unknown_client_is_aadsts700016() {
    let emu = start().await;
    let c = client(&emu);
    let sa = emu.mint_token(SA, AUD, Duration::from_secs(600));
    let (st, body) = token_request(
        &emu,
        &c,
        &wi_form("99999999-9999-9999-9999-999999999999", &sa),
    )
    .await;
    assert_aadsts(st, &body, 400, "unauthorized_client", 700016);
}

#[tokio::test]
async fn forged_assertion_fails_signature_validation() {
    let emu = start().await;
    let c = client(&emu);
    // Claims naming this emulator's issuer cannot be forged without its key: sign them with a
    // fresh key.
    let other = tempfile::tempdir().unwrap();
    let claims = keyvault_emulator::issuer::sa_claims(
        emu.issuer().as_str().trim_end_matches('/'),
        SA,
        AUD,
        now(),
        Duration::from_secs(600),
    );
    let key =
        keyvault_emulator::jwt::SigningKey::load_or_create(&other.path().join("k.pem")).unwrap();
    let forged = key.sign(&claims);
    let (st, body) = token_request(&emu, &c, &wi_form(APP, &forged)).await;
    assert_aadsts(st, &body, 401, "invalid_client", 700027);
}

#[tokio::test]
async fn client_secret_flow_good_and_bad() {
    let emu = start().await;
    let c = client(&emu);
    let (st, body) = token_request(
        &emu,
        &c,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "not-the-secret"),
            ("scope", "https://vault.localhost/.default"),
        ],
    )
    .await;
    assert_aadsts(st, &body, 401, "invalid_client", 7000215);
    let token = app_token(&emu, &c).await;
    assert!(token.split('.').count() == 3);
}

#[tokio::test]
async fn wrong_tenant_is_aadsts90002() {
    let emu = start().await;
    let c = client(&emu);
    let url = format!(
        "{}someone-else.example/oauth2/v2.0/token",
        emu.authority_host()
    );
    let r = client_credentials(&c, url).await;
    let st = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_aadsts(st, &body, 400, "invalid_request", 90002);
}

#[tokio::test]
async fn issuer_discovery_and_jwks_verify_minted_tokens() {
    let emu = start().await;
    let c = client(&emu);
    let (st, _, doc) = get_url(
        &c,
        None,
        &format!("{}/.well-known/openid-configuration", emu.issuer()),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(doc["issuer"], emu.issuer().as_str().trim_end_matches('/'));
    let (st, _, jwks) = get_url(&c, None, doc["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(st, 200);
    let jwk = &jwks["keys"][0];
    let token = emu.mint_token(SA, AUD, Duration::from_secs(600));
    // The header names the published key. The signature itself is checked by an independent
    // implementation, PyJWT, in tests/sdk/test_auth.py (a Rust JWT crate here would resolve
    // the RustCrypto crates with other features and make `cargo test` rebuild them).
    let part = |i: usize| -> serde_json::Value {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    };
    assert_eq!(part(0)["kid"], jwk["kid"]);
    assert_eq!(part(0)["alg"], "RS256");
    assert_eq!(jwk["kty"], "RSA");
    let claims = part(1);
    assert_eq!(claims["iss"], doc["issuer"]);
    assert_eq!(
        claims["aud"],
        serde_json::json!([AUD]),
        "kubelet tokens carry aud as a list"
    );
    assert_eq!(claims["sub"], SA);
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
}

#[tokio::test]
async fn msal_tenant_discovery_points_at_the_emulator() {
    let emu = start().await;
    let c = client(&emu);
    let (st, _, doc) = get_url(
        &c,
        None,
        &format!(
            "{}{TENANT}/v2.0/.well-known/openid-configuration",
            emu.authority_host()
        ),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(doc["token_endpoint"], token_url(&emu));
    let (st, _, err) = get_url(
        &c,
        None,
        &format!(
            "{}nope/v2.0/.well-known/openid-configuration",
            emu.authority_host()
        ),
    )
    .await;
    assert_eq!((st, err["error"].as_str()), (400, Some("invalid_tenant")));
    assert_eq!(err["error_codes"][0], 90002);
}

// reference: issue 11 item 8 (a vault in another tenant: the challenge names it, Entra issues
// its tokens, the data plane accepts only them; PUT/DELETE /admin/tenant)
#[tokio::test]
async fn a_vault_in_a_guest_tenant_challenges_for_it_and_accepts_only_its_tokens() {
    let emu = start().await;
    let c = client(&emu);
    let guest = "99999999-9999-9999-9999-999999999999";
    let admin = format!("{}admin/tenant", emu.authority_host());
    let r = c
        .put(&admin)
        .json(&serde_json::json!({"tenant_id": guest}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["vault_tenant"], guest);

    // A home-tenant token is refused with a challenge naming the guest tenant.
    let home = app_token(&emu, &c).await;
    let (st, headers, _) = kv_get(&emu, &c, Some(&home), "secrets?api-version=2025-07-01").await;
    assert_eq!(st, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!("{}{guest}\"", emu.authority_host())),
        "{challenge}"
    );
    // The guest tenant's metadata names its own token endpoint (MSAL posts there; it named
    // the home tenant's before, so the Python SDK got a home-tenant token and a 401).
    let meta: serde_json::Value = c
        .get(format!(
            "{}{guest}/v2.0/.well-known/openid-configuration",
            emu.authority_host()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["token_endpoint"],
        format!("{}{guest}/oauth2/v2.0/token", emu.authority_host())
    );
    // A token from the guest tenant's endpoint is accepted.
    let r = client_credentials(
        &c,
        format!("{}{guest}/oauth2/v2.0/token", emu.authority_host()),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let (st, _, body) = kv_get(&emu, &c, Some(token), "secrets?api-version=2025-07-01").await;
    assert_eq!(st, 200, "{body}");

    // Another challenge authority, then back home.
    c.put(&admin)
        .json(
            &serde_json::json!({"tenant_id": guest, "authority": "https://login.other.localhost/"}),
        )
        .send()
        .await
        .unwrap();
    let (_, headers, _) = kv_get(&emu, &c, None, "secrets?api-version=2025-07-01").await;
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!("https://login.other.localhost/{guest}\"")),
        "{challenge}"
    );
    assert_eq!(c.delete(&admin).send().await.unwrap().status(), 204);
    let (st, _, _) = kv_get(&emu, &c, Some(&home), "secrets?api-version=2025-07-01").await;
    assert_eq!(st, 200);
}

/// The test app's client-credentials request for the vault scope, at token endpoint `url`.
async fn client_credentials(c: &reqwest::Client, url: String) -> reqwest::Response {
    c.post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", "dev-secret"),
            ("scope", "https://vault.localhost/.default"),
        ])
        .send()
        .await
        .unwrap()
}
