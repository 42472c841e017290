//! Certificates: bundles with their policy, list items, get, import (PFX or PEM), create
//! (self-issued, with the pending-operation dance the SDK pollers expect), update (the
//! backing key and secret follow), soft delete.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::body::{
    apply_attrs, attrs_json, insert_tags, new_attrs_and_tags, parse_body, tags_from,
};
use super::errors::{bad, error, internal, json_response, not_found};
use super::{Ctx, R};
use crate::material::{self, CertMaterial, Curve, MaterialError};
use crate::state::lock;
use crate::store::{self, CertVersion, NewCertificate};
use crate::util::now;

/// Refuses a backing-secret content type other than PFX or PEM.
fn supported_content_type(content_type: &str) -> Result<(), Response> {
    if content_type != store::PEM && content_type != store::PKCS12 {
        return Err(bad(&format!(
            "Content type {content_type} is not supported: use application/x-pkcs12 or application/x-pem-file."
        )));
    }
    Ok(())
}

impl Ctx {
    fn policy_json(&self, name: &str, c: &CertVersion) -> Value {
        let mut key_props = json!({"exportable": true, "reuse_key": false});
        match c.info.public_jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                key_props["kty"] = json!("EC");
                key_props["crv"] = c.info.public_jwk["crv"].clone();
            }
            _ => {
                key_props["kty"] = json!("RSA");
                key_props["key_size"] = json!(c.info.key_size.unwrap_or(2048));
            }
        }
        let months = ((c.info.exp - c.info.nbf) as f64 / (86400.0 * 30.44))
            .round()
            .max(1.0) as i64;
        let mut x509 = json!({
            "subject": c.info.subject,
            "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
            "key_usage": ["digitalSignature", "keyEncipherment"],
            "validity_months": months,
        });
        if !c.info.dns_names.is_empty() {
            x509["sans"] = json!({"dns_names": c.info.dns_names});
        }
        json!({
            "id": format!("{}/certificates/{name}/policy", self.base),
            "key_props": key_props,
            "secret_props": {"contentType": c.content_type},
            "x509_props": x509,
            "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
            "issuer": {"name": c.issuer_name},
            "attributes": {"enabled": true, "created": c.attrs.created, "updated": c.attrs.updated},
        })
    }

    pub(super) fn cert_bundle(&self, name: &str, c: &CertVersion) -> Value {
        let mut b = json!({
            "id": self.url("certificates", name, Some(&c.version)),
            "kid": self.url("keys", name, Some(&c.version)),
            "sid": self.url("secrets", name, Some(&c.version)),
            "x5t": c.info.x5t,
            "cer": STANDARD.encode(&c.material.chain[0]),
            "attributes": attrs_json(&c.attrs, None),
            "policy": self.policy_json(name, c),
        });
        insert_tags(&mut b, &c.tags);
        b
    }

    pub(super) fn cert_item(&self, name: &str, c: &CertVersion, versioned: bool) -> Value {
        let mut b = json!({
            "id": self.url("certificates", name, versioned.then_some(c.version.as_str())),
            "x5t": c.info.x5t,
            "attributes": attrs_json(&c.attrs, None),
        });
        insert_tags(&mut b, &c.tags);
        b
    }

    pub(super) fn list_certs(&self, path: &str) -> R {
        self.require("certificates", None, "read")?;
        let items = self.with_vault(|v| {
            v.certificates
                .iter()
                .filter_map(|(n, cs)| cs.last().map(|c| self.cert_item(n, c, false)))
                .collect()
        });
        self.page(path, items)
    }

    pub(super) fn list_cert_versions(&self, name: &str, path: &str) -> R {
        self.require("certificates", Some(name), "read")?;
        let items = self.with_vault(|v| {
            v.certificates
                .get(name)
                .map(|cs| cs.iter().map(|c| self.cert_item(name, c, true)).collect())
        });
        self.page(path, items.unwrap_or_default())
    }

    pub(super) fn get_cert(&self, name: &str, version: Option<&str>) -> R {
        self.require("certificates", Some(name), "read")?;
        let c = self
            .with_vault(|v| v.certificate(name, version).cloned())
            .ok_or_else(|| not_found("certificates", name, version))?;
        Ok(json_response(StatusCode::OK, &self.cert_bundle(name, &c)))
    }

    pub(super) fn get_cert_policy(&self, name: &str) -> R {
        self.require("certificates", Some(name), "read")?;
        let c = self
            .with_vault(|v| v.certificate(name, None).cloned())
            .ok_or_else(|| not_found("certificates", name, None))?;
        Ok(json_response(StatusCode::OK, &self.policy_json(name, &c)))
    }

    pub(super) async fn import_cert(&self, name: &str, body: &Bytes) -> R {
        let b = self.create_body("certificates", name, "import/action", body)?;
        let value = b
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("The body must have the certificate in 'value'."))?
            .to_string();
        let pwd = b
            .get("pwd")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let policy_ct = b
            .pointer("/policy/secret_props/contentType")
            .and_then(Value::as_str)
            .map(str::to_string);
        // The SDKs send base64 of whatever bytes they were given, PEM text included; the service
        // accepts raw PEM and base64(PEM) alike.
        let value = match STANDARD.decode(value.trim()) {
            Ok(bytes) if bytes.trim_ascii_start().starts_with(b"-----BEGIN") => {
                String::from_utf8(bytes)
                    .map_err(|_| bad("The PEM certificate content is not UTF-8."))?
            }
            _ => value,
        };
        let is_pem = value.trim_start().starts_with("-----BEGIN");
        let content_type = policy_ct
            .unwrap_or_else(|| if is_pem { store::PEM } else { store::PKCS12 }.to_string());
        supported_content_type(&content_type)?;
        let (attrs, tags) = new_attrs_and_tags(&b)?;
        let material = tokio::task::spawn_blocking(move || -> Result<CertMaterial, String> {
            // A key belonging to no certificate is a content error, not a format error.
            let mismatch = |e: &MaterialError| {
                matches!(e, MaterialError::KeyMismatch(_))
                    .then(|| format!("The specified X.509 certificate content is invalid: {e}."))
            };
            if is_pem {
                CertMaterial::from_pem(&value).map_err(|e| {
                    mismatch(&e).unwrap_or_else(|| format!("The specified PEM X.509 certificate content is in an unexpected format: {e}."))
                })
            } else {
                let der = STANDARD
                    .decode(value.trim())
                    .map_err(|_| "The specified PKCS#12 X.509 certificate content is not valid base64.".to_string())?;
                CertMaterial::from_pfx(&der, &pwd).map_err(|e| {
                    mismatch(&e).unwrap_or_else(|| format!("The specified PKCS#12 X.509 certificate content can not be read. Please check if certificate is in valid PKCS#12 format: {e}."))
                })
            }
        })
        .await
        .map_err(internal)?
        .map_err(|m| bad(&m))?;
        let new = NewCertificate {
            material,
            content_type,
            enabled: attrs.enabled,
            tags,
            issuer_name: "Unknown".into(),
        };
        let c = self.store_cert(name, new).await?;
        Ok(json_response(StatusCode::OK, &self.cert_bundle(name, &c)))
    }

    async fn store_cert(&self, name: &str, new: NewCertificate) -> Result<CertVersion, Response> {
        let s = self.s.clone();
        let vault = self.vault.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || {
            // PFX encoding runs PBKDF rounds: keep it off the async workers. The lock is held
            // while encoding; fine for an emulator.
            let mut st = lock(&s.store);
            st.vault_mut(&vault)
                .map_err(|e| e.to_string())
                .and_then(|v| v.add_certificate(&n, new).map_err(|e| e.to_string()))
        })
        .await
        .map_err(internal)?
        .map_err(|m| bad(&m))
    }

    /// A certificate operation. Creation answers `inProgress` (as the service does, and as the
    /// SDK pollers require to start polling); the first poll of `/pending` sees `completed`.
    fn operation_json(&self, name: &str, issuer: &str, status: &str) -> Value {
        json!({
            "id": format!("{}/certificates/{name}/pending", self.base),
            "issuer": {"name": issuer},
            "cancellation_requested": false,
            "status": status,
            "status_details": "",
            "target": format!("{}/certificates/{name}", self.base),
            "request_id": crate::util::new_version(),
        })
    }

    pub(super) async fn create_cert(&self, name: &str, body: &Bytes) -> R {
        let b = self.create_body("certificates", name, "create/action", body)?;
        let policy = b.get("policy").cloned().unwrap_or(Value::Null);
        let issuer = policy
            .pointer("/issuer/name")
            .and_then(Value::as_str)
            .unwrap_or("Self");
        if !issuer.eq_ignore_ascii_case("self") {
            return Err(bad(&format!(
                "Issuer {issuer} is not supported by the emulator: only Self-issued certificates are created (import others)."
            )));
        }
        let subject = policy
            .pointer("/x509_props/subject")
            .and_then(Value::as_str)
            .unwrap_or("CN=DefaultPolicy")
            .to_string();
        let dns_names: Vec<String> = policy
            .pointer("/x509_props/sans/dns_names")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let months = policy
            .pointer("/x509_props/validity_months")
            .and_then(Value::as_u64)
            .unwrap_or(12)
            .clamp(1, 1200) as u32;
        let kty = policy
            .pointer("/key_props/kty")
            .and_then(Value::as_str)
            .unwrap_or("RSA");
        let (rsa_bits, curve) = if kty.starts_with("EC") {
            let crv = policy
                .pointer("/key_props/crv")
                .and_then(Value::as_str)
                .unwrap_or("P-256");
            match Curve::parse(crv) {
                Some(c @ (Curve::P256 | Curve::P384)) => (None, c),
                _ => {
                    return Err(bad(&format!(
                        "Curve {crv} is not supported for certificates: use P-256 or P-384."
                    )));
                }
            }
        } else {
            let bits = policy
                .pointer("/key_props/key_size")
                .and_then(Value::as_u64)
                .unwrap_or(2048) as usize;
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(bad(&format!(
                    "Key size {bits} is not supported: use 2048, 3072 or 4096."
                )));
            }
            (Some(bits), Curve::P256)
        };
        let content_type = policy
            .pointer("/secret_props/contentType")
            .and_then(Value::as_str)
            .unwrap_or(store::PKCS12)
            .to_string();
        supported_content_type(&content_type)?;
        let (attrs, tags) = new_attrs_and_tags(&b)?;
        let spec = material::GenerateSpec {
            subject,
            dns_names,
            validity_days: months * 30,
            valid_from_days: 0,
            rsa_bits,
            curve,
        };
        let material =
            tokio::task::spawn_blocking(move || material::generate_certificate(&spec, None))
                .await
                .map_err(internal)?
                .map_err(|e| bad(&format!("The certificate policy cannot be satisfied: {e}.")))?;
        let new = NewCertificate {
            material,
            content_type,
            enabled: attrs.enabled,
            tags,
            issuer_name: "Self".into(),
        };
        self.store_cert(name, new).await?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &self.operation_json(name, "Self", "inProgress"),
        ))
    }

    pub(super) fn get_cert_operation(&self, name: &str) -> R {
        self.require("certificates", Some(name), "read")?;
        let issuer = self
            .with_vault(|v| v.certificate(name, None).map(|c| c.issuer_name.clone()))
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "CertificateNotFound",
                    &format!("Pending certificate not found: {name}"),
                    None,
                )
            })?;
        Ok(json_response(
            StatusCode::OK,
            &self.operation_json(name, &issuer, "completed"),
        ))
    }

    pub(super) fn update_cert(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
        self.require("certificates", Some(name), "update/action")?;
        let b = parse_body(body)?;
        let tags = tags_from(&b)?;
        let result = self.with_vault_mut(|vault| {
            let list = vault.certificates.get_mut(name)?;
            let c = match version {
                None | Some("") => list.last_mut(),
                Some(v) => list.iter_mut().find(|c| c.version.eq_ignore_ascii_case(v)),
            }?;
            if let Err(resp) = apply_attrs(&mut c.attrs, &b) {
                return Some(Err(resp));
            }
            c.attrs.updated = now();
            if let Some(t) = tags {
                c.tags = t;
            }
            let c = c.clone();
            // The backing key and secret follow the certificate's enabled flag.
            if let Some(k) = vault
                .keys
                .get_mut(name)
                .and_then(|l| l.iter_mut().find(|k| k.version == c.version))
            {
                k.attrs.enabled = c.attrs.enabled;
                k.attrs.updated = c.attrs.updated;
            }
            if let Some(sv) = vault.secret_mut(name, Some(&c.version)) {
                sv.attrs.enabled = c.attrs.enabled;
                sv.attrs.updated = c.attrs.updated;
            }
            Some(Ok(c))
        });
        let c = result.ok_or_else(|| not_found("certificates", name, version))??;
        Ok(json_response(StatusCode::OK, &self.cert_bundle(name, &c)))
    }

    pub(super) fn delete_cert(&self, name: &str) -> R {
        self.require("certificates", Some(name), "delete")?;
        self.with_vault_mut(|v| v.delete_certificate(name).map(|_| ()))
            .map_err(|_| not_found("certificates", name, None))?;
        let b = self
            .deleted_json("certificates", name)
            .ok_or_else(|| not_found("certificates", name, None))?;
        Ok(json_response(StatusCode::OK, &b))
    }
}
