//! Key Vault's answers that are not bundles: the error envelope
//! `{"error":{"code","message","innererror"?}}` with the service's codes and texts, the 401
//! challenge, 501 for operations the emulator lacks, the answers of injected faults, and the
//! headers every data-plane response carries (docs/protocol.md §1.6).

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::{self, AuthFailure};
use crate::state::Shared;

/// A JSON response with Key Vault's content type.
pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A Key Vault error body `{"error":{"code","message","innererror"?}}`.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    inner: Option<&str>,
) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(i) = inner {
        e["innererror"] = json!({"code": i});
    }
    json_response(status, &json!({ "error": e }))
}

/// A 500 for a failure of the emulator itself (a blocking task that did not finish).
pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        &e.to_string(),
        None,
    )
}

/// The Key Vault error a fault with `status` answers with.
pub(crate) fn fault_error(status: u16, retry_after: Option<u64>) -> Response {
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
pub(crate) fn add_common_headers(
    resp: &mut Response,
    request_id: &str,
    client_request_id: Option<&str>,
) {
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

/// Key Vault's error envelope for an operation this emulator does not implement: 501, so no
/// client mistakes it for a missing object (404) or its own mistake (400), and the message
/// names the operation.
pub(super) fn not_implemented(operation: &str, method: &Method, path: &str) -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        &format!(
            "The operation {operation} ({method} {path}) is not implemented by this Key Vault emulator."
        ),
        None,
    )
}

/// The 401 response for a rejected token.
pub(super) fn unauthorized(s: &Shared, f: &AuthFailure) -> Response {
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

pub(super) fn bad(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadParameter", msg, None)
}

pub(super) fn not_found(kind: &str, name: &str, version: Option<&str>) -> Response {
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
