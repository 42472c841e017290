//! The IMDS managed-identity token endpoint (`GET /metadata/identity/oauth2/token`), served on the
//! plain-HTTP listener (as real IMDS) and on the HTTPS one, with IMDS's string-typed fields and
//! `{"error","error_description"}` bodies (docs/protocol.md §4).

// Handlers return the exact wire error as `Err(Response)` and exit early with `?`; boxing
// every error response would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::seed::{IdentitySeed, ManagedIdentityKind};
use crate::state::{Shared, lock};

/// An IMDS error body.
pub(crate) fn error(status: StatusCode, err: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"error": err, "error_description": description})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The IMDS error a fault with `status` answers with.
pub(crate) fn fault_error(status: u16, retry_after: Option<u64>) -> Response {
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match status {
        429 => error(
            st,
            "too_many_requests",
            "Too many requests. Injected fault.",
        ),
        404 | 410 => error(
            st,
            "not_found",
            "IMDS is being updated. Retry later. Injected fault.",
        ),
        _ => error(st, "unknown", "Injected fault."),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn select(
    identities: &[IdentitySeed],
    q: &HashMap<String, String>,
) -> Result<IdentitySeed, Response> {
    let managed: Vec<&IdentitySeed> = identities
        .iter()
        .filter(|i| i.managed_identity.is_some())
        .collect();
    let selectors: Vec<(&str, &String)> = ["client_id", "object_id", "msi_res_id", "mi_res_id"]
        .iter()
        .filter_map(|k| q.get(*k).map(|v| (*k, v)))
        .collect();
    let not_found = || {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        )
    };
    let found = match selectors.as_slice() {
        [] => {
            let system: Vec<_> = managed
                .iter()
                .filter(|i| i.managed_identity == Some(ManagedIdentityKind::SystemAssigned))
                .collect();
            match (system.as_slice(), managed.as_slice()) {
                ([one], _) => Some((**one).clone()),
                ([], [only]) => Some((*only).clone()),
                _ => None,
            }
        }
        [(kind, value)] => managed
            .iter()
            .find(|i| match *kind {
                "client_id" => i.client_id.eq_ignore_ascii_case(value),
                "object_id" => i.object_id().eq_ignore_ascii_case(value),
                _ => i.resource_id().eq_ignore_ascii_case(value),
            })
            .map(|i| (*i).clone()),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Only one of client_id, object_id or msi_res_id may be specified.",
            ));
        }
    };
    found.ok_or_else(not_found)
}

async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let metadata_ok = headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !metadata_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request_102",
            "Required metadata header not specified",
        );
    }
    if q.get("api-version").is_none_or(|v| v.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience variable 'resource' is missing",
        );
    };
    let identities = lock(&s.identities).clone();
    let identity = match select(&identities, &q) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (access_token, ttl) = s.mint_access_token(&identity, &resource);
    let now = crate::util::now();
    let mut resp = Json(json!({
        "access_token": access_token,
        "client_id": identity.client_id,
        "expires_in": ttl.to_string(),
        "expires_on": (now + ttl as i64).to_string(),
        "ext_expires_in": ttl.to_string(),
        "not_before": (now - 300).to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// IMDS routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    // The JavaScript SDK's ManagedIdentityCredential calls the path with a trailing slash;
    // IMDS answers both.
    Router::new()
        .route("/metadata/identity/oauth2/token", get(token))
        .route("/metadata/identity/oauth2/token/", get(token))
}
