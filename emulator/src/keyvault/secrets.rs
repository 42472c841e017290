//! Secrets and deleted secrets: bundles, list items, get (with `outContentType`), set,
//! update, soft delete, recover, purge.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body::{
    apply_attrs, attrs_json, insert_tags, new_attrs_and_tags, parse_body, tags_from, valid_name,
};
use super::errors::{bad, error, json_response, not_found};
use super::{Ctx, R};
use crate::store::{self, SecretVersion};
use crate::util::now;

impl Ctx {
    fn secret_bundle(&self, name: &str, v: &SecretVersion, value: Option<&str>) -> Value {
        let mut b = json!({
            "id": self.url("secrets", name, Some(&v.version)),
            "attributes": attrs_json(&v.attrs, None),
        });
        if let Some(val) = value {
            b["value"] = json!(val);
        }
        if let Some(ct) = &v.content_type {
            b["contentType"] = json!(ct);
        }
        insert_tags(&mut b, &v.tags);
        if v.cert.is_some() {
            b["kid"] = json!(self.url("keys", name, Some(&v.version)));
            b["managed"] = json!(true);
        }
        b
    }

    fn secret_item(&self, name: &str, v: &SecretVersion, versioned: bool) -> Value {
        let mut b = json!({
            "id": self.url("secrets", name, versioned.then_some(v.version.as_str())),
            "attributes": attrs_json(&v.attrs, None),
        });
        if let Some(ct) = &v.content_type {
            b["contentType"] = json!(ct);
        }
        insert_tags(&mut b, &v.tags);
        if v.cert.is_some() {
            b["managed"] = json!(true);
        }
        b
    }

    pub(super) fn list_secrets(&self, path: &str) -> R {
        self.require("secrets", None, "readMetadata/action")?;
        let items = self.with_vault(|v| {
            v.secrets
                .iter()
                .filter_map(|(n, vs)| vs.last().map(|x| self.secret_item(n, x, false)))
                .collect()
        });
        self.page(path, items)
    }

    pub(super) fn list_secret_versions(&self, name: &str, path: &str) -> R {
        self.require("secrets", Some(name), "readMetadata/action")?;
        let items = self.with_vault(|v| {
            v.secrets
                .get(name)
                .map(|vs| vs.iter().map(|x| self.secret_item(name, x, true)).collect())
        });
        // Listing versions of a missing secret is an empty list on the real service.
        self.page(path, items.unwrap_or_default())
    }

    pub(super) fn get_secret(&self, name: &str, version: Option<&str>) -> R {
        self.require("secrets", Some(name), "getSecret/action")?;
        let v = self
            .with_vault(|vault| vault.secret(name, version).cloned())
            .ok_or_else(|| not_found("secrets", name, version))?;
        if !v.attrs.enabled {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                Some("SecretDisabled"),
            ));
        }
        let mut value = v.value.clone();
        let mut shown = v.clone();
        if let Some(out) = self.query.get("outContentType")
            && self.api_version.as_str() >= "2025-07-01"
            && self.api_version.starts_with("20")
            && let Some(cert) = &v.cert
        {
            match out.as_str() {
                store::PEM => {
                    value = cert.to_pem();
                    shown.content_type = Some(store::PEM.into());
                }
                store::PKCS12 if v.content_type.as_deref() == Some(store::PKCS12) => {}
                other => {
                    return Err(bad(&format!(
                        "The value of outContentType ({other}) is not supported: only conversion from application/x-pkcs12 to application/x-pem-file is."
                    )));
                }
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &self.secret_bundle(name, &shown, Some(&value)),
        ))
    }

    pub(super) fn set_secret(&self, name: &str, body: &Bytes) -> R {
        if !valid_name(name) {
            return Err(bad(&format!(
                "The request URI contains an invalid name: {name}. Names match ^[0-9a-zA-Z-]+$."
            )));
        }
        self.require("secrets", Some(name), "setSecret/action")?;
        let b = parse_body(body)?;
        let value = b
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad("The secret value is missing: the body must have a string 'value'.")
            })?
            .to_string();
        if value.len() > 25 * 1024 {
            return Err(bad("The secret value exceeds the 25 KB limit."));
        }
        let content_type = b
            .get("contentType")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (attrs, tags) = new_attrs_and_tags(&b)?;
        let v = self
            .with_vault_mut(|vault| {
                vault.set_secret(name, value.clone(), content_type, attrs, tags, None)
            })
            .map_err(|_| {
                error(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
                    ),
                    Some("ObjectIsDeletedButRecoverable"),
                )
            })?;
        Ok(json_response(
            StatusCode::OK,
            &self.secret_bundle(name, &v, Some(&value)),
        ))
    }

    pub(super) fn update_secret(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
        self.require("secrets", Some(name), "setSecret/action")?;
        let b = parse_body(body)?;
        let tags = tags_from(&b)?;
        let result = self.with_vault_mut(|vault| {
            let v = vault.secret_mut(name, version)?;
            let mut attrs = v.attrs.clone();
            if let Err(resp) = apply_attrs(&mut attrs, &b) {
                return Some(Err(resp));
            }
            attrs.updated = now();
            v.attrs = attrs;
            if let Some(ct) = b.get("contentType") {
                v.content_type = ct.as_str().map(str::to_string);
            }
            if let Some(t) = tags {
                v.tags = t;
            }
            Some(Ok(v.clone()))
        });
        let v = result.ok_or_else(|| not_found("secrets", name, version))??;
        Ok(json_response(
            StatusCode::OK,
            &self.secret_bundle(name, &v, None),
        ))
    }

    fn deleted_bundle(&self, name: &str, d: &store::DeletedSecret) -> Value {
        let latest = d
            .versions
            .last()
            .expect("deleted secrets keep their versions");
        let mut b = self.secret_bundle(name, latest, None);
        b["recoveryId"] = json!(format!("{}/deletedsecrets/{name}", self.base));
        b["deletedDate"] = json!(d.deleted_date);
        b["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
        b
    }

    pub(super) fn delete_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "delete")?;
        let b = self
            .with_vault_mut(|vault| {
                vault
                    .delete_secret(name)
                    .map(|d| self.deleted_bundle(name, d))
            })
            .map_err(|_| not_found("secrets", name, None))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    pub(super) fn list_deleted_secrets(&self, path: &str) -> R {
        self.require("secrets", None, "readMetadata/action")?;
        let items = self.with_vault(|v| {
            v.deleted_secrets
                .iter()
                .map(|(n, d)| {
                    let mut b = self.deleted_bundle(n, d);
                    if let Some(m) = b.as_object_mut() {
                        m.insert("id".into(), json!(self.url("secrets", n, None)));
                    }
                    b
                })
                .collect()
        });
        self.page(path, items)
    }

    fn deleted_not_found(name: &str) -> Response {
        error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!("Deleted Secret not found: {name}"),
            None,
        )
    }

    pub(super) fn get_deleted_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "readMetadata/action")?;
        let b = self
            .with_vault(|v| {
                v.deleted_secrets
                    .get(name)
                    .map(|d| self.deleted_bundle(name, d))
            })
            .ok_or_else(|| Self::deleted_not_found(name))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    pub(super) fn purge_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "purge/action")?;
        self.with_vault_mut(|v| v.deleted_secrets.remove(name))
            .ok_or_else(|| Self::deleted_not_found(name))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    pub(super) fn recover_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "recover/action")?;
        let v = self
            .with_vault_mut(|v| v.recover_secret(name))
            .map_err(|_| Self::deleted_not_found(name))?;
        Ok(json_response(
            StatusCode::OK,
            &self.secret_bundle(name, &v, None),
        ))
    }
}
