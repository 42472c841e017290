//! The real sidecar loop (`sidecar::Sidecar`) run in-process on a test's runtime: its
//! health server's address, a reload trigger, a clean stop, and a plain HTTP/1.1 client
//! for the health/metrics/status endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use keyvault_agent::sidecar::Sidecar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A running sidecar.
pub struct RunningSidecar {
    /// Where its health server listens.
    pub addr: SocketAddr,
    /// Each message asks for a reload (what SIGHUP does in production).
    pub reload: mpsc::Sender<()>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), keyvault_agent::error::Error>>,
}

impl RunningSidecar {
    /// Runs `sidecar` (with a reload trigger and a shutdown signal wired in) until its
    /// health server listens.
    pub async fn start(sidecar: Sidecar) -> RunningSidecar {
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (reload_tx, reload_rx) = mpsc::channel::<()>(4);
        let sidecar = sidecar
            .on_listening(addr_tx)
            .reload_trigger(futures::stream::unfold(reload_rx, |mut rx| async move {
                rx.recv().await.map(|()| ((), rx))
            }));
        let task = tokio::spawn(async move {
            sidecar
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        let addr = tokio::time::timeout(Duration::from_secs(10), addr_rx)
            .await
            .expect("health server address")
            .expect("sidecar stopped before listening");
        RunningSidecar {
            addr,
            reload: reload_tx,
            stop: Some(stop_tx),
            task,
        }
    }

    /// (status, body) of a GET on the health server.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    /// The `/status` document (`null` while it does not parse).
    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").await.1).unwrap_or_default()
    }

    /// The sum of the `/metrics` samples whose line starts with `needle`.
    pub async fn metric(&self, needle: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with(needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many refreshes (any result) have finished.
    pub async fn refreshes(&self) -> f64 {
        self.metric("keyvault_agent_refreshes_total").await
    }

    /// Signals shutdown and waits (bounded) for a clean exit.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("sidecar stops on shutdown")
            .unwrap()
            .expect("sidecar exits cleanly");
    }
}

/// (status, body) of one HTTP/1.1 GET on a fresh connection (the health server is plain
/// HTTP on loopback).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
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
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Bodies may be chunked; tests only search them, so strip nothing further.
    (code, body.to_string())
}
