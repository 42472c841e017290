//! Keys: bundles (the public JWK), list items, get, create (RSA/EC), import, update, soft
//! delete. Deleted keys are served by `deleted.rs` with deleted certificates.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::body::{
    apply_attrs, attrs_json, insert_tags, new_attrs_and_tags, parse_body, tags_from,
};
use super::errors::{bad, error, internal, json_response, not_found};
use super::{Ctx, R};
use crate::material::{self, Curve};
use crate::store::{Attributes, KeyVersion, default_key_ops, public_jwk};
use crate::util::now;

impl Ctx {
    pub(super) fn key_bundle(&self, name: &str, k: &KeyVersion) -> Value {
        let mut key = Value::Object(k.jwk.clone());
        key["kid"] = json!(self.url("keys", name, Some(&k.version)));
        key["key_ops"] = json!(k.key_ops);
        let mut b = json!({"key": key, "attributes": attrs_json(&k.attrs, Some(k.exportable))});
        insert_tags(&mut b, &k.tags);
        if k.managed {
            b["managed"] = json!(true);
        }
        b
    }

    pub(super) fn key_item(&self, name: &str, k: &KeyVersion, versioned: bool) -> Value {
        let mut b = json!({
            "kid": self.url("keys", name, versioned.then_some(k.version.as_str())),
            "attributes": attrs_json(&k.attrs, Some(k.exportable)),
        });
        insert_tags(&mut b, &k.tags);
        if k.managed {
            b["managed"] = json!(true);
        }
        b
    }

    pub(super) fn list_keys(&self, path: &str) -> R {
        self.require("keys", None, "read")?;
        let items = self.with_vault(|v| {
            v.keys
                .iter()
                .filter_map(|(n, ks)| ks.last().map(|k| self.key_item(n, k, false)))
                .collect()
        });
        self.page(path, items)
    }

    pub(super) fn list_key_versions(&self, name: &str, path: &str) -> R {
        self.require("keys", Some(name), "read")?;
        let items = self.with_vault(|v| {
            v.keys
                .get(name)
                .map(|ks| ks.iter().map(|k| self.key_item(name, k, true)).collect())
        });
        self.page(path, items.unwrap_or_default())
    }

    pub(super) fn get_key(&self, name: &str, version: Option<&str>) -> R {
        self.require("keys", Some(name), "read")?;
        let k = self
            .with_vault(|v| v.key(name, version).cloned())
            .ok_or_else(|| not_found("keys", name, version))?;
        if !k.attrs.enabled {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled key.",
                Some("KeyDisabled"),
            ));
        }
        Ok(json_response(StatusCode::OK, &self.key_bundle(name, &k)))
    }

    pub(super) async fn create_key(&self, name: &str, body: &Bytes) -> R {
        let b = self.create_body("keys", name, "create/action", body)?;
        let kty = b
            .get("kty")
            .and_then(Value::as_str)
            .unwrap_or("RSA")
            .to_string();
        let spec = match kty.as_str() {
            "RSA" | "RSA-HSM" => {
                let bits = b.get("key_size").and_then(Value::as_u64).unwrap_or(2048) as usize;
                if ![2048, 3072, 4096].contains(&bits) {
                    return Err(bad(&format!(
                        "Key size {bits} is not supported: use 2048, 3072 or 4096."
                    )));
                }
                KeySpec::Rsa(bits)
            }
            "EC" | "EC-HSM" => {
                let crv = b.get("crv").and_then(Value::as_str).unwrap_or("P-256");
                KeySpec::Ec(Curve::parse(crv).ok_or_else(|| {
                    bad(&format!(
                        "Curve {crv} is not supported: use P-256, P-384 or P-521."
                    ))
                })?)
            }
            other => {
                return Err(bad(&format!(
                    "Key type {other} is not supported by the emulator: use RSA, RSA-HSM, EC or EC-HSM."
                )));
            }
        };
        let (attrs, tags) = new_attrs_and_tags(&b)?;
        let key_ops = key_ops_from(&b, &kty);
        let material = tokio::task::spawn_blocking(move || match spec {
            KeySpec::Rsa(bits) => material::generate_rsa(bits),
            KeySpec::Ec(c) => material::generate_ec(c),
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let mut jwk = material.public_jwk;
        jwk.insert("kty".into(), json!(kty));
        self.add_key(name, jwk, key_ops, attrs, tags)
    }

    pub(super) fn import_key(&self, name: &str, body: &Bytes) -> R {
        let b = self.create_body("keys", name, "import/action", body)?;
        let jwk = b
            .get("key")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("The body must have a JSON Web Key in 'key'."))?;
        let public = public_jwk(jwk).map_err(|m| bad(&m))?;
        let kty = public["kty"].as_str().unwrap_or_default().to_string();
        let (attrs, tags) = new_attrs_and_tags(&b)?;
        let key_ops = match jwk.get("key_ops").and_then(Value::as_array) {
            Some(ops) => ops
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect(),
            None => default_key_ops(&kty),
        };
        self.add_key(name, public, key_ops, attrs, tags)
    }

    /// Stores a new (unmanaged, not exportable) version of key `name`; answers its bundle.
    fn add_key(
        &self,
        name: &str,
        jwk: serde_json::Map<String, Value>,
        key_ops: Vec<String>,
        attrs: Attributes,
        tags: std::collections::BTreeMap<String, String>,
    ) -> R {
        let k = KeyVersion {
            version: crate::util::new_version(),
            jwk,
            key_ops,
            attrs,
            tags,
            managed: false,
            exportable: false,
        };
        self.with_vault_mut(|v| v.add_key(name, k.clone()));
        Ok(json_response(StatusCode::OK, &self.key_bundle(name, &k)))
    }

    pub(super) fn update_key(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
        self.require("keys", Some(name), "update/action")?;
        let b = parse_body(body)?;
        let tags = tags_from(&b)?;
        let result = self.with_vault_mut(|vault| {
            let list = vault.keys.get_mut(name)?;
            let k = match version {
                None | Some("") => list.last_mut(),
                Some(v) => list.iter_mut().find(|k| k.version.eq_ignore_ascii_case(v)),
            }?;
            let mut attrs = k.attrs.clone();
            if let Err(resp) = apply_attrs(&mut attrs, &b) {
                return Some(Err(resp));
            }
            attrs.updated = now();
            k.attrs = attrs;
            if let Some(ops) = b.get("key_ops").and_then(Value::as_array) {
                k.key_ops = ops
                    .iter()
                    .filter_map(|o| o.as_str().map(str::to_string))
                    .collect();
            }
            if let Some(t) = tags {
                k.tags = t;
            }
            Some(Ok(k.clone()))
        });
        let k = result.ok_or_else(|| not_found("keys", name, version))??;
        Ok(json_response(StatusCode::OK, &self.key_bundle(name, &k)))
    }

    pub(super) fn delete_key(&self, name: &str) -> R {
        self.require("keys", Some(name), "delete")?;
        self.with_vault_mut(|v| v.delete_key(name).map(|_| ()))
            .map_err(|_| not_found("keys", name, None))?;
        let b = self
            .deleted_json("keys", name)
            .ok_or_else(|| not_found("keys", name, None))?;
        Ok(json_response(StatusCode::OK, &b))
    }
}

enum KeySpec {
    Rsa(usize),
    Ec(Curve),
}

fn key_ops_from(b: &Value, kty: &str) -> Vec<String> {
    match b.get("key_ops").and_then(Value::as_array) {
        Some(ops) => ops
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect(),
        None => default_key_ops(kty),
    }
}
