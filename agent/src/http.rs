//! The agent's HTTP clients, built in one place for every outbound call: one shared, pooled,
//! HTTP/2-capable `reqwest::Client` for Entra and Key Vault, a proxy-less twin for IMDS
//! (which must never go through a proxy) and the `--on-change-http` hook, and the one
//! bounded reader every response body goes through ([`read_body`]).
//!
//! TLS is rustls with the ring provider. Trust is the system roots (or Mozilla's bundle when
//! the image has none, e.g. a scratch image) plus every extra CA file (`--ca-file`,
//! `SSL_CERT_FILE`) and every PEM certificate file in the `SSL_CERT_DIR` directories (read
//! bounded: [`MAX_CA_DIR_ENTRIES`] entries, [`MAX_CA_DIR_BYTES`] in all). Names under `localhost` resolve to loopback without a DNS query
//! (RFC 6761 §6.3), which is how tests and `make demo` reach `<vault>.vault.localhost`;
//! names under `invalid` never resolve (§6.4), and a name the resolver says does not exist
//! is reported as [`ResolveError`] with `not_found`, so callers can treat it as permanent.
//! Redirects are followed only to the same host, so a token can never follow one elsewhere.
//!
//! A hostile or broken server is bounded: response headers (HTTP/2 header list
//! [`MAX_HEADER_LIST_BYTES`], HTTP/1 [`MAX_HEADERS`] lines in hyper's bounded buffer), each
//! whole request including its body (the request timeout), each read (the read timeout), and
//! each body ([`read_body`], which stops as soon as the limit is passed).

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
    /// An `SSL_CERT_DIR` directory could not be listed, or is larger than the bounds.
    #[error("SSL_CERT_DIR \"{}\": {reason}", path.display())]
    CaDir {
        /// The directory.
        path: PathBuf,
        /// Why, and the fix.
        reason: String,
    },
    /// The client could not be built.
    #[error("cannot build the https client: {0}")]
    Build(String),
}

// The defaults are settings (the configuration owns them and this module reads the
// configuration); re-exported under their old path.
pub use crate::config::{DEFAULT_MAX_RESPONSE_SIZE, DEFAULT_MAX_TOKEN_RESPONSE_SIZE};
/// Largest HTTP/2 response header list accepted (hyper's default is 16 KiB; Key Vault's
/// headers are about 1 KiB).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Most HTTP/1 response header lines accepted (hyper also bounds their bytes by its read
/// buffer, about 400 KiB).
pub const MAX_HEADERS: usize = 100;

/// Most entries of one `SSL_CERT_DIR` directory looked at (a distribution's
/// `/etc/ssl/certs`, hash links included, holds about 600).
pub const MAX_CA_DIR_ENTRIES: usize = 4096;
/// Most bytes read from one `SSL_CERT_DIR` directory's files in all (each file is also
/// bounded by the CA file limit).
pub const MAX_CA_DIR_BYTES: u64 = 16 << 20;

/// Body size limits, by what answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Key Vault responses.
    pub key_vault: u64,
    /// Entra and IMDS token responses.
    pub token: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            key_vault: DEFAULT_MAX_RESPONSE_SIZE,
            token: DEFAULT_MAX_TOKEN_RESPONSE_SIZE,
        }
    }
}

/// The clients the agent uses. Cheap to clone (reference-counted pools).
#[derive(Debug, Clone)]
pub struct HttpClients {
    /// Entra and Key Vault (honours `HTTPS_PROXY`/`NO_PROXY`).
    pub client: reqwest::Client,
    /// IMDS and the `--on-change-http` hook: never proxied.
    pub direct: reqwest::Client,
    /// Timeout of one request; callers shorten it to their deadline.
    pub request_timeout: Duration,
    /// Body size limits.
    pub limits: BodyLimits,
}

/// Options for [`build`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Extra CA certificate files (PEM, one or more certificates each).
    pub ca_files: Vec<PathBuf>,
    /// Directories of extra CA certificate files (`SSL_CERT_DIR`).
    pub ca_dirs: Vec<PathBuf>,
    /// Timeout of one request (connect + response + body).
    pub request_timeout: Duration,
    /// Body size limits.
    pub limits: BodyLimits,
}

impl HttpOptions {
    /// Options with the default body limits.
    pub fn new(ca_files: Vec<PathBuf>, request_timeout: Duration) -> Self {
        Self {
            ca_files,
            ca_dirs: Vec::new(),
            request_timeout,
            limits: BodyLimits::default(),
        }
    }

    /// Options from the runtime settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            ca_files: settings.ca_files.clone(),
            ca_dirs: settings.ca_dirs.clone(),
            request_timeout: settings.request_timeout,
            limits: BodyLimits {
                key_vault: settings.max_response_size,
                token: settings.max_token_response_size,
            },
        }
    }
}

/// Installs the ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the clients: the one place any outbound client is configured.
pub fn build(opts: &HttpOptions) -> Result<HttpClients, HttpError> {
    install_crypto_provider();
    let mut roots = trust_roots(&opts.ca_files)?;
    for dir in &opts.ca_dirs {
        roots.extend(read_ca_dir(dir)?);
    }
    let make = |direct: bool| -> Result<reqwest::Client, HttpError> {
        let mut b = reqwest::Client::builder()
            .tls_certs_only(roots.clone())
            .dns_resolver(LoopbackResolver)
            .redirect(same_host_redirects())
            // The whole request, body included: a slow-drip body cannot outlast it.
            .timeout(opts.request_timeout)
            // And each read: a stalled connection fails before the whole timeout.
            .read_timeout(opts.request_timeout.min(Duration::from_secs(30)))
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .http1_max_headers(MAX_HEADERS)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
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
        limits: opts.limits,
    })
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is (or declares itself) larger than the limit; reading stopped there.
    #[error("the answer is larger than the {} limit", format_size(*.limit))]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection failed or timed out while reading.
    #[error("{}", describe(.0).message)]
    Transport(reqwest::Error),
}

/// Reads a whole response body, chunk by chunk, and stops as soon as it passes `limit`
/// bytes (at once when `Content-Length` already says so): memory stays within the limit
/// plus one chunk whatever the server sends, an endless chunked body included.
pub async fn read_body(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let hint = resp.content_length().unwrap_or(0).min(limit).min(64 * 1024);
    let mut body = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        let total = u64::try_from(body.len())
            .unwrap_or(u64::MAX)
            .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if total > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `4 MiB (4194304 bytes)`, `1000 bytes`.
pub fn format_size(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB ({n} bytes)", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB ({n} bytes)", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Parses a size flag: bytes, or a number with `K`/`KiB`/`M`/`MiB`/`G`/`GiB` (powers of
/// 1024). At least 1 KiB, at most 1 GiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a size such as 4MiB, 512KiB or 1048576".to_owned())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1024,
        "m" | "mb" | "mi" | "mib" => 1024 * 1024,
        "g" | "gb" | "gi" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| "size is too large".to_owned())?;
    if !(1024..=1024 * 1024 * 1024).contains(&bytes) {
        return Err("must be between 1KiB and 1GiB".into());
    }
    Ok(bytes)
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

/// Every certificate of the PEM files in `dir` (OpenSSL's `SSL_CERT_DIR`: hash links and
/// plain `.pem`/`.crt` files alike; what holds no certificate, such as a CRL, is skipped).
/// Entries are read in name order, each through [`crate::files::read`] (regular files only,
/// bounded); duplicates (a hash link and its file) are added once.
fn read_ca_dir(dir: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    use rustls_pki_types::pem::PemObject;
    let fail = |reason: String| HttpError::CaDir {
        path: dir.to_owned(),
        reason,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list it: {e}")))? {
        if names.len() >= MAX_CA_DIR_ENTRIES {
            return Err(fail(format!(
                "holds more than {MAX_CA_DIR_ENTRIES} entries: point it at a directory of CA certificates only"
            )));
        }
        let entry = entry.map_err(|e| fail(format!("cannot list it: {e}")))?;
        names.push(entry.path());
    }
    names.sort();
    let mut budget = MAX_CA_DIR_BYTES;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for path in names {
        let limit = budget.min(crate::files::MAX_CA_FILE);
        let bytes = match crate::files::read(&path, limit, "SSL_CERT_DIR file") {
            Ok(b) => b,
            Err(crate::files::FileError::TooLarge { .. }) if limit < crate::files::MAX_CA_FILE => {
                return Err(fail(format!(
                    "its files hold more than {MAX_CA_DIR_BYTES} bytes: point it at a directory of CA certificates only"
                )));
            }
            Err(e) => {
                // Subdirectories, sockets, unreadable files: OpenSSL skips them too.
                tracing::debug!(error = %e, "skipping an SSL_CERT_DIR entry");
                continue;
            }
        };
        budget = budget.saturating_sub(bytes.len() as u64);
        let mut added = 0usize;
        for der in rustls_pki_types::CertificateDer::pem_slice_iter(&bytes) {
            let Ok(der) = der else {
                tracing::warn!(file = %path.display(), "SSL_CERT_DIR file has a broken pem block; skipping the rest of it");
                break;
            };
            if !seen.insert(der.as_ref().to_vec()) {
                continue;
            }
            match reqwest::Certificate::from_der(der.as_ref()) {
                Ok(c) => {
                    out.push(c);
                    added = added.saturating_add(1);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "SSL_CERT_DIR certificate not usable; skipping it")
                }
            }
        }
        tracing::debug!(file = %path.display(), certificates = added, "SSL_CERT_DIR file read");
    }
    if seen.is_empty() {
        tracing::warn!(dir = %dir.display(), "SSL_CERT_DIR holds no pem certificate");
    }
    Ok(out)
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

/// `localhost` and `*.localhost` resolve to loopback without asking DNS (RFC 6761 §6.3),
/// `invalid` and `*.invalid` never resolve (§6.4); every other name goes through the system
/// resolver. Failures are [`ResolveError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackResolver;

/// A host name that could not be resolved. `not_found` when the resolver answered that the
/// name does not exist (NXDOMAIN, or no address): retrying cannot help, unlike a resolver
/// that is unreachable or timed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub struct ResolveError {
    /// The name.
    pub host: String,
    /// The name does not exist.
    pub not_found: bool,
    /// The resolver's words.
    pub reason: String,
}

impl ResolveError {
    /// Classifies a failed system lookup. The standard library reports `getaddrinfo`
    /// failures only as text (`gai_strerror`), so the "no such name" answers of glibc and
    /// musl are recognised by their wording; anything else stays transient.
    pub fn from_lookup(host: &str, e: &std::io::Error) -> Self {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let not_found = [
            "name or service not known",           // glibc EAI_NONAME (NXDOMAIN)
            "no address associated with hostname", // glibc EAI_NODATA
            "name does not resolve",               // musl EAI_NONAME
            "nodename nor servname provided",      // BSD/macOS EAI_NONAME
        ]
        .iter()
        .any(|m| lower.contains(m));
        Self {
            host: host.to_owned(),
            not_found,
            reason: text,
        }
    }
}

/// Whether `host` is `invalid` or a name under it (RFC 6761 §6.4).
pub fn is_invalid_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "invalid" || h.ends_with(".invalid")
}

/// The host of `e`'s failed lookup, when the resolver said the name does not exist.
pub fn unresolvable_host(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<ResolveError>() {
            return r.not_found.then(|| r.host.clone());
        }
        cur = err.source();
    }
    None
}

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
            if is_invalid_name(&host) {
                return Err(Box::new(ResolveError {
                    reason: "names under .invalid never resolve (rfc 6761)".into(),
                    host,
                    not_found: true,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(a) => a.collect(),
                Err(e) => {
                    return Err(Box::new(ResolveError::from_lookup(&host, &e))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            };
            if addrs.is_empty() {
                return Err(Box::new(ResolveError {
                    host,
                    not_found: true,
                    reason: "no address".into(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
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
    } else if unresolvable_host(e).is_some() {
        "name does not resolve"
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

    fn self_signed(cn: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![cn.to_owned()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    // reference: issue 11 item 8 (SSL_CERT_DIR: every pem certificate, duplicates once,
    // other entries skipped, bounded)
    #[test]
    fn ssl_cert_dirs_read_their_certificates_once_and_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (a, b) = (self_signed("a.example"), self_signed("b.example"));
        std::fs::write(dir.join("a.pem"), &a).unwrap();
        std::fs::write(dir.join("bundle.crt"), format!("{a}{b}")).unwrap();
        std::os::unix::fs::symlink("a.pem", dir.join("0a1b2c3d.0")).unwrap();
        std::fs::write(dir.join("list.r0"), "-----BEGIN X509 CRL-----\n").unwrap();
        std::fs::write(dir.join("README"), "not a certificate").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(read_ca_dir(dir).unwrap().len(), 2, "a and b, once each");
        let opts = HttpOptions {
            ca_dirs: vec![dir.to_owned()],
            ..HttpOptions::new(vec![], Duration::from_secs(5))
        };
        build(&opts).unwrap();

        let e = read_ca_dir(&dir.join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("SSL_CERT_DIR \""), "{e}");
        let many = tmp.path().join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..=MAX_CA_DIR_ENTRIES {
            std::fs::write(many.join(format!("{i}")), "").unwrap();
        }
        let e = read_ca_dir(&many).unwrap_err();
        assert!(e.to_string().contains("more than 4096 entries"), "{e}");
    }

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
        let opts = HttpOptions::new(vec![missing.clone()], Duration::from_secs(5));
        let e = build(&opts).unwrap_err().to_string();
        assert!(e.contains("missing-ca.pem"), "{e}");

        let junk = dir.path().join("junk-ca.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = build(&HttpOptions::new(vec![junk], Duration::from_secs(5)))
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
        build(&HttpOptions::new(vec![path], Duration::from_secs(5))).unwrap();
    }

    // reference: issue 9 item 9 (rfc 6761 §6.4: `.invalid` never resolves)
    #[tokio::test]
    async fn invalid_names_fail_at_once_as_not_found() {
        let e = LoopbackResolver
            .resolve(Name::from_str("nosuch.vault.invalid").unwrap())
            .await
            .err()
            .expect("must not resolve");
        assert_eq!(
            unresolvable_host(&*e).as_deref(),
            Some("nosuch.vault.invalid")
        );
    }

    #[test]
    fn lookup_failures_are_classified_by_the_resolver_wording() {
        let io =
            |m: &str| std::io::Error::other(format!("failed to lookup address information: {m}"));
        for nx in [
            "Name or service not known",
            "No address associated with hostname",
            "Name does not resolve",
        ] {
            assert!(ResolveError::from_lookup("h", &io(nx)).not_found, "{nx}");
        }
        for transient in ["Temporary failure in name resolution", "Try again"] {
            assert!(!ResolveError::from_lookup("h", &io(transient)).not_found);
        }
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("1048576"), Ok(1024 * 1024));
        assert_eq!(parse_size(" 1 GiB "), Ok(1024 * 1024 * 1024));
        for bad in [
            "",
            "MiB",
            "4TiB",
            "12",
            "2GiB",
            "99999999999999999999",
            "-1",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(4 * 1024 * 1024), "4 MiB (4194304 bytes)");
        assert_eq!(format_size(1000), "1000 bytes");
    }

    /// `GET http://ADDR/` on the direct (proxy-less) client.
    async fn get_root(http: &HttpClients, addr: std::net::SocketAddr) -> reqwest::Response {
        http.direct
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
    }

    /// A plain-HTTP server on loopback that answers one request with `head` and then body
    /// chunks from a generator (endless when it never returns `None`), `pace` apart; returns
    /// its address and the number of body bytes it managed to hand to the socket.
    async fn body_server(
        head: &'static str,
        pace: Duration,
        mut next: impl FnMut(usize) -> Option<Vec<u8>> + Send + 'static,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            if tcp.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut i = 0;
            while let Some(chunk) = next(i) {
                i += 1;
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                if tcp.write_all(&chunk).await.is_err() {
                    return;
                }
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        (addr, sent)
    }

    // reference: issue 9 item 2 (never `resp.bytes()` then check)
    #[tokio::test]
    async fn an_endless_chunked_body_stops_at_the_limit() {
        let (addr, sent) = body_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            Duration::ZERO,
            |_| {
                let data = vec![b'a'; 16 * 1024];
                let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
                chunk.extend_from_slice(&data);
                chunk.extend_from_slice(b"\r\n");
                Some(chunk)
            },
        )
        .await;
        let http = build(&HttpOptions::new(vec![], Duration::from_secs(30))).unwrap();
        let resp = get_root(&http, addr).await;
        let limit = 256 * 1024;
        let e = read_body(resp, limit).await.unwrap_err();
        assert!(
            matches!(e, BodyError::TooLarge { limit: l } if l == limit),
            "{e}"
        );
        assert!(e.to_string().contains("256 KiB"), "{e}");
        // The server could push what the socket buffers hold past the limit, not more.
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < limit + 16 * 1024 * 1024, "{sent}");
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_refused_before_reading() {
        let (addr, sent) = body_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n",
            Duration::ZERO,
            |i| (i < 6400).then(|| vec![b'x'; 16 * 1024]),
        )
        .await;
        let http = build(&HttpOptions::new(vec![], Duration::from_secs(30))).unwrap();
        let resp = get_root(&http, addr).await;
        let e = read_body(resp, DEFAULT_MAX_RESPONSE_SIZE)
            .await
            .unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { .. }), "{e}");
        assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < 100 * 1024 * 1024);
        // Within the limit: the whole body.
        let (addr, _) = body_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            Duration::ZERO,
            |i| (i == 0).then(|| b"hello".to_vec()),
        )
        .await;
        let resp = get_root(&http, addr).await;
        assert_eq!(read_body(resp, 5).await.unwrap(), b"hello");
    }

    // reference: issue 9 item 2 ("response time bounded")
    #[tokio::test(start_paused = true)]
    async fn a_slow_drip_body_cannot_outlast_the_request_timeout() {
        // One byte a second, forever (on the paused clock, so no real waiting).
        let (addr, sent) = body_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            Duration::from_secs(1),
            |_| Some(b"1\r\nx\r\n".to_vec()),
        )
        .await;
        let http = build(&HttpOptions::new(vec![], Duration::from_secs(20))).unwrap();
        let started = tokio::time::Instant::now();
        let resp = get_root(&http, addr).await;
        let e = read_body(resp, DEFAULT_MAX_RESPONSE_SIZE)
            .await
            .unwrap_err();
        match &e {
            BodyError::Transport(t) => assert!(t.is_timeout(), "{e}"),
            other => panic!("{other}"),
        }
        assert!(
            started.elapsed() <= Duration::from_secs(21),
            "{:?}",
            started.elapsed()
        );
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent <= 21 * 6, "{sent}");
    }
}
