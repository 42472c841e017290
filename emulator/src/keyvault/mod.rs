//! The Key Vault data plane (docs/protocol.md §1–2): Key Vault's URL shapes, JSON bodies,
//! paging, headers and error bodies. This file resolves the vault, the `api-version` and the
//! caller, then dispatches on the row of `crate::routes::TABLE` the request matches; each
//! object family has its file.
//!
//! | file | what |
//! |---|---|
//! | `secrets.rs` | secrets and deleted secrets |
//! | `keys.rs` | keys |
//! | `certificates.rs` | certificates, their policy and pending operation |
//! | `deleted.rs` | deleted keys and certificates |
//! | `errors.rs` | the error envelope, 401/403/404/501, fault answers, common headers |
//! | `body.rs` | request bodies, `attributes`, `tags` |
//! | `paging.rs` | `maxresults`, `$skiptoken`, `nextLink` |
//! | `api_version.rs` | accepted `api-version`s |

// Handlers return the exact wire error as `Err(Response)` and exit early with `?`; boxing
// every error response would only add noise.
#![allow(clippy::result_large_err)]

mod api_version;
mod body;
mod certificates;
mod deleted;
mod errors;
mod keys;
mod paging;
mod secrets;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;

pub(crate) use errors::{add_common_headers, fault_error};
use errors::{error, not_implemented, unauthorized};

use crate::auth::{self, Principal};
use crate::routes::{self, Op};
use crate::state::{Shared, lock};
use crate::store;

type R = Result<Response, Response>;

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
pub(crate) fn host_of(uri: &Uri, headers: &HeaderMap) -> String {
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
pub(crate) fn vault_for_host(host: &str, vaults: &[String]) -> Option<String> {
    let (name, _) = split_host_port(host);
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() >= 3 && labels[1].eq_ignore_ascii_case("vault") {
        return Some(labels[0].to_ascii_lowercase());
    }
    vaults.first().cloned()
}

/// Entry point for every data-plane request (the router's fallback on the HTTPS listener).
pub(crate) async fn handle(
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
    let api_version = api_version::check(&query)?;
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

    let path = uri.path();
    let Some(route) = routes::lookup(&method, path) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("The operation {method} {path} is not supported by this vault."),
            None,
        ));
    };
    let (n, v) = (route.name, route.version);
    match route.row.op {
        Op::Unimplemented(operation) => Err(not_implemented(operation, &method, path)),
        Op::GetSecrets => ctx.list_secrets(path),
        Op::GetSecretVersions => ctx.list_secret_versions(n, path),
        Op::GetSecret => ctx.get_secret(n, v),
        Op::SetSecret => ctx.set_secret(n, &body),
        Op::UpdateSecret => ctx.update_secret(n, v, &body),
        Op::DeleteSecret => ctx.delete_secret(n),
        Op::GetDeletedSecrets => ctx.list_deleted_secrets(path),
        Op::GetDeletedSecret => ctx.get_deleted_secret(n),
        Op::PurgeDeletedSecret => ctx.purge_secret(n),
        Op::RecoverDeletedSecret => ctx.recover_secret(n),
        Op::GetKeys => ctx.list_keys(path),
        Op::GetKeyVersions => ctx.list_key_versions(n, path),
        Op::CreateKey => ctx.create_key(n, &body).await,
        Op::GetKey => ctx.get_key(n, v),
        Op::ImportKey => ctx.import_key(n, &body),
        Op::UpdateKey => ctx.update_key(n, v, &body),
        Op::DeleteKey => ctx.delete_key(n),
        Op::GetDeletedKeys => ctx.list_deleted("keys", path),
        Op::GetDeletedKey => ctx.get_deleted("keys", n),
        Op::PurgeDeletedKey => ctx.purge("keys", n),
        Op::RecoverDeletedKey => ctx.recover("keys", n),
        Op::GetCertificates => ctx.list_certs(path),
        Op::GetCertificateVersions => ctx.list_cert_versions(n, path),
        Op::GetCertificatePolicy => ctx.get_cert_policy(n),
        Op::ImportCertificate => ctx.import_cert(n, &body).await,
        Op::CreateCertificate => ctx.create_cert(n, &body).await,
        Op::GetCertificateOperation => ctx.get_cert_operation(n),
        Op::UpdateCertificate => ctx.update_cert(n, v, &body),
        Op::DeleteCertificate => ctx.delete_cert(n),
        Op::GetDeletedCertificates => ctx.list_deleted("certificates", path),
        Op::GetDeletedCertificate => ctx.get_deleted("certificates", n),
        Op::PurgeDeletedCertificate => ctx.purge("certificates", n),
        Op::RecoverDeletedCertificate => ctx.recover("certificates", n),
        Op::GetCertificate => ctx.get_cert(n, v),
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

    /// The checks every create or import of a `kind` object makes, in the service's order
    /// (the name, the caller's permission `op`, a deleted namesake), then the parsed body.
    fn create_body(
        &self,
        kind: &str,
        name: &str,
        op: &str,
        body: &axum::body::Bytes,
    ) -> Result<serde_json::Value, Response> {
        if !body::valid_name(name) {
            return Err(errors::bad(&format!(
                "The request URI contains an invalid name: {name}."
            )));
        }
        self.require(kind, Some(name), op)?;
        self.conflict_if_deleted(kind, name)?;
        body::parse_body(body)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
