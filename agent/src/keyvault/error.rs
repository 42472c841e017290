//! Key Vault failures, classified on status + `error.code` + `innererror.code` (never on the
//! message text, `docs/protocol.md` §1.6), with messages that say what to fix.

use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthError;
use crate::config::ObjectType;

/// A failed Key Vault operation. The caller prefixes the object's label.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyVaultError {
    /// 404.
    #[error("not found in the vault ({code}): check objectName, objectVersion and objectType")]
    NotFound {
        /// `SecretNotFound`, `KeyNotFound`, ...
        code: String,
    },
    /// 404 `VaultNotFound`: the host answers, but serves no vault by that name. The object is
    /// not the problem: the vault name or URL is.
    #[error(
        "no vault {vault} at this address (VaultNotFound): the vault is wrong, not the object; check keyvaultName and keyvaultURL / cloudName"
    )]
    VaultNotFound {
        /// `keyvaultName`.
        vault: String,
    },
    /// 403 with `*Disabled`: the version is disabled.
    #[error("is disabled in the vault ({code}): enable it, or pin an enabled objectVersion")]
    Disabled {
        /// `SecretDisabled`, ...
        code: String,
    },
    /// 403 for any other reason (RBAC, access policy, firewall, private link).
    #[error("access denied ({inner}): {hint}")]
    Forbidden {
        /// `ForbiddenByRbac`, `ForbiddenByPolicy`, `ForbiddenByFirewall`, ...
        inner: String,
        /// What to do.
        hint: String,
    },
    /// 401 even with a fresh token.
    #[error(
        "key vault rejected the access token ({message}): check that the identity's tenant is the vault's tenant and the cloud is right"
    )]
    Unauthorized {
        /// The service's message (first line).
        message: String,
    },
    /// 429 until the deadline, or asked to wait longer than the time left before it.
    #[error("key vault kept throttling requests (429){}; giving up: the retries or the deadline (--timeout) ran out", .retry_after.map(|d| format!(", asking to retry after {}", crate::retry::format_wait(d))).unwrap_or_default())]
    Throttled {
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 408, 5xx, transport failure or timeout until the deadline.
    #[error("key vault unavailable: {message}")]
    Transient {
        /// Status, when there was an answer.
        status: Option<u16>,
        /// What happened.
        message: String,
    },
    /// Other 4xx.
    #[error("key vault rejected the request ({status} {code}): {message}")]
    BadRequest {
        /// Status.
        status: u16,
        /// `error.code`.
        code: String,
        /// The service's message (first line).
        message: String,
    },
    /// The vault's TLS certificate is not trusted (configuration, not an outage).
    #[error("cannot reach the vault: {message}")]
    Tls {
        /// What happened and what to fix.
        message: String,
    },
    /// A 2xx body that is not the documented JSON.
    #[error("unreadable answer from key vault: {message}")]
    Decode {
        /// What was wrong.
        message: String,
    },
    /// The challenge's resource does not cover the vault host: no token is sent.
    #[error(
        "the vault at {vault_host} answered with a challenge for resource host {resource_host}, which does not cover it: refusing to send a token (look-alike or wrong vault url?); check keyvaultName / keyvaultURL and the cloud"
    )]
    ChallengeMismatch {
        /// The request host.
        vault_host: String,
        /// The challenge's resource host.
        resource_host: String,
    },
    /// The challenge names another tenant at an authority host other than the configured
    /// one: no token is requested from a host the vault names.
    #[error(
        "the vault's challenge names tenant {tenant} at authority host {challenge_host}, not at the configured authority host {configured_host}: refusing to request a token there; check AZURE_AUTHORITY_HOST / the cloud (cloudName) and the vault url"
    )]
    ChallengeAuthority {
        /// The tenant the challenge names.
        tenant: String,
        /// The challenge's authority host.
        challenge_host: String,
        /// The configured authority host.
        configured_host: String,
    },
    /// 401 without a usable Bearer challenge.
    #[error(
        "key vault answered 401 without a usable bearer challenge (www-authenticate: {header:?}): is the url a key vault?"
    )]
    Challenge {
        /// The header as received (no secrets).
        header: String,
    },
    /// The answer is larger than `--max-response-size`; reading stopped at the limit.
    #[error(
        "the vault's answer is larger than the {} limit: refusing it (raise --max-response-size if the object is really that large)",
        crate::http::format_size(*.limit)
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The vault's host name does not exist (NXDOMAIN): retrying cannot help.
    #[error(
        "the vault host {host} does not exist (its name does not resolve): check keyvaultName and cloudName (or keyvaultURL)"
    )]
    HostNotFound {
        /// The vault host.
        host: String,
    },
    /// A token would go over plain http, or a `nextLink` points elsewhere.
    #[error("{0}")]
    Unsafe(String),
    /// No token.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl KeyVaultError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            KeyVaultError::Throttled { .. } | KeyVaultError::Transient { .. } => true,
            KeyVaultError::Auth(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Server-requested delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KeyVaultError::Throttled { retry_after } => *retry_after,
            KeyVaultError::Auth(e) => e.retry_after(),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<Box<ErrorDetail>>,
}

/// `(error.code, innererror.code, first line of error.message)` of an error body.
pub(crate) fn parse_body(body: &[u8]) -> (String, Option<String>, String) {
    let b: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let d = b.error.unwrap_or_default();
    let inner = d
        .innererror
        .as_ref()
        .and_then(|i| i.code.clone())
        .filter(|c| !c.is_empty());
    let message = d
        .message
        .as_deref()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(300)
        .collect();
    (d.code.unwrap_or_default(), inner, message)
}

fn permission(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Secret => "secrets",
        ObjectType::Key => "keys",
        ObjectType::Cert => "certificates",
    }
}

fn rbac_role(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Secret => "Key Vault Secrets User",
        ObjectType::Key => "Key Vault Crypto User",
        ObjectType::Cert => "Key Vault Certificate User",
    }
}

/// Maps a non-2xx, non-401, non-retryable answer.
pub(crate) fn classify(status: u16, body: &[u8], t: ObjectType, vault: &str) -> KeyVaultError {
    let (code, inner, message) = parse_body(body);
    match status {
        404 if code == "VaultNotFound" => KeyVaultError::VaultNotFound {
            vault: vault.to_owned(),
        },
        404 => KeyVaultError::NotFound {
            code: if code.is_empty() { "404".into() } else { code },
        },
        403 => {
            let inner_code = inner.clone().unwrap_or_else(|| code.clone());
            if inner_code.ends_with("Disabled") {
                return KeyVaultError::Disabled { code: inner_code };
            }
            let hint = match inner_code.as_str() {
                "ForbiddenByRbac" => format!(
                    "the identity has no role that allows reading {} in vault {vault}: assign it \"{}\" on the vault (az role assignment create --role \"{}\" --assignee <client id> --scope <vault resource id>)",
                    permission(t),
                    rbac_role(t),
                    rbac_role(t)
                ),
                "ForbiddenByPolicy" | "AccessDenied" => format!(
                    "the vault's access policy does not grant the identity get on {}: az keyvault set-policy --name {vault} --{}-permissions get --spn <client id>",
                    permission(t),
                    match t {
                        ObjectType::Secret => "secret",
                        ObjectType::Key => "key",
                        ObjectType::Cert => "certificate",
                    }
                ),
                "ForbiddenByFirewall" => format!(
                    "the vault {vault}'s firewall does not allow this pod's address: add the network to the vault's allowed networks or use a private endpoint"
                ),
                "ForbiddenByConnection" => format!(
                    "public network access to vault {vault} is disabled or the private link is broken: reach it through its private endpoint (keyvaultURL)"
                ),
                _ => {
                    if message.is_empty() {
                        "check the identity's permissions on the vault".into()
                    } else {
                        message.clone()
                    }
                }
            };
            KeyVaultError::Forbidden {
                inner: if inner_code.is_empty() {
                    "Forbidden".into()
                } else {
                    inner_code
                },
                hint,
            }
        }
        _ => KeyVaultError::BadRequest {
            status,
            code: if code.is_empty() {
                "error".into()
            } else {
                code
            },
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the README's troubleshooting table names: Key Vault's (`SecretNotFound`,
    /// `ForbiddenByRbac`, ...) and Entra's (`AADSTS70021`).
    fn readme_codes() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let section = readme
            .split("## Troubleshooting")
            .nth(1)
            .expect("README has a Troubleshooting section");
        let section = section.split("\n## ").next().unwrap();
        let mut codes = std::collections::BTreeSet::new();
        for cell in section.split('`').skip(1).step_by(2) {
            let word = cell.trim();
            let kv = word.chars().all(|c| c.is_ascii_alphabetic())
                && (word.ends_with("NotFound")
                    || word.ends_with("Disabled")
                    || word.starts_with("ForbiddenBy"));
            let entra = word
                .strip_prefix("AADSTS")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if kv || entra {
                codes.insert(word.to_owned());
            }
        }
        codes.into_iter().collect()
    }

    // reference: issue 12 item 4 (every code in the README's troubleshooting table is produced
    // by the emulator and has its own hint in the agent)
    #[test]
    fn every_troubleshooting_code_is_emulated_and_hinted() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // Every `.rs` file under `d`, folder modules included (the emulator's `keyvault/`).
        fn read_tree(dir: &std::path::Path, all: &mut String) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    read_tree(&p, all);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    all.push_str(&std::fs::read_to_string(p).unwrap());
                }
            }
        }
        let read_dir = |d: &str| -> String {
            let mut all = String::new();
            read_tree(&root.join(d), &mut all);
            all
        };
        let emulator = read_dir("emulator/src");
        let auth = read_dir("agent/src/auth");
        let codes = readme_codes();
        assert!(codes.len() >= 8, "{codes:?}");
        let mut problems = Vec::new();
        for code in &codes {
            let number = code.strip_prefix("AADSTS");
            let emulated = match number {
                Some(n) => emulator.contains(n),
                None => emulator.contains(&format!("\"{code}\"")),
            };
            if !emulated {
                problems.push(format!("{code}: the emulator never produces it"));
            }
            let hinted = match number {
                // An arm of the Entra translations (`700016 =>`, `Some(70021 | ...`).
                Some(n) => [format!("{n} =>"), format!("Some({n}"), format!("| {n}")]
                    .iter()
                    .any(|arm| auth.contains(arm.as_str())),
                None => {
                    let (status, body) = if code.ends_with("NotFound") {
                        (
                            404,
                            format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#),
                        )
                    } else {
                        (
                            403,
                            format!(
                                r#"{{"error":{{"code":"Forbidden","message":"m","innererror":{{"code":"{code}"}}}}}}"#
                            ),
                        )
                    };
                    let m =
                        classify(status, body.as_bytes(), ObjectType::Secret, "kv1").to_string();
                    m.contains(code.as_str()) && !m.ends_with(": m")
                }
            };
            if !hinted {
                problems.push(format!("{code}: the agent has no hint of its own for it"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    // reference: issue 12 item 4 (the VaultNotFound hint points at the vault, not the object)
    #[test]
    fn vault_not_found_blames_the_vault_not_the_object() {
        let body =
            br#"{"error":{"code":"VaultNotFound","message":"No vault is served for host x."}}"#;
        let e = classify(404, body, ObjectType::Secret, "kv1");
        assert!(matches!(&e, KeyVaultError::VaultNotFound { vault } if vault == "kv1"));
        let m = e.to_string();
        assert!(
            m.contains("check keyvaultName") && !m.contains("objectName"),
            "{m}"
        );
        assert!(!e.is_transient());
    }

    // reference: docs/protocol.md §1.6
    #[test]
    fn classifies_by_status_code_and_inner_code() {
        let disabled = br#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        assert!(matches!(
            classify(403, disabled, ObjectType::Secret, "v"),
            KeyVaultError::Disabled { code } if code == "SecretDisabled"
        ));
        let rbac = br#"{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nIf role assignments...","innererror":{"code":"ForbiddenByRbac"}}}"#;
        let e = classify(403, rbac, ObjectType::Secret, "demo");
        assert!(matches!(&e, KeyVaultError::Forbidden { inner, .. } if inner == "ForbiddenByRbac"));
        let m = e.to_string();
        assert!(
            m.contains("Key Vault Secrets User") && !m.contains('\n'),
            "{m}"
        );
        let m = classify(403, rbac, ObjectType::Key, "demo").to_string();
        assert!(m.contains("Key Vault Crypto User"), "{m}");
        let policy = br#"{"error":{"code":"Forbidden","message":"The user ... does not have secrets get permission","innererror":{"code":"ForbiddenByPolicy"}}}"#;
        let m = classify(403, policy, ObjectType::Cert, "demo").to_string();
        assert!(
            m.contains("az keyvault set-policy --name demo --certificate-permissions get"),
            "{m}"
        );
        let nf = br#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) x was not found in this key vault."}}"#;
        assert!(
            matches!(classify(404, nf, ObjectType::Secret, "v"), KeyVaultError::NotFound { code } if code == "SecretNotFound")
        );
        assert!(matches!(
            classify(404, b"", ObjectType::Key, "v"),
            KeyVaultError::NotFound { .. }
        ));
        let bad = br#"{"error":{"code":"BadParameter","message":"The specified api-version is not supported"}}"#;
        let e = classify(400, bad, ObjectType::Secret, "v");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("BadParameter"));
        assert!(
            KeyVaultError::Throttled {
                retry_after: Some(Duration::from_secs(3))
            }
            .is_transient()
        );
    }
}
