//! The Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client credentials with a
//! federated assertion or a client secret), the tenant metadata MSAL reads first, and Entra's
//! AADSTS error bodies (docs/protocol.md §3).

// Handlers return the exact wire error as `Err(Response)` and exit early with `?`; boxing
// every error response would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::issuer::DEFAULT_AUDIENCE;
use crate::jwt::{JwtError, aud_contains, aud_text, peek_claims};
use crate::state::Shared;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra error body with `error`, `error_description`, `error_codes` and trace fields.
pub(crate) fn error(s: &Shared, status: StatusCode, err: &str, code: u32, text: &str) -> Response {
    let trace = crate::util::guid();
    let corr = crate::util::guid();
    let ts = time::OffsetDateTime::now_utc();
    let stamp = ts
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let body = json!({
        "error": err,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("{}error?code={code}", s.authority),
    });
    let mut resp = (status, Json(body)).into_response();
    entra_headers(&mut resp, &trace);
    resp
}

fn entra_headers(resp: &mut Response, request_id: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-ms-request-id", v);
    }
    h.insert(
        "x-ms-ests-server",
        HeaderValue::from_static("2.1.0 - emulator"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
}

/// The Entra error a fault with `status` answers with on the token route.
pub(crate) fn fault_error(s: &Shared, status: u16, retry_after: Option<u64>) -> Response {
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match status {
        429 => error(
            s,
            st,
            "temporarily_unavailable",
            90055,
            "TenantThrottlingThreshold - The request has been throttled. Injected fault.",
        ),
        500..=599 => error(
            s,
            st,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again. Injected fault.",
        ),
        _ => error(s, st, "invalid_request", 90000, "Injected fault."),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn tenant_ok(s: &Shared, tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(&s.tenant_id)
        || s.is_guest_tenant(tenant)
        || tenant.eq_ignore_ascii_case("organizations")
        || tenant.eq_ignore_ascii_case("common")
}

fn tenant_not_found(s: &Shared, tenant: &str) -> Response {
    tenant_error(s, tenant, "invalid_request")
}

fn tenant_error(s: &Shared, tenant: &str, err: &str) -> Response {
    error(
        s,
        StatusCode::BAD_REQUEST,
        err,
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

async fn token(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match issue(&s, &tenant, &headers, &form) {
        Ok(v) => {
            let mut resp = (StatusCode::OK, Json(v)).into_response();
            entra_headers(&mut resp, &crate::util::guid());
            resp
        }
        Err(r) => r,
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("a={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

fn issue(
    s: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Value, Response> {
    let bad = |status, err: &str, code, text: &str| Err(error(s, status, err, code, text));
    if !tenant_ok(s, tenant) {
        return Err(tenant_not_found(s, tenant));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return bad(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let basic = basic_credentials(headers);
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(identity) = s.identity(&client_id) else {
        return bad(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                s.tenant_id
            ),
        );
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let Some(resource) = scope
        .split_whitespace()
        .find_map(|sc| sc.strip_suffix("/.default"))
        .map(str::to_string)
    else {
        return if scope.is_empty() {
            bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        } else {
            bad(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            )
        };
    };

    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
            return bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "Invalid client_assertion_type: expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        verify_assertion(s, &identity, assertion)?;
    } else {
        let secret = form
            .get("client_secret")
            .cloned()
            .or_else(|| basic.map(|b| b.1));
        let Some(secret) = secret else {
            return bad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if identity.client_secret.as_deref() != Some(secret.as_str()) {
            return bad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
    }
    // A token of the guest tenant when it was asked for; else of the home tenant.
    let (access_token, ttl) = if s.is_guest_tenant(tenant) {
        s.mint_access_token_in(&identity, &resource, tenant)
    } else {
        s.mint_access_token(&identity, &resource)
    };
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": access_token,
    }))
}

fn verify_assertion(
    s: &Shared,
    identity: &crate::seed::IdentitySeed,
    assertion: &str,
) -> Result<(), Response> {
    let bad = |status, err: &str, code, text: &str| Err(error(s, status, err, code, text));
    let Some(claims) = peek_claims(assertion) else {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        );
    };
    let iss = claims["iss"].as_str().unwrap_or_default();
    let sub = claims["sub"].as_str().unwrap_or_default();
    let matched = identity.federated_credentials.iter().any(|fc| {
        fc.issuer.as_deref().unwrap_or(&s.issuer) == iss
            && fc.subject == sub
            && aud_contains(&claims, fc.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE))
    });
    if !matched {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                aud_text(&claims)
            ),
        );
    }
    if iss != s.issuer {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50166,
            &format!(
                "Request to External OIDC endpoint failed: the emulator only holds keys for its own issuer {}, not {iss}.",
                s.issuer
            ),
        );
    }
    match s.issuer_key.verify(assertion) {
        Ok(_) => {}
        Err(JwtError::Malformed) => {
            return bad(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "JWT token is invalid or malformed.",
            );
        }
        Err(_) => {
            return bad(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            );
        }
    }
    let now = crate::util::now();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let nbf = claims["nbf"]
        .as_i64()
        .or(claims["iat"].as_i64())
        .unwrap_or(0);
    if exp <= now || nbf > now + 300 {
        let fmt = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|d| {
                    d.format(time::macros::format_description!(
                        "[month padding:none]/[day padding:none]/[year] [hour]:[minute]:[second]"
                    ))
                    .ok()
                })
                .unwrap_or_default()
        };
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                fmt(now),
                fmt(nbf),
                fmt(exp)
            ),
        );
    }
    Ok(())
}

async fn openid_configuration(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    if !tenant_ok(&s, &tenant) {
        // The metadata endpoint says `invalid_tenant`; the token endpoint `invalid_request`.
        return tenant_error(&s, &tenant, "invalid_tenant");
    }
    let a = s.authority_base();
    // The document of the tenant asked for: a guest tenant's endpoints are its own (MSAL
    // posts to this token endpoint); "common"/"organizations" resolve to the home tenant.
    let t = if s.is_guest_tenant(&tenant) {
        tenant.to_ascii_lowercase()
    } else {
        s.tenant_id.clone()
    };
    Json(json!({
        "token_endpoint": format!("{a}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{a}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{a}/{t}/v2.0"),
        "authorization_endpoint": format!("{a}/{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{a}/{t}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{a}/{t}/oauth2/v2.0/logout"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "localhost",
    }))
    .into_response()
}

async fn instance_discovery(State(s): State<Arc<Shared>>) -> Response {
    let host = s
        .authority
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    Json(json!({
        "tenant_discovery_endpoint": format!("{}/{}/v2.0/.well-known/openid-configuration", s.authority_base(), s.tenant_id),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}

async fn keys(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({"keys": [s.entra_key.jwk()]})).into_response()
}

/// Entra routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/common/discovery/instance", get(instance_discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
}
