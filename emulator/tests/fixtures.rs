//! Shape fidelity: for each official example payload, the emulator's answer to the same
//! operation has every field the example has, with the same JSON type.
//! reference: emulator/tests/fixtures/keyvault/README.md

use serde_json::Value;

use crate::common::*;

const SEED: &str = r#"
vaults:
  - name: demo
    secrets:
      - name: listed
        versions:
          - { value: a, content_type: plainText }
          - { value: b, content_type: plainText }
      - { name: zz-other, value: c, content_type: plainText }
    keys:
      - { name: rsa-key, kty: RSA, size: 2048, tags: { purpose: unit test } }
    certificates:
      - name: cert
        generate: { subject: "CN=KeyVaultTest" }
identities:
  - { name: app, client_id: 11111111-1111-1111-1111-111111111111, client_secret: dev-secret }
"#;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/keyvault/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["responses"]["200"]["body"].clone()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every member of `want` exists in `got` with the same type (recursively; arrays by their
/// first element). `nextLink` may be a string or null in either; `tags` is a free-form map.
fn assert_shape(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in {got}"));
                if k == "nextLink" {
                    assert!(gv.is_string() || gv.is_null(), "{path}.nextLink");
                    continue;
                }
                if k == "tags" {
                    // A free-form map: only its type matters.
                    assert!(gv.is_object(), "{path}.tags");
                    continue;
                }
                assert_shape(wv, gv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(wf), Some(gf)) = (w.first(), g.first()) {
                assert_shape(wf, gf, &format!("{path}[0]"));
            }
        }
        _ => assert_eq!(kind(want), kind(got), "{path}: {want} vs {got}"),
    }
}

#[tokio::test]
async fn answers_have_every_field_of_the_official_examples() {
    let emu = keyvault_emulator::Emulator::builder()
        .seed_yaml(SEED)
        .start()
        .await
        .unwrap();
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let get = |p: String| {
        let c = c.clone();
        let t = t.clone();
        let url = format!("{}{p}", emu.vault_url("demo"));
        async move {
            let (st, _, body) = get_url(&c, Some(&t), &url).await;
            assert_eq!(st, 200, "{url}: {body}");
            body
        }
    };
    let q = format!("api-version={API}");
    assert_shape(
        &fixture("GetSecret-example.json"),
        &get(format!("secrets/listed?{q}")).await,
        "GetSecret",
    );
    let versions = get(format!("secrets/listed/versions?{q}&maxresults=1")).await;
    assert_shape(
        &fixture("GetSecretVersions-example.json"),
        &versions,
        "GetSecretVersions",
    );
    assert!(versions["nextLink"].is_string());
    let secrets = get(format!("secrets?{q}&maxresults=1")).await;
    assert_shape(&fixture("GetSecrets-example.json"), &secrets, "GetSecrets");
    assert_shape(
        &fixture("GetKey-example.json"),
        &get(format!("keys/rsa-key?{q}")).await,
        "GetKey",
    );
    emu.reset_counts();
    let keys = get(format!("keys/cert/versions?{q}&maxresults=1")).await;
    assert_shape(
        &fixture("GetKeyVersions-example.json"),
        &keys,
        "GetKeyVersions",
    );
    assert_shape(
        &fixture("GetCertificate-example.json"),
        &get(format!("certificates/cert?{q}")).await,
        "GetCertificate",
    );
    let cv = get(format!("certificates/cert/versions?{q}")).await;
    assert_shape(
        &fixture("GetCertificateVersions-example.json"),
        &cv,
        "GetCertificateVersions",
    );
    assert!(cv["nextLink"].is_null());

    // nextLink: explicit port, then api-version, $skiptoken (base64 JSON with NextMarker and
    // TargetLocation, like the example's) and maxresults, in the example's order.
    let next = secrets["nextLink"].as_str().unwrap();
    let example = fixture("GetSecrets-example.json")["nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    let order = |s: &str| {
        let q = s.split_once('?').unwrap().1;
        q.split('&')
            .map(|kv| kv.split('=').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(order(next), order(&example));
    let token = next
        .split("$skiptoken=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    use base64::Engine as _;
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap(),
    )
    .unwrap();
    assert!(decoded["NextMarker"].is_string() && decoded["TargetLocation"].is_number());
}
