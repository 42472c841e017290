//! The Key Vault data-plane client: the only code that speaks HTTP to the vault.
//!
//! URLs and api-version, the 401 challenge and its resource check, paging, retries with
//! backoff and `Retry-After`, and mapping of error bodies into [`KeyVaultError`].
//!
//! Challenge flow (`docs/protocol.md` §2): the first request goes out without a token; the 401's
//! `WWW-Authenticate` names the resource, whose host must cover the vault host before any
//! token is requested for it (the SDKs' `verify_challenge_resource`). The scope is then
//! cached for the client's lifetime. A 401 to a token clears that token once and retries.
//! When the challenge's `authorization` names another tenant than the configured one, the
//! token is requested from that tenant (as the Azure SDKs do for a vault in another tenant),
//! but only at the configured authority host (Entra's aliases of one cloud count as one): a
//! challenge naming another host is an error naming both hosts, so no federated assertion or
//! client secret is ever sent to a host the vault names.
//! Every request holds a permit of one shared semaphore, which bounds concurrency.

pub mod challenge;
mod error;
pub mod list;
pub mod model;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

pub use error::KeyVaultError;

use crate::auth::{AccessToken, Credential};
use crate::config::ObjectType;
use crate::http::HttpClients;
use crate::metrics::{Metrics, Outcome};
use crate::retry::Backoff;
use model::{CertificateBundle, Fetched, KeyBundle, ListPage, SecretBundle, VersionItem};

/// Default api-version (`docs/protocol.md` §1.1).
pub const DEFAULT_API_VERSION: &str = "2025-07-01";

/// Tunables of a [`KeyVaultClient`].
#[derive(Debug, Clone)]
pub struct KeyVaultOptions {
    /// api-version query parameter.
    pub api_version: String,
    /// Maximum concurrent requests.
    pub concurrency: usize,
    /// Retry timing for 408/429/5xx/transport failures.
    pub backoff: Backoff,
}

impl Default for KeyVaultOptions {
    fn default() -> Self {
        Self {
            api_version: DEFAULT_API_VERSION.into(),
            concurrency: 16,
            backoff: Backoff::service_default(),
        }
    }
}

/// A client for one vault. Cheap to clone; clones share the scope, the limiter and counters.
#[derive(Debug, Clone)]
pub struct KeyVaultClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    vault_url: Url,
    vault_name: String,
    http: HttpClients,
    credential: Credential,
    metrics: Arc<Metrics>,
    opts: KeyVaultOptions,
    scope: RwLock<Option<String>>,
    /// Another tenant a challenge named (`None`: the configured tenant).
    tenant: RwLock<Option<String>>,
    /// Held while the challenge is discovered, so parallel first requests send one probe.
    probe: tokio::sync::Mutex<()>,
    limiter: Semaphore,
    requests: AtomicUsize,
}

fn segment(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Secret => "secrets",
        ObjectType::Key => "keys",
        ObjectType::Cert => "certificates",
    }
}

fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

impl KeyVaultClient {
    /// A client for the vault at `vault_url` (`https://<name>.<suffix>/`).
    pub fn new(
        vault_url: Url,
        http: HttpClients,
        credential: Credential,
        metrics: Arc<Metrics>,
        opts: KeyVaultOptions,
    ) -> Self {
        let mut vault_url = vault_url;
        if !vault_url.path().ends_with('/') {
            let p = format!("{}/", vault_url.path());
            vault_url.set_path(&p);
        }
        let vault_name = vault_url
            .host_str()
            .and_then(|h| h.split('.').next())
            .unwrap_or("vault")
            .to_owned();
        let permits = opts.concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                vault_url,
                vault_name,
                http,
                credential,
                metrics,
                limiter: Semaphore::new(permits),
                opts,
                scope: RwLock::new(None),
                tenant: RwLock::new(None),
                probe: tokio::sync::Mutex::new(()),
                requests: AtomicUsize::new(0),
            }),
        }
    }

    /// The vault base URL.
    pub fn vault_url(&self) -> &Url {
        &self.inner.vault_url
    }

    /// HTTP requests sent so far (including challenge probes and retries).
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The scope learned from the challenge, if any yet.
    pub fn scope(&self) -> Option<String> {
        self.inner
            .scope
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tenant tokens are requested from when a challenge named another than the
    /// configured one.
    pub fn tenant(&self) -> Option<String> {
        self.inner
            .tenant
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tenant a challenge's `authorization` asks for: `None` for the configured one (or
    /// managed identity, which has no choice), `Err` when it names another tenant at another
    /// authority host.
    fn challenge_tenant(&self, ch: &challenge::Challenge) -> Result<Option<String>, KeyVaultError> {
        let (Some(auth), Some((configured, home))) = (
            ch.authorization.as_deref(),
            self.inner.credential.authority(),
        ) else {
            return Ok(None);
        };
        let Some((host, tenant)) = challenge::named_tenant(auth, configured) else {
            return Ok(None);
        };
        // AD FS authorities have no tenants (the Python SDK does not pass one either).
        if tenant.eq_ignore_ascii_case(home) || tenant.to_ascii_lowercase().ends_with("adfs") {
            return Ok(None);
        }
        let configured_host = challenge::host_of(configured);
        if !challenge::same_authority(&host, &configured_host) {
            return Err(KeyVaultError::ChallengeAuthority {
                tenant,
                challenge_host: host,
                configured_host,
            });
        }
        Ok(Some(tenant))
    }

    fn object_url(&self, t: ObjectType, name: &str, tail: Option<&str>) -> Url {
        let mut url = self.inner.vault_url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .expect("vault url is a base url (https)");
            segs.pop_if_empty().push(segment(t)).push(name);
            // Latest is the trailing-slash form the SDKs send: `/secrets/{name}/`.
            segs.push(tail.unwrap_or(""));
        }
        url.query_pairs_mut()
            .append_pair("api-version", &self.inner.opts.api_version);
        url
    }

    /// GET one object; `version: None` is the latest.
    pub async fn get(
        &self,
        t: ObjectType,
        name: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<Fetched, KeyVaultError> {
        let url = self.object_url(t, name, version);
        let body = self.send(t, url, deadline).await?;
        let decode = |e: serde_json::Error| KeyVaultError::Decode {
            message: format!("{} response is not the documented json: {e}", t.as_str()),
        };
        Ok(match t {
            ObjectType::Secret => {
                Fetched::Secret(serde_json::from_slice::<SecretBundle>(&body).map_err(decode)?)
            }
            ObjectType::Key => {
                Fetched::Key(serde_json::from_slice::<KeyBundle>(&body).map_err(decode)?)
            }
            ObjectType::Cert => Fetched::Certificate(
                serde_json::from_slice::<CertificateBundle>(&body).map_err(decode)?,
            ),
        })
    }

    /// GET a secret.
    pub async fn get_secret(
        &self,
        name: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<SecretBundle, KeyVaultError> {
        match self
            .get(ObjectType::Secret, name, version, deadline)
            .await?
        {
            Fetched::Secret(s) => Ok(s),
            _ => unreachable!("secret get returns a secret"),
        }
    }

    /// GET a key.
    pub async fn get_key(
        &self,
        name: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<KeyBundle, KeyVaultError> {
        match self.get(ObjectType::Key, name, version, deadline).await? {
            Fetched::Key(k) => Ok(k),
            _ => unreachable!("key get returns a key"),
        }
    }

    /// GET a certificate.
    pub async fn get_certificate(
        &self,
        name: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<CertificateBundle, KeyVaultError> {
        match self.get(ObjectType::Cert, name, version, deadline).await? {
            Fetched::Certificate(c) => Ok(c),
            _ => unreachable!("certificate get returns a certificate"),
        }
    }

    /// Every version of an object (all pages).
    pub async fn list_versions(
        &self,
        t: ObjectType,
        name: &str,
        deadline: Instant,
    ) -> Result<Vec<VersionItem>, KeyVaultError> {
        let mut url = self.object_url(t, name, Some("versions"));
        url.query_pairs_mut().append_pair("maxresults", "25");
        let mut items = Vec::new();
        for _ in 0..10_000 {
            let body = self.send(t, url.clone(), deadline).await?;
            let page: ListPage<VersionItem> =
                serde_json::from_slice(&body).map_err(|e| KeyVaultError::Decode {
                    message: format!("version list is not the documented json: {e}"),
                })?;
            items.extend(page.value);
            match page.next_link.filter(|l| !l.trim().is_empty()) {
                None => return Ok(items),
                Some(link) => url = self.next_url(&link)?,
            }
        }
        Err(KeyVaultError::Decode {
            message: "version list has more than 10000 pages: giving up".into(),
        })
    }

    /// `/{secrets|keys|certificates}?api-version=..&maxresults=25`: the collection list
    /// (used by [`list`]).
    pub(crate) fn collection_url(&self, t: ObjectType) -> Url {
        let mut url = self.inner.vault_url.clone();
        url.path_segments_mut()
            .expect("vault url is a base url (https)")
            .pop_if_empty()
            .push(segment(t));
        url.query_pairs_mut()
            .append_pair("api-version", &self.inner.opts.api_version)
            .append_pair("maxresults", "25");
        url
    }

    /// One logical GET of a URL on this vault (a list page): the 2xx body.
    pub(crate) async fn get_body(
        &self,
        t: ObjectType,
        url: Url,
        deadline: Instant,
    ) -> Result<Vec<u8>, KeyVaultError> {
        self.send(t, url, deadline).await
    }

    /// A `nextLink` as given, with our api-version. It must stay on the vault (it will
    /// carry a token).
    pub(crate) fn next_url(&self, link: &str) -> Result<Url, KeyVaultError> {
        let next = Url::parse(link).map_err(|e| KeyVaultError::Decode {
            message: format!("nextLink is not an absolute url: {e}"),
        })?;
        let vault = &self.inner.vault_url;
        if next.scheme() != vault.scheme()
            || next.host_str().map(str::to_ascii_lowercase)
                != vault.host_str().map(str::to_ascii_lowercase)
            || next.port_or_known_default() != vault.port_or_known_default()
        {
            return Err(KeyVaultError::Unsafe(format!(
                "the vault's nextLink points to {}, not to the vault {}: refusing to follow it",
                host_port(&next),
                host_port(vault)
            )));
        }
        let pairs: Vec<(String, String)> = next
            .query_pairs()
            .filter(|(k, _)| k != "api-version")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut out = next.clone();
        {
            let mut q = out.query_pairs_mut();
            q.clear();
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
            q.append_pair("api-version", &self.inner.opts.api_version);
        }
        Ok(out)
    }

    fn record(&self, t: ObjectType, outcome: Outcome, started: Instant) {
        self.inner
            .metrics
            .kv_request(t.as_str(), outcome, started.elapsed());
    }

    /// One logical GET: challenge, token, retries. Returns the 2xx body.
    ///
    /// A loop over [`Step`]s: [`authorise`](Self::authorise) gets a token for the learned
    /// scope (none yet: this request is the challenge probe), [`attempt`](Self::attempt)
    /// sends once and sorts the answer, [`handle_challenge`](Self::handle_challenge) answers
    /// a 401, and a transient failure backs off under the shared retry policy before
    /// authorising again.
    async fn send(
        &self,
        t: ObjectType,
        url: Url,
        deadline: Instant,
    ) -> Result<Vec<u8>, KeyVaultError> {
        let mut retrier =
            self.inner
                .opts
                .backoff
                .start(deadline)
                .named(format!("{} {}", t.as_str(), url.path()));
        let mut rounds = challenge::Rounds::default();
        let mut step = Step::Authorise;
        loop {
            step = match step {
                Step::Authorise => Step::Attempt(self.authorise(&url, deadline).await?),
                Step::Attempt(auth) => self.attempt(t, &url, auth, deadline).await?,
                Step::Challenged { auth, header, body } => {
                    self.handle_challenge(&url, auth, header, &body, &mut rounds)
                        .await?
                }
                Step::Backoff {
                    err,
                    retry_after,
                    held,
                } => {
                    if retrier.wait(retry_after).await.is_err() {
                        return Err(err);
                    }
                    // A probe keeps its turn through its own backoff: parallel first
                    // requests still send one probe between them.
                    drop(held);
                    Step::Authorise
                }
                Step::Done(body) => return Ok(body),
            };
        }
    }

    /// The token for the learned scope and tenant; none before the challenge is learned,
    /// and then this request holds the probe lock until its answer is handled.
    async fn authorise(
        &self,
        url: &Url,
        deadline: Instant,
    ) -> Result<Authorised<'_>, KeyVaultError> {
        let inner = &*self.inner;
        let mut scope = self.scope();
        // Only the probe itself is serialised: whoever waited here and finds the scope
        // learned meanwhile goes ahead in parallel.
        let probe = if scope.is_none() {
            let g = inner.probe.lock().await;
            scope = self.scope();
            scope.is_none().then_some(g)
        } else {
            None
        };
        let tenant = self.tenant();
        let token: Option<AccessToken> = match &scope {
            Some(s) => Some(
                inner
                    .credential
                    .token_in(s, tenant.as_deref(), deadline)
                    .await?,
            ),
            None => None,
        };
        if token.is_some() && url.scheme() != "https" {
            return Err(KeyVaultError::Unsafe(format!(
                "refusing to send an access token over plain http to {}: use an https vault url",
                host_port(url)
            )));
        }
        Ok(Authorised {
            scope,
            tenant,
            token,
            _probe: probe,
        })
    }

    /// Sends the request once, within the deadline and the concurrency limit. A transport
    /// failure backs off (or fails, when it cannot get better); an answer is sorted by
    /// [`sort_answer`](Self::sort_answer).
    async fn attempt<'a>(
        &'a self,
        t: ObjectType,
        url: &Url,
        auth: Authorised<'a>,
        deadline: Instant,
    ) -> Result<Step<'a>, KeyVaultError> {
        let inner = &*self.inner;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KeyVaultError::Transient {
                status: None,
                message: "the deadline (--timeout) ran out".into(),
            });
        }
        let started: Instant;
        let mut req = inner
            .http
            .client
            .get(url.clone())
            .header("Accept", "application/json")
            .timeout(left.min(inner.http.request_timeout));
        if let Some(tok) = &auth.token {
            req = req.bearer_auth(tok.token.expose());
        }
        let queued = Instant::now();
        let answer = {
            let _permit = inner
                .limiter
                .acquire()
                .await
                .expect("the limiter is never closed");
            // The permit wait is queueing, not Key Vault's time: measured apart.
            inner.metrics.kv_queue_wait(queued.elapsed());
            inner.metrics.request_kind(request_kind(url));
            inner.requests.fetch_add(1, Ordering::Relaxed);
            started = Instant::now();
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    crate::http::read_body(resp, inner.http.limits.key_vault)
                        .await
                        .map(|b| (status, headers, b))
                }
                Err(e) => Err(crate::http::BodyError::Transport(e)),
            }
        };
        let (status, headers, body) = match answer {
            Ok(a) => a,
            Err(crate::http::BodyError::TooLarge { limit }) => {
                self.record(t, Outcome::Other, started);
                return Err(KeyVaultError::TooLarge { limit });
            }
            Err(crate::http::BodyError::Transport(e)) => {
                self.record(t, Outcome::Transient, started);
                if let Some(host) = crate::http::unresolvable_host(&e) {
                    return Err(KeyVaultError::HostNotFound { host });
                }
                let f = crate::http::describe(&e);
                if f.untrusted {
                    return Err(KeyVaultError::Tls {
                        message: format!("{}: {}", host_port(url), f.message),
                    });
                }
                let err = KeyVaultError::Transient {
                    status: None,
                    message: format!("{}: {}", host_port(url), f.message),
                };
                tracing::debug!(error = %err, "key vault request failed; retrying");
                return Ok(Step::Backoff {
                    err,
                    retry_after: None,
                    held: auth,
                });
            }
        };
        self.sort_answer(t, url, auth, started, status, &headers, body)
    }

    /// What an answer leads to: the 2xx body, the 401 to handle, a backoff for 408, 429 and
    /// 5xx (with the server's requested wait), or the typed refusal. Records the outcome.
    #[allow(clippy::too_many_arguments)]
    fn sort_answer<'a>(
        &'a self,
        t: ObjectType,
        url: &Url,
        auth: Authorised<'a>,
        started: Instant,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: Vec<u8>,
    ) -> Result<Step<'a>, KeyVaultError> {
        let code = status.as_u16();
        tracing::trace!(
            path = url.path(),
            status = code,
            authorized = auth.token.is_some(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "key vault response"
        );
        if status.is_success() {
            self.record(t, Outcome::Ok, started);
            return Ok(Step::Done(body));
        }
        if code == 401 {
            // The unauthenticated probe's 401 is the protocol, not a failure.
            if auth.token.is_some() {
                self.record(t, Outcome::Unauthorized, started);
            }
            let header = headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return Ok(Step::Challenged { auth, header, body });
        }
        if code == 408 || code == 429 || status.is_server_error() {
            let retry_after = crate::retry::requested_wait(headers, SystemTime::now());
            let err = if code == 429 {
                self.record(t, Outcome::Throttled, started);
                KeyVaultError::Throttled { retry_after }
            } else {
                self.record(t, Outcome::Transient, started);
                let (c, _, m) = error::parse_body(&body);
                KeyVaultError::Transient {
                    status: Some(code),
                    message: format!(
                        "{} answered {status}{}",
                        host_port(url),
                        if c.is_empty() {
                            String::new()
                        } else {
                            format!(" ({c}: {m})")
                        }
                    ),
                }
            };
            tracing::debug!(error = %err, retry_after = ?retry_after, "key vault asked to retry");
            return Ok(Step::Backoff {
                err,
                retry_after,
                held: auth,
            });
        }
        let err = error::classify(code, &body, t, &self.inner.vault_name);
        self.record(
            t,
            match err {
                KeyVaultError::NotFound { .. } | KeyVaultError::VaultNotFound { .. } => {
                    Outcome::NotFound
                }
                KeyVaultError::Disabled { .. } | KeyVaultError::Forbidden { .. } => {
                    Outcome::Forbidden
                }
                _ => Outcome::Other,
            },
            started,
        );
        Err(err)
    }

    /// A 401 (`docs/protocol.md` §2): checks the challenge's resource covers the vault and
    /// its tenant may be asked, learns a new scope or tenant (then authorises again), drops a
    /// rejected token once, or gives up. [`challenge::Rounds`] bounds the dance.
    async fn handle_challenge<'a>(
        &'a self,
        url: &Url,
        auth: Authorised<'a>,
        header: String,
        body: &[u8],
        rounds: &mut challenge::Rounds,
    ) -> Result<Step<'a>, KeyVaultError> {
        let inner = &*self.inner;
        let Some(ch) = challenge::parse(&header) else {
            return Err(KeyVaultError::Challenge { header });
        };
        let vault_host = url.host_str().unwrap_or("").to_owned();
        let resource_host = challenge::scope_host(&ch.scope).unwrap_or_default();
        if !challenge::host_matches(&vault_host, &resource_host) {
            return Err(KeyVaultError::ChallengeMismatch {
                vault_host,
                resource_host,
            });
        }
        let named = self.challenge_tenant(&ch)?;
        let changed = auth.scope.as_deref() != Some(ch.scope.as_str()) || auth.tenant != named;
        if changed {
            if auth.tenant != named
                && let Some(t) = &named
            {
                tracing::info!(tenant = %t, "the vault's challenge names another tenant: requesting its token from that tenant at the configured authority host");
            }
            *inner.scope.write().unwrap_or_else(|p| p.into_inner()) = Some(ch.scope);
            *inner.tenant.write().unwrap_or_else(|p| p.into_inner()) = named;
        }
        match rounds.reply(changed, auth.token.is_some()) {
            challenge::Reply::Learn => Ok(Step::Authorise),
            challenge::Reply::DropToken => {
                if let (Some(tok), Some(s)) = (&auth.token, &auth.scope) {
                    inner
                        .credential
                        .invalidate_in(s, auth.tenant.as_deref(), tok)
                        .await;
                }
                Ok(Step::Authorise)
            }
            challenge::Reply::GiveUp => {
                let (_, _, message) = error::parse_body(body);
                Err(KeyVaultError::Unauthorized {
                    message: if message.is_empty() {
                        "401".into()
                    } else {
                        message
                    },
                })
            }
        }
    }
}

/// What one request was authorised with (see [`KeyVaultClient::authorise`]).
struct Authorised<'a> {
    /// The learned scope; `None` while this request is the challenge probe.
    scope: Option<String>,
    /// Another tenant a challenge named, if any.
    tenant: Option<String>,
    /// The bearer token for `scope` (none for the probe).
    token: Option<AccessToken>,
    /// The probe lock, held by the probe until its answer is handled.
    _probe: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// Where one logical request stands; [`KeyVaultClient::send`] moves it on until `Done`.
enum Step<'a> {
    /// Get the token for the learned scope, or none (the probe).
    Authorise,
    /// Send once with what authorisation found.
    Attempt(Authorised<'a>),
    /// A 401 with its `WWW-Authenticate` value and body.
    Challenged {
        auth: Authorised<'a>,
        header: String,
        body: Vec<u8>,
    },
    /// A transient failure: wait as the retry policy and the server say, then authorise
    /// again; `err` is the answer once the policy is spent.
    Backoff {
        err: KeyVaultError,
        retry_after: Option<std::time::Duration>,
        held: Authorised<'a>,
    },
    /// The 2xx body.
    Done(Vec<u8>),
}

/// `list` for collection and version lists, `get` for object reads (metric label).
fn request_kind(url: &Url) -> &'static str {
    let path = url.path().trim_end_matches('/');
    let is_collection = ["/secrets", "/keys", "/certificates"]
        .iter()
        .any(|c| path.ends_with(c) && path.matches('/').count() == 1);
    if is_collection || path.ends_with("/versions") {
        "list"
    } else {
        "get"
    }
}

#[cfg(test)]
mod tests;
