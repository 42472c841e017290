//! Which identity the agent uses, from SecretProviderClass parameters and the environment.
//!
//! Precedence:
//! 1. `useVMManagedIdentity: "true"` → managed identity through IMDS
//!    (`userAssignedIdentityID`, or system-assigned when empty).
//! 2. A client ID (`clientID` parameter, else `AZURE_CLIENT_ID`) and
//!    `AZURE_FEDERATED_TOKEN_FILE` → workload identity. Only the variable is checked here:
//!    the kubelet rotates the file, so the credential re-reads it for every exchange.
//! 3. `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_SECRET_FILE` with a client ID → client secret
//!    (the `nodePublishSecretRef` analogue, for development).
//! 4. Otherwise an error that explains the three options.
//!
//! The tenant (`tenantID`, else the deprecated `tenantId`, else `AZURE_TENANT_ID`) is
//! required for workload identity and client secret. The reference also requires it for
//! managed identity, which never uses it (`docs/reference-provider.md` §3); we do not.
//! `usePodIdentity` and `useAzureTokenProxy` are parsed with the reference's texts and then
//! refused: aad-pod-identity is retired, and identity binding needs the API-server proxy of
//! the CSI driver's node plugin.

use std::path::PathBuf;

use url::Url;

use super::cloud::with_trailing_slash;
use super::params::{Parameters, parse_bool};
use super::{Cloud, ConfigError, Env, Identity, Settings};
use crate::secret::SecretString;

/// The three identity-mode booleans of the reference, parsed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Modes {
    /// `useVMManagedIdentity`; `None` when unparsable.
    vm: Option<bool>,
    /// An error was reported for the modes; no identity is selected.
    failed: bool,
}

impl Modes {
    /// Parses the booleans (reference texts), then checks exclusivity and support.
    pub(crate) fn parse(params: &Parameters, errs: &mut Vec<ConfigError>) -> Modes {
        let mut failed = false;
        let mut flag = |name: &'static str| {
            let value = params.get(name);
            match parse_bool(value) {
                Some(b) => Some(b),
                None => {
                    errs.push(ConfigError::Bool {
                        name,
                        value: value.to_owned(),
                    });
                    failed = true;
                    None
                }
            }
        };
        let pod = flag("usePodIdentity");
        let vm = flag("useVMManagedIdentity");
        let proxy = flag("useAzureTokenProxy");
        let on = [pod, vm, proxy]
            .iter()
            .filter(|b| **b == Some(true))
            .count();
        if on > 1 {
            errs.push(ConfigError::ModeConflict);
            failed = true;
        } else if pod == Some(true) {
            errs.push(ConfigError::UnsupportedMode {
                name: "usePodIdentity",
                hint: "aad-pod-identity is retired; use workload identity (label the pod azure.workload.identity/use: \"true\") or useVMManagedIdentity",
            });
            failed = true;
        } else if proxy == Some(true) {
            errs.push(ConfigError::UnsupportedMode {
                name: "useAzureTokenProxy",
                hint: "identity binding needs the CSI driver's token proxy; use workload identity (label the pod azure.workload.identity/use: \"true\") instead",
            });
            failed = true;
        }
        Modes { vm, failed }
    }

    /// Whether the selected mode needs a tenant. Managed identity does not (the reference
    /// requires it anyway, unused); nor is one demanded when the mode flags are broken.
    pub(crate) fn needs_tenant(&self) -> bool {
        // Unsupported or conflicting modes set `failed`.
        !self.failed && self.vm != Some(true)
    }
}

/// The tenant: `tenantID` wins over the deprecated `tenantId`; then `AZURE_TENANT_ID`.
pub(crate) fn tenant(params: &Parameters, env: &Env) -> Option<String> {
    [params.get("tenantID"), params.get("tenantId")]
        .into_iter()
        .find(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| env_trimmed(env, "AZURE_TENANT_ID"))
}

fn env_trimmed(env: &Env, key: &str) -> Option<String> {
    env.get(key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The three ways to give the agent an identity, for error messages.
const HOW_TO: &str = "use workload identity (label the pod azure.workload.identity/use: \"true\" and annotate its service account with azure.workload.identity/client-id, which injects AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE), or set useVMManagedIdentity: \"true\" (plus userAssignedIdentityID for a user-assigned identity), or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE";

/// Selects the identity. Pushes every problem; `None` when any was found.
pub(crate) fn select(
    modes: &Modes,
    params: &Parameters,
    tenant: Option<&str>,
    cloud: &Cloud,
    settings: &Settings,
    env: &Env,
    errs: &mut Vec<ConfigError>,
) -> Option<Identity> {
    if modes.failed {
        return None;
    }
    if modes.vm == Some(true) {
        let id = params.get("userAssignedIdentityID");
        if id.contains('/') {
            // A frequent mix-up (reference issue #991): IMDS wants the client ID here.
            errs.push(ConfigError::Identity(format!(
                "userAssignedIdentityID {id:?} looks like a resource ID: use the identity's client ID (az identity show --query clientId)"
            )));
            return None;
        }
        return Some(Identity::ManagedIdentity {
            client_id: (!id.is_empty()).then(|| id.to_owned()),
            endpoint: settings.imds_endpoint.clone(),
        });
    }

    let mut failed = false;
    let mut fail = |errs: &mut Vec<ConfigError>, msg: String| {
        errs.push(ConfigError::Identity(msg));
        failed = true;
    };
    let client_id = Some(params.get("clientID"))
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or_else(|| env_trimmed(env, "AZURE_CLIENT_ID"));
    let token_file = env_trimmed(env, "AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from);
    let secret_env = env
        .get("AZURE_CLIENT_SECRET")
        .filter(|s| !s.trim().is_empty());
    let secret_file = env_trimmed(env, "AZURE_CLIENT_SECRET_FILE");

    // The tenant becomes a path segment of the token URL.
    if let Some(t) = tenant.filter(|t| {
        !t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }) {
        fail(
            errs,
            format!(
                "tenantId {t:?} is not valid: expected a tenant ID (GUID), a domain name, or adfs"
            ),
        );
    }
    let authority = |errs: &mut Vec<ConfigError>, failed: &mut bool| -> Option<Url> {
        match env_trimmed(env, "AZURE_AUTHORITY_HOST") {
            None => Some(cloud.authority_host.clone()),
            Some(v) => match with_trailing_slash(&v) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
                Ok(_) => {
                    errs.push(ConfigError::Identity(format!(
                        "AZURE_AUTHORITY_HOST {v:?} is not valid: must be an https URL"
                    )));
                    *failed = true;
                    None
                }
                Err(e) => {
                    errs.push(ConfigError::Identity(format!(
                        "AZURE_AUTHORITY_HOST {v:?} is not valid: {e}"
                    )));
                    *failed = true;
                    None
                }
            },
        }
    };

    if let (Some(client_id), Some(token_file)) = (&client_id, &token_file) {
        let authority_host = authority(errs, &mut failed);
        return match (failed, tenant, authority_host) {
            // A missing tenant was already reported as `tenantId is not provided`.
            (false, Some(t), Some(authority_host)) => Some(Identity::WorkloadIdentity {
                client_id: client_id.clone(),
                tenant_id: t.to_owned(),
                token_file: token_file.clone(),
                authority_host,
            }),
            _ => None,
        };
    }

    if secret_env.is_some() || secret_file.is_some() {
        let secret = match (secret_env, &secret_file) {
            (Some(_), Some(_)) => {
                fail(
                    errs,
                    "both AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_FILE are set: set only one"
                        .into(),
                );
                None
            }
            (Some(s), None) => Some(SecretString::new(s.trim())),
            (None, Some(path)) => match crate::files::read_to_string(
                std::path::Path::new(path),
                crate::files::MAX_SMALL_FILE,
                "AZURE_CLIENT_SECRET_FILE",
            ) {
                Ok(s) if s.trim().is_empty() => {
                    fail(
                        errs,
                        format!("AZURE_CLIENT_SECRET_FILE \"{path}\" is empty"),
                    );
                    None
                }
                Ok(s) => Some(SecretString::new(s.trim())),
                Err(e) => {
                    fail(errs, e.to_string());
                    None
                }
            },
            (None, None) => None,
        };
        if client_id.is_none() {
            fail(
                errs,
                "a client secret is set but no client ID: set the clientID parameter or AZURE_CLIENT_ID".into(),
            );
        }
        let authority_host = authority(errs, &mut failed);
        return match (failed, client_id, tenant, secret, authority_host) {
            (false, Some(client_id), Some(t), Some(secret), Some(authority_host)) => {
                Some(Identity::ClientSecret {
                    client_id,
                    tenant_id: t.to_owned(),
                    secret,
                    authority_host,
                })
            }
            _ => None,
        };
    }

    if let Some(c) = client_id {
        fail(
            errs,
            format!(
                "client ID {c:?} is set but AZURE_FEDERATED_TOKEN_FILE is not, so workload identity cannot be used: label the pod azure.workload.identity/use: \"true\" (the webhook mounts the token and sets the variable), or {}",
                "set AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE for a client secret"
            ),
        );
        return None;
    }
    let hint = if params.get("userAssignedIdentityID").is_empty() {
        ""
    } else {
        " (userAssignedIdentityID is only used with useVMManagedIdentity: \"true\")"
    };
    fail(errs, format!("no identity configured{hint}: {HOW_TO}"));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cloud::cloud_by_name;

    /// Runs the selection like `load` does: modes, tenant, then select.
    fn pick(params: &[(&str, &str)], env: &Env) -> (Option<Identity>, Vec<String>) {
        let params = Parameters::from_pairs(params.iter().copied());
        let mut errs = Vec::new();
        let modes = Modes::parse(&params, &mut errs);
        let t = tenant(&params, env);
        if t.is_none() && modes.needs_tenant() {
            errs.push(ConfigError::Missing("tenantId"));
        }
        let mut settings = Settings::with_defaults("spc.yaml", "/out");
        settings.imds_endpoint = Url::parse("http://127.0.0.1:1234").unwrap();
        let cloud = cloud_by_name("").unwrap();
        let id = select(
            &modes,
            &params,
            t.as_deref(),
            &cloud,
            &settings,
            env,
            &mut errs,
        );
        (id, errs.iter().map(ToString::to_string).collect())
    }

    const WI_ENV: &[(&str, &str)] = &[
        ("AZURE_CLIENT_ID", "env-client"),
        ("AZURE_TENANT_ID", "env-tenant"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ];

    #[test]
    fn vm_managed_identity_wins_and_needs_no_tenant() {
        // Even with a full workload-identity environment.
        let (id, errs) = pick(
            &[("useVMManagedIdentity", "true")],
            &Env::from_pairs(WI_ENV),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Identity::ManagedIdentity {
            client_id,
            endpoint,
        }) = id
        else {
            panic!("{id:?}")
        };
        assert_eq!(client_id, None);
        assert_eq!(endpoint.as_str(), "http://127.0.0.1:1234/");

        let (id, errs) = pick(
            &[
                ("useVMManagedIdentity", " True "),
                ("userAssignedIdentityID", " uami "),
            ],
            &Env::default(),
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(
            matches!(id, Some(Identity::ManagedIdentity { client_id: Some(c), .. }) if c == "uami")
        );
    }

    #[test]
    fn user_assigned_resource_id_is_refused() {
        let (id, errs) = pick(
            &[
                ("useVMManagedIdentity", "true"),
                (
                    "userAssignedIdentityID",
                    "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
                ),
            ],
            &Env::default(),
        );
        assert!(id.is_none());
        assert!(
            errs[0].contains("looks like a resource ID: use the identity's client ID"),
            "{errs:?}"
        );
    }

    #[test]
    fn workload_identity_from_webhook_env() {
        let (id, errs) = pick(&[], &Env::from_pairs(WI_ENV));
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Identity::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
            authority_host,
        }) = id
        else {
            panic!("{id:?}")
        };
        assert_eq!(client_id, "env-client");
        assert_eq!(tenant_id, "env-tenant");
        assert_eq!(
            token_file,
            PathBuf::from("/var/run/secrets/azure/tokens/azure-identity-token")
        );
        assert_eq!(
            authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
    }

    // reference: docs/reference-provider.md §3 ("SPC parameters clientID/tenantID should override
    // the env vars"); §1.5 (tenantID wins over tenantId)
    #[test]
    fn parameters_override_env_and_tenant_id_spellings() {
        let (id, _) = pick(
            &[
                ("clientID", " spc-client "),
                ("tenantID", " spc-tenant "),
                ("tenantId", "old"),
            ],
            &Env::from_pairs(WI_ENV),
        );
        assert!(
            matches!(&id, Some(Identity::WorkloadIdentity { client_id, tenant_id, .. })
            if client_id == "spc-client" && tenant_id == "spc-tenant"),
            "{id:?}"
        );
        let (id, _) = pick(&[("tenantId", "test")], &Env::from_pairs(WI_ENV));
        assert!(
            matches!(&id, Some(Identity::WorkloadIdentity { tenant_id, .. }) if tenant_id == "test")
        );
        // Lower-case `tenantid` is not recognised (falls back to the env).
        let (id, _) = pick(&[("tenantid", "nope")], &Env::from_pairs(WI_ENV));
        assert!(
            matches!(&id, Some(Identity::WorkloadIdentity { tenant_id, .. }) if tenant_id == "env-tenant")
        );
    }

    #[test]
    fn authority_defaults_to_the_cloud_and_is_normalised() {
        let mut e = Env::from_pairs(WI_ENV);
        e.0.remove("AZURE_AUTHORITY_HOST");
        let (id, _) = pick(&[], &e);
        assert!(
            matches!(&id, Some(Identity::WorkloadIdentity { authority_host, .. })
            if authority_host.as_str() == "https://login.microsoftonline.com/")
        );
        e.0.insert(
            "AZURE_AUTHORITY_HOST".into(),
            "https://127.0.0.1:4443".into(),
        );
        let (id, _) = pick(&[], &e);
        assert!(
            matches!(&id, Some(Identity::WorkloadIdentity { authority_host, .. })
            if authority_host.as_str() == "https://127.0.0.1:4443/")
        );
        e.0.insert(
            "AZURE_AUTHORITY_HOST".into(),
            "http://127.0.0.1:4443".into(),
        );
        let (id, errs) = pick(&[], &e);
        assert!(id.is_none());
        assert!(
            errs[0].starts_with("AZURE_AUTHORITY_HOST \"http://127.0.0.1:4443\" is not valid"),
            "{errs:?}"
        );
    }

    #[test]
    fn workload_identity_without_tenant_reports_the_reference_text() {
        let mut e = Env::from_pairs(WI_ENV);
        e.0.remove("AZURE_TENANT_ID");
        let (id, errs) = pick(&[], &e);
        assert!(id.is_none());
        assert_eq!(errs, ["tenantId is not provided"]);
    }

    #[test]
    fn client_secret_from_env_or_file() {
        let (id, errs) = pick(
            &[("clientID", "app"), ("tenantID", "t1")],
            &Env::from_pairs(&[("AZURE_CLIENT_SECRET", "s3cr3t-value")]),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Identity::ClientSecret {
            client_id,
            tenant_id,
            secret,
            authority_host,
        }) = &id
        else {
            panic!("{id:?}")
        };
        assert_eq!((client_id.as_str(), tenant_id.as_str()), ("app", "t1"));
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert_eq!(
            authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(
            !format!("{id:?}").contains("s3cr3t"),
            "Debug must redact the secret"
        );

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("clientsecret");
        std::fs::write(&f, "  from-file\n").unwrap();
        let e = Env::from_pairs(&[
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_SECRET_FILE", f.to_str().unwrap()),
        ]);
        let (id, errs) = pick(&[], &e);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(
            matches!(&id, Some(Identity::ClientSecret { secret, .. }) if secret.expose() == "from-file")
        );
    }

    #[test]
    fn client_secret_problems_are_all_reported() {
        let (id, errs) = pick(
            &[],
            &Env::from_pairs(&[
                ("AZURE_CLIENT_SECRET", "x"),
                ("AZURE_CLIENT_SECRET_FILE", "/nope"),
            ]),
        );
        assert!(id.is_none());
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0], "tenantId is not provided");
        assert!(errs[1].contains("both AZURE_CLIENT_SECRET and AZURE_CLIENT_SECRET_FILE"));
        assert!(errs[2].contains("no client ID"));

        let (_, errs) = pick(
            &[("clientID", "a"), ("tenantID", "t")],
            &Env::from_pairs(&[("AZURE_CLIENT_SECRET_FILE", "/definitely/missing")]),
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("cannot read AZURE_CLIENT_SECRET_FILE \"/definitely/missing\""),
            "{errs:?}"
        );
    }

    #[test]
    fn workload_identity_beats_client_secret() {
        let mut e = Env::from_pairs(WI_ENV);
        e.0.insert("AZURE_CLIENT_SECRET".into(), "x".into());
        assert!(matches!(
            pick(&[], &e).0,
            Some(Identity::WorkloadIdentity { .. })
        ));
    }

    #[test]
    fn no_identity_is_actionable() {
        let (id, errs) = pick(&[("tenantID", "t")], &Env::default());
        assert!(id.is_none());
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert!(e.starts_with("no identity configured: "), "{e}");
        for needle in [
            "azure.workload.identity/use: \"true\"",
            "azure.workload.identity/client-id",
            "useVMManagedIdentity",
            "AZURE_CLIENT_SECRET",
        ] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
        let (_, errs) = pick(
            &[("tenantID", "t"), ("userAssignedIdentityID", "x")],
            &Env::default(),
        );
        assert!(errs[0].contains("userAssignedIdentityID is only used with useVMManagedIdentity"));
        // A client ID without the token file says exactly what is missing.
        let (_, errs) = pick(&[("tenantID", "t"), ("clientID", "c")], &Env::default());
        assert!(
            errs[0].contains("AZURE_FEDERATED_TOKEN_FILE is not"),
            "{errs:?}"
        );
    }

    // reference: docs/reference-provider.md §1.5 (parameter getters; identity-binding tests)
    #[test]
    fn mode_booleans_use_reference_texts() {
        for (name, msg) in [
            (
                "usePodIdentity",
                "usePodIdentity \"tru\": not a boolean: use \"true\" or \"false\"",
            ),
            (
                "useVMManagedIdentity",
                "useVMManagedIdentity \"tru\": not a boolean: use \"true\" or \"false\"",
            ),
        ] {
            let (id, errs) = pick(
                &[(name, "tru"), ("tenantID", "t")],
                &Env::from_pairs(WI_ENV),
            );
            assert!(id.is_none());
            assert_eq!(errs, [msg]);
        }
        let (_, errs) = pick(&[("useAzureTokenProxy", "invalid-value")], &Env::default());
        assert!(
            errs[0].starts_with("useAzureTokenProxy \"invalid-value\": not a boolean"),
            "{errs:?}"
        );
        let (_, errs) = pick(
            &[("usePodIdentity", "true"), ("useAzureTokenProxy", "true")],
            &Env::default(),
        );
        assert!(errs[0].starts_with("only one identity mode"), "{errs:?}");
        for v in ["", "false", "False", " false "] {
            let (id, _) = pick(&[("useVMManagedIdentity", v)], &Env::from_pairs(WI_ENV));
            assert!(
                matches!(id, Some(Identity::WorkloadIdentity { .. })),
                "{v:?}"
            );
        }
        let (id, _) = pick(&[("useVMManagedIdentity", "test")], &Env::default());
        assert!(id.is_none());
    }

    // reference: docs/reference-provider.md §1.5 identity-binding tests. The reference answers
    // `useAzureTokenProxy: true` without clientID with `clientID is required`, and without
    // tokens with `service account tokens are required for identity binding`; we refuse the
    // mode itself in both cases (deliberate difference). The SA token map and
    // nodePublishSecretRef vectors do not apply: the agent reads AZURE_FEDERATED_TOKEN_FILE
    // and AZURE_CLIENT_SECRET(_FILE) instead of driver-supplied maps.
    #[test]
    fn unsupported_modes_are_refused_clearly() {
        let (id, errs) = pick(
            &[("usePodIdentity", "true"), ("tenantID", "t")],
            &Env::default(),
        );
        assert!(id.is_none());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("usePodIdentity is not supported by keyvault-agent"),
            "{errs:?}"
        );
        let (_, errs) = pick(
            &[("useAzureTokenProxy", "1"), ("clientID", "c")],
            &Env::default(),
        );
        assert!(errs[0].starts_with("useAzureTokenProxy is not supported by keyvault-agent"));
    }

    #[test]
    fn tenant_must_be_url_safe() {
        let (id, errs) = pick(&[("tenantID", "a/b")], &Env::from_pairs(WI_ENV));
        assert!(id.is_none());
        assert!(
            errs[0].starts_with("tenantId \"a/b\" is not valid"),
            "{errs:?}"
        );
        let (id, _) = pick(&[("tenantID", "adfs")], &Env::from_pairs(WI_ENV));
        assert!(id.is_some());
    }
}
