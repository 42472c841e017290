//! The Key Vault data plane: secrets, keys, certificates and deleted secrets, with Key Vault's
//! URL shapes, JSON bodies, paging, headers and error bodies (docs/protocol.md §1–2).

// Handlers return the exact wire error as `Err(Response)` and exit early with `?`; boxing
// every error response would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::auth::{self, AuthFailure, Principal};
use crate::material::{self, CertMaterial, Curve, MaterialError};
use crate::state::{Shared, lock};
use crate::store::{self, Attributes, CertVersion, KeyVersion, NewCertificate, SecretVersion};
use crate::util::now;

/// Every `api-version` the emulator accepts.
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-06-01-preview",
    "2025-07-01",
    "2026-01-01-preview",
    "2026-03-01-preview",
    "2026-04-01",
    "2026-05-01-preview",
    "2026-07-01-preview",
];

const LATEST_STABLE: &str = "2026-04-01";
const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
const RECOVERABLE_DAYS: i64 = 90;

type R = Result<Response, Response>;

/// A JSON response with Key Vault's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A Key Vault error body `{"error":{"code","message","innererror"?}}`.
pub fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(i) = inner {
        e["innererror"] = json!({"code": i});
    }
    json_response(status, &json!({ "error": e }))
}

/// The Key Vault error a fault with `status` answers with.
pub fn fault_error(status: u16, retry_after: Option<u64>) -> Response {
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // An injected 403 is what Key Vault's network rules answer (the one 403 the data plane
    // cannot produce by itself), so the agent's firewall hint can be exercised.
    if status == 403 {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Client address is not authorized and caller is not a trusted service. Injected fault.",
            Some("ForbiddenByFirewall"),
        );
    }
    let (code, msg) = match status {
        429 => (
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        ),
        400 => ("BadParameter", "Injected fault."),
        401 => ("Unauthorized", "Injected fault."),
        404 => ("NotFound", "Injected fault."),
        409 => ("Conflict", "Injected fault."),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable. Injected fault.",
        ),
        _ => (
            "InternalServerError",
            "An unexpected error occurred. Injected fault.",
        ),
    };
    let mut resp = error(st, code, msg, None);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Adds the headers every Key Vault response carries.
pub fn add_common_headers(resp: &mut Response, request_id: &str, client_request_id: Option<&str>) {
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put("x-ms-request-id", request_id);
    if let Some(c) = client_request_id {
        put("x-ms-client-request-id", c);
    }
    put("x-ms-keyvault-region", "local");
    put("x-ms-keyvault-service-version", "1.9.2763.1");
    put(
        "x-ms-keyvault-network-info",
        "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
    );
    put("cache-control", "no-cache");
    put("pragma", "no-cache");
    put("expires", "-1");
    put(
        "strict-transport-security",
        "max-age=31536000;includeSubDomains",
    );
    put("x-content-type-options", "nosniff");
}

/// Per-request context.
struct Ctx {
    s: Arc<Shared>,
    /// `https://host[:port]` as the client addressed us (for ids).
    base: String,
    /// Same, with an explicit port (for `nextLink`).
    base_with_port: String,
    vault: String,
    api_version: String,
    query: HashMap<String, String>,
    principal: Option<Principal>,
}

fn parse_query(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The host a request addressed (`:authority` or `Host`).
pub fn host_of(uri: &Uri, headers: &HeaderMap) -> String {
    uri.authority()
        .map(|a| a.to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".into())
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        // [::1]:port
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (host, None),
        }
    }
}

/// The vault a host name addresses: `<vault>.vault.<anything>`, else the first seeded vault.
pub fn vault_for_host(host: &str, vaults: &[String]) -> Option<String> {
    let (name, _) = split_host_port(host);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() >= 3 && labels[1].eq_ignore_ascii_case("vault") {
        return Some(labels[0].to_ascii_lowercase());
    }
    vaults.first().cloned()
}

/// The Key Vault operation (REST API name) a request addresses when Key Vault has it and this
/// emulator does not implement it: such requests are answered as unsupported instead of
/// falling through to the object routes (where `contacts` or `rotationpolicy` would read as
/// an object name or version).
pub fn unimplemented_operation(method: &Method, segs: &[&str]) -> Option<&'static str> {
    let m = method.as_str();
    let op = match (m, segs) {
        ("GET", ["certificates", "contacts"]) => "GetCertificateContacts",
        ("PUT", ["certificates", "contacts"]) => "SetCertificateContacts",
        ("DELETE", ["certificates", "contacts"]) => "DeleteCertificateContacts",
        ("GET", ["certificates", "issuers"] | ["certificates", "issuers", ""]) => {
            "GetCertificateIssuers"
        }
        ("GET", ["certificates", "issuers", _]) => "GetCertificateIssuer",
        ("PUT", ["certificates", "issuers", _]) => "SetCertificateIssuer",
        ("PATCH", ["certificates", "issuers", _]) => "UpdateCertificateIssuer",
        ("DELETE", ["certificates", "issuers", _]) => "DeleteCertificateIssuer",
        ("PATCH", ["certificates", _, "policy"]) => "UpdateCertificatePolicy",
        ("PATCH", ["certificates", _, "pending"]) => "UpdateCertificateOperation",
        ("DELETE", ["certificates", _, "pending"]) => "DeleteCertificateOperation",
        ("POST", ["certificates", _, "pending", "merge"]) => "MergeCertificate",
        ("POST", ["certificates", _, "backup"]) => "BackupCertificate",
        ("POST", ["certificates", "restore"]) => "RestoreCertificate",
        ("POST", ["secrets", _, "backup"]) => "BackupSecret",
        ("POST", ["secrets", "restore"]) => "RestoreSecret",
        ("POST", ["keys", _, "backup"]) => "BackupKey",
        ("POST", ["keys", "restore"]) => "RestoreKey",
        ("POST", ["keys", _, "rotate"]) => "RotateKey",
        ("GET", ["keys", _, "rotationpolicy"]) => "GetKeyRotationPolicy",
        ("PUT", ["keys", _, "rotationpolicy"]) => "UpdateKeyRotationPolicy",
        ("POST", ["keys", _, "release"] | ["keys", _, _, "release"]) => "Release",
        ("GET", ["keys", _, _, "attestation"]) => "GetKeyAttestation",
        ("POST", ["keys", _, _, op]) => match *op {
            "encrypt" => "Encrypt",
            "decrypt" => "Decrypt",
            "sign" => "Sign",
            "verify" => "Verify",
            "wrapkey" => "WrapKey",
            "unwrapkey" => "UnwrapKey",
            _ => return None,
        },
        ("POST", ["rng"]) => "GetRandomBytes",
        ("GET", ["settings"]) => "GetSettings",
        ("GET", ["settings", _]) => "GetSetting",
        ("PATCH", ["settings", _]) => "UpdateSetting",
        _ => return None,
    };
    Some(op)
}

/// Key Vault's error envelope for an operation this emulator does not implement: 501, so no
/// client mistakes it for a missing object (404) or its own mistake (400), and the message
/// names the operation.
fn not_implemented(operation: &str, method: &Method, path: &str) -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        &format!(
            "The operation {operation} ({method} {path}) is not implemented by this Key Vault emulator."
        ),
        None,
    )
}

/// Entry point for every data-plane request (the router's fallback on the HTTPS listener).
pub async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = crate::util::guid();
    let client_request_id = headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = match dispatch(s, method, uri, headers, body).await {
        Ok(r) | Err(r) => r,
    };
    add_common_headers(&mut resp, &request_id, client_request_id.as_deref());
    resp
}

async fn dispatch(s: Arc<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> R {
    let query = parse_query(&uri);
    let api_version = match query.get("api-version") {
        None => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request is missing the required query parameter 'api-version'.",
                None,
            ));
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!(
                    "The specified version ({v}) is not recognized. Consider using the latest supported version ({LATEST_STABLE})."
                ),
                None,
            ));
        }
        Some(v) => v.clone(),
    };
    let host = host_of(&uri, &headers);
    let vault_names = lock(&s.store).vault_names();
    let vault = vault_for_host(&host, &vault_names)
        .filter(|v| vault_names.iter().any(|n| n.eq_ignore_ascii_case(v)))
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                &format!(
                    "No vault is served for host {host}. Seeded vaults: {}.",
                    vault_names.join(", ")
                ),
                None,
            )
        })?;
    let (hostname, port) = split_host_port(&host);
    let port = port
        .map(str::to_string)
        .unwrap_or_else(|| s.addr.port().to_string());
    let hostname = if hostname.contains(':') {
        format!("[{hostname}]")
    } else {
        hostname.to_string()
    };
    let mut ctx = Ctx {
        base: format!("https://{host}"),
        base_with_port: format!("https://{hostname}:{port}"),
        vault,
        api_version,
        query,
        principal: None,
        s: s.clone(),
    };

    match auth::authenticate(&s, &headers) {
        Ok(p) => ctx.principal = Some(p),
        Err(f) => return Err(unauthorized(&s, &f)),
    }

    let path = uri.path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = &method;
    // Before the object arms: `GET /certificates/contacts` is an operation, not a
    // certificate named "contacts" (`/certificates/contacts/` is the certificate).
    if let Some(operation) = unimplemented_operation(m, &segs) {
        return Err(not_implemented(operation, m, &path));
    }
    match segs.as_slice() {
        ["secrets"] | ["secrets", ""] if m == Method::GET => ctx.list_secrets(&path),
        ["secrets", n, "versions"] if m == Method::GET => ctx.list_secret_versions(n, &path),
        ["secrets", n] | ["secrets", n, ""] if m == Method::GET => ctx.get_secret(n, None),
        ["secrets", n, v] if m == Method::GET => ctx.get_secret(n, Some(v)),
        ["secrets", n] if m == Method::PUT => ctx.set_secret(n, &body),
        ["secrets", n] | ["secrets", n, ""] if m == Method::PATCH => {
            ctx.update_secret(n, None, &body)
        }
        ["secrets", n, v] if m == Method::PATCH => ctx.update_secret(n, Some(v), &body),
        ["secrets", n] if m == Method::DELETE => ctx.delete_secret(n),
        ["deletedsecrets"] | ["deletedsecrets", ""] if m == Method::GET => {
            ctx.list_deleted_secrets(&path)
        }
        ["deletedsecrets", n] if m == Method::GET => ctx.get_deleted_secret(n),
        ["deletedsecrets", n] if m == Method::DELETE => ctx.purge_secret(n),
        ["deletedsecrets", n, "recover"] if m == Method::POST => ctx.recover_secret(n),
        ["keys"] | ["keys", ""] if m == Method::GET => ctx.list_keys(&path),
        ["keys", n, "versions"] if m == Method::GET => ctx.list_key_versions(n, &path),
        ["keys", n, "create"] if m == Method::POST => ctx.create_key(n, &body).await,
        ["keys", n] | ["keys", n, ""] if m == Method::GET => ctx.get_key(n, None),
        ["keys", n, v] if m == Method::GET => ctx.get_key(n, Some(v)),
        ["keys", n] if m == Method::PUT => ctx.import_key(n, &body),
        ["keys", n] | ["keys", n, ""] if m == Method::PATCH => ctx.update_key(n, None, &body),
        ["keys", n, v] if m == Method::PATCH => ctx.update_key(n, Some(v), &body),
        ["keys", n] if m == Method::DELETE => ctx.delete_key(n),
        ["deletedkeys"] | ["deletedkeys", ""] if m == Method::GET => {
            ctx.list_deleted("keys", &path)
        }
        ["deletedkeys", n] if m == Method::GET => ctx.get_deleted("keys", n),
        ["deletedkeys", n] if m == Method::DELETE => ctx.purge("keys", n),
        ["deletedkeys", n, "recover"] if m == Method::POST => ctx.recover("keys", n),
        ["certificates"] | ["certificates", ""] if m == Method::GET => ctx.list_certs(&path),
        ["certificates", n, "versions"] if m == Method::GET => ctx.list_cert_versions(n, &path),
        ["certificates", n, "policy"] if m == Method::GET => ctx.get_cert_policy(n),
        ["certificates", n, "import"] if m == Method::POST => ctx.import_cert(n, &body).await,
        ["certificates", n, "create"] if m == Method::POST => ctx.create_cert(n, &body).await,
        ["certificates", n, "pending"] if m == Method::GET => ctx.get_cert_operation(n),
        ["certificates", n] | ["certificates", n, ""] if m == Method::PATCH => {
            ctx.update_cert(n, None, &body)
        }
        ["certificates", n, v] if m == Method::PATCH => ctx.update_cert(n, Some(v), &body),
        ["certificates", n] if m == Method::DELETE => ctx.delete_cert(n),
        ["deletedcertificates"] | ["deletedcertificates", ""] if m == Method::GET => {
            ctx.list_deleted("certificates", &path)
        }
        ["deletedcertificates", n] if m == Method::GET => ctx.get_deleted("certificates", n),
        ["deletedcertificates", n] if m == Method::DELETE => ctx.purge("certificates", n),
        ["deletedcertificates", n, "recover"] if m == Method::POST => {
            ctx.recover("certificates", n)
        }
        ["certificates", n] | ["certificates", n, ""] if m == Method::GET => ctx.get_cert(n, None),
        ["certificates", n, v] if m == Method::GET => ctx.get_cert(n, Some(v)),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("The operation {method} {path} is not supported by this vault."),
            None,
        )),
    }
}

/// The 401 response for a rejected token.
pub fn unauthorized(s: &Shared, f: &AuthFailure) -> Response {
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        &f.message(s),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&auth::challenge(s)) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn bad(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadParameter", msg, None)
}

fn not_found(kind: &str, name: &str, version: Option<&str>) -> Response {
    let (code, noun) = match kind {
        "keys" => ("KeyNotFound", "key"),
        "certificates" => ("CertificateNotFound", "certificate"),
        _ => ("SecretNotFound", "secret"),
    };
    let id = match version {
        Some(v) if !v.is_empty() => format!("{name}/{v}"),
        _ => name.to_string(),
    };
    let id = if kind == "certificates" {
        id.replacen('/', "/versions/", 1)
    } else {
        id
    };
    error(
        StatusCode::NOT_FOUND,
        code,
        &format!(
            "A {noun} with (name/id) {id} was not found in this key vault. If you recently deleted this {noun} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Err(bad("The request body is empty."));
    }
    serde_json::from_slice(body)
        .map_err(|e| bad(&format!("The request body is not valid JSON: {e}.")))
}

fn tags_from(v: &Value) -> Result<Option<BTreeMap<String, String>>, Response> {
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

fn attrs_json(a: &Attributes, exportable: Option<bool>) -> Value {
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

fn apply_attrs(a: &mut Attributes, v: &Value) -> Result<(), Response> {
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

fn insert_tags(m: &mut Value, tags: &BTreeMap<String, String>) {
    if !tags.is_empty() {
        m["tags"] = json!(tags);
    }
}

impl Ctx {
    fn require(&self, kind: &str, name: Option<&str>, op: &str) -> Result<(), Response> {
        let p = self
            .principal
            .as_ref()
            .expect("authenticated before dispatch");
        let ok = p
            .identity
            .as_ref()
            .is_some_and(|i| i.allows(&self.vault, kind, name));
        if ok {
            return Ok(());
        }
        let scope = match name {
            Some(n) => format!("/{kind}/{n}"),
            None => String::new(),
        };
        Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &auth::forbidden_message(
                &self.s,
                p,
                &self.vault,
                &auth::action_name(kind, op),
                &scope,
            ),
            Some("ForbiddenByRbac"),
        ))
    }

    fn url(&self, kind: &str, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/{kind}/{name}/{v}", self.base),
            None => format!("{}/{kind}/{name}", self.base),
        }
    }

    fn with_vault<T>(&self, f: impl FnOnce(&store::Vault) -> T) -> T {
        let st = lock(&self.s.store);
        let v = st
            .vault(&self.vault)
            .expect("vault checked before dispatch");
        f(v)
    }

    fn with_vault_mut<T>(&self, f: impl FnOnce(&mut store::Vault) -> T) -> T {
        let mut st = lock(&self.s.store);
        let v = st
            .vault_mut(&self.vault)
            .expect("vault checked before dispatch");
        f(v)
    }

    /// Pages `items` per `maxresults`/`$skiptoken`, building an absolute `nextLink`.
    fn page(&self, path: &str, items: Vec<Value>) -> R {
        let max = match self.query.get("maxresults") {
            None => None,
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => Some(n),
                _ => {
                    return Err(bad(&format!(
                        "Invalid value {m} for maxresults: it must be an integer from 1 to 25."
                    )));
                }
            },
        };
        let start = match self.query.get("$skiptoken") {
            None => 0,
            Some(t) => decode_skiptoken(t).ok_or_else(|| bad("The $skiptoken is invalid."))?,
        };
        let size = max.unwrap_or(25);
        let end = (start + size).min(items.len());
        let page: Vec<Value> = items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let next = if end < items.len() {
            let api = self
                .s
                .next_link_api_version
                .clone()
                .unwrap_or_else(|| self.api_version.clone());
            let mut link = format!(
                "{}{}?api-version={api}&$skiptoken={}",
                self.base_with_port,
                path.trim_end_matches('/'),
                encode_skiptoken(end)
            );
            if let Some(m) = max {
                link.push_str(&format!("&maxresults={m}"));
            }
            Value::String(link)
        } else {
            Value::Null
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({"value": page, "nextLink": next}),
        ))
    }

    // ----- secrets -----

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

    fn list_secrets(&self, path: &str) -> R {
        self.require("secrets", None, "readMetadata/action")?;
        let items = self.with_vault(|v| {
            v.secrets
                .iter()
                .filter_map(|(n, vs)| vs.last().map(|x| self.secret_item(n, x, false)))
                .collect()
        });
        self.page(path, items)
    }

    fn list_secret_versions(&self, name: &str, path: &str) -> R {
        self.require("secrets", Some(name), "readMetadata/action")?;
        let items = self.with_vault(|v| {
            v.secrets
                .get(name)
                .map(|vs| vs.iter().map(|x| self.secret_item(name, x, true)).collect())
        });
        // Listing versions of a missing secret is an empty list on the real service.
        self.page(path, items.unwrap_or_default())
    }

    fn get_secret(&self, name: &str, version: Option<&str>) -> R {
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

    fn set_secret(&self, name: &str, body: &Bytes) -> R {
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
        let mut attrs = Attributes::new_now();
        apply_attrs(&mut attrs, &b)?;
        let tags = tags_from(&b)?.unwrap_or_default();
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

    fn update_secret(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
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

    fn delete_secret(&self, name: &str) -> R {
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

    fn list_deleted_secrets(&self, path: &str) -> R {
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

    fn get_deleted_secret(&self, name: &str) -> R {
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

    fn purge_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "purge/action")?;
        self.with_vault_mut(|v| v.deleted_secrets.remove(name))
            .ok_or_else(|| Self::deleted_not_found(name))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn recover_secret(&self, name: &str) -> R {
        self.require("secrets", Some(name), "recover/action")?;
        let v = self
            .with_vault_mut(|v| v.recover_secret(name))
            .map_err(|_| Self::deleted_not_found(name))?;
        Ok(json_response(
            StatusCode::OK,
            &self.secret_bundle(name, &v, None),
        ))
    }

    // ----- keys -----

    fn key_bundle(&self, name: &str, k: &KeyVersion) -> Value {
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

    fn key_item(&self, name: &str, k: &KeyVersion, versioned: bool) -> Value {
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

    fn list_keys(&self, path: &str) -> R {
        self.require("keys", None, "read")?;
        let items = self.with_vault(|v| {
            v.keys
                .iter()
                .filter_map(|(n, ks)| ks.last().map(|k| self.key_item(n, k, false)))
                .collect()
        });
        self.page(path, items)
    }

    fn list_key_versions(&self, name: &str, path: &str) -> R {
        self.require("keys", Some(name), "read")?;
        let items = self.with_vault(|v| {
            v.keys
                .get(name)
                .map(|ks| ks.iter().map(|k| self.key_item(name, k, true)).collect())
        });
        self.page(path, items.unwrap_or_default())
    }

    fn get_key(&self, name: &str, version: Option<&str>) -> R {
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

    async fn create_key(&self, name: &str, body: &Bytes) -> R {
        if !valid_name(name) {
            return Err(bad(&format!(
                "The request URI contains an invalid name: {name}."
            )));
        }
        self.require("keys", Some(name), "create/action")?;
        self.conflict_if_deleted("keys", name)?;
        let b = parse_body(body)?;
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
        let mut attrs = Attributes::new_now();
        apply_attrs(&mut attrs, &b)?;
        let tags = tags_from(&b)?.unwrap_or_default();
        let key_ops = key_ops_from(&b, &kty);
        let material = tokio::task::spawn_blocking(move || match spec {
            KeySpec::Rsa(bits) => material::generate_rsa(bits),
            KeySpec::Ec(c) => material::generate_ec(c),
        })
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
                None,
            )
        })?
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
                None,
            )
        })?;
        let mut jwk = material.public_jwk;
        jwk.insert("kty".into(), json!(kty));
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

    fn import_key(&self, name: &str, body: &Bytes) -> R {
        if !valid_name(name) {
            return Err(bad(&format!(
                "The request URI contains an invalid name: {name}."
            )));
        }
        self.require("keys", Some(name), "import/action")?;
        self.conflict_if_deleted("keys", name)?;
        let b = parse_body(body)?;
        let jwk = b
            .get("key")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("The body must have a JSON Web Key in 'key'."))?;
        let public = public_jwk(jwk).map_err(|m| bad(&m))?;
        let kty = public["kty"].as_str().unwrap_or_default().to_string();
        let mut attrs = Attributes::new_now();
        apply_attrs(&mut attrs, &b)?;
        let tags = tags_from(&b)?.unwrap_or_default();
        let key_ops = match jwk.get("key_ops").and_then(Value::as_array) {
            Some(ops) => ops
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect(),
            None => default_key_ops(&kty),
        };
        let k = KeyVersion {
            version: crate::util::new_version(),
            jwk: public,
            key_ops,
            attrs,
            tags,
            managed: false,
            exportable: false,
        };
        self.with_vault_mut(|v| v.add_key(name, k.clone()));
        Ok(json_response(StatusCode::OK, &self.key_bundle(name, &k)))
    }

    fn conflict_if_deleted(&self, kind: &str, name: &str) -> Result<(), Response> {
        if self.with_vault(|v| v.is_deleted(kind, name)) {
            return Err(error(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "{name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, it can only be recovered or purged."
                ),
                Some("ObjectIsDeletedButRecoverable"),
            ));
        }
        Ok(())
    }

    fn update_key(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
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

    fn deleted_extra(&self, b: &mut Value, kind: &str, name: &str, deleted: i64, purge: i64) {
        b["recoveryId"] = json!(format!("{}/deleted{kind}/{name}", self.base));
        b["deletedDate"] = json!(deleted);
        b["scheduledPurgeDate"] = json!(purge);
    }

    fn deleted_json(&self, kind: &str, name: &str) -> Option<Value> {
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

    fn delete_key(&self, name: &str) -> R {
        self.require("keys", Some(name), "delete")?;
        self.with_vault_mut(|v| v.delete_key(name).map(|_| ()))
            .map_err(|_| not_found("keys", name, None))?;
        let b = self
            .deleted_json("keys", name)
            .ok_or_else(|| not_found("keys", name, None))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    fn delete_cert(&self, name: &str) -> R {
        self.require("certificates", Some(name), "delete")?;
        self.with_vault_mut(|v| v.delete_certificate(name).map(|_| ()))
            .map_err(|_| not_found("certificates", name, None))?;
        let b = self
            .deleted_json("certificates", name)
            .ok_or_else(|| not_found("certificates", name, None))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    fn get_deleted(&self, kind: &str, name: &str) -> R {
        self.require(kind, Some(name), "readMetadata/action")?;
        let b = self
            .deleted_json(kind, name)
            .ok_or_else(|| Self::deleted_missing(kind, name))?;
        Ok(json_response(StatusCode::OK, &b))
    }

    fn list_deleted(&self, kind: &str, path: &str) -> R {
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

    fn recover(&self, kind: &str, name: &str) -> R {
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

    fn purge(&self, kind: &str, name: &str) -> R {
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

    // ----- certificates -----

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

    fn cert_bundle(&self, name: &str, c: &CertVersion) -> Value {
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

    fn cert_item(&self, name: &str, c: &CertVersion, versioned: bool) -> Value {
        let mut b = json!({
            "id": self.url("certificates", name, versioned.then_some(c.version.as_str())),
            "x5t": c.info.x5t,
            "attributes": attrs_json(&c.attrs, None),
        });
        insert_tags(&mut b, &c.tags);
        b
    }

    fn list_certs(&self, path: &str) -> R {
        self.require("certificates", None, "read")?;
        let items = self.with_vault(|v| {
            v.certificates
                .iter()
                .filter_map(|(n, cs)| cs.last().map(|c| self.cert_item(n, c, false)))
                .collect()
        });
        self.page(path, items)
    }

    fn list_cert_versions(&self, name: &str, path: &str) -> R {
        self.require("certificates", Some(name), "read")?;
        let items = self.with_vault(|v| {
            v.certificates
                .get(name)
                .map(|cs| cs.iter().map(|c| self.cert_item(name, c, true)).collect())
        });
        self.page(path, items.unwrap_or_default())
    }

    fn get_cert(&self, name: &str, version: Option<&str>) -> R {
        self.require("certificates", Some(name), "read")?;
        let c = self
            .with_vault(|v| v.certificate(name, version).cloned())
            .ok_or_else(|| not_found("certificates", name, version))?;
        Ok(json_response(StatusCode::OK, &self.cert_bundle(name, &c)))
    }

    fn get_cert_policy(&self, name: &str) -> R {
        self.require("certificates", Some(name), "read")?;
        let c = self
            .with_vault(|v| v.certificate(name, None).cloned())
            .ok_or_else(|| not_found("certificates", name, None))?;
        Ok(json_response(StatusCode::OK, &self.policy_json(name, &c)))
    }

    async fn import_cert(&self, name: &str, body: &Bytes) -> R {
        if !valid_name(name) {
            return Err(bad(&format!(
                "The request URI contains an invalid name: {name}."
            )));
        }
        self.require("certificates", Some(name), "import/action")?;
        self.conflict_if_deleted("certificates", name)?;
        let b = parse_body(body)?;
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
        if content_type != store::PEM && content_type != store::PKCS12 {
            return Err(bad(&format!(
                "Content type {content_type} is not supported: use application/x-pkcs12 or application/x-pem-file."
            )));
        }
        let mut attrs = Attributes::new_now();
        apply_attrs(&mut attrs, &b)?;
        let tags = tags_from(&b)?.unwrap_or_default();
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
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", &e.to_string(), None))?
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
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
                None,
            )
        })?
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

    async fn create_cert(&self, name: &str, body: &Bytes) -> R {
        if !valid_name(name) {
            return Err(bad(&format!(
                "The request URI contains an invalid name: {name}."
            )));
        }
        self.require("certificates", Some(name), "create/action")?;
        self.conflict_if_deleted("certificates", name)?;
        let b = parse_body(body)?;
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
        if content_type != store::PEM && content_type != store::PKCS12 {
            return Err(bad(&format!(
                "Content type {content_type} is not supported: use application/x-pkcs12 or application/x-pem-file."
            )));
        }
        let mut attrs = Attributes::new_now();
        apply_attrs(&mut attrs, &b)?;
        let tags = tags_from(&b)?.unwrap_or_default();
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
                .map_err(|e| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalServerError",
                        &e.to_string(),
                        None,
                    )
                })?
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

    fn get_cert_operation(&self, name: &str) -> R {
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

    fn update_cert(&self, name: &str, version: Option<&str>, body: &Bytes) -> R {
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
}

enum KeySpec {
    Rsa(usize),
    Ec(Curve),
}

/// Default `key_ops` for a key type, as Key Vault assigns them.
pub fn default_key_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = if kty.starts_with("EC") {
        &["sign", "verify"]
    } else {
        &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ]
    };
    ops.iter().map(|s| s.to_string()).collect()
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

/// The public members of an imported JWK, validated; private members are dropped.
pub fn public_jwk(jwk: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("The JSON Web Key has no 'kty'.")?;
    let required: &[&str] = match kty {
        "RSA" | "RSA-HSM" => &["n", "e"],
        "EC" | "EC-HSM" => &["crv", "x", "y"],
        other => {
            return Err(format!(
                "Key type {other} cannot be imported by the emulator."
            ));
        }
    };
    let mut out = Map::new();
    out.insert("kty".into(), json!(kty));
    for k in required {
        let v = jwk
            .get(*k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("The JSON Web Key is missing '{k}'."))?;
        if *k != "crv" && URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).is_err() {
            return Err(format!("The JSON Web Key member '{k}' is not base64url."));
        }
        out.insert((*k).into(), json!(v));
    }
    if let Some(crv) = out.get("crv").and_then(Value::as_str)
        && Curve::parse(crv).is_none()
    {
        return Err(format!("Curve {crv} is not supported."));
    }
    Ok(out)
}

fn encode_skiptoken(offset: usize) -> String {
    let marker = format!(
        "2!{}!{}",
        offset,
        URL_SAFE_NO_PAD.encode(format!("emulator-offset-{offset}"))
    );
    URL_SAFE_NO_PAD.encode(json!({"NextMarker": marker, "TargetLocation": 0}).to_string())
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(token))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v["NextMarker"].as_str()?.split('!').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_round_trips_and_is_opaque_base64_json() {
        let t = encode_skiptoken(7);
        assert_eq!(decode_skiptoken(&t), Some(7));
        let raw: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&t).unwrap()).unwrap();
        assert_eq!(raw["TargetLocation"], 0);
        assert!(decode_skiptoken("garbage").is_none());
    }

    #[test]
    fn vault_is_the_first_label_of_a_vault_host() {
        let vaults = vec!["demo".to_string(), "prod".to_string()];
        assert_eq!(
            vault_for_host("prod.vault.localhost:8443", &vaults).as_deref(),
            Some("prod")
        );
        assert_eq!(
            vault_for_host("127.0.0.1:8443", &vaults).as_deref(),
            Some("demo")
        );
        assert_eq!(
            vault_for_host("[::1]:8443", &vaults).as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn imported_jwk_drops_private_members() {
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB", "d": "CCCC"});
        let p = public_jwk(jwk.as_object().unwrap()).unwrap();
        assert!(p.get("d").is_none());
        assert_eq!(p["crv"], "P-256");
    }
}
