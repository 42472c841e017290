//! `keyvault-agent probe`: the client side of the health server's `/readyz`, for container
//! health checks in images that have no shell and no curl (the agent image holds one binary).
//!
//! Compose (Docker and podman) gates the application on the sidecar with
//! `healthcheck: test: ["CMD", "/keyvault-agent", "probe"]` and
//! `depends_on: condition: service_healthy`, the compose counterpart of the native sidecar's
//! startup probe: the application starts only once the first set is published.
//!
//! The request is one `GET /readyz` over plain HTTP to the agent's own `--listen` address,
//! written by hand on a blocking socket: it needs no runtime, no TLS provider and no proxy
//! handling (an `HTTP_PROXY` in the container must not divert a loopback probe). Everything
//! is bounded: connect, write and read each wait at most the given timeout and at most
//! [`MAX_RESPONSE`] bytes are read.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Bytes of the response read at most: the status line and a short body are all we need.
pub const MAX_RESPONSE: u64 = 4096;

/// Why the agent is not ready, in one line (no secret ever reaches `/readyz`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing answered on the address.
    #[error(
        "probe {addr}: cannot connect: {source} (is the sidecar running with --listen {addr}?)"
    )]
    Connect {
        /// Probed address.
        addr: SocketAddr,
        /// Socket error.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("probe {addr}: {source}")]
    Io {
        /// Probed address.
        addr: SocketAddr,
        /// Socket error.
        source: std::io::Error,
    },
    /// The server answered something that is not HTTP.
    #[error("probe {addr}: not an HTTP response (is {addr} the agent's --listen address?)")]
    NotHttp {
        /// Probed address.
        addr: SocketAddr,
    },
    /// The agent answered, and is not ready.
    #[error("probe {addr}: not ready ({status}): {reason}")]
    NotReady {
        /// Probed address.
        addr: SocketAddr,
        /// HTTP status of `/readyz`.
        status: u16,
        /// The first line of the body (the agent says why).
        reason: String,
    },
}

/// The address to probe for a `--listen` address: an unspecified bind address (`0.0.0.0`,
/// `::`) is probed on the loopback address of the same family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /readyz` on `addr`: `Ok` on 200, the reason otherwise.
pub fn ready(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // HTTP/1.0 without keep-alive: the server closes after one response, so reading to the
    // end (bounded) is the whole exchange.
    let request = format!("GET /readyz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let mut parts = text.splitn(2, "\r\n\r\n");
    let head = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ProbeError::NotHttp { addr })?;
    if status == 200 {
        return Ok(());
    }
    let reason: String = body
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Err(ProbeError::NotReady {
        addr,
        status,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: issue 12 item 3 (the compose healthcheck probes the --listen address)
    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(t("[::]:9090"), "[::1]:9090");
        assert_eq!(t("127.0.0.2:81"), "127.0.0.2:81");
    }

    // reference: issue 12 item 3 (bounded: a peer that is not HTTP is a clear failure)
    #[test]
    fn a_server_that_is_not_http_is_not_ready() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"SSH-2.0-nope\r\n").unwrap();
        });
        let e = ready(addr, Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, ProbeError::NotHttp { .. }), "{e}");
        assert!(e.to_string().contains("--listen"), "{e}");
    }
}
