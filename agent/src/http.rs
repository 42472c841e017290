//! The agent's HTTP clients: one shared, pooled, HTTP/2-capable `reqwest::Client` for
//! Entra and Key Vault, and a proxy-less twin for IMDS (which must never go through a proxy).
//!
//! TLS is rustls with the ring provider. Trust is the system roots (or Mozilla's bundle when
//! the image has none, e.g. a scratch image) plus every extra CA file (`--ca-file`,
//! `SSL_CERT_FILE`). Names under `localhost` resolve to loopback without a DNS query
//! (RFC 6761 §6.3), which is how tests and `make demo` reach `<vault>.vault.localhost`.
//! Redirects are followed only to the same host, so a token can never follow one elsewhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::Settings;

/// Failure to build the HTTP clients (always a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A CA file could not be read.
    #[error("ca file {path}: cannot read it: {source}")]
    CaRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CA file holds no usable certificate.
    #[error("ca file {path}: {reason}")]
    CaInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client could not be built.
    #[error("cannot build the https client: {0}")]
    Build(String),
}

/// The two clients the agent uses. Cheap to clone (reference-counted pools).
#[derive(Debug, Clone)]
pub struct HttpClients {
    /// Entra and Key Vault (honours `HTTPS_PROXY`/`NO_PROXY`).
    pub client: reqwest::Client,
    /// IMDS: never proxied.
    pub direct: reqwest::Client,
    /// Timeout of one request; callers shorten it to their deadline.
    pub request_timeout: Duration,
}

/// Options for [`build`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Extra CA certificate files (PEM, one or more certificates each).
    pub ca_files: Vec<PathBuf>,
    /// Timeout of one request (connect + response).
    pub request_timeout: Duration,
}

impl HttpOptions {
    /// Options from the runtime settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            ca_files: settings.ca_files.clone(),
            request_timeout: settings.request_timeout,
        }
    }
}

/// Installs the ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds both clients.
pub fn build(opts: &HttpOptions) -> Result<HttpClients, HttpError> {
    install_crypto_provider();
    let roots = trust_roots(&opts.ca_files)?;
    let make = |direct: bool| -> Result<reqwest::Client, HttpError> {
        let mut b = reqwest::Client::builder()
            .tls_certs_only(roots.clone())
            .dns_resolver(LoopbackResolver)
            .redirect(same_host_redirects())
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("keyvault-agent/", env!("CARGO_PKG_VERSION")));
        if direct {
            b = b.no_proxy();
        }
        b.build().map_err(|e| HttpError::Build(e.to_string()))
    };
    Ok(HttpClients {
        client: make(false)?,
        direct: make(true)?,
        request_timeout: opts.request_timeout,
    })
}

/// System roots (or the bundled Mozilla roots when there are none) plus the extra CA files.
fn trust_roots(ca_files: &[PathBuf]) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let mut roots = Vec::new();
    for path in ca_files {
        roots.extend(read_ca_file(path)?);
    }
    let mut added = 0usize;
    for der in system_roots() {
        if let Ok(c) = reqwest::Certificate::from_der(der.as_ref()) {
            roots.push(c);
            added += 1;
        }
    }
    if added == 0 {
        tracing::debug!("no system ca certificates found; trusting the bundled mozilla roots");
        for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            if let Ok(c) = reqwest::Certificate::from_der(der.as_ref()) {
                roots.push(c);
            }
        }
    }
    Ok(roots)
}

/// Well-known system CA bundles (Debian/Ubuntu/Alpine, RHEL/Fedora, SUSE, others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's roots, read from the first bundle found. Deliberately not
/// `rustls_native_certs::load_native_certs()`: it replaces the system roots with
/// `SSL_CERT_FILE` when that is set, while for us `SSL_CERT_FILE` adds to them.
fn system_roots() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    for p in SYSTEM_BUNDLES {
        let path = Path::new(p);
        if path.is_file() {
            let r = rustls_native_certs::load_certs_from_paths(Some(path), None);
            if !r.certs.is_empty() {
                return r.certs;
            }
        }
    }
    Vec::new()
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let pem = crate::files::read(path, crate::files::MAX_CA_FILE, "CA file")
        .map_err(std::io::Error::other)
        .map_err(|source| HttpError::CaRead {
            path: path.to_owned(),
            source,
        })?;
    let invalid = |reason: String| HttpError::CaInvalid {
        path: path.to_owned(),
        reason,
    };
    // Parse each block ourselves first so a broken file is reported, not silently ignored.
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(
            "no \"BEGIN CERTIFICATE\" block found: expected pem certificates".into(),
        ));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(format!("not a valid pem certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Follow redirects only within the same scheme, host and port, at most 5 times.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        let same = first.is_some_and(|f| {
            f.scheme() == attempt.url().scheme()
                && f.host_str() == attempt.url().host_str()
                && f.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() < 5 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// `localhost` and `*.localhost` resolve to loopback without asking DNS (RFC 6761 §6.3);
/// every other name goes through the system resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackResolver;

/// Whether `host` is `localhost` or a name under it.
pub fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

impl Resolve for LoopbackResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost_name(&host) {
                let addrs: Vec<SocketAddr> = vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                ];
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("cannot resolve {host}: {e}").into()
                })?
                .collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A transport failure, described for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// One line: what happened, the cause chain, and for TLS trust failures what to fix.
    pub message: String,
    /// The server's certificate was rejected: retrying cannot help.
    pub untrusted: bool,
}

/// Describes a `reqwest` error; TLS certificate rejections are told apart because they are
/// configuration problems (a missing `--ca-file`), not outages.
pub fn describe(e: &reqwest::Error) -> TransportFailure {
    let untrusted = is_certificate_error(e);
    let kind = if untrusted {
        "tls certificate rejected"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {}", error_chain(e));
    if untrusted {
        message
            .push_str(" (trust the server's ca with --ca-file or SSL_CERT_FILE, or check the url)");
    }
    TransportFailure { message, untrusted }
}

fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // io::Error hides its payload from `source()`, and rustls' error arrives wrapped in
        // io::Errors (twice, through hyper-rustls), so unwrap those by hand.
        let mut inner: &(dyn std::error::Error + 'static) = err;
        loop {
            if let Some(
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented,
            ) = inner.downcast_ref::<rustls::Error>()
            {
                return true;
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(next) => inner = next,
                None => break,
            }
        }
        cur = err.source();
    }
    false
}

/// `e` and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn localhost_names() {
        assert!(is_localhost_name("localhost"));
        assert!(is_localhost_name("demo.vault.localhost"));
        assert!(is_localhost_name("Demo.Vault.LOCALHOST."));
        assert!(!is_localhost_name("localhost.example.com"));
        assert!(!is_localhost_name("notlocalhost"));
        assert!(!is_localhost_name("vault.azure.net"));
    }

    #[tokio::test]
    async fn resolver_maps_localhost_subdomains_to_loopback() {
        let addrs: Vec<_> = LoopbackResolver
            .resolve(Name::from_str("demo.vault.localhost").unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // A literal address goes through the normal resolver and stays itself.
        let addrs: Vec<_> = LoopbackResolver
            .resolve(Name::from_str("127.0.0.1").unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs[0].ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let opts = HttpOptions {
            ca_files: vec![missing.clone()],
            request_timeout: Duration::from_secs(5),
        };
        let e = build(&opts).unwrap_err().to_string();
        assert!(e.contains("missing-ca.pem"), "{e}");

        let junk = dir.path().join("junk-ca.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = build(&HttpOptions {
            ca_files: vec![junk],
            request_timeout: Duration::from_secs(5),
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("junk-ca.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
    }

    #[test]
    fn extra_cas_add_to_the_public_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let roots = trust_roots(std::slice::from_ref(&path)).unwrap();
        // The extra CA plus the system's (or the bundled Mozilla) roots, never just the extra.
        assert!(roots.len() > 50, "{}", roots.len());
    }

    #[test]
    fn builds_with_an_extra_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        build(&HttpOptions {
            ca_files: vec![path],
            request_timeout: Duration::from_secs(5),
        })
        .unwrap();
    }
}
