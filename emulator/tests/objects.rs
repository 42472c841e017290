//! Writes and object shapes: set/update/delete secrets, create/import keys, import certificates
//! (PEM, password-less and password-protected PFX), certificate-backed keys and secrets.
//! reference: docs/protocol.md §1.3, §1.4

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha1::Digest as _;

use crate::common::*;

async fn send(
    emu: &keyvault_emulator::Emulator,
    c: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", emu.vault_url("demo"));
    let mut req = c.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Soft-deletes `kind/name`, checks the answer's `recoveryId` names the deleted object, and
/// returns the answer.
async fn soft_delete(
    emu: &keyvault_emulator::Emulator,
    c: &reqwest::Client,
    token: &str,
    kind: &str,
    name: &str,
) -> Value {
    let path = format!("{kind}/{name}?api-version={API}");
    let (st, del) = send(emu, c, token, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(st, 200, "{del}");
    let id = del["recoveryId"].as_str().unwrap_or_default();
    assert!(id.ends_with(&format!("/deleted{kind}/{name}")), "{del}");
    del
}

#[tokio::test]
async fn set_update_disable_delete_recover_a_secret() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    use reqwest::Method;
    let (st, set) = send(
        &emu,
        &c,
        &t,
        Method::PUT,
        &format!("secrets/new-one?api-version={API}"),
        Some(json!({"value": "v1", "contentType": "text/plain", "tags": {"a": "b"}})),
    )
    .await;
    assert_eq!(st, 200, "{set}");
    assert_eq!(set["value"], "v1");
    assert_eq!(set["tags"]["a"], "b");
    let id = set["id"].as_str().unwrap().to_string();
    let version = id.rsplit('/').next().unwrap().to_string();
    let (st, upd) = send(
        &emu,
        &c,
        &t,
        Method::PATCH,
        &format!("secrets/new-one/{version}?api-version={API}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(upd["attributes"]["enabled"], false);
    assert!(upd.get("value").is_none());
    let (st, _, body) = get_url(&c, Some(&t), &format!("{id}?api-version={API}")).await;
    assert_eq!(
        (st, error_code(&body)),
        (403, ("Forbidden", Some("SecretDisabled")))
    );
    let del = soft_delete(&emu, &c, &t, "secrets", "new-one").await;
    assert!(del["deletedDate"].is_number() && del["scheduledPurgeDate"].is_number());
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/new-one?api-version={API}"),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _, d) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("deletedsecrets/new-one?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(d["recoveryId"], del["recoveryId"]);
    let (st, body) = send(
        &emu,
        &c,
        &t,
        Method::PUT,
        &format!("secrets/new-one?api-version={API}"),
        Some(json!({"value": "v2"})),
    )
    .await;
    assert_eq!(
        (st, error_code(&body)),
        (409, ("Conflict", Some("ObjectIsDeletedButRecoverable")))
    );
    let (st, _) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("deletedsecrets/new-one/recover?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/new-one/{version}?api-version={API}"),
    )
    .await;
    assert_eq!(st, 403, "still disabled after recovery");
    let (st, body) = send(
        &emu,
        &c,
        &t,
        Method::PUT,
        &format!("secrets/bad_name?api-version={API}"),
        Some(json!({"value": "x"})),
    )
    .await;
    assert_eq!((st, error_code(&body)), (400, ("BadParameter", None)));
}

#[tokio::test]
async fn create_and_import_keys() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    use reqwest::Method;
    let (st, rsa) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("keys/k-rsa/create?api-version={API}"),
        Some(json!({"kty": "RSA", "key_size": 2048})),
    )
    .await;
    assert_eq!(st, 200, "{rsa}");
    let n = URL_SAFE_NO_PAD
        .decode(rsa["key"]["n"].as_str().unwrap())
        .unwrap();
    assert_eq!(n.len(), 256);
    assert_eq!(rsa["key"]["e"], "AQAB");
    assert!(rsa["key"].get("d").is_none());
    for (crv, len) in [("P-256", 32), ("P-384", 48), ("P-521", 66)] {
        let (st, ec) = send(
            &emu,
            &c,
            &t,
            Method::POST,
            &format!("keys/k-ec/create?api-version={API}"),
            Some(json!({"kty": "EC", "crv": crv})),
        )
        .await;
        assert_eq!(st, 200, "{ec}");
        assert_eq!(ec["key"]["crv"], crv);
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(ec["key"]["x"].as_str().unwrap())
                .unwrap()
                .len(),
            len
        );
    }
    let (_, _, versions) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("keys/k-ec/versions?api-version={API}"),
    )
    .await;
    let items = versions["value"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|i| i["kid"].is_string() && i.get("id").is_none())
    );
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": rsa_free_x(), "y": rsa_free_y(), "d": "c2VjcmV0"});
    let (st, imported) = send(
        &emu,
        &c,
        &t,
        Method::PUT,
        &format!("keys/k-imp?api-version={API}"),
        Some(json!({"key": jwk})),
    )
    .await;
    assert_eq!(st, 200, "{imported}");
    assert!(
        imported["key"].get("d").is_none(),
        "private part is never returned"
    );
    let (st, _, got) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("keys/k-imp/?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(got["key"]["x"], imported["key"]["x"]);
    let (st, body) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("keys/k-bad/create?api-version={API}"),
        Some(json!({"kty": "RSA", "key_size": 1024})),
    )
    .await;
    assert_eq!((st, error_code(&body)), (400, ("BadParameter", None)));
}

fn rsa_free_x() -> String {
    let m =
        keyvault_emulator::material::generate_ec(keyvault_emulator::material::Curve::P256).unwrap();
    m.public_jwk["x"].as_str().unwrap().to_string()
}

fn rsa_free_y() -> String {
    URL_SAFE_NO_PAD.encode([7u8; 32])
}

fn ec_cert() -> keyvault_emulator::material::CertMaterial {
    keyvault_emulator::material::generate_certificate(
        &keyvault_emulator::material::GenerateSpec {
            subject: "CN=imported.demo.local".into(),
            dns_names: vec!["imported.demo.local".into()],
            validity_days: 10,
            valid_from_days: 0,
            rsa_bits: None,
            curve: keyvault_emulator::material::Curve::P256,
        },
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn imported_pem_certificate_is_also_a_key_and_a_pem_secret() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = ec_cert();
    let pem = m.to_pem();
    // The Python SDK sends base64 of the PEM text; that must import too.
    let (st, b64) = send(&emu, &c, &t, reqwest::Method::POST, &format!("certificates/imp-b64pem/import?api-version={API}"), Some(json!({"value": STANDARD.encode(&pem), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}))).await;
    assert_eq!(st, 200, "{b64}");
    assert_eq!(
        STANDARD.decode(b64["cer"].as_str().unwrap()).unwrap(),
        m.chain[0]
    );
    let (st, cert) = send(&emu, &c, &reqwest_token(&t), reqwest::Method::POST, &format!("certificates/imp-pem/import?api-version={API}"), Some(json!({"value": pem, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}))).await;
    assert_eq!(st, 200, "{cert}");
    let der = STANDARD.decode(cert["cer"].as_str().unwrap()).unwrap();
    assert_eq!(der, m.chain[0]);
    assert_eq!(
        cert["x5t"],
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der))
    );
    let info = m.info().unwrap();
    assert_eq!(cert["attributes"]["nbf"], info.nbf);
    assert_eq!(cert["attributes"]["exp"], info.exp);
    assert_eq!(
        cert["policy"]["secret_props"]["contentType"],
        "application/x-pem-file"
    );
    let version = cert["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        cert["kid"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/keys/imp-pem/{version}"))
    );
    assert!(
        cert["sid"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/secrets/imp-pem/{version}"))
    );
    let (st, _, secret) = get_url(
        &c,
        Some(&t),
        &format!("{}?api-version={API}", cert["sid"].as_str().unwrap()),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(secret["contentType"], "application/x-pem-file");
    assert_eq!(secret["managed"], true);
    assert_eq!(secret["kid"], cert["kid"]);
    let value = secret["value"].as_str().unwrap();
    assert!(value.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        value.contains("-----BEGIN CERTIFICATE-----\n")
            && value.ends_with("-----END CERTIFICATE-----\n")
    );
    let (st, _, key) = get_url(
        &c,
        Some(&t),
        &format!("{}?api-version={API}", cert["kid"].as_str().unwrap()),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(key["managed"], true);
    assert_eq!(key["key"]["x"], info.public_jwk["x"]);
    assert!(key["key"].get("d").is_none());
    let (_, _, policy) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/imp-pem/policy?api-version={API}"),
    )
    .await;
    assert_eq!(policy["x509_props"]["subject"], "CN=imported.demo.local");
    assert_eq!(policy["key_props"]["crv"], "P-256");
    let (_, _, versions) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/imp-pem/versions?api-version={API}"),
    )
    .await;
    assert_eq!(versions["value"][0]["x5t"], cert["x5t"]);
    assert!(versions["nextLink"].is_null());
}

fn reqwest_token(t: &str) -> String {
    t.to_string()
}

#[tokio::test]
async fn imported_pfx_with_password_and_aes_becomes_a_passwordless_pfx_secret() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = ec_cert();
    // A PBES2/AES-256 PFX with a password, as modern OpenSSL writes.
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(
        "web",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            vec![1u8, 2, 3],
            p12_keystore::PrivateKey::from_der(&m.key_pkcs8).unwrap(),
            vec![p12_keystore::Certificate::from_der(&m.chain[0]).unwrap()],
        )),
    );
    let pfx = ks
        .writer("pfx-pass")
        .encryption_iterations(1000)
        .mac_iterations(1000)
        .write()
        .unwrap();
    let body = json!({"value": STANDARD.encode(&pfx), "pwd": "pfx-pass"});
    let (st, cert) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        &format!("certificates/imp-pfx/import?api-version={API}"),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    let (_, _, secret) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/imp-pfx?api-version={API}"),
    )
    .await;
    assert_eq!(secret["contentType"], "application/x-pkcs12");
    let der = STANDARD.decode(secret["value"].as_str().unwrap()).unwrap();
    let back = keyvault_emulator::material::CertMaterial::from_pfx(&der, "").unwrap();
    assert_eq!(back.chain, m.chain);
    assert_eq!(back.key_pkcs8, m.key_pkcs8);
    // outContentType converts the PFX to PEM on 2025-07-01+.
    let (st, _, pem) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/imp-pfx?api-version={API}&outContentType=application/x-pem-file"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(pem["contentType"], "application/x-pem-file");
    assert_eq!(pem["value"].as_str().unwrap(), m.to_pem());
    // A legacy 3DES + SHA-1 PFX with a password imports too.
    let legacy = ks
        .writer("legacy-pass")
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1)
        .encryption_iterations(1000)
        .mac_iterations(1000)
        .write()
        .unwrap();
    let body = json!({"value": STANDARD.encode(&legacy), "pwd": "legacy-pass", "policy": {"secret_props": {"contentType": "application/x-pem-file"}}});
    let (st, cert) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        &format!("certificates/imp-legacy/import?api-version={API}"),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    let (_, _, secret) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/imp-legacy?api-version={API}"),
    )
    .await;
    assert_eq!(secret["value"].as_str().unwrap(), m.to_pem());
    // A wrong password is a 400 BadParameter.
    let body = json!({"value": STANDARD.encode(&pfx), "pwd": "wrong"});
    let (st, err) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        &format!("certificates/imp-bad/import?api-version={API}"),
        Some(body),
    )
    .await;
    assert_eq!((st, error_code(&err)), (400, ("BadParameter", None)));
}

#[tokio::test]
async fn seeded_generated_certificates_ca_signed_chain_in_pem() {
    let seed = r#"
vaults:
  - name: demo
    certificates:
      - name: api-tls
        generate: { subject: "CN=api.demo.local", kty: EC, issuer: ca, content_type: application/x-pem-file }
identities:
  - { name: app, client_id: 11111111-1111-1111-1111-111111111111, client_secret: dev-secret }
"#;
    let emu = keyvault_emulator::Emulator::builder()
        .seed_yaml(seed)
        .start()
        .await
        .unwrap();
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let (st, _, secret) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/api-tls?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    let value = secret["value"].as_str().unwrap();
    assert_eq!(value.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(
        value.trim_end().ends_with(emu.ca_pem().trim_end()),
        "the chain ends with the emulator CA"
    );
    let (_, _, cert) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/api-tls?api-version={API}"),
    )
    .await;
    assert_eq!(cert["policy"]["issuer"]["name"], "Self");
}

#[tokio::test]
async fn create_certificate_completes_and_deleting_it_removes_key_and_secret() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    use reqwest::Method;
    let policy = json!({"policy": {
        "key_props": {"kty": "EC", "crv": "P-256", "exportable": true},
        "secret_props": {"contentType": "application/x-pem-file"},
        "x509_props": {"subject": "CN=created.demo.local", "sans": {"dns_names": ["created.demo.local"]}, "validity_months": 3},
        "issuer": {"name": "Self"}
    }});
    let (st, op) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("certificates/made/create?api-version={API}"),
        Some(policy),
    )
    .await;
    assert_eq!(st, 202, "{op}");
    assert_eq!(op["status"], "inProgress");
    let (st, _, pending) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/made/pending?api-version={API}"),
    )
    .await;
    assert_eq!((st, pending["status"].as_str()), (200, Some("completed")));
    let (_, _, cert) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/made?api-version={API}"),
    )
    .await;
    assert_eq!(
        cert["policy"]["x509_props"]["subject"],
        "CN=created.demo.local"
    );
    assert_eq!(
        cert["policy"]["x509_props"]["sans"]["dns_names"][0],
        "created.demo.local"
    );
    let version = cert["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Disabling the certificate disables its secret.
    let (st, _) = send(
        &emu,
        &c,
        &t,
        Method::PATCH,
        &format!("certificates/made/{version}?api-version={API}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/made?api-version={API}"),
    )
    .await;
    assert_eq!(
        (st, error_code(&body)),
        (403, ("Forbidden", Some("SecretDisabled")))
    );
    soft_delete(&emu, &c, &t, "certificates", "made").await;
    for path in ["certificates/made", "keys/made", "secrets/made"] {
        let (st, _, _) = kv_get(&emu, &c, Some(&t), &format!("{path}?api-version={API}")).await;
        assert_eq!(st, 404, "{path}");
    }
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("deletedcertificates/made?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    // Recovery brings back the certificate with its key and secret.
    let (st, _) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("deletedcertificates/made/recover?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    // Both come back disabled, as the certificate was.
    let (st, _, body) = kv_get(&emu, &c, Some(&t), &format!("keys/made?api-version={API}")).await;
    assert_eq!((st, error_code(&body).1), (403, Some("KeyDisabled")));
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/made?api-version={API}"),
    )
    .await;
    assert_eq!((st, error_code(&body).1), (403, Some("SecretDisabled")));
    send(
        &emu,
        &c,
        &t,
        Method::DELETE,
        &format!("certificates/made?api-version={API}"),
        None,
    )
    .await;
    let (st, _) = send(
        &emu,
        &c,
        &t,
        Method::DELETE,
        &format!("deletedcertificates/made?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("deletedcertificates/made?api-version={API}"),
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn update_and_delete_a_key() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    use reqwest::Method;
    let (st, k) = send(
        &emu,
        &c,
        &t,
        Method::PATCH,
        &format!("keys/ec-key/?api-version={API}"),
        Some(json!({"attributes": {"enabled": false}, "tags": {"x": "y"}})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(k["attributes"]["enabled"], false);
    let (st, _, body) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("keys/ec-key?api-version={API}"),
    )
    .await;
    assert_eq!(
        (st, error_code(&body)),
        (403, ("Forbidden", Some("KeyDisabled")))
    );
    soft_delete(&emu, &c, &t, "keys", "ec-key").await;
    let (st, _, d) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("deletedkeys/ec-key?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(d["key"]["crv"], "P-256");
    let (st, body) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("keys/ec-key/create?api-version={API}"),
        Some(json!({"kty": "EC"})),
    )
    .await;
    assert_eq!((st, error_code(&body).0), (409, "Conflict"));
    let (st, _, list) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("deletedkeys?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        list["value"][0]["kid"]
            .as_str()
            .unwrap()
            .ends_with("/keys/ec-key"),
        "{list}"
    );
    let (st, rec) = send(
        &emu,
        &c,
        &t,
        Method::POST,
        &format!("deletedkeys/ec-key/recover?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(rec["key"]["crv"], "P-256");
}

#[tokio::test]
async fn builder_helpers_rotate_certificates_and_delete_secrets() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let v1 = emu
        .generate_certificate("demo", "rotating", "CN=rot", 30, "application/x-pem-file")
        .unwrap();
    let pem = ec_cert().to_pem();
    let v2 = emu
        .add_certificate_pem("demo", "rotating", &pem, "application/x-pkcs12")
        .unwrap();
    assert_ne!(v1, v2);
    let (_, _, latest) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/rotating?api-version={API}"),
    )
    .await;
    assert!(latest["id"].as_str().unwrap().ends_with(&v2));
    assert_eq!(latest["contentType"], "application/x-pkcs12");
    let (_, _, old) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/rotating/{v1}?api-version={API}"),
    )
    .await;
    assert_eq!(old["contentType"], "application/x-pem-file");
    let (_, _, versions) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/rotating/versions?api-version={API}"),
    )
    .await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    assert!(
        emu.add_certificate_pem("demo", "bad", "not pem", "application/x-pem-file")
            .is_err()
    );
    assert!(emu.delete_secret("demo", "other"));
    assert!(!emu.delete_secret("demo", "other"));
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("secrets/other?api-version={API}"),
    )
    .await;
    assert_eq!(st, 404);
}
