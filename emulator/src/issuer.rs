//! The cluster's service-account token issuer, as an AKS OIDC issuer exposes it: discovery
//! document, JWKS, and minting of projected-style service-account JWTs (RS256 with `kid`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

use crate::jwt::SigningKey;
use crate::state::Shared;

/// The audience the workload-identity webhook puts in projected tokens.
pub(crate) const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Claims of a projected service-account token for `sub`
/// (`system:serviceaccount:<ns>:<sa>`), valid from `iat` for `ttl`.
pub fn sa_claims(issuer: &str, sub: &str, aud: &str, iat: i64, ttl: Duration) -> Value {
    let mut parts = sub.splitn(4, ':');
    let (ns, sa) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("system"), Some("serviceaccount"), Some(ns), Some(sa)) => (ns, sa),
        _ => ("", ""),
    };
    let mut claims = json!({
        "aud": [aud],
        "exp": iat + ttl.as_secs() as i64,
        "iat": iat,
        "nbf": iat,
        "iss": issuer,
        "jti": crate::util::guid(),
        "sub": sub,
    });
    if !ns.is_empty() {
        claims["kubernetes.io"] = json!({
            "namespace": ns,
            "serviceaccount": {"name": sa, "uid": crate::util::guid_from(&format!("sa:{ns}:{sa}"))},
        });
    }
    claims
}

/// Mints a service-account token signed by `key`.
pub fn mint(key: &SigningKey, issuer: &str, sub: &str, aud: &str, ttl: Duration) -> String {
    key.sign(&sa_claims(issuer, sub, aud, crate::util::now(), ttl))
}

/// Mints a token whose `exp` is already in the past (issued two hours ago, valid one hour).
pub(crate) fn mint_expired(key: &SigningKey, issuer: &str, sub: &str, aud: &str) -> String {
    key.sign(&sa_claims(
        issuer,
        sub,
        aud,
        crate::util::now() - 7200,
        Duration::from_secs(3600),
    ))
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/openid/v1/jwks", s.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({"keys": [s.issuer_key.jwk()]})).into_response()
}

/// Routes under `/issuer`.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/issuer/.well-known/openid-configuration", get(discovery))
        .route("/issuer/openid/v1/jwks", get(jwks))
}
