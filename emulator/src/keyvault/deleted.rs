//! Deleted keys and certificates (`/deletedkeys`, `/deletedcertificates`): get, list, recover,
//! purge. One implementation for both: their deleted shapes differ only in the bundle.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::{error, json_response};
use super::{Ctx, R};

impl Ctx {
    fn deleted_extra(&self, b: &mut Value, kind: &str, name: &str, deleted: i64, purge: i64) {
        b["recoveryId"] = json!(format!("{}/deleted{kind}/{name}", self.base));
        b["deletedDate"] = json!(deleted);
        b["scheduledPurgeDate"] = json!(purge);
    }

    pub(super) fn deleted_json(&self, kind: &str, name: &str) -> Option<Value> {
        self.with_vault(|v| match kind {
            "keys" => v.deleted_keys.get(name).and_then(|d| {
                let mut b = self.key_bundle(name, d.versions.last()?);
                self.deleted_extra(&mut b, kind, name, d.deleted_date, d.scheduled_purge_date);
                Some(b)
            }),
            _ => v.deleted_certificates.get(name).and_then(|d| {
                let mut b = self.cert_bundle(name, d.versions.last()?);
                self.deleted_extra(&mut b, kind, name, d.deleted_date, d.scheduled_purge_date);
                Some(b)
            }),
        })
    }

    fn deleted_missing(kind: &str, name: &str) -> Response {
        let (code, noun) = if kind == "keys" {
            ("KeyNotFound", "Key")
        } else {
            ("CertificateNotFound", "Certificate")
        };
        error(
            StatusCode::NOT_FOUND,
            code,
            &format!("Deleted {noun} not found: {name}"),
            None,
        )
    }

    pub(super) fn get_deleted(&self, kind: &str, name: &str) -> R {
        self.require(kind, Some(name), "readMetadata/action")?;
        let b = self
            .deleted_json(kind, name)
            .ok_or_else(|| Self::deleted_missing(kind, name))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    pub(super) fn list_deleted(&self, kind: &str, path: &str) -> R {
        self.require(kind, None, "readMetadata/action")?;
        let names: Vec<String> = self.with_vault(|v| match kind {
            "keys" => v.deleted_keys.keys().cloned().collect(),
            _ => v.deleted_certificates.keys().cloned().collect(),
        });
        // List items use the item shape (`kid` for keys, versionless ids) plus deletion fields.
        let items = self.with_vault(|v| {
            names
                .iter()
                .filter_map(|n| {
                    let (mut b, d, p) = match kind {
                        "keys" => {
                            let d = v.deleted_keys.get(n)?;
                            (
                                self.key_item(n, d.versions.last()?, false),
                                d.deleted_date,
                                d.scheduled_purge_date,
                            )
                        }
                        _ => {
                            let d = v.deleted_certificates.get(n)?;
                            (
                                self.cert_item(n, d.versions.last()?, false),
                                d.deleted_date,
                                d.scheduled_purge_date,
                            )
                        }
                    };
                    self.deleted_extra(&mut b, kind, n, d, p);
                    Some(b)
                })
                .collect()
        });
        self.page(path, items)
    }

    pub(super) fn recover(&self, kind: &str, name: &str) -> R {
        self.require(kind, Some(name), "recover/action")?;
        let body = match kind {
            "keys" => self
                .with_vault_mut(|v| v.recover_key(name))
                .map(|k| self.key_bundle(name, &k)),
            _ => self
                .with_vault_mut(|v| v.recover_certificate(name))
                .map(|c| self.cert_bundle(name, &c)),
        }
        .map_err(|_| Self::deleted_missing(kind, name))?;
        Ok(json_response(StatusCode::OK, &body))
    }

    pub(super) fn purge(&self, kind: &str, name: &str) -> R {
        self.require(kind, Some(name), "purge/action")?;
        let removed = self.with_vault_mut(|v| match kind {
            "keys" => v.deleted_keys.remove(name).is_some(),
            _ => {
                v.deleted_certificate_backing.remove(name);
                v.deleted_certificates.remove(name).is_some()
            }
        });
        if !removed {
            return Err(Self::deleted_missing(kind, name));
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}
