//! `--on-change-http`: POSTs the [`ChangeEvent`] as JSON, retrying with the shared
//! [`crate::retry`] timing within [`HTTP_DEADLINE`]. The client comes from the agent's one
//! builder ([`crate::http::build`]: same trust store and limits). Plain `http://` is refused
//! for a host that is not loopback unless `--on-change-http-insecure` (docs/threat-model.md
//! rule 9: nothing about the secrets crosses the network in clear by default).

use std::path::PathBuf;
use std::time::Duration;

use super::NotifyError;
use super::event::ChangeEvent;

/// Attempts for `--on-change-http` (the first try plus retries).
pub const HTTP_ATTEMPTS: u32 = 5;
/// Per-attempt timeout of `--on-change-http`.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for all attempts of one `--on-change-http` notification, waits included: a
/// hook's `Retry-After` is honoured within it, never beyond.
pub const HTTP_DEADLINE: Duration = Duration::from_secs(120);

/// A configured `--on-change-http` hook and its client.
#[derive(Debug, Clone)]
pub(super) struct HttpNotifier {
    url: url::Url,
    client: reqwest::Client,
    backoff: Duration,
}

impl HttpNotifier {
    /// Checks the URL's scheme and builds the client, trusting `ca_files` and the
    /// certificates in `ca_dirs` besides the system's.
    pub(super) fn new(
        url: &url::Url,
        insecure: bool,
        ca_files: &[PathBuf],
        ca_dirs: &[PathBuf],
    ) -> Result<Self, NotifyError> {
        check_hook_url(url, insecure)?;
        // The agent's one client builder (same trust store and limits), proxy-less.
        let client = crate::http::build(&crate::http::HttpOptions {
            ca_dirs: ca_dirs.to_vec(),
            ..crate::http::HttpOptions::new(ca_files.to_vec(), HTTP_TIMEOUT)
        })
        .map_err(NotifyError::Http)?
        .direct;
        Ok(Self {
            url: url.clone(),
            client,
            backoff: Duration::from_millis(500),
        })
    }

    /// Changes the first retry delay (it doubles per attempt).
    pub(super) fn set_backoff(&mut self, first: Duration) {
        self.backoff = first;
    }

    /// POSTs `event` until the hook accepts it, attempts or the deadline run out; `true` if
    /// it was accepted.
    pub(super) async fn deliver(&self, event: &ChangeEvent) -> bool {
        let url = &self.url;
        // The shared retry timing: full jitter doubling from `backoff`, and the hook's
        // `Retry-After` honoured within the hook's own deadline.
        let first = self.backoff.max(Duration::from_millis(1));
        let backoff = crate::retry::Backoff::new(
            first,
            first.saturating_mul(16),
            HTTP_ATTEMPTS.saturating_sub(1),
        )
        .unwrap_or_else(|_| crate::retry::Backoff::service_default());
        let mut retrier = backoff
            .start(crate::retry::deadline_in(HTTP_DEADLINE))
            .named(format!("--on-change-http {}", redact_url(url)));
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let result = self
                .client
                .post(url.clone())
                .timeout(HTTP_TIMEOUT)
                .json(event)
                .send()
                .await;
            let (error, requested) = match result {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(url = %redact_url(url), status = %resp.status(), attempt, "on-change hook notified");
                    return true;
                }
                Ok(resp) => (
                    format!("HTTP {}", resp.status()),
                    crate::retry::requested_wait(resp.headers(), std::time::SystemTime::now()),
                ),
                Err(e) => (crate::http::describe(&e).message, None),
            };
            match retrier.next_delay(requested) {
                Ok(sleep) => {
                    tracing::warn!(url = %redact_url(url), attempt, error = %error, retry_in = ?sleep, "on-change hook failed; retrying");
                    tokio::time::sleep(sleep).await;
                }
                Err(_) => {
                    tracing::warn!(url = %redact_url(url), attempt, error = %error, "on-change hook failed; giving up");
                    return false;
                }
            }
        }
    }
}

/// Whether `url` may be POSTed to: https anywhere; http only to loopback unless `insecure`.
pub fn check_hook_url(url: &url::Url, insecure: bool) -> Result<(), NotifyError> {
    if url.scheme() == "https" || insecure || is_loopback(url) {
        return Ok(());
    }
    Err(NotifyError::InsecureHttp(redact_url(url)))
}

/// 127.0.0.0/8, ::1 (also IPv4-mapped) and the name `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Only scheme, host, port and path: the query or userinfo may carry a token.
fn redact_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::super::Notifier;
    use super::super::event::sample as event;
    use super::*;
    use crate::config::NotifySettings;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    // reference: docs/threat-model.md rule 9 (metadata only in the POST); docs/peers.md §B.8
    #[tokio::test]
    async fn http_hook_posts_metadata_and_retries_server_errors() {
        use axum::http::StatusCode;
        let hits = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let h = h.clone();
                async move {
                    let mut hits = h.lock().unwrap();
                    hits.push(v);
                    // The first two attempts fail.
                    if hits.len() <= 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}/hook?token=abc", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let settings = NotifySettings {
            http: Some(url.clone()),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .with_http_backoff(Duration::from_millis(10));
        let mut e = event(3);
        e.changed = vec!["secret/a".into()];
        n.notify(&e).await;
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[2]["data_dir"], "..3");
        assert_eq!(hits[2]["changed"][0], "secret/a");
        assert!(metrics.encode().contains("class=\"http_ok\"} 1"));
        assert!(!redact_url(&url).contains("token"));
        server.abort();
    }

    // reference: issue 13 item 1 (one retry module for every caller): the hook's own
    // Retry-After is honoured, within the hook's deadline only.
    #[tokio::test(start_paused = true)]
    async fn http_hook_honours_retry_after_within_its_deadline() {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let hits = Arc::new(std::sync::Mutex::new(Vec::<tokio::time::Instant>::new()));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    let mut hits = h.lock().unwrap();
                    hits.push(tokio::time::Instant::now());
                    match hits.len() {
                        1 => {
                            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]).into_response()
                        }
                        // Far beyond the hook's deadline: not slept, given up at once.
                        2 => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "99999999999999999999")],
                        )
                            .into_response(),
                        _ => StatusCode::NO_CONTENT.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: url::Url = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let settings = NotifySettings {
            http: Some(url),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let n = Notifier::new(&settings, &[], metrics.clone())
            .unwrap()
            .with_http_backoff(Duration::from_millis(10));
        let started = tokio::time::Instant::now();
        n.notify(&event(1)).await;
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 2, "gave up after the second answer");
        assert!(
            hits[1] - hits[0] >= Duration::from_secs(7),
            "{:?}",
            hits[1] - hits[0]
        );
        assert!(started.elapsed() < HTTP_DEADLINE);
        assert!(metrics.encode().contains("class=\"http_failed\"} 1"));
        server.abort();
    }

    // reference: issue 13 item 2 (a typed cause a caller can match, printed once)
    #[test]
    fn an_unreadable_ca_file_is_a_typed_setup_error_naming_the_file() {
        let missing = std::path::PathBuf::from("/nonexistent/kva-hook-ca.pem");
        let settings = NotifySettings {
            http: Some("https://hooks.example.com/x".parse().unwrap()),
            ..Default::default()
        };
        let e =
            Notifier::new(&settings, std::slice::from_ref(&missing), Metrics::new()).unwrap_err();
        assert!(
            matches!(
                &e,
                NotifyError::Http(crate::http::HttpError::CaRead { path, .. }) if *path == missing
            ),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(
            m.starts_with("--on-change-http: cannot build the HTTP client: ca file /nonexistent/kva-hook-ca.pem"),
            "{m}"
        );
        assert!(std::error::Error::source(&e).is_none(), "{e:?}");
    }

    // reference: docs/threat-model.md rule 9 (issue 9 item 8: no plain http off the pod)
    #[test]
    fn plain_http_hook_is_refused_unless_loopback_or_opted_in() {
        let m = Metrics::new();
        let hook = |url: &str, insecure: bool| NotifySettings {
            http: Some(url.parse().unwrap()),
            http_insecure: insecure,
            ..Default::default()
        };
        for ok in [
            "http://127.0.0.1:8080/-/reload",
            "http://127.9.8.7/x",
            "http://[::1]:9/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://localhost:8080/x",
            "http://LOCALHOST./x",
            "https://hooks.example.com/x",
        ] {
            assert!(
                Notifier::new(&hook(ok, false), &[], m.clone()).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://hooks.example.com/x?token=abc",
            "http://10.0.0.7:8080/x",
            "http://[fe80::1]/x",
            "http://localhost.example.com/x",
            "http://user:pw@0.0.0.0/x",
        ] {
            let e = Notifier::new(&hook(bad, false), &[], m.clone())
                .unwrap_err()
                .to_string();
            assert!(e.contains("--on-change-http-insecure"), "{bad}: {e}");
            assert!(
                e.starts_with("--on-change-http http://"),
                "names the URL first: {e}"
            );
            assert!(
                !e.contains("token=abc") && !e.contains("pw@"),
                "not redacted: {e}"
            );
            assert!(
                Notifier::new(&hook(bad, true), &[], m.clone()).is_ok(),
                "{bad}"
            );
        }
    }
}
