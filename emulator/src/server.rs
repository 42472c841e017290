//! The listeners: HTTPS (rustls, h2 + http/1.1) for everything, plain HTTP for IMDS only. Each
//! connection is served by hyper with a wrapper that records the peer, counts the request and
//! applies faults before the axum router sees it. Shutdown stops accepting, asks every connection
//! to finish gracefully and waits (bounded) for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service as _;

use crate::routes::Route;
use crate::state::{Shared, lock};

/// The TCP peer of a request (request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// The error that makes hyper drop a connection without answering (the `Drop` fault).
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

/// Leaves the in-flight count when dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0.counts).leave();
    }
}

async fn handle(
    app: Router,
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response, DropConnection> {
    req.extensions_mut().insert(PeerAddr(peer));
    let path = req.uri().path().to_string();
    if !(path == "/admin" || path.starts_with("/admin/")) {
        let route = Route::classify(req.method(), &path);
        lock(&shared.counts).count_route(route);
        // Until this request is answered (any return below, or the connection going away).
        lock(&shared.counts).enter();
        let _answering = InFlight(shared.clone());
        let decision = lock(&shared.faults).decide(route);
        if !decision.latency.is_zero() {
            tokio::time::sleep(decision.latency).await;
        }
        if let Some(action) = decision.action {
            tracing::info!(?route, ?action, %path, "injecting fault");
            return crate::inject::fault(route, &action, shared.clone()).ok_or(DropConnection);
        }
        if let Some(family) = crate::throttle::Family::of(route)
            && let Some(retry_after) = throttled(&shared, &req, family)
        {
            lock(&shared.counts).count_throttled(route);
            tracing::debug!(?route, %path, "throttled");
            return Ok(crate::inject::throttled(retry_after));
        }
    }
    let method = req.method().clone();
    let mut app = app;
    let resp = match app.call(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    tracing::info!(%method, %path, status = resp.status().as_u16(), %peer, "request");
    Ok(resp)
}

/// Takes a token for the request's vault, or returns the `Retry-After` of a 429.
fn throttled(
    shared: &Shared,
    req: &Request<Incoming>,
    family: crate::throttle::Family,
) -> Option<Duration> {
    let host = crate::keyvault::host_of(req.uri(), req.headers());
    let vaults = lock(&shared.store).vault_names();
    // Requests for no seeded vault are answered 404 by the router, uncharged.
    let vault = crate::keyvault::vault_for_host(&host, &vaults)?;
    lock(&shared.throttle)
        .admit(&vault, family, tokio::time::Instant::now())
        .err()
}

/// Drives a connection to completion, switching to a graceful shutdown when `stop` flips.
macro_rules! drive {
    ($conn:expr, $stop:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = $stop.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }};
}

/// Serves `listener` until `shutdown` flips, with TLS when `tls` is given.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let mut stop = shutdown.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                handle(app.clone(), shared.clone(), peer, req)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acceptor) => {
                    // No handshake timeout on purpose: a tokio timer here would fire at once in
                    // tests that pause time (the clock auto-advances while we wait on I/O).
                    let tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    drive!(conn, stop);
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    drive!(conn, stop);
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Ensures the emulator only listens on loopback unless explicitly allowed.
pub(crate) fn check_loopback(
    addr: SocketAddr,
    allow_non_loopback: bool,
) -> Result<(), crate::Error> {
    if addr.ip().to_canonical().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(crate::Error::Config(format!(
            "refusing to listen on non-loopback address {addr}: use 127.0.0.1 or ::1, or pass --allow-non-loopback (containers) deliberately"
        )))
    }
}
