//! Key Vault client tests against a tiny scripted HTTPS server (own CA, loopback, port 0):
//! the challenge and its host check, token retry on 401, paging, retries and deadlines.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;
use url::Url;

use super::*;
use crate::config::Identity;
use crate::http::HttpOptions;
use crate::secret::SecretString;

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub host: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub version: axum::http::Version,
}

/// Status, extra headers, body.
pub(crate) type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
pub(crate) struct Script {
    /// Resource in the challenge.
    pub resource: String,
    /// Answers to authorized GETs, in order; afterwards a default secret.
    pub answers: VecDeque<Answer>,
    pub seen: Vec<Seen>,
    pub token_requests: usize,
}

type Shared = Arc<Mutex<Script>>;

async fn handler(
    State(s): State<Shared>,
    version: axum::http::Version,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let mut st = s.lock().unwrap();
    if method == Method::POST && uri.path().ends_with("/oauth2/v2.0/token") {
        st.token_requests += 1;
        let n = st.token_requests;
        return (
            [("content-type", "application/json")],
            format!(r#"{{"token_type":"Bearer","expires_in":3600,"access_token":"tok-{n}"}}"#),
        )
            .into_response();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        // HTTP/2 carries it as :authority.
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let authorization = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    st.seen.push(Seen {
        host,
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorization: authorization.clone(),
        version,
    });
    let challenge = format!(
        r#"Bearer authorization="https://login.example/tenant", resource="{}""#,
        st.resource
    );
    if authorization.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge)],
            r#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#,
        )
            .into_response();
    }
    if let Some((status, hdrs, body)) = st.answers.pop_front() {
        let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
        for (k, v) in hdrs {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        if status == 401 {
            r.headers_mut()
                .insert("www-authenticate", challenge.parse().unwrap());
        }
        return r;
    }
    (
        [("content-type", "application/json")],
        r#"{"value":"s3cr3t","id":"https://x/secrets/db/0123456789abcdef0123456789abcdef","attributes":{"enabled":true}}"#,
    )
        .into_response()
}

pub(crate) struct Server {
    pub addr: SocketAddr,
    pub script: Shared,
    pub ca_file: tempfile::NamedTempFile,
}

impl Server {
    pub async fn start(resource: &str) -> Server {
        crate::http::install_crypto_provider();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![
            "localhost".into(),
            "*.vault.localhost".into(),
            "*.evil.localhost".into(),
            "vault.localhost".into(),
        ])
        .unwrap();
        let leaf = params.signed_by(&key, &issuer).unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        let cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut cfg = cfg;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let script: Shared = Arc::new(Mutex::new(Script {
            resource: resource.into(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        Server {
            addr,
            script,
            ca_file,
        }
    }

    pub fn url(&self, host: &str) -> Url {
        Url::parse(&format!("https://{host}:{}/", self.addr.port())).unwrap()
    }

    pub fn client(&self, vault_host: &str, backoff: Backoff) -> KeyVaultClient {
        let http = crate::http::build(&HttpOptions::new(
            vec![self.ca_file.path().to_owned()],
            Duration::from_secs(5),
        ))
        .unwrap();
        let identity = Identity::ClientSecret {
            client_id: "11111111-1111-1111-1111-111111111111".into(),
            tenant_id: "tenant".into(),
            secret: SecretString::new("dev-secret"),
            authority_host: self.url("localhost"),
        };
        let metrics = Metrics::new();
        let cred = Credential::new(&identity, http.clone(), metrics.clone()).unwrap();
        KeyVaultClient::new(
            self.url(vault_host),
            http,
            cred,
            metrics,
            KeyVaultOptions {
                backoff,
                ..Default::default()
            },
        )
    }

    pub fn push(&self, status: u16, headers: Vec<(&'static str, String)>, body: &str) {
        self.script
            .lock()
            .unwrap()
            .answers
            .push_back((status, headers, body.into()));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.script.lock().unwrap().token_requests
    }
}

fn fast() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_millis(20), 5).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

// reference: docs/protocol.md §2.1, §2.2
#[tokio::test]
async fn challenge_then_token_then_cached_scope() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let s = kv.get_secret("db", None, soon()).await.unwrap();
    assert_eq!(s.value.unwrap().expose(), "s3cr3t");
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].authorization.is_none(),
        "first request carries no token"
    );
    assert_eq!(
        seen[0].host,
        format!("demo.vault.localhost:{}", srv.addr.port())
    );
    assert_eq!(seen[0].version, axum::http::Version::HTTP_2, "h2 via alpn");
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok-1"));
    // Latest uses the trailing-slash form and our api-version.
    assert_eq!(
        seen[1].path_and_query,
        "/secrets/db/?api-version=2025-07-01"
    );
    assert_eq!(
        kv.scope().as_deref(),
        Some("https://vault.localhost/.default")
    );
    kv.get_secret("db", Some("0123456789abcdef0123456789abcdef"), soon())
        .await
        .unwrap();
    let seen = srv.seen();
    assert_eq!(seen.len(), 3, "scope cached: no second challenge");
    assert_eq!(
        seen[2].path_and_query,
        "/secrets/db/0123456789abcdef0123456789abcdef?api-version=2025-07-01"
    );
    assert_eq!(srv.token_requests(), 1, "token cached");
    assert_eq!(kv.requests(), 3);
}

// reference: docs/protocol.md §2.2 (verify_challenge_resource; aka.ms/azsdk/blog/vault-uri)
#[tokio::test]
async fn a_look_alike_vault_never_receives_a_token() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.evil.localhost", fast());
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, KeyVaultError::ChallengeMismatch { .. }), "{m}");
    assert!(
        m.contains("demo.evil.localhost") && m.contains("vault.localhost"),
        "{m}"
    );
    assert!(srv.seen().iter().all(|s| s.authorization.is_none()));
    assert_eq!(srv.token_requests(), 0, "no token was even requested");

    // Nor does a vault whose host equals the resource host.
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("vault.localhost", fast());
    assert!(matches!(
        kv.get_secret("db", None, soon()).await,
        Err(KeyVaultError::ChallengeMismatch { .. })
    ));
    assert_eq!(srv.token_requests(), 0);
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let unauthorized = r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#;
    srv.push(401, vec![], unauthorized);
    kv.get_secret("db", None, soon()).await.unwrap();
    let seen = srv.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer tok-2"));

    srv.push(401, vec![], unauthorized);
    srv.push(401, vec![], unauthorized);
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    assert!(
        matches!(&e, KeyVaultError::Unauthorized { message } if message.contains("AKV10032")),
        "{e}"
    );
    assert!(!e.is_transient());
    assert_eq!(srv.token_requests(), 3, "one refresh per 401, no loop");
}

#[tokio::test]
async fn retries_429_with_retry_after_and_5xx_then_succeeds() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let throttled = r#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received."}}"#;
    srv.push(429, vec![("retry-after-ms", "300".into())], throttled);
    srv.push(503, vec![], "");
    srv.push(408, vec![], "");
    let t0 = Instant::now();
    kv.get_secret("db", None, soon()).await.unwrap();
    // A lower bound only (load can only lengthen it).
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "retry-after honoured"
    );
    assert_eq!(srv.seen().len(), 5);
}

#[tokio::test]
async fn throttling_beyond_the_deadline_fails_fast_with_retry_after() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let throttled = r#"{"error":{"code":"Throttled","message":"too many"}}"#;
    srv.push(429, vec![("retry-after", "120".into())], throttled);
    let e = kv
        .get_secret("db", None, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap_err();
    // The probe and the throttled GET, no retry: no sleeping into a certain failure.
    assert_eq!(srv.seen().len(), 2);
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert!(e.to_string().contains("429"), "{e}");
}

#[tokio::test]
async fn maps_refusals_without_retrying() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    srv.push(
        403,
        vec![],
        r#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#,
    );
    assert!(matches!(
        kv.get_secret("db", None, soon()).await,
        Err(KeyVaultError::Disabled { .. })
    ));
    srv.push(
        404,
        vec![],
        r#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) db was not found in this key vault."}}"#,
    );
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    assert!(matches!(e, KeyVaultError::NotFound { .. }));
    assert_eq!(
        srv.seen().len(),
        3,
        "challenge + one request each, no retries"
    );
}

// reference: docs/protocol.md §1.5
#[tokio::test]
async fn follows_next_links_with_our_api_version_and_auth() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let base = srv.url("demo.vault.localhost");
    let page1 = format!(
        r#"{{"value":[{{"id":"{base}secrets/db/aaa","attributes":{{"enabled":true,"created":1}}}}],"nextLink":"{base}secrets/db/versions?api-version=7.2&$skiptoken=eyJOZXh0TWFya2VyIjoiMiJ9&maxresults=1"}}"#
    );
    let page2 = r#"{"value":[],"nextLink":"PLACEHOLDER"}"#.replace(
        "PLACEHOLDER",
        &format!("{base}secrets/db/versions?$skiptoken=3&maxresults=1"),
    );
    let page3 = r#"{"value":[{"id":"https://x/secrets/db/bbb","attributes":{"enabled":false}}],"nextLink":null}"#;
    srv.push(200, vec![], &page1);
    srv.push(200, vec![], &page2);
    srv.push(200, vec![], page3);
    let items = kv
        .list_versions(ObjectType::Secret, "db", soon())
        .await
        .unwrap();
    let versions: Vec<_> = items.iter().map(|i| i.version().unwrap()).collect();
    assert_eq!(versions, ["aaa", "bbb"]);
    let seen = srv.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[1].path_and_query,
        "/secrets/db/versions?api-version=2025-07-01&maxresults=25"
    );
    assert!(
        seen[2]
            .path_and_query
            .contains("%24skiptoken=eyJOZXh0TWFya2VyIjoiMiJ9")
            || seen[2]
                .path_and_query
                .contains("$skiptoken=eyJOZXh0TWFya2VyIjoiMiJ9"),
        "{:?}",
        seen[2]
    );
    assert!(
        seen[2].path_and_query.ends_with("api-version=2025-07-01"),
        "{:?}",
        seen[2]
    );
    assert!(!seen[2].path_and_query.contains("7.2"));
    assert!(seen[2..].iter().all(|s| s.authorization.is_some()));

    // A nextLink to another host is not followed (it would carry the token).
    srv.push(
        200,
        vec![],
        &format!(
            r#"{{"value":[],"nextLink":"https://other.vault.localhost:{}/secrets/db/versions?x=1"}}"#,
            srv.addr.port()
        ),
    );
    let e = kv
        .list_versions(ObjectType::Secret, "db", soon())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("other.vault.localhost"), "{e}");
}

#[tokio::test]
async fn bounded_concurrency() {
    // With one permit, two parallel GETs are serialised but both succeed.
    let srv = Server::start("https://vault.localhost").await;
    let http = crate::http::build(&HttpOptions::new(
        vec![srv.ca_file.path().to_owned()],
        Duration::from_secs(5),
    ))
    .unwrap();
    let identity = Identity::ClientSecret {
        client_id: "c".into(),
        tenant_id: "tenant".into(),
        secret: SecretString::new("s"),
        authority_host: srv.url("localhost"),
    };
    let metrics = Metrics::new();
    let cred = Credential::new(&identity, http.clone(), metrics.clone()).unwrap();
    let kv = KeyVaultClient::new(
        srv.url("demo.vault.localhost"),
        http,
        cred,
        metrics,
        KeyVaultOptions {
            concurrency: 1,
            ..Default::default()
        },
    );
    let (a, b) = tokio::join!(
        kv.get_secret("a", None, soon()),
        kv.get_secret("b", None, soon())
    );
    a.unwrap();
    b.unwrap();
    // One probe (the other waited for the scope), then two authorised GETs.
    assert_eq!(srv.seen().len(), 3);
    assert_eq!(srv.token_requests(), 1);
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let elsewhere = format!(
        "https://other.vault.localhost:{}/secrets/db/",
        srv.addr.port()
    );
    srv.push(302, vec![("location", elsewhere)], "");
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    assert!(
        matches!(e, KeyVaultError::BadRequest { status: 302, .. }),
        "{e}"
    );
    assert!(
        srv.seen()
            .iter()
            .all(|s| s.host.starts_with("demo.vault.localhost")),
        "{:?}",
        srv.seen()
    );
}

// reference: issue 9 item 1 (each of these panicked with a `Duration` overflow on main)
#[tokio::test]
async fn hostile_retry_after_values_never_panic_and_never_outlast_the_deadline() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let throttled = r#"{"error":{"code":"Throttled","message":"too many"}}"#;
    // Learn the challenge first, so each case below is one request.
    kv.get_secret("db", None, soon()).await.unwrap();
    let hostile: &[(&'static str, &str)] = &[
        ("retry-after", "99999999999999999999"),
        ("x-ms-retry-after-ms", "1e300"),
        ("retry-after-ms", "99999999999999999999"),
        ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for (name, value) in hostile {
        srv.push(429, vec![(name, (*value).to_owned())], throttled);
        let before = srv.seen().len();
        let e = kv
            .get_secret("db", None, Instant::now() + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(e, KeyVaultError::Throttled { .. }), "{name}: {e}");
        assert!(e.is_transient(), "{name}");
        let m = e.to_string();
        assert!(m.contains("429") && m.contains("--timeout"), "{m}");
        // One request: stopped at once instead of sleeping past the deadline.
        assert_eq!(srv.seen().len(), before + 1, "{name}: {value}");
    }
    // Odd values are ignored (backoff applies) and the retry succeeds.
    for (name, value) in [
        ("retry-after", "-5"),
        ("retry-after", "NaN"),
        ("x-ms-retry-after-ms", "inf"),
        ("retry-after", "soon"),
        ("retry-after", "0.01"),
    ] {
        srv.push(429, vec![(name, value.to_owned())], throttled);
        kv.get_secret("db", None, soon())
            .await
            .unwrap_or_else(|e| panic!("{name}: {value}: {e}"));
    }
}

// reference: issue 9 item 2
#[tokio::test]
async fn an_oversized_answer_is_a_permanent_error_naming_the_limit() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("demo.vault.localhost", fast());
    let huge = format!(r#"{{"value":"{}"}}"#, "A".repeat(5 * 1024 * 1024));
    srv.push(200, vec![], &huge);
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    assert!(
        matches!(e, KeyVaultError::TooLarge { limit } if limit == 4 * 1024 * 1024),
        "{e}"
    );
    assert!(!e.is_transient());
    let m = e.to_string();
    assert!(
        m.contains("4 MiB") && m.contains("--max-response-size"),
        "{m}"
    );
    assert_eq!(srv.seen().len(), 2, "not retried");
}

// reference: issue 9 item 9 (NXDOMAIN is permanent, named, and not retried)
#[tokio::test]
async fn a_vault_host_that_does_not_exist_is_permanent() {
    let srv = Server::start("https://vault.localhost").await;
    let kv = srv.client("nosuch.vault.invalid", fast());
    let e = kv.get_secret("db", None, soon()).await.unwrap_err();
    assert!(
        matches!(&e, KeyVaultError::HostNotFound { host } if host == "nosuch.vault.invalid"),
        "{e}"
    );
    assert!(!e.is_transient());
    let m = e.to_string();
    assert!(m.contains("keyvaultName") && m.contains("cloudName"), "{m}");
    assert_eq!(kv.requests(), 1, "no retries");
}
