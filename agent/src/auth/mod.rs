//! The pod's identity: workload identity, managed identity (IMDS) and client secret, behind
//! one [`Credential`] with a per-scope token cache. Nothing outside this module sees how a
//! token is obtained, and nothing logs one.
//!
//! We deliberately do not use the `azure_identity` crate: its workload identity credential
//! caches the federated token file for 600 s (a rotated file is not picked up, which ends in
//! AADSTS700024), and its managed identity credential hard-codes the IMDS address
//! (`docs/protocol.md` §6), so neither `KEYVAULT_AGENT_IMDS_ENDPOINT` nor the emulator could be
//! used. The three flows are small, well-specified form POSTs / GETs (`docs/protocol.md` §3, §4).

pub mod cache;
pub mod client_secret;
mod entra;
pub mod managed_identity;
pub mod workload_identity;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Identity;
use crate::http::HttpClients;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::secret::SecretString;

/// An Entra access token. `Debug` redacts it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer token. Never log it.
    pub token: SecretString,
    /// When it expires (tokio clock).
    pub expires_at: Instant,
    /// Its lifetime when issued.
    pub lifetime: Duration,
}

impl AccessToken {
    /// A token that expires `lifetime` from now (a server's absurd lifetime saturates).
    pub fn new(token: SecretString, lifetime: Duration) -> Self {
        Self {
            token,
            expires_at: crate::retry::deadline_in(lifetime),
            lifetime,
        }
    }
}

/// Why no token could be obtained. Messages say what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The identity settings are unusable.
    #[error("{mode}: {message}")]
    Config {
        /// Identity mode.
        mode: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The federated token file could not be used.
    #[error("{mode}: {message}")]
    TokenFile {
        /// Identity mode.
        mode: &'static str,
        /// What is wrong (names the file).
        message: String,
    },
    /// Entra or IMDS refused the identity (4xx other than 429): fix the configuration.
    #[error("{mode}: {message}")]
    Rejected {
        /// Identity mode.
        mode: &'static str,
        /// What to fix.
        message: String,
    },
    /// Throttled, 5xx, network failure or timeout: retrying later may work.
    #[error("{mode}: {message}")]
    Unavailable {
        /// Identity mode.
        mode: &'static str,
        /// What happened.
        message: String,
        /// Server-requested delay.
        retry_after: Option<Duration>,
    },
    /// An unexpected answer (not the documented JSON).
    #[error("{mode}: {message}")]
    Decode {
        /// Identity mode.
        mode: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl AuthError {
    /// Whether retrying later may succeed (429, 5xx, network, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Unavailable { .. })
    }

    /// Server-requested delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

enum Source {
    Workload(workload_identity::WorkloadIdentity),
    Managed(managed_identity::ManagedIdentity),
    Secret(client_secret::ClientSecret),
}

struct Inner {
    source: Source,
    http: HttpClients,
    metrics: Arc<Metrics>,
    cache: cache::TokenCache,
    backoff: Backoff,
}

/// Obtains and caches access tokens for the configured identity. Cheap to clone.
#[derive(Clone)]
pub struct Credential {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A credential for `identity`, using `http` for Entra and IMDS.
    pub fn new(
        identity: &Identity,
        http: HttpClients,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AuthError> {
        let source = match identity {
            Identity::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
                authority_host,
            } => Source::Workload(workload_identity::WorkloadIdentity::new(
                client_id,
                tenant_id,
                token_file,
                authority_host,
            )?),
            Identity::ManagedIdentity {
                client_id,
                endpoint,
            } => Source::Managed(managed_identity::ManagedIdentity::new(
                client_id.clone(),
                endpoint,
            )?),
            Identity::ClientSecret {
                client_id,
                tenant_id,
                secret,
                authority_host,
            } => Source::Secret(client_secret::ClientSecret::new(
                client_id,
                tenant_id,
                secret.clone(),
                authority_host,
            )?),
        };
        let backoff = match source {
            Source::Managed(_) => Backoff::imds_default(),
            _ => Backoff::service_default(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                http,
                metrics,
                cache: cache::TokenCache::default(),
                backoff,
            }),
        })
    }

    /// Replaces the retry timing (tests use short delays).
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("with_backoff must be called before the credential is shared")
        });
        Self {
            inner: Arc::new(Inner { backoff, ..inner }),
        }
    }

    /// The metrics label of this identity mode.
    pub fn mode(&self) -> &'static str {
        match self.inner.source {
            Source::Workload(_) => workload_identity::MODE,
            Source::Managed(_) => managed_identity::MODE,
            Source::Secret(_) => client_secret::MODE,
        }
    }

    /// A token for `scope` (e.g. `https://vault.azure.net/.default`), from the cache when it
    /// is not about to expire. Transient failures are retried until `deadline`.
    pub async fn token(&self, scope: &str, deadline: Instant) -> Result<AccessToken, AuthError> {
        self.token_in(scope, None, deadline).await
    }

    /// Like [`Credential::token`], from `tenant` (a vault's challenge named it) instead of
    /// the configured tenant, at the configured authority host. Managed identity has no
    /// tenant to choose (IMDS answers for its own), so it ignores `tenant`.
    pub async fn token_in(
        &self,
        scope: &str,
        tenant: Option<&str>,
        deadline: Instant,
    ) -> Result<AccessToken, AuthError> {
        self.inner
            .cache
            .get_or_refresh(&cache_key(scope, tenant), || {
                self.fetch_with_retries(scope, tenant, deadline)
            })
            .await
    }

    /// Forgets `rejected` so the next [`Credential::token`] asks for a new one.
    pub async fn invalidate(&self, scope: &str, rejected: &AccessToken) {
        self.invalidate_in(scope, None, rejected).await;
    }

    /// [`Credential::invalidate`] for a token of `tenant`.
    pub async fn invalidate_in(&self, scope: &str, tenant: Option<&str>, rejected: &AccessToken) {
        self.inner
            .cache
            .invalidate(&cache_key(scope, tenant), rejected)
            .await;
    }

    /// The Entra authority host and configured tenant; `None` for managed identity.
    pub fn authority(&self) -> Option<(&url::Url, &str)> {
        match &self.inner.source {
            Source::Workload(w) => Some(w.authority()),
            Source::Secret(s) => Some(s.authority()),
            Source::Managed(_) => None,
        }
    }

    async fn fetch_with_retries(
        &self,
        scope: &str,
        tenant: Option<&str>,
        deadline: Instant,
    ) -> Result<AccessToken, AuthError> {
        let mut retrier = self
            .inner
            .backoff
            .start(deadline)
            .named(format!("{} token", self.mode()));
        loop {
            let result = self.fetch_once(scope, tenant, deadline).await;
            self.inner
                .metrics
                .token_request(self.mode(), result.is_ok());
            match result {
                Ok(t) => return Ok(t),
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "token request failed; retrying");
                    if retrier.wait(e.retry_after()).await.is_err() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_once(
        &self,
        scope: &str,
        tenant: Option<&str>,
        deadline: Instant,
    ) -> Result<AccessToken, AuthError> {
        let timeout = request_timeout(&self.inner.http, deadline, self.mode())?;
        let http = &self.inner.http;
        let limit = http.limits.token;
        match &self.inner.source {
            Source::Workload(w) => w.fetch(&http.client, limit, scope, tenant, timeout).await,
            Source::Managed(m) => m.fetch(&http.direct, limit, scope, timeout).await,
            Source::Secret(s) => s.fetch(&http.client, limit, scope, tenant, timeout).await,
        }
    }
}

/// The token cache's key: the scope, and the tenant when it is not the configured one.
fn cache_key(scope: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("{scope} tenant={}", t.to_ascii_lowercase()),
        None => scope.to_owned(),
    }
}

/// The per-request timeout, shortened to what is left before `deadline`.
fn request_timeout(
    http: &HttpClients,
    deadline: Instant,
    mode: &'static str,
) -> Result<Duration, AuthError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(AuthError::Unavailable {
            mode,
            message: "deadline reached before a token could be obtained".into(),
            retry_after: None,
        });
    }
    Ok(left.min(http.request_timeout))
}

/// A transport failure as a one-line error: transient, except a rejected certificate.
pub(crate) fn transport_error(mode: &'static str, what: &str, e: &reqwest::Error) -> AuthError {
    if let Some(host) = crate::http::unresolvable_host(e) {
        // NXDOMAIN: a wrong authority host or cloud, not an outage.
        return AuthError::Config {
            mode,
            message: format!(
                "{what}: the host {host} does not exist (its name does not resolve): check the cloud (cloudName) and AZURE_AUTHORITY_HOST"
            ),
        };
    }
    let f = crate::http::describe(e);
    let message = format!("{what}: {}", f.message);
    if f.untrusted {
        AuthError::Config { mode, message }
    } else {
        AuthError::Unavailable {
            mode,
            message,
            retry_after: None,
        }
    }
}

/// Sends one token request (Entra or IMDS) and reads its whole answer: status, the server's
/// requested wait and the body, at most `limit` bytes of it (`--max-token-response-size`).
/// `sending` and `reading` name the step (and the endpoint) in an error.
pub(crate) async fn exchange(
    mode: &'static str,
    request: reqwest::RequestBuilder,
    limit: u64,
    sending: &str,
    reading: &str,
) -> Result<(reqwest::StatusCode, Option<Duration>, Vec<u8>), AuthError> {
    let resp = request
        .send()
        .await
        .map_err(|e| transport_error(mode, sending, &e))?;
    let status = resp.status();
    let retry_after = crate::retry::requested_wait(resp.headers(), std::time::SystemTime::now());
    let body = crate::http::read_body(resp, limit)
        .await
        .map_err(|e| match e {
            // A token answer this large is no token answer: permanent, not retried.
            crate::http::BodyError::TooLarge { .. } => AuthError::Decode {
                mode,
                message: format!("{reading}: {e} (--max-token-response-size)"),
            },
            crate::http::BodyError::Transport(t) => transport_error(mode, reading, &t),
        })?;
    Ok((status, retry_after, body))
}

/// `https://vault.azure.net/.default` → `https://vault.azure.net` (IMDS wants a resource).
pub fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: issue 9 item 9 (a name that does not resolve is configuration, not an outage)
    #[tokio::test]
    async fn an_authority_host_that_does_not_exist_is_a_config_error() {
        let http = crate::http::build(&crate::http::HttpOptions::new(
            vec![],
            Duration::from_secs(5),
        ))
        .unwrap();
        let identity = Identity::ClientSecret {
            client_id: "11111111-1111-1111-1111-111111111111".into(),
            tenant_id: "tenant".into(),
            secret: SecretString::new("s"),
            authority_host: "https://login.nosuch.invalid/".parse().unwrap(),
        };
        let cred = Credential::new(&identity, http, Metrics::new()).unwrap();
        let e = cred
            .token(
                "https://vault.azure.net/.default",
                crate::retry::deadline_in(Duration::from_secs(600)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::Config { .. }), "{e}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("login.nosuch.invalid"), "{e}");
    }
}
