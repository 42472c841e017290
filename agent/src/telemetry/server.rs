//! The health/metrics/status HTTP server on `--listen` (plain HTTP: it is scraped and probed
//! by the kubelet and Prometheus inside the cluster network, and carries no secret).
//!
//! - `/healthz`: the refresh loop is alive (checked in on time).
//! - `/readyz`: the first sync is published (and, with `--max-staleness`, recent). Use it as
//!   the native sidecar's startup probe so the app starts only once its files exist.
//! - `/metrics`: Prometheus text format.
//! - `/status`: the status manifest as JSON (ids, versions, times; never values nor hashes).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::metrics::Metrics;
use super::status::{Probe, SidecarState};

#[derive(Clone)]
struct AppState {
    state: Arc<SidecarState>,
    metrics: Arc<Metrics>,
}

/// The router, separate from binding so it can be mounted or tested on its own.
pub fn router(state: Arc<SidecarState>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .with_state(AppState { state, metrics })
}

/// A bound listener; [`Server::serve`] runs it until the future is dropped.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until dropped (the owner aborts the task on shutdown).
    pub async fn serve(self, state: Arc<SidecarState>, metrics: Arc<Metrics>) {
        if let Err(e) = axum::serve(self.listener, router(state, metrics)).await {
            tracing::error!(addr = %self.addr, error = %e, "health server stopped");
        }
    }
}

fn probe(p: Probe) -> Response {
    let code = if p.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", p.reason)).into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    probe(s.state.liveness())
}

async fn readyz(State(s): State<AppState>) -> Response {
    probe(s.state.readiness())
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.state.public_json(),
    )
        .into_response()
}
