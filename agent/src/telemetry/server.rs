//! The health/metrics/status HTTP server on `--listen` (plain HTTP: it is scraped and probed
//! by the kubelet and Prometheus inside the cluster network, and carries no secret).
//!
//! - `/healthz`: the refresh loop is alive (checked in on time).
//! - `/readyz`: the first sync is published (and, with `--max-staleness`, recent). Use it as
//!   the native sidecar's startup probe so the app starts only once its files exist.
//! - `/metrics`: Prometheus text format.
//! - `/status`: the status manifest as JSON (ids, versions, times; never values nor hashes).
//!
//! Anyone in the pod network can connect, so the server is bounded (docs/threat-model.md rule 6):
//! HTTP/1 only, request heads limited in size ([`Limits::max_header_bytes`]) and in time
//! ([`Limits::header_read_timeout`], counted from the connection's start or the previous
//! response, so it closes a slowloris and is also the keep-alive idle limit), a connection
//! with no request in flight is closed after [`Limits::idle_timeout`] whatever it is doing
//! (a backstop, e.g. for a peer that never reads its response), request bodies are never
//! read, and at most [`Limits::max_connections`] connections are open at once. The cap is the server's
//! file-descriptor budget: at the cap, the connection idle the longest is closed to admit the
//! new one, so a flood of idle sockets can neither lock out the kubelet's probe nor use up
//! the descriptors the refresh needs for its own requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::metrics::Metrics;
use super::status::{Probe, SidecarState};

/// Connections open at most (before the descriptor budget may lower it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a whole request head (also the keep-alive idle limit).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open with no request in flight, in any state.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers) accepted; the least hyper allows.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// How long an accept at the cap waits for an evicted connection to close.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. EMFILE), so the loop never spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's bounds. Runtime values, so tests can shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; at the cap the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// A request head must arrive within this time of the connection's start or of the
    /// previous response (so also the keep-alive idle limit), or the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed, whatever state it
    /// is in (a backstop for a peer that stops reading its response).
    pub idle_timeout: Duration,
    /// Largest request head in bytes (answered 431 beyond; at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl Limits {
    /// The defaults, with the connection cap lowered to a quarter of the process's soft
    /// `RLIMIT_NOFILE` when that is smaller, so the server never takes more than a quarter
    /// of the descriptors the refresh also needs.
    pub fn for_this_process() -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        Self::default().within_fd_limit(soft)
    }

    /// Lowers the connection cap to `soft_limit / 4` (at least 4); `None` means unlimited.
    pub fn within_fd_limit(mut self, soft_limit: Option<u64>) -> Self {
        if let Some(soft) = soft_limit {
            let budget = usize::try_from(soft / 4).unwrap_or(usize::MAX).max(4);
            self.max_connections = self.max_connections.min(budget);
        }
        self.max_connections = self.max_connections.max(1);
        self
    }
}

/// Live connection figures, shared with `/metrics` and tests.
#[derive(Debug)]
pub struct ConnStats {
    limit: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    evicted: AtomicU64,
    timed_out: AtomicU64,
}

impl ConnStats {
    /// The connection cap in effect.
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Connections closed to admit a newer one (or refused at the cap).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::SeqCst)
    }
    /// Connections closed by the idle timeout.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::SeqCst)
    }

    /// The figures in Prometheus text format (appended to the registry's output).
    fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP keyvault_agent_{name} {help}\n# TYPE keyvault_agent_{name} {kind}\n"
            );
            let sample = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            let _ = writeln!(out, "keyvault_agent_{sample} {value}");
        };
        metric(
            "health_connections",
            "gauge",
            "Connections open to the health server.",
            self.open().to_string(),
        );
        metric(
            "health_connections_limit",
            "gauge",
            "Most connections the health server keeps open.",
            self.limit.to_string(),
        );
        metric(
            "health_connections_evicted",
            "counter",
            "Health server connections closed at the cap to admit a newer one.",
            self.evicted().to_string(),
        );
        metric(
            "health_connections_idle_closed",
            "counter",
            "Health server connections closed by the idle timeout.",
            self.timed_out().to_string(),
        );
    }
}

#[derive(Clone)]
struct AppState {
    state: Arc<SidecarState>,
    metrics: Arc<Metrics>,
    conns: Arc<ConnStats>,
}

/// The routes, with the state they read.
fn app(state: Arc<SidecarState>, metrics: Arc<Metrics>, conns: Arc<ConnStats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .with_state(AppState {
            state,
            metrics,
            conns,
        })
}

/// A bound listener; [`Server::serve`] runs it until the future is dropped.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    limits: Limits,
    stats: Arc<ConnStats>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]) with the limits
    /// of [`Limits::for_this_process`].
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Self::bind_with(addr, Limits::for_this_process()).await
    }

    /// Binds `addr` with explicit limits.
    pub async fn bind_with(addr: SocketAddr, limits: Limits) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let limits = limits.within_fd_limit(None);
        let stats = Arc::new(ConnStats {
            limit: limits.max_connections,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        });
        Ok(Self {
            listener,
            addr,
            limits,
            stats,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The limits in effect.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Live connection figures (also on `/metrics`).
    pub fn stats(&self) -> Arc<ConnStats> {
        self.stats.clone()
    }

    /// Serves until dropped (the owner aborts the task on shutdown).
    pub async fn serve(self, state: Arc<SidecarState>, metrics: Arc<Metrics>) {
        let Server {
            listener,
            addr,
            limits,
            stats,
        } = self;
        let app = app(state, metrics, stats.clone());
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let registry = Arc::new(Registry::default());
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE/ENFILE: the descriptors are gone elsewhere; closing our own idle
                    // connections gives some back. Either way, never spin.
                    tracing::warn!(addr = %addr, error = %e, "health server cannot accept");
                    if registry.evict_longest_idle() {
                        stats.evicted.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    stats.evicted.fetch_add(1, Ordering::SeqCst);
                    if !registry.evict_longest_idle() {
                        // Every connection has a request in flight: refuse the newcomer.
                        tracing::debug!("health server at its connection cap; refused one");
                        continue;
                    }
                    match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                        Ok(Ok(p)) => p,
                        _ => continue,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            stats.accepted.fetch_add(1, Ordering::SeqCst);
            stats.open.fetch_add(1, Ordering::SeqCst);
            let conn = registry.register();
            let guard = ConnGuard {
                registry: registry.clone(),
                conn: conn.clone(),
                stats: stats.clone(),
                _permit: permit,
            };
            tokio::spawn(serve_connection(stream, app.clone(), conn, limits, guard));
        }
    }
}

/// One connection's activity: requests in flight, and since when it has had none.
#[derive(Debug)]
struct Conn {
    id: u64,
    activity: Mutex<Activity>,
    close: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Activity {
    in_flight: u32,
    idle_since: Instant,
}

impl Conn {
    fn activity(&self) -> Activity {
        *self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.in_flight = a.in_flight.saturating_add(1);
    }

    fn end(&self) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.in_flight = a.in_flight.saturating_sub(1);
        a.idle_since = Instant::now();
    }
}

/// Marks a request in flight on its connection while it lives.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The open connections, for eviction.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn register(&self) -> Arc<Conn> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
            }),
            close: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Tells the connection idle the longest (none in flight) to close; false if there is
    /// none. It leaves the registry at once so that it is not chosen twice.
    fn evict_longest_idle(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns
            .values()
            .filter_map(|c| {
                let a = c.activity();
                (a.in_flight == 0).then_some((a.idle_since, c.id))
            })
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Releases a connection's slot once its socket is closed (declared before the connection
/// in [`serve_connection`], so dropped after it).
struct ConnGuard {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
    stats: Arc<ConnStats>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry.remove(self.conn.id);
        self.stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    conn: Arc<Conn>,
    limits: Limits,
    guard: ConnGuard,
) {
    let _guard = guard;
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            conn.begin();
            let busy = Busy(conn.clone());
            let app = app.clone();
            async move {
                let _busy = busy;
                tower::ServiceExt::oneshot(app, req).await
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(DEFAULT_MAX_HEADER_BYTES))
        .max_headers(64)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                // Timeouts, oversized heads and resets by the peer end up here.
                tracing::debug!(error = %e, "health connection closed");
            }
        }
        _ = conn.close.notified() => {
            tracing::debug!("health connection evicted at the connection cap");
        }
        _ = idle(&conn, limits.idle_timeout) => {
            _guard.stats.timed_out.fetch_add(1, Ordering::SeqCst);
            tracing::debug!("health connection closed after its idle timeout");
        }
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle(conn: &Conn, timeout: Duration) {
    loop {
        let a = conn.activity();
        let deadline = if a.in_flight == 0 {
            crate::retry::instant_after(a.idle_since, timeout)
        } else {
            crate::retry::deadline_in(timeout)
        };
        tokio::time::sleep_until(deadline).await;
        let a = conn.activity();
        if a.in_flight == 0 && crate::retry::instant_after(a.idle_since, timeout) <= Instant::now()
        {
            return;
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
    let mut text = s.metrics.encode();
    // The registry's text ends with the OpenMetrics terminator; the server's own figures go
    // before it.
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    text.truncate(eof);
    s.conns.encode(&mut text);
    text.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A failure bound for the awaits below, never a latency assertion.
    const BOUND: Duration = Duration::from_secs(30);

    fn state() -> Arc<SidecarState> {
        Arc::new(SidecarState::new(
            "demo".into(),
            Duration::from_secs(3600),
            None,
        ))
    }

    async fn start(limits: Limits) -> (SocketAddr, Arc<ConnStats>, tokio::task::JoinHandle<()>) {
        let server = Server::bind_with("127.0.0.1:0".parse().unwrap(), limits)
            .await
            .unwrap();
        let (addr, stats) = (server.local_addr(), server.stats());
        let task = tokio::spawn(server.serve(state(), Metrics::new()));
        (addr, stats, task)
    }

    /// One keep-alive request answered 200, then the server closing the connection (within
    /// [`BOUND`]) while it waits for the next; the server's stats afterwards.
    async fn answered_then_closed(limits: Limits) -> Arc<ConnStats> {
        let (addr, stats, task) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let rest = tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .expect("keep-alive connection never closed");
        assert!(matches!(rest, Ok(0) | Err(_)), "{rest:?}");
        task.abort();
        stats
    }

    /// One request on a fresh connection; (status, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (code, body)
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        tokio::time::timeout(BOUND, async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never: {what}"));
    }

    /// Raises this process's soft RLIMIT_NOFILE to its hard limit and returns how many idle
    /// connections the flood may open (1,500, or fewer if the hard limit is low; the test
    /// process holds both ends' descriptors, plus whatever parallel tests use).
    fn flood_size(wanted: usize) -> usize {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut lim = getrlimit(Resource::Nofile);
        if lim.current < lim.maximum {
            lim.current = lim.maximum;
            let _ = setrlimit(Resource::Nofile, lim);
        }
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let room = usize::try_from(soft.saturating_sub(512)).unwrap_or(usize::MAX);
        let n = wanted.min(room);
        if n < wanted {
            eprintln!("RLIMIT_NOFILE {soft}: flooding with {n} connections instead of {wanted}");
        }
        n
    }

    // reference: docs/threat-model.md rule 6 (the health port survives a connection flood)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_flood_leaves_healthz_answering_within_the_connection_cap() {
        let flood = flood_size(1500);
        let limits = Limits::default();
        let (addr, stats, task) = start(limits).await;
        let mut idle = Vec::with_capacity(flood);
        for _ in 0..flood {
            let s = tokio::time::timeout(BOUND, TcpStream::connect(addr))
                .await
                .expect("connect")
                .unwrap();
            idle.push(s);
            assert!(stats.open() <= limits.max_connections, "{}", stats.open());
        }
        until("every flood connection accepted", || {
            stats.accepted() >= flood as u64
        })
        .await;

        let started = std::time::Instant::now();
        let (code, body) = tokio::time::timeout(BOUND, get(addr, "/healthz"))
            .await
            .expect("/healthz answered under the flood");
        eprintln!(
            "/healthz under {flood} idle connections: HTTP {code} in {:?} (cap {}, open {}, evicted {})",
            started.elapsed(),
            limits.max_connections,
            stats.open(),
            stats.evicted()
        );
        assert_eq!(code, 200, "{body}");
        assert!(stats.open() <= limits.max_connections);
        assert!(stats.evicted() >= (flood - limits.max_connections) as u64);

        let (_, metrics) = get(addr, "/metrics").await;
        assert!(
            metrics.contains("keyvault_agent_health_connections_limit 64"),
            "{metrics}"
        );
        assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
        drop(idle);
        task.abort();
    }

    // reference: docs/threat-model.md rule 6 (slowloris)
    #[tokio::test]
    async fn a_header_dribbled_slowly_is_closed_after_the_header_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, stats, task) = start(limits).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let dribble = async move {
            wr.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
            loop {
                // One byte of a never-ending header every 20 ms: always some progress,
                // never a complete head.
                wr.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        };
        let closed = async {
            let mut buf = [0u8; 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // a 408 may come first
                }
            }
        };
        tokio::time::timeout(BOUND, async {
            tokio::select! {
                _ = dribble => {}
                _ = closed => {}
            }
        })
        .await
        .expect("the server never closed a connection whose header never ended");
        until("the slot is released", || stats.open() == 0).await;
        task.abort();
    }

    // reference: docs/threat-model.md rule 6 (idle keep-alive connections are closed)
    #[tokio::test]
    async fn a_keep_alive_connection_with_nothing_in_flight_is_closed_when_idle() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        // Keep-alive: the connection stays until the idle timeout closes it.
        let stats = answered_then_closed(limits).await;
        assert_eq!(stats.timed_out(), 1);
    }

    // reference: docs/threat-model.md rule 6 (the header timeout also bounds keep-alive waits)
    #[tokio::test]
    async fn a_keep_alive_connection_waiting_for_its_next_request_gets_the_header_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(3600),
            ..Limits::default()
        };
        let stats = answered_then_closed(limits).await;
        assert_eq!(
            stats.timed_out(),
            0,
            "closed by the header timeout, not idle"
        );
    }

    #[tokio::test]
    async fn an_oversized_request_head_is_refused() {
        let (addr, _stats, task) = start(Limits::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        // The server may close while we still write; only its answer matters.
        let _ = s.write_all(big.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
        task.abort();
    }

    #[test]
    fn the_cap_is_a_quarter_of_the_descriptor_limit_at_most() {
        assert_eq!(Limits::default().within_fd_limit(None).max_connections, 64);
        assert_eq!(
            Limits::default()
                .within_fd_limit(Some(1024))
                .max_connections,
            64
        );
        assert_eq!(
            Limits::default().within_fd_limit(Some(100)).max_connections,
            25
        );
        assert_eq!(
            Limits::default().within_fd_limit(Some(3)).max_connections,
            4
        );
    }
}
