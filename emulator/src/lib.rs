//! A local stand-in for Azure Key Vault, Entra ID, a cluster OIDC issuer and IMDS, over TLS with
//! its own CA, for tests and development.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyvault_emulator::Error> {
//! let emu = keyvault_emulator::Emulator::builder()
//!     .seed_yaml("vaults: [{name: demo, secrets: [{name: a, value: b}]}]\nidentities: [{name: app, client_id: 11111111-1111-1111-1111-111111111111, client_secret: s}]")
//!     .start()
//!     .await?;
//! println!("{}", emu.vault_url("demo"));
//! # Ok(()) }
//! ```
//!
//! # The public API
//!
//! Everything else is `pub(crate)` (`unreachable_pub` is denied, so a new `pub` item must be
//! part of this list or be crate-private):
//!
//! - [`Emulator`] (a running emulator: URLs, CA, minting service-account tokens, adding
//!   objects, faults, counters, throttling, the vault tenant) and its [`EmulatorBuilder`];
//!   [`Error`] for start-up failures.
//! - The seed: [`Seed`] (parsed from YAML with [`Seed::from_yaml`]) and [`SeedError`].
//! - Faults and counters: [`Fault`], [`FaultKind`], [`Route`], [`RequestKind`], [`Counts`].
//! - Throttling: [`ThrottleConfig`], [`Limits`], [`Family`].
//! - A vault in another tenant: [`GuestTenant`].
//! - Building blocks the command line and tests use without a running server:
//!   [`material`] (certificates and keys), [`jwt`] (signing keys), [`issuer`] (minting
//!   service-account tokens), [`tls`] (the state dir's CA and server certificate).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]

mod admin;
mod auth;
mod entra;
mod faults;
mod imds;
mod inject;
pub mod issuer;
pub mod jwt;
mod keyvault;
pub mod material;
mod pfx;
mod routes;
mod seed;
mod server;
mod state;
mod store;
mod throttle;
pub mod tls;
mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Counts, Fault, FaultKind};
pub use routes::{RequestKind, Route};
pub use seed::{Seed, SeedError};
pub use state::GuestTenant;
pub use throttle::{Family, Limits, ThrottleConfig};

use state::{Shared, lock};

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The seed is invalid.
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    /// The state dir holds unusable material, or generating it failed.
    #[error("state: {0}")]
    State(String),
    /// A listener could not be bound.
    #[error("binding {addr}: {source} (is another emulator already listening there?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration is not acceptable.
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

enum SeedSource {
    None,
    Yaml(String),
    File(PathBuf),
    Seed(Box<Seed>),
}

/// Configures and starts an [`Emulator`].
pub struct EmulatorBuilder {
    seed: SeedSource,
    state_dir: Option<PathBuf>,
    addr: SocketAddr,
    imds_addr: SocketAddr,
    hostnames: Vec<String>,
    token_ttl: Duration,
    next_link_api_version: Option<String>,
    allow_non_loopback: bool,
    throttle: Option<ThrottleConfig>,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            seed: SeedSource::None,
            state_dir: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            imds_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostnames: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            next_link_api_version: None,
            allow_non_loopback: false,
            throttle: None,
        }
    }
}

impl EmulatorBuilder {
    /// Seeds from YAML text.
    pub fn seed_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.seed = SeedSource::Yaml(yaml.into());
        self
    }

    /// Seeds from a YAML file.
    pub fn seed_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.seed = SeedSource::File(path.into());
        self
    }

    /// Seeds from a parsed [`Seed`].
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = SeedSource::Seed(Box::new(seed));
        self
    }

    /// Where the CA, server certificate and signing keys live (default: an owned temp dir).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// HTTPS listen address (default `127.0.0.1:0`).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Plain-HTTP IMDS listen address (default `127.0.0.1:0`).
    pub fn imds_addr(mut self, addr: SocketAddr) -> Self {
        self.imds_addr = addr;
        self
    }

    /// Adds a name (and `*.vault.<name>`) to the server certificate.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostnames.push(name.into());
        self
    }

    /// Lifetime of issued Entra/IMDS access tokens (default 1 h).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Writes this `api-version` into every `nextLink` (as the real service sometimes does with
    /// `7.2`), instead of echoing the request's.
    pub fn next_link_api_version(mut self, v: impl Into<String>) -> Self {
        self.next_link_api_version = Some(v.into());
        self
    }

    /// Allows binding non-loopback addresses (off by default; for containers only).
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
        self
    }

    /// Throttling (see [`ThrottleConfig`], [`Limits::key_vault`]); wins over the seed's `throttle:`. Without either,
    /// the in-process emulator does not throttle (`keyvault-emulator serve` does).
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.throttle = Some(config);
        self
    }

    /// Generates or loads the state, seeds the store, binds both listeners and starts serving.
    pub async fn start(self) -> Result<Emulator, Error> {
        server::check_loopback(self.addr, self.allow_non_loopback)?;
        server::check_loopback(self.imds_addr, self.allow_non_loopback)?;
        let seed = match self.seed {
            SeedSource::None => Seed::default(),
            SeedSource::Yaml(y) => Seed::from_yaml(&y)?,
            SeedSource::File(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                Seed::from_yaml(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?
            }
            SeedSource::Seed(s) => *s,
        };
        let throttle = match self.throttle {
            Some(t) => t,
            None => match &seed.throttle {
                Some(t) => t
                    .parse()
                    .map_err(|e: String| Error::Config(format!("seed: {e}")))?,
                None => ThrottleConfig::Off,
            },
        };
        let (state_dir, temp) = match self.state_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("keyvault-emulator-")
                    .tempdir()
                    .map_err(|e| Error::io(Path::new("temp dir"), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&state_dir).map_err(|e| Error::io(&state_dir, e))?;
        // Absolute, so the printed `ca_file` works from any working directory.
        let state_dir = std::fs::canonicalize(&state_dir).map_err(|e| Error::io(&state_dir, e))?;

        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        let imds_listener =
            TcpListener::bind(self.imds_addr)
                .await
                .map_err(|source| Error::Bind {
                    addr: self.imds_addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        let imds_addr = imds_listener.local_addr().map_err(|source| Error::Bind {
            addr: self.imds_addr,
            source,
        })?;

        // Key generation and PBKDF are CPU-bound: run them on blocking threads, in parallel.
        let dir = state_dir.clone();
        let hostnames = self.hostnames.clone();
        let throwaway = temp.is_some();
        let material = tokio::task::spawn_blocking(move || {
            std::thread::scope(|sc| {
                // Owned temp dirs share one pair of signing keys per process: RSA generation is
                // the bulk of start-up time and tests start many emulators.
                if throwaway {
                    for (slot, f) in ["issuer-key.pem", "entra-key.pem"].iter().enumerate() {
                        let _ = jwt::SigningKey::seed_from_process_cache(&dir.join(f), slot);
                    }
                }
                let issuer =
                    sc.spawn(|| jwt::SigningKey::load_or_create(&dir.join("issuer-key.pem")));
                let entra =
                    sc.spawn(|| jwt::SigningKey::load_or_create(&dir.join("entra-key.pem")));
                let tls = tls::load_or_create(&dir, &hostnames);
                let store = tls
                    .as_ref()
                    .ok()
                    .map(|t| seed::build_store(&seed, Some((&t.ca_pem, &t.ca_key_pem))));
                let join =
                    |h: std::thread::ScopedJoinHandle<'_, Result<jwt::SigningKey, Error>>| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::State("key generation panicked".into())))
                    };
                let issuer = join(issuer);
                let entra = join(entra);
                (seed, tls, store, issuer, entra)
            })
        })
        .await
        .map_err(|e| Error::State(format!("startup task: {e}")))?;
        let (seed, tls, store, issuer_key, entra_key) = material;
        let tls = tls?;
        let store = store.expect("store is built when tls loads")?;
        let issuer_key = issuer_key?;
        let entra_key = entra_key?;

        let authority = format!("https://localhost:{}/", addr.port());
        let issuer = format!("https://localhost:{}/issuer", addr.port());
        // The token CLI reads this to stamp the right `iss` without a running server.
        let _ = std::fs::write(state_dir.join("issuer-url"), &issuer);
        let shared = Arc::new(Shared {
            tenant_id: seed.tenant_id.clone(),
            addr,
            imds_addr,
            authority,
            issuer,
            issuer_key,
            entra_key,
            token_ttl: self.token_ttl,
            next_link_api_version: self.next_link_api_version,
            store: Mutex::new(store),
            identities: Mutex::new(seed.identities.clone()),
            faults: Mutex::new(Default::default()),
            counts: Mutex::new(Default::default()),
            throttle: Mutex::new(throttle::Throttle::new(throttle)),
            guest: Mutex::new(None),
        });

        let https_app = axum::Router::new()
            .merge(admin::routes())
            .merge(issuer::routes())
            .merge(entra::routes())
            .merge(imds::routes())
            .fallback(keyvault::handle)
            .with_state(shared.clone());
        let imds_app = imds::routes()
            .fallback(|| async {
                imds::error(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "Only /metadata/identity/oauth2/token is served on this listener.",
                )
            })
            .with_state(shared.clone());

        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::serve(
                listener,
                Some(tls.server_config.clone()),
                https_app,
                shared.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(server::serve(
                imds_listener,
                None,
                imds_app,
                shared.clone(),
                stop_rx,
            )),
        ];
        tracing::info!(%addr, %imds_addr, state_dir = %state_dir.display(), "keyvault emulator listening");
        Ok(Emulator {
            shared,
            ca_pem: tls.ca_pem,
            ca_file: tls.ca_file,
            state_dir,
            stop: stop_tx,
            tasks,
            _temp: temp,
        })
    }
}

/// A running emulator. Stops when dropped or on [`Emulator::shutdown`].
pub struct Emulator {
    shared: Arc<Shared>,
    ca_pem: String,
    ca_file: PathBuf,
    state_dir: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.shared.addr)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn parse_url(s: &str) -> url::Url {
    url::Url::parse(s).expect("emulator URLs are well-formed")
}

impl Emulator {
    /// Starts configuring an emulator.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// `https://<vault>.vault.localhost:<port>/`.
    pub fn vault_url(&self, vault: &str) -> url::Url {
        parse_url(&format!(
            "https://{vault}.vault.localhost:{}/",
            self.shared.addr.port()
        ))
    }

    /// Names of the seeded vaults, in seed order.
    pub fn vaults(&self) -> Vec<String> {
        lock(&self.shared.store).vault_names()
    }

    /// `https://localhost:<port>/` (Entra authority host).
    pub fn authority_host(&self) -> url::Url {
        parse_url(&self.shared.authority)
    }

    /// `http://127.0.0.1:<imds port>` (plain-HTTP IMDS base).
    pub fn imds_endpoint(&self) -> url::Url {
        parse_url(&format!("http://{}", self.shared.imds_addr))
    }

    /// `https://localhost:<port>/issuer` (cluster OIDC issuer).
    pub fn issuer(&self) -> url::Url {
        parse_url(&self.shared.issuer)
    }

    /// `https://localhost:<port>/admin`.
    pub fn admin_url(&self) -> url::Url {
        parse_url(&format!("{}admin", self.shared.authority))
    }

    /// PEM of the CA that issued the server certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Path of `ca.pem` in the state dir.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }

    /// The HTTPS listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The plain-HTTP IMDS listener's address.
    pub fn imds_addr(&self) -> SocketAddr {
        self.shared.imds_addr
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> String {
        self.shared.tenant_id.clone()
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// Mints a projected-style service-account JWT (`sub` = `system:serviceaccount:NS:SA`).
    pub fn mint_token(&self, sub: &str, aud: &str, ttl: Duration) -> String {
        issuer::mint(&self.shared.issuer_key, &self.shared.issuer, sub, aud, ttl)
    }

    /// Mints a service-account JWT whose `exp` is in the past.
    pub fn mint_expired_token(&self, sub: &str, aud: &str) -> String {
        issuer::mint_expired(&self.shared.issuer_key, &self.shared.issuer, sub, aud)
    }

    /// Adds a secret version and returns its 32-hex version id.
    ///
    /// # Panics
    /// If the vault is not seeded or the name is soft-deleted (test misuse).
    pub fn set_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        content_type: Option<&str>,
    ) -> String {
        let mut st = lock(&self.shared.store);
        let v = st
            .vault_mut(vault)
            .unwrap_or_else(|e| panic!("set_secret: {e}"));
        v.set_secret(
            name,
            value.to_string(),
            content_type.map(str::to_string),
            store::Attributes::new_now(),
            Default::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("set_secret {vault}/{name}: {e}"))
        .version
    }

    /// Adds a secret version whose `created` and `updated` are `at` (Unix seconds) instead of
    /// now, e.g. the second of the previous version: two edits within one second, which a
    /// collection list cannot tell apart. Returns the version.
    ///
    /// # Panics
    /// If the vault is not seeded or the name is soft-deleted (test misuse).
    pub fn set_secret_at(&self, vault: &str, name: &str, value: &str, at: i64) -> String {
        let mut st = lock(&self.shared.store);
        let v = st
            .vault_mut(vault)
            .unwrap_or_else(|e| panic!("set_secret_at: {e}"));
        let attrs = store::Attributes {
            created: at,
            updated: at,
            ..store::Attributes::new_now()
        };
        v.set_secret(
            name,
            value.to_string(),
            None,
            attrs,
            Default::default(),
            None,
        )
        .unwrap_or_else(|e| panic!("set_secret_at {vault}/{name}: {e}"))
        .version
    }

    /// Enables or disables one secret version.
    ///
    /// # Panics
    /// If the secret version does not exist (test misuse).
    pub fn set_secret_enabled(&self, vault: &str, name: &str, version: &str, enabled: bool) {
        let mut st = lock(&self.shared.store);
        let sv = st
            .vault_mut(vault)
            .ok()
            .and_then(|v| v.secret_mut(name, Some(version)))
            .unwrap_or_else(|| panic!("set_secret_enabled: no secret {vault}/{name}/{version}"));
        sv.attrs.enabled = enabled;
        sv.attrs.updated = util::now();
    }

    /// Soft-deletes a secret (all versions); false if it did not exist.
    pub fn delete_secret(&self, vault: &str, name: &str) -> bool {
        let mut st = lock(&self.shared.store);
        st.vault_mut(vault)
            .map(|v| v.delete_secret(name).is_ok())
            .unwrap_or(false)
    }

    /// Adds a certificate version from PEM (private key + chain; the certificate matching the
    /// key is taken as the leaf, a key matching none is an error); its backing secret
    /// has `content_type` (`application/x-pkcs12` or `application/x-pem-file`). Returns the
    /// 32-hex version shared by the certificate, key and secret.
    pub fn add_certificate_pem(
        &self,
        vault: &str,
        name: &str,
        pem: &str,
        content_type: &str,
    ) -> Result<String, Error> {
        let material = material::CertMaterial::from_pem(pem)
            .map_err(|e| Error::Config(format!("certificate {vault}/{name}: {e}")))?;
        self.add_certificate(vault, name, material, content_type, "Unknown")
    }

    /// Generates a self-signed EC P-256 certificate for `subject` (e.g. `CN=web`) valid for
    /// `validity_days` and adds it as a new version. Returns the version.
    pub fn generate_certificate(
        &self,
        vault: &str,
        name: &str,
        subject: &str,
        validity_days: u32,
        content_type: &str,
    ) -> Result<String, Error> {
        let spec = material::GenerateSpec {
            subject: subject.to_string(),
            dns_names: Vec::new(),
            validity_days,
            valid_from_days: 0,
            rsa_bits: None,
            curve: material::Curve::P256,
        };
        let material = material::generate_certificate(&spec, None)
            .map_err(|e| Error::Config(format!("certificate {vault}/{name}: {e}")))?;
        self.add_certificate(vault, name, material, content_type, "Self")
    }

    fn add_certificate(
        &self,
        vault: &str,
        name: &str,
        material: material::CertMaterial,
        content_type: &str,
        issuer_name: &str,
    ) -> Result<String, Error> {
        if content_type != store::PKCS12 && content_type != store::PEM {
            return Err(Error::Config(format!(
                "certificate {vault}/{name}: content type must be {} or {}",
                store::PKCS12,
                store::PEM
            )));
        }
        let mut st = lock(&self.shared.store);
        let v = st
            .vault_mut(vault)
            .map_err(|e| Error::Config(e.to_string()))?;
        let c = v
            .add_certificate(
                name,
                store::NewCertificate {
                    material,
                    content_type: content_type.to_string(),
                    enabled: true,
                    tags: Default::default(),
                    issuer_name: issuer_name.to_string(),
                },
            )
            .map_err(|e| Error::Config(format!("certificate {vault}/{name}: {e}")))?;
        Ok(c.version)
    }

    /// Puts the vaults in another tenant (`None`: back in the home tenant): challenges name
    /// `tenant` at `authority` (default: the emulator's own), and only its tokens are
    /// accepted. Same as `PUT /admin/tenant`.
    pub fn set_vault_tenant(&self, guest: Option<GuestTenant>) {
        *lock(&self.shared.guest) = guest;
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, fault: Fault) {
        lock(&self.shared.faults).add(fault);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// A snapshot of the request counters.
    pub fn counts(&self) -> Counts {
        lock(&self.shared.counts).clone()
    }

    /// Replaces the throttling configuration (buckets start full).
    pub fn set_throttle(&self, config: ThrottleConfig) {
        lock(&self.shared.throttle).set_config(config);
    }

    /// The throttling configuration in effect.
    pub fn throttle_config(&self) -> ThrottleConfig {
        lock(&self.shared.throttle).config().clone()
    }

    /// Resets the request counters.
    pub fn reset_counts(&self) {
        *lock(&self.shared.counts) = Counts::default();
    }

    /// The one-line JSON document `serve` prints once listening.
    pub fn ready_line(&self) -> serde_json::Value {
        let vault_urls: serde_json::Map<String, serde_json::Value> = self
            .vaults()
            .into_iter()
            .map(|v| {
                let u = self.vault_url(&v).to_string();
                (v, serde_json::Value::String(u))
            })
            .collect();
        let first = self
            .vaults()
            .first()
            .map(|v| self.vault_url(v).to_string())
            .unwrap_or_default();
        serde_json::json!({
            "vault_url": first,
            "vault_urls": vault_urls,
            "authority_host": self.authority_host().to_string(),
            "imds_endpoint": format!("http://{}", self.shared.imds_addr),
            "issuer": self.shared.issuer,
            "ca_file": self.ca_file.display().to_string(),
            "tenant_id": self.shared.tenant_id,
            "admin_url": self.admin_url().to_string(),
            "addr": self.shared.addr.to_string(),
            "state_dir": self.state_dir.display().to_string(),
        })
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and waits for the listeners.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
