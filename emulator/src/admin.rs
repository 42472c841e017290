//! Admin JSON API under `/admin` for tests and demos: faults, counters, secret changes and
//! service-account token minting. Served only to loopback peers (others get 403).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::faults::Fault;
use crate::server::PeerAddr;
use crate::state::{Shared, lock};
use crate::store::Attributes;

/// Whether a peer may use the admin API: loopback only (IPv4-mapped IPv6 included).
pub(crate) fn peer_allowed(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

fn err(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.canonical_reason().unwrap_or("Error").replace(' ', ""), "message": message}})),
    )
        .into_response()
}

async fn loopback_only(
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer_allowed(peer) {
        return err(
            StatusCode::FORBIDDEN,
            "admin routes are only served to loopback clients",
        );
    }
    next.run(req).await
}

async fn index(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({
        "tenant_id": s.tenant_id,
        "vaults": lock(&s.store).vault_names(),
        "identities": lock(&s.identities).iter().map(|i| json!({"name": i.name, "client_id": i.client_id})).collect::<Vec<_>>(),
        "routes": ["GET/DELETE /admin/counts", "GET/PUT /admin/throttle", "GET/POST/DELETE /admin/faults", "GET/PUT/DELETE /admin/tenant", "PUT /admin/vaults/{vault}/secrets/{name}", "PATCH /admin/vaults/{vault}/secrets/{name}/{version}", "POST /admin/token"],
    }))
    .into_response()
}

async fn get_counts(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.counts).clone()).into_response()
}

async fn reset_counts(State(s): State<Arc<Shared>>) -> Response {
    *lock(&s.counts) = Default::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.faults).list()).into_response()
}

async fn add_fault(State(s): State<Arc<Shared>>, Json(f): Json<Fault>) -> Response {
    lock(&s.faults).add(f.clone());
    (StatusCode::CREATED, Json(f)).into_response()
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> Response {
    lock(&s.faults).clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_tenant(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({"home_tenant": s.tenant_id, "vault_tenant": s.vault_tenant(), "challenge_authority": s.challenge_authority()})).into_response()
}

async fn set_tenant(
    State(s): State<Arc<Shared>>,
    Json(g): Json<crate::state::GuestTenant>,
) -> Response {
    if g.tenant_id.trim().is_empty() {
        return err(StatusCode::BAD_REQUEST, "tenant_id must not be empty");
    }
    *lock(&s.guest) = Some(g);
    get_tenant(State(s)).await
}

async fn reset_tenant(State(s): State<Arc<Shared>>) -> Response {
    *lock(&s.guest) = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn get_throttle(State(s): State<Arc<Shared>>) -> Response {
    let t = lock(&s.throttle);
    let limits = match t.config() {
        crate::throttle::ThrottleConfig::Off => serde_json::Value::Null,
        crate::throttle::ThrottleConfig::On(l) => json!(l),
    };
    Json(json!({"throttle": t.config().to_string(), "limits": limits})).into_response()
}

#[derive(Deserialize)]
struct SetThrottle {
    throttle: String,
}

async fn set_throttle(State(s): State<Arc<Shared>>, Json(b): Json<SetThrottle>) -> Response {
    match b.throttle.parse::<crate::throttle::ThrottleConfig>() {
        Ok(c) => {
            lock(&s.throttle).set_config(c);
            get_throttle(State(s)).await
        }
        Err(e) => err(StatusCode::BAD_REQUEST, &e),
    }
}

#[derive(Deserialize)]
struct SetSecret {
    value: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

async fn set_secret(
    State(s): State<Arc<Shared>>,
    Path((vault, name)): Path<(String, String)>,
    Json(b): Json<SetSecret>,
) -> Response {
    let mut attrs = Attributes::new_now();
    attrs.enabled = b.enabled;
    let mut st = lock(&s.store);
    let v = match st.vault_mut(&vault) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::NOT_FOUND, &e.to_string()),
    };
    match v.set_secret(
        &name,
        b.value,
        b.content_type,
        attrs,
        Default::default(),
        None,
    ) {
        Ok(sv) => Json(json!({"version": sv.version})).into_response(),
        Err(e) => err(
            StatusCode::CONFLICT,
            &format!("secret {name:?}: {e}; purge it first"),
        ),
    }
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
}

async fn set_enabled(
    State(s): State<Arc<Shared>>,
    Path((vault, name, version)): Path<(String, String, String)>,
    Json(b): Json<Enabled>,
) -> Response {
    let mut st = lock(&s.store);
    let found = st
        .vault_mut(&vault)
        .ok()
        .and_then(|v| v.secret_mut(&name, Some(&version)))
        .map(|sv| {
            sv.attrs.enabled = b.enabled;
            sv.attrs.updated = crate::util::now();
        });
    match found {
        Some(()) => StatusCode::NO_CONTENT.into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            &format!("secret {vault}/{name}/{version} does not exist"),
        ),
    }
}

#[derive(Deserialize)]
struct MintRequest {
    sub: String,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    expired: bool,
}

async fn mint(State(s): State<Arc<Shared>>, Json(b): Json<MintRequest>) -> Response {
    let aud = b
        .aud
        .unwrap_or_else(|| crate::issuer::DEFAULT_AUDIENCE.to_string());
    let token = if b.expired {
        crate::issuer::mint_expired(&s.issuer_key, &s.issuer, &b.sub, &aud)
    } else {
        crate::issuer::mint(
            &s.issuer_key,
            &s.issuer,
            &b.sub,
            &aud,
            Duration::from_secs(b.ttl_secs.unwrap_or(3600)),
        )
    };
    Json(json!({"token": token})).into_response()
}

/// Admin routes (with the loopback guard).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/counts", get(get_counts).delete(reset_counts))
        .route(
            "/admin/faults",
            get(get_faults).post(add_fault).delete(clear_faults),
        )
        .route("/admin/throttle", get(get_throttle).put(set_throttle))
        .route(
            "/admin/tenant",
            get(get_tenant).put(set_tenant).delete(reset_tenant),
        )
        .route("/admin/vaults/{vault}/secrets/{name}", put(set_secret))
        .route(
            "/admin/vaults/{vault}/secrets/{name}/{version}",
            patch(set_enabled),
        )
        .route("/admin/token", post(mint))
        .route_layer(middleware::from_fn(loopback_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_are_admins() {
        assert!(peer_allowed("127.0.0.1:5000".parse().unwrap()));
        assert!(peer_allowed("127.8.9.10:5000".parse().unwrap()));
        assert!(peer_allowed("[::1]:5000".parse().unwrap()));
        assert!(peer_allowed("[::ffff:127.0.0.1]:5000".parse().unwrap()));
        assert!(!peer_allowed("10.0.0.5:5000".parse().unwrap()));
        assert!(!peer_allowed("[::ffff:192.168.1.2]:5000".parse().unwrap()));
        assert!(!peer_allowed("[2001:db8::1]:5000".parse().unwrap()));
    }
}
