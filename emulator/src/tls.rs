//! The emulator's private CA and HTTPS server certificate: generated into the state dir on first
//! start and reused afterwards, so clients can pin `ca.pem` across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// CA and server certificate material loaded from (or written to) the state dir.
pub struct TlsMaterial {
    /// PEM of the CA certificate clients must trust.
    pub ca_pem: String,
    /// PEM of the CA private key (used to sign seeded `issuer: ca` certificates).
    pub ca_key_pem: String,
    /// Path of `ca.pem`.
    pub ca_file: PathBuf,
    /// rustls configuration for the HTTPS listener (h2 and http/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Writes a file readable only by its owner (keys).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(data).map_err(|e| Error::io(path, e))
}

fn write_public(path: &Path, data: &[u8]) -> Result<(), Error> {
    std::fs::write(path, data).map_err(|e| Error::io(path, e))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// From a day ago (clock skew) to `days` ahead; checked arithmetic, so a broken clock is an
/// error rather than a panic.
fn validity(days: i64) -> Result<(time::OffsetDateTime, time::OffsetDateTime), Error> {
    let now = time::OffsetDateTime::now_utc();
    let range = now
        .checked_sub(time::Duration::days(1))
        .zip(now.checked_add(time::Duration::days(days)));
    range.ok_or_else(|| Error::State(format!("the clock ({now}) leaves no {days}-day validity")))
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::State(format!("{what}: {e}"))
}

/// The names the server certificate covers: fixed loopback names plus each extra hostname and
/// its `*.vault.` wildcard.
pub(crate) fn server_names(hostnames: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "*.vault.localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for h in hostnames {
        for n in [h.clone(), format!("*.vault.{h}")] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

/// Loads the CA from `dir` or creates it, then loads or (re)issues the server certificate for
/// `hostnames` (re-issued only when the name list changed).
pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<TlsMaterial, Error> {
    let ca_file = dir.join("ca.pem");
    let ca_key_file = dir.join("ca-key.pem");
    let (ca_pem, ca_key_pem) = if ca_file.exists() && ca_key_file.exists() {
        (read(&ca_file)?, read(&ca_key_file)?)
    } else {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(rcgen_err("generating ca key"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(rcgen_err("ca parameters"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keyvault-emulator local CA");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "keyvault-emulator");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(3650)?;
        let cert = params.self_signed(&key).map_err(rcgen_err("signing ca"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        write_private(&ca_key_file, key_pem.as_bytes())?;
        write_public(&ca_file, cert_pem.as_bytes())?;
        // A new CA invalidates any server certificate left from an older one.
        let _ = std::fs::remove_file(dir.join("server.pem"));
        (cert_pem, key_pem)
    };

    let names = server_names(hostnames);
    let names_file = dir.join("server-names.txt");
    let server_file = dir.join("server.pem");
    let server_key_file = dir.join("server-key.pem");
    let wanted = names.join("\n");
    let reuse = server_file.exists()
        && server_key_file.exists()
        && std::fs::read_to_string(&names_file).ok().as_deref() == Some(wanted.as_str());
    let (server_pem, server_key_pem) = if reuse {
        (read(&server_file)?, read(&server_key_file)?)
    } else {
        let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(rcgen_err("loading ca key"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(rcgen_err("loading ca certificate"))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(rcgen_err("generating server key"))?;
        let mut params =
            rcgen::CertificateParams::new(names.clone()).map_err(rcgen_err("server names"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        (params.not_before, params.not_after) = validity(825)?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(rcgen_err("signing server certificate"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        write_private(&server_key_file, key_pem.as_bytes())?;
        write_public(&server_file, cert_pem.as_bytes())?;
        write_public(&names_file, wanted.as_bytes())?;
        (cert_pem, key_pem)
    };

    let chain = vec![
        CertificateDer::from_pem_slice(server_pem.as_bytes())
            .map_err(|e| Error::State(format!("server.pem: {e}")))?,
        CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| Error::State(format!("ca.pem: {e}")))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes())
        .map_err(|e| Error::State(format!("server-key.pem: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::State(format!("tls versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::State(format!("tls server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem,
        ca_key_pem,
        ca_file,
        server_config: Arc::new(config),
    })
}
