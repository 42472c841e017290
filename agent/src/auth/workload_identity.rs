//! Workload identity: exchange the projected service-account token for an Entra access
//! token (client-assertion flow, `docs/protocol.md` §3.2).
//!
//! The token file is re-read for every exchange: the kubelet rotates it, and a cached copy
//! is exactly what produces AADSTS700024 in long-running pods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use url::Url;

use super::entra;
use super::{AccessToken, AuthError};
use crate::secret::SecretString;

/// Metrics label.
pub const MODE: &str = "workload_identity";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Workload identity settings.
#[derive(Debug)]
pub struct WorkloadIdentity {
    client_id: String,
    token_file: PathBuf,
    endpoint: entra::Endpoint,
}

impl WorkloadIdentity {
    /// Validates the settings (the file is only read when a token is needed).
    pub fn new(
        client_id: &str,
        tenant_id: &str,
        token_file: &Path,
        authority_host: &Url,
    ) -> Result<Self, AuthError> {
        if client_id.trim().is_empty() {
            return Err(AuthError::Config {
                mode: MODE,
                message: "no client id: set clientID or AZURE_CLIENT_ID".into(),
            });
        }
        Ok(Self {
            client_id: client_id.trim().to_owned(),
            token_file: token_file.to_owned(),
            endpoint: entra::Endpoint::new(MODE, authority_host, tenant_id)?,
        })
    }

    /// Reads the current service-account token.
    async fn read_assertion(&self) -> Result<SecretString, AuthError> {
        // Regular file only, bounded (a service-account token is a few KiB).
        let what = "the federated token file (AZURE_FEDERATED_TOKEN_FILE)";
        let text =
            crate::files::read_to_string(&self.token_file, crate::files::MAX_SMALL_FILE, what)
                .map_err(|e| AuthError::TokenFile {
                    mode: MODE,
                    message: e.to_string(),
                })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(AuthError::TokenFile {
                mode: MODE,
                message: format!(
                    "the federated token file {} is empty: is the projected service account token volume mounted?",
                    self.token_file.display()
                ),
            });
        }
        Ok(SecretString::new(t))
    }

    /// The authority host and the configured tenant.
    pub fn authority(&self) -> (&Url, &str) {
        self.endpoint.authority()
    }

    /// One exchange, with `tenant` when given (else the configured one).
    pub async fn fetch(
        &self,
        client: &reqwest::Client,
        limit: u64,
        scope: &str,
        tenant: Option<&str>,
        timeout: Duration,
    ) -> Result<AccessToken, AuthError> {
        let (token_url, tenant) = self.endpoint.for_tenant(MODE, tenant)?;
        let assertion = self.read_assertion().await?;
        let form = [
            ("client_assertion", assertion.expose()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_id", self.client_id.as_str()),
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
            |status, error| self.explain(status, error, &assertion, tenant),
        )
        .await
    }

    fn explain(
        &self,
        status: u16,
        error: &entra::EntraError,
        assertion: &SecretString,
        tenant: &str,
    ) -> String {
        let code = error.code();
        if let Some(m) =
            entra::common_message(code, &self.client_id, tenant, self.endpoint.authority().0)
        {
            return m;
        }
        let claims = Claims::peek(assertion.expose());
        match code {
            Some(70021 | 700211 | 700212 | 700213) => {
                let (iss, sub, aud) = claims.map_or_else(
                    || ("<issuer>".into(), "<subject>".into(), "<audience>".into()),
                    |c| (c.iss, c.sub, c.aud),
                );
                format!(
                    "no federated credential matches issuer {iss} subject {sub} audience {aud} (AADSTS{}) for client id {}: create one with \"az identity federated-credential create --name <name> --identity-name <identity> --resource-group <group> --issuer {iss} --subject {sub} --audience api://AzureADTokenExchange\"",
                    code.unwrap_or(70021),
                    self.client_id
                )
            }
            Some(700024) => {
                let when = claims
                    .and_then(|c| c.exp)
                    .map(|exp| format!(" (its exp is {})", unix_to_string(exp)))
                    .unwrap_or_default();
                format!(
                    "the service account token in {} is expired or not yet valid{when} (AADSTS700024): the token file is stale (is the kubelet still rotating the projected token?) or the node clock is skewed",
                    self.token_file.display()
                )
            }
            Some(700027) => "entra could not verify the signature of the service account token (AADSTS700027): the federated credential's issuer must be this cluster's oidc issuer url".to_owned(),
            Some(50166) => "entra could not fetch the cluster's oidc discovery document or jwks (AADSTS50166): check that the issuer url is public and serves /.well-known/openid-configuration".to_owned(),
            _ => entra::generic_message(status, error),
        }
    }
}

/// The claims we may print from the service-account token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (`system:serviceaccount:<ns>:<sa>`).
    pub sub: String,
    /// First audience.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: Option<i64>,
}

impl Claims {
    /// Decodes the JWT payload without verifying it (for error messages only).
    pub fn peek(jwt: &str) -> Option<Claims> {
        let payload = jwt.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let aud = match v.get("aud") {
            Some(serde_json::Value::String(a)) => a.clone(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => "<none>".into(),
        };
        Some(Claims {
            iss: s("iss").unwrap_or_else(|| "<none>".into()),
            sub: s("sub").unwrap_or_else(|| "<none>".into()),
            aud,
            exp: v.get("exp").and_then(|x| x.as_i64()),
        })
    }
}

fn unix_to_string(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn peeks_claims_without_verifying() {
        let c = Claims::peek(&jwt(
            r#"{"iss":"https://oidc.example/issuer","sub":"system:serviceaccount:default:app","aud":["api://AzureADTokenExchange"],"exp":1700000000}"#,
        ))
        .unwrap();
        assert_eq!(c.iss, "https://oidc.example/issuer");
        assert_eq!(c.sub, "system:serviceaccount:default:app");
        assert_eq!(c.aud, "api://AzureADTokenExchange");
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(Claims::peek("not-a-jwt"), None);
    }

    #[test]
    fn aadsts70021_names_issuer_subject_and_the_fix_but_not_the_token() {
        let w = WorkloadIdentity::new(
            "11111111-1111-1111-1111-111111111111",
            "tenant",
            Path::new("/tmp/token"),
            &Url::parse("https://localhost:1/").unwrap(),
        )
        .unwrap();
        let token = jwt(
            r#"{"iss":"https://oidc.example/issuer","sub":"system:serviceaccount:ns:sa","aud":"api://AzureADTokenExchange"}"#,
        );
        let err: entra::EntraError = serde_json::from_str(
            r#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for presented assertion.","error_codes":[70021]}"#,
        )
        .unwrap();
        let m = w.explain(400, &err, &SecretString::new(token.clone()), "tenant");
        assert!(m.starts_with("no federated credential matches issuer https://oidc.example/issuer subject system:serviceaccount:ns:sa audience api://AzureADTokenExchange"), "{m}");
        assert!(m.contains("az identity federated-credential create"), "{m}");
        assert!(!m.contains(&token) && !m.contains(token.split('.').nth(1).unwrap()));
        assert!(!m.contains('\n'));

        for (code, want) in [
            (700016, "was not found in tenant"),
            (700024, "expired or not yet valid"),
            (90002, "tenant tenant was not found"),
        ] {
            let err = entra::EntraError {
                error: "x".into(),
                error_description: String::new(),
                error_codes: vec![code],
            };
            let m = w.explain(400, &err, &SecretString::new(token.clone()), "tenant");
            assert!(m.contains(want), "{code}: {m}");
        }
    }
}
