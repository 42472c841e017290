//! PFX imports under each empty-password convention Key Vault accepts: a MAC (and PBE) keyed
//! with no password bytes at all (Windows' NULL password), with the empty BMPString `00 00`,
//! and no MAC at all; a wrong password is still refused with Key Vault's error shape.
//! reference: issue 13 item 5; docs/protocol.md §1.6 (error shape)
//!
//! The files are built here from the `pkcs12`/`cms` types so each convention is exact: the
//! writers of `p12-keystore` and OpenSSL only produce the `00 00` form.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{KeyInit, Mac};
use keyvault_emulator::material::{self, CertMaterial, Curve, GenerateSpec};
use pkcs12::cms::cert::x509::der::asn1::{ObjectIdentifier, OctetString};
use pkcs12::cms::cert::x509::der::oid::db::{rfc5911, rfc5912};
use pkcs12::cms::cert::x509::der::{Any, Decode, Encode};
use pkcs12::cms::cert::x509::spki::AlgorithmIdentifierOwned;
use pkcs12::cms::content_info::{CmsVersion, ContentInfo};
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::cms::enveloped_data::EncryptedContentInfo;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
use pkcs12::safe_bag::SafeBag;
use pkcs12::{CertBag, DigestInfo, MacData, Pfx};
use serde_json::{Value, json};

use crate::common::*;

// The crates' named constants, as emulator/src/pfx.rs and the agent's reader use them.
const OID_DATA: ObjectIdentifier = rfc5911::ID_DATA;
const OID_ENCRYPTED_DATA: ObjectIdentifier = rfc5911::ID_ENCRYPTED_DATA;
const OID_SHA1: ObjectIdentifier = rfc5912::ID_SHA_1;
const OID_SHROUDED_KEY_BAG: ObjectIdentifier = pkcs12::PKCS_12_PKCS8_KEY_BAG_OID;
const OID_CERT_BAG: ObjectIdentifier = pkcs12::PKCS_12_CERT_BAG_OID;
const OID_X509_CERTIFICATE: ObjectIdentifier = pkcs12::PKCS_12_X509_CERT_OID;
const OID_PBE_SHA1_3DES: ObjectIdentifier = pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC;
const OID_PBE_SHA1_RC2_40: ObjectIdentifier = pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC;

/// The empty BMPString with its terminator: what OpenSSL and .NET feed the KDF for "".
const EMPTY_BMP: &[u8] = &[0, 0];
/// No password bytes: the NULL password of Windows exports.
const NULL: &[u8] = &[];

const ITERATIONS: i32 = 2000;

/// A bag's value as `SafeBag` encodes it: the bare value, which it wraps in `[0]` itself
/// (decoding hands back the wrapped form).
fn der_of<T: Encode>(value: T) -> Vec<u8> {
    value.to_der().unwrap()
}

fn any<T: Encode>(value: &T) -> Any {
    Any::from_der(&value.to_der().unwrap()).unwrap()
}

/// PKCS#12 PBE with SHA-1 (RFC 7292 appendix B): 3DES or RC2-40 keyed with `password` bytes.
fn pbe_encrypt(
    oid: ObjectIdentifier,
    salt: &[u8],
    password: &[u8],
    plain: &[u8],
) -> (AlgorithmIdentifierOwned, Vec<u8>) {
    let derive = |id, len| derive_key::<sha1::Sha1>(password, salt, id, ITERATIONS, len);
    let iv = derive(Pkcs12KeyType::Iv, 8);
    let sealed = if oid == OID_PBE_SHA1_3DES {
        cbc::Encryptor::<des::TdesEde3>::new_from_slices(
            &derive(Pkcs12KeyType::EncryptionKey, 24),
            &iv,
        )
        .unwrap()
        .encrypt_padded_vec::<Pkcs7>(plain)
    } else {
        cbc::Encryptor::<rc2::Rc2>::new_from_slices(&derive(Pkcs12KeyType::EncryptionKey, 5), &iv)
            .unwrap()
            .encrypt_padded_vec::<Pkcs7>(plain)
    };
    let params = Pkcs12PbeParams {
        salt: OctetString::new(salt.to_vec()).unwrap(),
        iterations: ITERATIONS,
    };
    let alg = AlgorithmIdentifierOwned {
        oid,
        parameters: Some(any(&params)),
    };
    (alg, sealed)
}

/// A PFX shaped like a Windows export: the key in a 3DES shrouded bag, the certificates in an
/// RC2-40 encrypted safe, every key derived from `kdf_password` (raw KDF bytes); with a SHA-1
/// MAC keyed from `mac_password`, or none.
fn build_pfx(m: &CertMaterial, kdf_password: &[u8], mac_password: Option<&[u8]>) -> Vec<u8> {
    let (alg, sealed) = pbe_encrypt(OID_PBE_SHA1_3DES, b"keysalt1", kdf_password, &m.key_pkcs8);
    let key_bag = SafeBag {
        bag_id: OID_SHROUDED_KEY_BAG,
        bag_value: der_of(EncryptedPrivateKeyInfo {
            encryption_algorithm: alg,
            encrypted_data: OctetString::new(sealed).unwrap(),
        }),
        bag_attributes: None,
    };
    let cert_bags: Vec<SafeBag> = m
        .chain
        .iter()
        .map(|der| SafeBag {
            bag_id: OID_CERT_BAG,
            bag_value: der_of(CertBag {
                cert_id: OID_X509_CERTIFICATE,
                cert_value: OctetString::new(der.clone()).unwrap(),
            }),
            bag_attributes: None,
        })
        .collect();
    let (alg, sealed) = pbe_encrypt(
        OID_PBE_SHA1_RC2_40,
        b"certsalt",
        kdf_password,
        &cert_bags.to_der().unwrap(),
    );
    let cert_safe = ContentInfo {
        content_type: OID_ENCRYPTED_DATA,
        content: any(&EncryptedData {
            version: CmsVersion::V0,
            enc_content_info: EncryptedContentInfo {
                content_type: OID_DATA,
                content_enc_alg: alg,
                encrypted_content: Some(OctetString::new(sealed).unwrap()),
            },
            unprotected_attrs: None,
        }),
    };
    let key_safe = ContentInfo {
        content_type: OID_DATA,
        content: any(&OctetString::new(vec![key_bag].to_der().unwrap()).unwrap()),
    };
    let auth_safe = vec![cert_safe, key_safe].to_der().unwrap();
    let mac_data = mac_password.map(|password| {
        let salt = b"macsalt1";
        let key = derive_key::<sha1::Sha1>(password, salt, Pkcs12KeyType::Mac, ITERATIONS, 20);
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
        mac.update(&auth_safe);
        MacData {
            mac: DigestInfo {
                algorithm: AlgorithmIdentifierOwned {
                    oid: OID_SHA1,
                    parameters: None,
                },
                digest: OctetString::new(mac.finalize().into_bytes().to_vec()).unwrap(),
            },
            mac_salt: OctetString::new(salt.to_vec()).unwrap(),
            iterations: ITERATIONS,
        }
    });
    Pfx {
        version: pkcs12::pfx::Version::V3,
        auth_safe: ContentInfo {
            content_type: OID_DATA,
            content: any(&OctetString::new(auth_safe).unwrap()),
        },
        mac_data,
    }
    .to_der()
    .unwrap()
}

/// `password` as the KDF sees it: UTF-16BE with the two-byte terminator.
fn bmp(password: &str) -> Vec<u8> {
    let mut out: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    out.extend([0, 0]);
    out
}

fn leaf_and_ca() -> CertMaterial {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Root Of Test");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    material::generate_certificate(
        &GenerateSpec {
            subject: "CN=pfx.demo.local".into(),
            dns_names: vec!["pfx.demo.local".into()],
            validity_days: 10,
            rsa_bits: None,
            curve: Curve::P256,
            valid_from_days: 0,
        },
        Some((&ca.pem(), &ca_key.serialize_pem())),
    )
    .unwrap()
}

/// Every convention an empty password may take, by name.
fn empty_password_files(m: &CertMaterial) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("null password (no bytes)", build_pfx(m, NULL, Some(NULL))),
        (
            "empty BMPString (00 00)",
            build_pfx(m, EMPTY_BMP, Some(EMPTY_BMP)),
        ),
        ("no MAC, 00 00 encryption", build_pfx(m, EMPTY_BMP, None)),
        ("no MAC, null encryption", build_pfx(m, NULL, None)),
        ("p12-keystore writer", m.to_pfx().unwrap()),
    ]
}

#[test]
fn every_empty_password_convention_opens_with_the_empty_password() {
    // reference: issue 13 item 5 (PFX import accepts the null/empty-password MAC conventions)
    let m = leaf_and_ca();
    for (what, pfx) in empty_password_files(&m) {
        let got = CertMaterial::from_pfx(&pfx, "").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.key_pkcs8, m.key_pkcs8, "{what}: key");
        assert_eq!(got.chain, m.chain, "{what}: chain, leaf first");
    }
}

#[test]
fn a_password_is_checked_under_every_convention() {
    // reference: issue 13 item 5; a wrong password must never fall through to the null reading
    let m = leaf_and_ca();
    let protected = build_pfx(&m, &bmp("s3cret"), Some(&bmp("s3cret")));
    let got = CertMaterial::from_pfx(&protected, "s3cret").unwrap();
    assert_eq!(got.chain, m.chain);
    for wrong in ["", "S3cret", "s3cret "] {
        let err = CertMaterial::from_pfx(&protected, wrong).unwrap_err();
        assert!(err.to_string().starts_with("pfx: "), "{wrong:?}: {err}");
    }
    // A password given for a file that has none is wrong too, whichever empty form it uses.
    for (what, pfx) in empty_password_files(&m)
        .into_iter()
        .filter(|(what, _)| !what.starts_with("no MAC"))
    {
        assert!(
            CertMaterial::from_pfx(&pfx, "s3cret").is_err(),
            "{what}: opened with a password it was not made with"
        );
    }
    // A MAC that verifies with neither form is refused even when the password is empty.
    let foreign_mac = build_pfx(&m, NULL, Some(&bmp("other")));
    assert!(CertMaterial::from_pfx(&foreign_mac, "").is_err());
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

#[tokio::test]
async fn import_accepts_each_empty_password_convention_and_refuses_a_wrong_password() {
    // reference: issue 13 item 5; docs/protocol.md §1.6 (BadParameter error shape)
    let emu = start().await;
    let c = client(&emu);
    let t = app_token(&emu, &c).await;
    let m = leaf_and_ca();
    for (i, (what, pfx)) in empty_password_files(&m).into_iter().enumerate() {
        let name = format!("pfx-convention-{i}");
        // The SDKs send no `pwd` for a password-less file; an explicit "" must work as well.
        for body in [
            json!({"value": STANDARD.encode(&pfx)}),
            json!({"value": STANDARD.encode(&pfx), "pwd": ""}),
        ] {
            let (st, cert) = import(&emu, &c, &t, &name, body).await;
            assert_eq!(st, 200, "{what}: {cert}");
            assert_eq!(cert["cer"], STANDARD.encode(&m.chain[0]), "{what}: leaf");
        }
    }
    let protected = build_pfx(&m, &bmp("s3cret"), Some(&bmp("s3cret")));
    let (st, cert) = import(
        &emu,
        &c,
        &t,
        "pfx-protected",
        json!({"value": STANDARD.encode(&protected), "pwd": "s3cret"}),
    )
    .await;
    assert_eq!(st, 200, "{cert}");
    for wrong in [json!("wrong"), json!(""), Value::Null] {
        let mut body = json!({"value": STANDARD.encode(&protected)});
        if !wrong.is_null() {
            body["pwd"] = wrong.clone();
        }
        let (st, err) = import(&emu, &c, &t, "pfx-refused", body).await;
        assert_eq!(
            (st, error_code(&err)),
            (400, ("BadParameter", None)),
            "pwd {wrong}: {err}"
        );
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("PKCS#12"), "pwd {wrong}: {msg}");
    }
    // Nothing was stored for the refused imports.
    let (st, _, _) = kv_get(
        &emu,
        &c,
        Some(&t),
        &format!("certificates/pfx-refused?api-version={API}"),
    )
    .await;
    assert_eq!(st, 404);
}
