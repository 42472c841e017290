//! Certificate imports whose chain is not leaf-first, or whose private key belongs to no
//! certificate in the upload: the emulator must pick the certificate matching the key as the
//! leaf (as Key Vault does) and refuse a key that matches none.
//! reference: docs/protocol.md §1.4

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyvault_emulator::material::{self, CertMaterial, Curve, GenerateSpec};
use serde_json::{Value, json};
use sha1::Digest as _;

use crate::common::*;

/// A CA (cert PEM, key PEM) and a leaf it signed, chain `[leaf, ca]`.
fn ca_and_leaf() -> CertMaterial {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Root Of Test");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let m = material::generate_certificate(
        &GenerateSpec {
            subject: "CN=leaf.demo.local".into(),
            dns_names: vec!["leaf.demo.local".into()],
            validity_days: 10,
            valid_from_days: 0,
            rsa_bits: None,
            curve: Curve::P256,
        },
        Some((&ca.pem(), &ca_key.serialize_pem())),
    )
    .unwrap();
    assert_eq!(m.chain.len(), 2);
    m
}

/// PEM with the root first and the key last: the order some tools (and people) produce.
fn root_first_pem(m: &CertMaterial) -> String {
    format!(
        "{}{}{}",
        material::pem_block("CERTIFICATE", &m.chain[1]),
        material::pem_block("CERTIFICATE", &m.chain[0]),
        material::pem_block("PRIVATE KEY", &m.key_pkcs8),
    )
}

async fn import(
    emu: &keyvault_emulator::Emulator,
    c: &reqwest::Client,
    token: &str,
    name: &str,
    body: Value,
) -> (u16, Value) {
    let url = format!(
        "{}certificates/{name}/import?api-version={API}",
        emu.vault_url("demo")
    );
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn version_of(cert: &Value) -> String {
    cert["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Checks the certificate bundle, key, secret and policy all describe `m`'s leaf.
async fn assert_serves_leaf(
    emu: &keyvault_emulator::Emulator,
    c: &reqwest::Client,
    t: &str,
    name: &str,
    m: &CertMaterial,
) {
    let (st, _, cert) = kv_get(
        emu,
        c,
        Some(t),
        &format!("certificates/{name}?api-version={API}"),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    let leaf = &m.chain[0];
    assert_eq!(
        cert["cer"],
        STANDARD.encode(leaf),
        "cer is the leaf, not the root"
    );
    assert_eq!(
        cert["x5t"],
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(leaf))
    );
    assert_eq!(
        cert["policy"]["x509_props"]["subject"],
        "CN=leaf.demo.local"
    );
    let info = m.info().unwrap();
    let (_, _, key) = kv_get(
        emu,
        c,
        Some(t),
        &format!("keys/{name}/{}?api-version={API}", version_of(&cert)),
    )
    .await;
    assert_eq!(key["key"]["x"], info.public_jwk["x"]);
    assert_eq!(key["key"]["y"], info.public_jwk["y"]);
    // The backing secret is leaf-first with the rest of the chain kept in order.
    let (_, _, secret) = kv_get(
        emu,
        c,
        Some(t),
        &format!("secrets/{name}?api-version={API}&outContentType=application/x-pem-file"),
    )
    .await;
    assert_eq!(secret["value"].as_str().unwrap(), m.to_pem());
}

#[tokio::test]
async fn pem_import_with_the_root_first_serves_the_leaf() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = ca_and_leaf();
    let pem = root_first_pem(&m);
    let (st, cert) = import(
        &emu,
        &c,
        &t,
        "root-first",
        json!({"value": pem, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    assert_serves_leaf(&emu, &c, &t, "root-first", &m).await;
}

#[tokio::test]
async fn pfx_import_with_the_root_first_serves_the_leaf() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = ca_and_leaf();
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(
        "web",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            vec![1u8],
            p12_keystore::PrivateKey::from_der(&m.key_pkcs8).unwrap(),
            vec![
                p12_keystore::Certificate::from_der(&m.chain[1]).unwrap(),
                p12_keystore::Certificate::from_der(&m.chain[0]).unwrap(),
            ],
        )),
    );
    let pfx = ks
        .writer("")
        .encryption_iterations(1000)
        .mac_iterations(1000)
        .write()
        .unwrap();
    let (st, cert) = import(
        &emu,
        &c,
        &t,
        "root-first-pfx",
        json!({"value": STANDARD.encode(&pfx)}),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    assert_serves_leaf(&emu, &c, &t, "root-first-pfx", &m).await;
}

#[tokio::test]
async fn import_with_a_key_matching_no_certificate_is_bad_parameter() {
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = ca_and_leaf();
    let rsa = material::generate_rsa(2048).unwrap();
    let other_ec = material::generate_ec(Curve::P256).unwrap();
    for (what, key) in [("rsa key", &rsa.pkcs8), ("other ec key", &other_ec.pkcs8)] {
        let pem = format!(
            "{}{}{}",
            material::pem_block("PRIVATE KEY", key),
            material::pem_block("CERTIFICATE", &m.chain[0]),
            material::pem_block("CERTIFICATE", &m.chain[1]),
        );
        let (st, err) = import(
            &emu,
            &c,
            &t,
            "mismatch",
            json!({"value": pem, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
        )
        .await;
        assert_eq!(
            (st, error_code(&err)),
            (400, ("BadParameter", None)),
            "{what}: {err}"
        );
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("does not match"), "{what}: {msg}");
        // Same for a PFX.
        let mismatched = CertMaterial {
            key_pkcs8: key.clone(),
            chain: m.chain.clone(),
        };
        let (st, err) = import(
            &emu,
            &c,
            &t,
            "mismatch",
            json!({"value": STANDARD.encode(mismatched.to_pfx().unwrap())}),
        )
        .await;
        assert_eq!(
            (st, error_code(&err)),
            (400, ("BadParameter", None)),
            "{what} pfx: {err}"
        );
    }
    // Nothing was stored.
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/mismatch?api-version={API}"),
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn seeded_pem_is_reordered_and_a_mismatched_key_fails_naming_the_certificate() {
    let m = ca_and_leaf();
    let identities =
        json!([{"name": "app", "client_id": APP, "client_secret": "dev-secret", "access": "all"}]);
    let seed = json!({
        "vaults": [{"name": "demo", "certificates": [{"name": "seeded-root-first", "pem": root_first_pem(&m)}]}],
        "identities": identities,
    });
    // JSON is YAML.
    let emu = keyvault_emulator::Emulator::builder()
        .seed_yaml(seed.to_string())
        .start()
        .await
        .unwrap();
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    assert_serves_leaf(&emu, &c, &t, "seeded-root-first", &m).await;

    let other = material::generate_ec(Curve::P256).unwrap();
    let bad_pem = format!(
        "{}{}",
        material::pem_block("PRIVATE KEY", &other.pkcs8),
        material::pem_block("CERTIFICATE", &m.chain[0]),
    );
    let seed = json!({
        "vaults": [{"name": "demo", "certificates": [{"name": "bad-pair", "pem": bad_pem}]}],
        "identities": identities,
    });
    let err = match keyvault_emulator::Emulator::builder()
        .seed_yaml(seed.to_string())
        .start()
        .await
    {
        Ok(_) => panic!("a key matching no certificate must not seed"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("certificate \"bad-pair\""), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("CN=leaf.demo.local"), "{err}");
    // The runtime seeding API refuses it too.
    let err = emu
        .add_certificate_pem("demo", "bad-pair", &bad_pem, "application/x-pem-file")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("demo/bad-pair") && err.contains("does not match"),
        "{err}"
    );
}
