//! Data-plane authentication and authorisation: verifies Entra access tokens (signature, issuer,
//! audience, lifetime), builds the 401 challenge Key Vault sends, and applies the seed's RBAC-style
//! grants (403 `Forbidden`/`ForbiddenByRbac`).

use axum::http::HeaderMap;
use serde_json::Value;

use crate::jwt::{JwtError, aud_contains, aud_text};
use crate::seed::IdentitySeed;
use crate::state::{Shared, lock};

/// Why a request's token was rejected; each maps to a 401 with the challenge header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT, or a JWT we did not sign.
    Invalid(String),
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `aud` is not the vault resource.
    Audience(String),
    /// `iss` is not this tenant's STS.
    Issuer(String),
}

impl AuthFailure {
    /// The `error.message` Key Vault sends for this failure.
    pub(crate) fn message(&self, s: &Shared) -> String {
        match self {
            AuthFailure::Missing => "AKV10000: Request is missing a Bearer or PoP token.".into(),
            AuthFailure::Invalid(why) => format!("AKV10001: Invalid token: {why}."),
            AuthFailure::Expired => "[TokenExpired] Error validating token: 'S2S12086'.".into(),
            AuthFailure::NotYetValid => {
                "[TokenNotYetValid] Error validating token: 'S2S12085'.".into()
            }
            AuthFailure::Audience(found) => {
                format!(
                    "AKV10022: Invalid audience. Expected {}, found: {found}.",
                    s.challenge_resource()
                )
            }
            AuthFailure::Issuer(found) => format!(
                "AKV10032: Invalid issuer. Expected one of {}, found {found}.",
                s.sts_issuer()
            ),
        }
    }
}

/// The caller behind a verified token.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// `appid` claim.
    pub appid: String,
    /// `oid` claim.
    pub oid: String,
    /// The seeded identity, if it still exists.
    pub identity: Option<IdentitySeed>,
}

/// The `WWW-Authenticate` challenge value.
pub(crate) fn challenge(s: &Shared) -> String {
    format!(
        "Bearer authorization=\"{}/{}\", resource=\"{}\"",
        s.challenge_authority(),
        s.vault_tenant(),
        s.challenge_resource()
    )
}

/// Verifies the bearer token of a data-plane request and counts it for its identity.
pub(crate) fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            t.trim()
        }
        _ => return Err(AuthFailure::Missing),
    };
    let claims = s.entra_key.verify(token).map_err(|e| match e {
        JwtError::Malformed => AuthFailure::Invalid("the token is not a JWT".into()),
        JwtError::UnknownKey(_) | JwtError::BadSignature => {
            AuthFailure::Invalid("signature validation failed".into())
        }
    })?;
    check_claims(s, &claims)?;
    let appid = claims["appid"].as_str().unwrap_or_default().to_string();
    let oid = claims["oid"].as_str().unwrap_or_default().to_string();
    lock(&s.counts).count_identity(&appid);
    Ok(Principal {
        identity: s.identity(&appid),
        appid,
        oid,
    })
}

fn check_claims(s: &Shared, claims: &Value) -> Result<(), AuthFailure> {
    let iss = claims["iss"].as_str().unwrap_or_default();
    if iss != s.sts_issuer() {
        return Err(AuthFailure::Issuer(iss.to_string()));
    }
    if !s
        .accepted_audiences()
        .iter()
        .any(|a| aud_contains(claims, a))
    {
        return Err(AuthFailure::Audience(aud_text(claims)));
    }
    let now = crate::util::now();
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => {}
        _ => return Err(AuthFailure::Expired),
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && nbf > now + 300
    {
        return Err(AuthFailure::NotYetValid);
    }
    Ok(())
}

/// The Key Vault RBAC action name for an operation, used in the 403 message.
pub(crate) fn action_name(kind: &str, op: &str) -> String {
    format!("Microsoft.KeyVault/vaults/{kind}/{op}")
}

/// The 403 `ForbiddenByRbac` message text.
pub(crate) fn forbidden_message(
    s: &Shared,
    p: &Principal,
    vault: &str,
    action: &str,
    scope: &str,
) -> String {
    format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={};oid={};iss={}\r\nAction: '{action}'\r\nResource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/microsoft.keyvault/vaults/{vault}{scope}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location=local\r\n",
        p.appid,
        p.oid,
        s.sts_issuer()
    )
}
