//! Shared helpers: a small seed, starting an emulator, a reqwest client that trusts its CA and
//! resolves `*.vault.localhost` to the listener, and token helpers.

use std::sync::Arc;
use std::time::Duration;

use keyvault_emulator::Emulator;
use serde_json::Value;

pub const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
pub const APP: &str = "11111111-1111-1111-1111-111111111111";
pub const LIMITED: &str = "33333333-3333-3333-3333-333333333333";
pub const VM: &str = "44444444-4444-4444-4444-444444444444";
pub const API: &str = "2025-07-01";
pub const SA: &str = "system:serviceaccount:default:app";
pub const AUD: &str = "api://AzureADTokenExchange";

pub const SEED: &str = r#"
tenant_id: 00000000-0000-0000-0000-0000000000aa
vaults:
  - name: demo
    secrets:
      - name: db-password
        versions:
          - { value: old, created: 1700000000 }
          - { value: disabled-one, enabled: false, created: 1700000100 }
          - { value: s3cr3t, content_type: text/plain, created: 1700000200 }
      - name: other
        value: x
    keys:
      - { name: ec-key, kty: EC, curve: P-256 }
  - name: second
    secrets:
      - { name: only-here, value: second-vault }
identities:
  - name: app
    client_id: 11111111-1111-1111-1111-111111111111
    client_secret: dev-secret
    federated_credentials:
      - { subject: "system:serviceaccount:default:app" }
    managed_identity: user_assigned
    access: all
  - name: limited
    client_id: 33333333-3333-3333-3333-333333333333
    client_secret: limited-secret
    access: ["demo/secrets/other"]
  - name: vm
    client_id: 44444444-4444-4444-4444-444444444444
    managed_identity: system_assigned
    access: none
"#;

/// An emulator whose state dir is a copy of a per-run template, so tests do not each pay for
/// two RSA key generations; the copy lives as long as the emulator.
pub struct TestEmu {
    emu: Emulator,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestEmu {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        &self.emu
    }
}

fn template_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("emulator-state-template");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["issuer-key.pem", "entra-key.pem"] {
            keyvault_emulator::jwt::SigningKey::load_or_create(&dir.join(f)).unwrap();
        }
        keyvault_emulator::tls::load_or_create(&dir, &[]).unwrap();
        dir
    })
}

fn fresh_state_dir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for f in ["issuer-key.pem", "entra-key.pem", "ca.pem", "ca-key.pem"] {
        std::fs::copy(template_dir().join(f), t.path().join(f)).unwrap();
    }
    t
}

pub async fn start() -> TestEmu {
    start_with(Emulator::builder()).await
}

pub async fn start_with(b: keyvault_emulator::EmulatorBuilder) -> TestEmu {
    let dir = fresh_state_dir();
    let emu = b
        .state_dir(dir.path())
        .seed_yaml(SEED)
        .start()
        .await
        .expect("emulator starts");
    TestEmu { emu, _dir: dir }
}

/// An emulator with the caller's builder as is (own state dir or a generated temp dir).
pub async fn start_raw(b: keyvault_emulator::EmulatorBuilder) -> Emulator {
    b.seed_yaml(SEED).start().await.expect("emulator starts")
}

/// A client trusting only the emulator's CA, resolving the emulator's names to its listener.
pub fn client(emu: &Emulator) -> reqwest::Client {
    client_for(&emu.ca_pem(), emu.addr())
}

/// A client for the plain-HTTP IMDS listener (TLS configured only because reqwest needs a
/// provider).
pub fn plain_client() -> reqwest::Client {
    client_for("", "127.0.0.1:1".parse().unwrap())
}

pub fn client_for(ca_pem: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    client_builder(ca_pem, addr)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The client configuration without a timeout (for tests with a paused clock).
pub fn client_builder(ca_pem: &str, addr: std::net::SocketAddr) -> reqwest::ClientBuilder {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .resolve("demo.vault.localhost", addr)
        .resolve("second.vault.localhost", addr)
        .resolve("missing.vault.localhost", addr)
        .resolve("localhost", addr)
        .no_proxy()
}

pub fn token_url(emu: &Emulator) -> String {
    format!("{}{TENANT}/oauth2/v2.0/token", emu.authority_host())
}

/// Posts a token request form; returns (status, body).
pub async fn token_request(
    emu: &Emulator,
    c: &reqwest::Client,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let r = c.post(token_url(emu)).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

pub async fn secret_token(
    emu: &Emulator,
    c: &reqwest::Client,
    client_id: &str,
    secret: &str,
) -> String {
    let (st, body) = token_request(
        emu,
        c,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://vault.localhost/.default"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub async fn app_token(emu: &Emulator, c: &reqwest::Client) -> String {
    secret_token(emu, c, APP, "dev-secret").await
}

/// GET on the demo vault with a token; returns (status, headers, body).
pub async fn kv_get(
    emu: &Emulator,
    c: &reqwest::Client,
    token: Option<&str>,
    path_and_query: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!(
        "{}{}",
        emu.vault_url("demo"),
        path_and_query.trim_start_matches('/')
    );
    get_url(c, token, &url).await
}

pub async fn get_url(
    c: &reqwest::Client,
    token: Option<&str>,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (st, h, body)
}

pub fn error_code(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or(""),
        body["error"]["innererror"]["code"].as_str(),
    )
}

/// Unix time in seconds, as the emulator stamps `iat`/`exp` and attributes.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
