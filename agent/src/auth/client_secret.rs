//! Client secret (development, the `nodePublishSecretRef` analogue): the plain
//! client-credentials grant (`docs/protocol.md` §3.2).

use std::time::Duration;

use url::Url;

use super::entra;
use super::{AccessToken, AuthError};
use crate::secret::SecretString;

/// Metrics label.
pub const MODE: &str = "client_secret";

/// Client secret settings.
#[derive(Debug)]
pub struct ClientSecret {
    client_id: String,
    secret: SecretString,
    endpoint: entra::Endpoint,
}

impl ClientSecret {
    /// Validates the settings.
    pub fn new(
        client_id: &str,
        tenant_id: &str,
        secret: SecretString,
        authority_host: &Url,
    ) -> Result<Self, AuthError> {
        if client_id.trim().is_empty() {
            return Err(AuthError::Config {
                mode: MODE,
                message: "no client id: set clientID or AZURE_CLIENT_ID".into(),
            });
        }
        if secret.expose().trim().is_empty() {
            return Err(AuthError::Config {
                mode: MODE,
                message: "the client secret is empty: set AZURE_CLIENT_SECRET or the secret file"
                    .into(),
            });
        }
        Ok(Self {
            client_id: client_id.trim().to_owned(),
            secret,
            endpoint: entra::Endpoint::new(MODE, authority_host, tenant_id)?,
        })
    }

    /// The authority host and the configured tenant.
    pub fn authority(&self) -> (&Url, &str) {
        self.endpoint.authority()
    }

    /// One token request, from `tenant` when given (else the configured one).
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        limit: u64,
        scope: &str,
        tenant: Option<&str>,
        timeout: Duration,
    ) -> Result<AccessToken, AuthError> {
        let (token_url, tenant) = self.endpoint.for_tenant(MODE, tenant)?;
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose().trim()),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ];
        entra::post(
            MODE,
            client,
            limit,
            &token_url,
            &form,
            timeout,
            |status, error| self.explain(status, error, tenant),
        )
        .await
    }

    fn explain(&self, status: u16, error: &entra::EntraError, tenant: &str) -> String {
        let code = error.code();
        if let Some(m) =
            entra::common_message(code, &self.client_id, tenant, self.endpoint.authority().0)
        {
            return m;
        }
        match code {
            Some(7000215) => format!(
                "invalid client secret for client id {} (AADSTS7000215): use the secret's value, not its id",
                self.client_id
            ),
            Some(7000222) => format!(
                "the client secret of client id {} has expired (AADSTS7000222): create a new one with \"az ad app credential reset --id {}\"",
                self.client_id, self.client_id
            ),
            _ => entra::generic_message(status, error),
        }
    }
}
