//! Request bodies and the JSON pieces every bundle shares: object names, `attributes`
//! (read and written), `tags`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::errors::bad;
use crate::store::Attributes;

const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
const RECOVERABLE_DAYS: i64 = 90;

pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(super) fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Err(bad("The request body is empty."));
    }
    serde_json::from_slice(body)
        .map_err(|e| bad(&format!("The request body is not valid JSON: {e}.")))
}

pub(super) fn tags_from(v: &Value) -> Result<Option<BTreeMap<String, String>>, Response> {
    match v.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            if m.len() > 15 {
                return Err(bad("A maximum of 15 tags is allowed."));
            }
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| bad(&format!("Tag {k:?} must be a string.")))?;
                out.insert(k.clone(), v.to_string());
            }
            Ok(Some(out))
        }
        Some(_) => Err(bad("tags must be an object of strings.")),
    }
}

pub(super) fn attrs_json(a: &Attributes, exportable: Option<bool>) -> Value {
    let mut m = Map::new();
    m.insert("enabled".into(), json!(a.enabled));
    if let Some(n) = a.nbf {
        m.insert("nbf".into(), json!(n));
    }
    if let Some(e) = a.exp {
        m.insert("exp".into(), json!(e));
    }
    m.insert("created".into(), json!(a.created));
    m.insert("updated".into(), json!(a.updated));
    m.insert("recoveryLevel".into(), json!(RECOVERY_LEVEL));
    m.insert("recoverableDays".into(), json!(RECOVERABLE_DAYS));
    if let Some(x) = exportable {
        m.insert("exportable".into(), json!(x));
    }
    Value::Object(m)
}

/// The `attributes` and `tags` of a new object's body, over the defaults of one made now.
pub(super) fn new_attrs_and_tags(
    v: &Value,
) -> Result<(Attributes, BTreeMap<String, String>), Response> {
    let mut attrs = Attributes::new_now();
    apply_attrs(&mut attrs, v)?;
    Ok((attrs, tags_from(v)?.unwrap_or_default()))
}

pub(super) fn apply_attrs(a: &mut Attributes, v: &Value) -> Result<(), Response> {
    let Some(attrs) = v.get("attributes").filter(|x| !x.is_null()) else {
        return Ok(());
    };
    if !attrs.is_object() {
        return Err(bad("attributes must be an object."));
    }
    if let Some(e) = attrs.get("enabled").filter(|x| !x.is_null()) {
        a.enabled = e
            .as_bool()
            .ok_or_else(|| bad("attributes.enabled must be a boolean."))?;
    }
    for (k, slot) in [("nbf", &mut a.nbf), ("exp", &mut a.exp)] {
        if let Some(x) = attrs.get(k) {
            *slot = if x.is_null() {
                None
            } else {
                Some(
                    x.as_i64()
                        .ok_or_else(|| bad(&format!("attributes.{k} must be Unix seconds.")))?,
                )
            };
        }
    }
    Ok(())
}

pub(super) fn insert_tags(m: &mut Value, tags: &BTreeMap<String, String>) {
    if !tags.is_empty() {
        m["tags"] = json!(tags);
    }
}
