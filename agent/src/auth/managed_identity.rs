//! Managed identity through IMDS (`docs/protocol.md` §4): `GET
//! {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]`
//! with `Metadata: true`, over the proxy-less client. 404, 410, 429 and 5xx are transient
//! (IMDS is updating or throttling) and retried with IMDS's own backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use url::Url;

use super::entra::number_or_string;
use super::{AccessToken, AuthError, exchange, scope_to_resource};
use crate::secret::SecretString;

/// Metrics label.
pub const MODE: &str = "managed_identity";

/// Managed identity settings.
#[derive(Debug)]
pub struct ManagedIdentity {
    client_id: Option<String>,
    token_url: Url,
}

#[derive(Deserialize)]
struct ImdsToken {
    access_token: Option<SecretString>,
    expires_in: Option<serde_json::Value>,
    expires_on: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct ImdsError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl ManagedIdentity {
    /// Validates the settings.
    pub fn new(client_id: Option<String>, endpoint: &Url) -> Result<Self, AuthError> {
        let mut base = endpoint.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let token_url =
            base.join("metadata/identity/oauth2/token")
                .map_err(|e| AuthError::Config {
                    mode: MODE,
                    message: format!("imds endpoint {endpoint} is not a usable url: {e}"),
                })?;
        Ok(Self {
            client_id: client_id.filter(|c| !c.trim().is_empty()),
            token_url,
        })
    }

    fn who(&self) -> String {
        match &self.client_id {
            Some(c) => format!("user-assigned identity {c}"),
            None => "the system-assigned identity".into(),
        }
    }

    /// One IMDS request.
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        limit: u64,
        scope: &str,
        timeout: Duration,
    ) -> Result<AccessToken, AuthError> {
        let mut url = self.token_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", "2018-02-01");
            q.append_pair("resource", scope_to_resource(scope));
            if let Some(c) = &self.client_id {
                q.append_pair("client_id", c);
            }
        }
        let request = client.get(url).header("Metadata", "true").timeout(timeout);
        let (status, retry_after, body) = exchange(
            MODE,
            request,
            limit,
            &format!(
                "imds at {} (is managed identity available on this node?)",
                self.token_url.origin().ascii_serialization()
            ),
            &format!(
                "reading the imds response from {}",
                self.token_url.origin().ascii_serialization()
            ),
        )
        .await?;
        if status.is_success() {
            let t: ImdsToken = serde_json::from_slice(&body).map_err(|e| AuthError::Decode {
                mode: MODE,
                message: format!("imds returned an unreadable token response: {e}"),
            })?;
            let lifetime = lifetime(&t);
            let token = t
                .access_token
                .filter(|t| !t.expose().is_empty())
                .ok_or_else(|| AuthError::Decode {
                    mode: MODE,
                    message: "imds token response has no access_token".into(),
                })?;
            let lifetime = lifetime.ok_or_else(|| AuthError::Decode {
                mode: MODE,
                message: "imds token response has no valid expires_on or expires_in".into(),
            })?;
            return Ok(AccessToken::new(token, lifetime));
        }
        let err: ImdsError = serde_json::from_slice(&body).unwrap_or_default();
        let detail = if err.error_description.is_empty() {
            err.error.clone()
        } else {
            format!("{}: {}", err.error, err.error_description)
        };
        let code = status.as_u16();
        if matches!(code, 404 | 410 | 429) || status.is_server_error() {
            return Err(AuthError::Unavailable {
                mode: MODE,
                message: format!(
                    "imds answered {status} ({}): retrying",
                    if detail.is_empty() {
                        "imds is updating or throttling"
                    } else {
                        &detail
                    }
                ),
                retry_after,
            });
        }
        let desc = err.error_description.to_ascii_lowercase();
        let message = if desc.contains("identity not found") {
            match &self.client_id {
                Some(c) => format!(
                    "user-assigned identity {c} is not assigned to this vm or node pool (imds: identity not found): check userAssignedIdentityID, or assign it with \"az vmss identity assign --identities <identity resource id> ...\""
                ),
                None => "no system-assigned identity on this vm or node pool (imds: identity not found): enable one, or set userAssignedIdentityID".into(),
            }
        } else if err.error == "bad_request_102" {
            format!(
                "imds refused the request ({detail}); is KEYVAULT_AGENT_IMDS_ENDPOINT pointing at imds?"
            )
        } else if err.error == "invalid_resource" {
            format!(
                "imds does not know the resource {} ({detail}): check the cloud",
                scope_to_resource(scope)
            )
        } else {
            format!(
                "imds refused a token for {} ({status}: {detail})",
                self.who()
            )
        };
        Err(AuthError::Rejected {
            mode: MODE,
            message: message.replace(['\r', '\n'], " "),
        })
    }
}

/// Lifetime from `expires_in` (relative), else `expires_on` (Unix seconds); IMDS sends
/// both as strings.
fn lifetime(t: &ImdsToken) -> Option<Duration> {
    if let Some(secs) = t.expires_in.as_ref().and_then(number_or_string) {
        return Some(Duration::from_secs(secs));
    }
    let on = t.expires_on.as_ref().and_then(number_or_string)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(on.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_and_lifetime() {
        let m = ManagedIdentity::new(None, &Url::parse("http://127.0.0.1:1234").unwrap()).unwrap();
        assert_eq!(
            m.token_url.as_str(),
            "http://127.0.0.1:1234/metadata/identity/oauth2/token"
        );
        let t: ImdsToken = serde_json::from_str(
            r#"{"access_token":"x","expires_in":"3599","expires_on":"1","resource":"r","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(lifetime(&t), Some(Duration::from_secs(3599)));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t: ImdsToken = serde_json::from_str(&format!(
            r#"{{"access_token":"x","expires_on":"{}"}}"#,
            now + 100
        ))
        .unwrap();
        let l = lifetime(&t).unwrap();
        assert!(
            l <= Duration::from_secs(100) && l >= Duration::from_secs(98),
            "{l:?}"
        );
    }
}
