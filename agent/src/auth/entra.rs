//! The Entra token endpoint (`POST {authority}/{tenant}/oauth2/v2.0/token`, `docs/protocol.md`
//! §3) shared by the workload identity and client secret flows, and the translation of its
//! AADSTS errors into messages that say what to fix.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{AccessToken, AuthError, exchange};
use crate::secret::SecretString;

/// Where a credential asks for tokens: the authority host, the configured tenant and its
/// token URL.
#[derive(Debug)]
pub(crate) struct Endpoint {
    authority: Url,
    tenant_id: String,
    token_url: Url,
}

impl Endpoint {
    /// Checks `tenant_id` and the authority host (see [`token_url`]).
    pub(crate) fn new(
        mode: &'static str,
        authority_host: &Url,
        tenant_id: &str,
    ) -> Result<Self, AuthError> {
        let tenant_id = tenant_id.trim();
        Ok(Self {
            token_url: token_url(mode, authority_host, tenant_id)?,
            authority: authority_host.clone(),
            tenant_id: tenant_id.to_owned(),
        })
    }

    /// The authority host and the configured tenant.
    pub(crate) fn authority(&self) -> (&Url, &str) {
        (&self.authority, &self.tenant_id)
    }

    /// The token URL and tenant of one request: `asked`, a tenant a vault's challenge named,
    /// at the same authority host (its own token URL), or else the configured ones.
    pub(crate) fn for_tenant<'a>(
        &'a self,
        mode: &'static str,
        asked: Option<&'a str>,
    ) -> Result<(Cow<'a, Url>, &'a str), AuthError> {
        match asked.map(str::trim) {
            Some(t) if !t.eq_ignore_ascii_case(&self.tenant_id) => {
                Ok((Cow::Owned(token_url(mode, &self.authority, t)?), t))
            }
            _ => Ok((Cow::Borrowed(&self.token_url), &self.tenant_id)),
        }
    }
}

/// Builds the token URL, keeping any path of the authority host (the emulator serves at its
/// root, and so does Entra). The tenant may be a GUID or a domain only.
pub(crate) fn token_url(
    mode: &'static str,
    authority_host: &Url,
    tenant: &str,
) -> Result<Url, AuthError> {
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(AuthError::Config {
            mode,
            message: format!(
                "tenant id {tenant:?} is not a tenant guid or domain: check tenantID / AZURE_TENANT_ID"
            ),
        });
    }
    if authority_host.scheme() != "https" {
        return Err(AuthError::Config {
            mode,
            message: format!(
                "authority host {authority_host} does not use https: check AZURE_AUTHORITY_HOST"
            ),
        });
    }
    let mut base = authority_host.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(&format!("{tenant}/oauth2/v2.0/token"))
        .map_err(|e| AuthError::Config {
            mode,
            message: format!("cannot build the token url from {authority_host}: {e}"),
        })
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
pub(crate) struct EntraError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl EntraError {
    /// The AADSTS number from `error_codes`, else from the description.
    pub fn code(&self) -> Option<u64> {
        if let Some(c) = self.error_codes.first() {
            return Some(*c);
        }
        let i = self.error_description.find("AADSTS")? + 6;
        let digits: String = self.error_description[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// The first line of the description (the rest is trace and correlation ids).
    pub fn summary(&self) -> String {
        let first = self
            .error_description
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if first.is_empty() {
            self.error.clone()
        } else {
            first
        }
    }
}

/// Posts `form` once and parses the answer. A 4xx other than 429 becomes
/// [`AuthError::Rejected`] with the message from `explain`, which knows the flow's own
/// AADSTS codes; everything else is already final (transient or decode).
pub(crate) async fn post(
    mode: &'static str,
    client: &reqwest::Client,
    limit: u64,
    url: &Url,
    form: &[(&str, &str)],
    timeout: Duration,
    explain: impl FnOnce(u16, &EntraError) -> String,
) -> Result<AccessToken, AuthError> {
    let request = client
        .post(url.clone())
        .header("Accept", "application/json")
        .form(form)
        .timeout(timeout);
    let (status, retry_after, body) = exchange(
        mode,
        request,
        limit,
        &format!("token request to {}", host_of(url)),
        &format!("reading the token response from {}", host_of(url)),
    )
    .await?;
    if status.is_success() {
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| AuthError::Decode {
            mode,
            message: format!("entra returned an unreadable token response: {e}"),
        })?;
        let token = t
            .access_token
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| AuthError::Decode {
                mode,
                message: "entra's token response has no access_token".into(),
            })?;
        let secs = t
            .expires_in
            .as_ref()
            .and_then(number_or_string)
            .ok_or_else(|| AuthError::Decode {
                mode,
                message: "entra's token response has no valid expires_in".into(),
            })?;
        // `AccessToken::new` saturates an absurd lifetime instead of overflowing.
        return Ok(AccessToken::new(token, Duration::from_secs(secs)));
    }
    let error: EntraError = serde_json::from_slice(&body).unwrap_or_default();
    if status.as_u16() == 429 || status.is_server_error() {
        let what = if status.as_u16() == 429 {
            "entra is throttling token requests".to_owned()
        } else {
            format!("entra answered {status}")
        };
        let detail = error.summary();
        return Err(AuthError::Unavailable {
            mode,
            message: if detail.is_empty() {
                what
            } else {
                format!("{what}: {detail}")
            },
            retry_after,
        });
    }
    Err(AuthError::Rejected {
        mode,
        message: explain(status.as_u16(), &error),
    })
}

/// A JSON number or a numeric string (IMDS sends strings, Entra numbers).
pub(crate) fn number_or_string(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

/// Messages shared by the flows, for codes that mean the same in both.
pub(crate) fn common_message(
    code: Option<u64>,
    client_id: &str,
    tenant: &str,
    authority: &Url,
) -> Option<String> {
    Some(match code? {
        700016 => format!(
            "application with client id {client_id} was not found in tenant {tenant} (AADSTS700016): check clientID / AZURE_CLIENT_ID, tenantID / AZURE_TENANT_ID and the cloud"
        ),
        90002 => format!(
            "tenant {tenant} was not found at {authority} (AADSTS90002): check tenantID / AZURE_TENANT_ID and the cloud (authority host)"
        ),
        70011 => "entra rejected the requested scope (AADSTS70011): the vault's challenge named a resource this tenant does not know; check the vault url and the cloud".to_owned(),
        900023 => format!(
            "tenant id {tenant} is not valid (AADSTS900023): check tenantID / AZURE_TENANT_ID"
        ),
        _ => return None,
    })
}

/// Fallback message for a refusal without a specific translation.
pub(crate) fn generic_message(status: u16, error: &EntraError) -> String {
    let code = error
        .code()
        .map(|c| format!(", AADSTS{c}"))
        .unwrap_or_default();
    format!(
        "entra refused the token request ({status} {}{code}): {}",
        if error.error.is_empty() {
            "error"
        } else {
            &error.error
        },
        error.summary()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_keeps_authority_path_and_checks_tenant() {
        let a = Url::parse("https://login.microsoftonline.com/").unwrap();
        assert_eq!(
            token_url("m", &a, "contoso.onmicrosoft.com")
                .unwrap()
                .as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let a = Url::parse("https://localhost:8443").unwrap();
        assert_eq!(
            token_url("m", &a, "t1").unwrap().as_str(),
            "https://localhost:8443/t1/oauth2/v2.0/token"
        );
        assert!(token_url("m", &a, "../admin").is_err());
        assert!(token_url("m", &a, "").is_err());
        let e = token_url("m", &Url::parse("http://localhost/").unwrap(), "t").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
    }

    #[test]
    fn aadsts_code_from_codes_or_description() {
        let e: EntraError = serde_json::from_str(
            r#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found.\r\nTrace ID: x","error_codes":[70021]}"#,
        )
        .unwrap();
        assert_eq!(e.code(), Some(70021));
        assert_eq!(
            e.summary(),
            "AADSTS70021: No matching federated identity record found."
        );
        let e: EntraError = serde_json::from_str(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        )
        .unwrap();
        assert_eq!(e.code(), Some(7000215));
    }
}
