//! Clouds and the vault URL (`docs/reference-provider.md` §3, `docs/protocol.md` §5).
//!
//! Names match go-autorest's `EnvironmentFromName`: case-insensitive, with its aliases
//! (`AzureCloud`, `AzureUSGovernment`). `AzureStackCloud` reads the reference's JSON file
//! from `cloudEnvFileName` at load time; unlike the reference nothing is stored in a
//! process-wide env var. `keyvaultURL` (not in the reference; its issues #672 and #1226)
//! replaces `https://<name>.<suffix>/` for private endpoints and emulators.

use std::path::Path;

use serde::Deserialize;
use url::Url;

use super::params::Parameters;
use super::{Cloud, ConfigError};

/// The built-in clouds: upper-case lookup names → (canonical name, authority, DNS suffix).
const CLOUDS: [(&str, &str, &str, &str); 6] = [
    (
        "AZURECLOUD",
        "AzurePublicCloud",
        "https://login.microsoftonline.com/",
        "vault.azure.net",
    ),
    (
        "AZUREPUBLICCLOUD",
        "AzurePublicCloud",
        "https://login.microsoftonline.com/",
        "vault.azure.net",
    ),
    (
        "AZUREUSGOVERNMENT",
        "AzureUSGovernmentCloud",
        "https://login.microsoftonline.us/",
        "vault.usgovcloudapi.net",
    ),
    (
        "AZUREUSGOVERNMENTCLOUD",
        "AzureUSGovernmentCloud",
        "https://login.microsoftonline.us/",
        "vault.usgovcloudapi.net",
    ),
    (
        "AZURECHINACLOUD",
        "AzureChinaCloud",
        "https://login.chinacloudapi.cn/",
        "vault.azure.cn",
    ),
    // Retired, kept for parity with the reference's table.
    (
        "AZUREGERMANCLOUD",
        "AzureGermanCloud",
        "https://login.microsoftonline.de/",
        "vault.microsoftazure.de",
    ),
];

/// A built-in cloud by name (case-insensitive; empty means `AzurePublicCloud`).
/// `AzureStackCloud` is not built in: it needs its file. The error lists the names (in our
/// words, not go-autorest's).
pub fn cloud_by_name(name: &str) -> Result<Cloud, String> {
    let upper = if name.is_empty() {
        "AZUREPUBLICCLOUD".to_owned()
    } else {
        name.to_ascii_uppercase()
    };
    let (_, canonical, authority, suffix) = CLOUDS
        .iter()
        .find(|(key, ..)| *key == upper)
        .ok_or_else(|| {
            let mut names: Vec<&str> = CLOUDS.iter().map(|(_, c, ..)| *c).collect();
            names.dedup();
            format!(
                "there is no cloud named {name:?}: use one of {} (or AzureStackCloud with cloudEnvFileName)",
                names.join(", ")
            )
        })?;
    Ok(Cloud {
        name: (*canonical).to_owned(),
        authority_host: Url::parse(authority).expect("valid built-in authority"),
        keyvault_dns_suffix: (*suffix).to_owned(),
        keyvault_resource: format!("https://{suffix}"),
    })
}

/// The reference's vault URL `https://<name>.<suffix>/` (the name must already be valid).
pub fn vault_url_for(vault_name: &str, cloud: &Cloud) -> Result<Url, String> {
    Url::parse(&format!(
        "https://{vault_name}.{}/",
        cloud.keyvault_dns_suffix
    ))
    .map_err(|e| e.to_string())
}

/// The reference's vault-name check (its texts, `%q` quoting).
pub(crate) fn validate_vault_name(name: &str) -> Result<(), String> {
    if name.len() < 3 || name.len() > 24 {
        return Err(format!(
            "Invalid vault name: {name:?}, must be between 3 and 24 chars"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "Invalid vault name: {name:?}, must match [-a-zA-Z0-9]{{3,24}}"
        ));
    }
    Ok(())
}

/// The go-autorest environment JSON (only the fields we use; others are ignored).
#[derive(Deserialize)]
struct StackFile {
    #[serde(default)]
    name: String,
    #[serde(rename = "activeDirectoryEndpoint", default)]
    active_directory_endpoint: String,
    #[serde(rename = "keyVaultDNSSuffix", default)]
    key_vault_dns_suffix: String,
    #[serde(rename = "keyVaultEndpoint", default)]
    key_vault_endpoint: String,
}

/// Reads an Azure Stack (or any custom cloud) environment file. Errors name the path.
pub(crate) fn stack_cloud(path: &Path) -> Result<Cloud, String> {
    let shown = path.display();
    // Regular files only, bounded: a FIFO or /dev/zero here must not hang the agent.
    let text = crate::files::read_to_string(path, crate::files::MAX_SMALL_FILE, "cloudEnvFileName")
        .map_err(|e| e.to_string())?;
    let f: StackFile = serde_json::from_str(&text).map_err(|e| {
        format!("cloudEnvFileName \"{shown}\" is not a cloud environment JSON: {e}")
    })?;
    let missing = |field: &str| format!("cloudEnvFileName \"{shown}\" has no {field}");
    if f.active_directory_endpoint.trim().is_empty() {
        return Err(missing("activeDirectoryEndpoint"));
    }
    let suffix = f.key_vault_dns_suffix.trim().trim_start_matches('.');
    if suffix.is_empty() {
        return Err(missing("keyVaultDNSSuffix"));
    }
    let authority_host = with_trailing_slash(f.active_directory_endpoint.trim()).map_err(|e| {
        format!("cloudEnvFileName \"{shown}\": activeDirectoryEndpoint is not a URL: {e}")
    })?;
    let endpoint = f.key_vault_endpoint.trim();
    let keyvault_resource = if endpoint.is_empty() {
        format!("https://{suffix}")
    } else {
        endpoint.trim_end_matches('/').to_owned()
    };
    Ok(Cloud {
        name: if f.name.trim().is_empty() {
            "AzureStackCloud".to_owned()
        } else {
            f.name.trim().to_owned()
        },
        authority_host,
        keyvault_dns_suffix: suffix.to_owned(),
        keyvault_resource,
    })
}

/// Parses a URL and makes its path end with `/` (authority hosts and vault URLs are bases).
pub(crate) fn with_trailing_slash(s: &str) -> Result<Url, url::ParseError> {
    let mut u = Url::parse(s)?;
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

/// `cloudName` and `cloudEnvFileName` → the cloud, or an error pushed in the reference's form.
/// A relative `cloudEnvFileName` is resolved against `base_dir`.
pub(crate) fn from_parameters(
    params: &Parameters,
    base_dir: &Path,
    errs: &mut Vec<ConfigError>,
) -> Option<Cloud> {
    let name = params.get("cloudName");
    let file = params.get("cloudEnvFileName");
    let result = if name.eq_ignore_ascii_case("AzureStackCloud") {
        if file.is_empty() {
            Err("cloudEnvFileName is required for AzureStackCloud: name a JSON file with activeDirectoryEndpoint, keyVaultDNSSuffix and keyVaultEndpoint".to_owned())
        } else {
            stack_cloud(&base_dir.join(file))
        }
    } else {
        cloud_by_name(name)
    };
    match result {
        Ok(c) => Some(c),
        Err(reason) => {
            errs.push(ConfigError::Cloud {
                name: name.to_owned(),
                reason,
            });
            None
        }
    }
}

/// The optional `keyvaultURL` override: an absolute https URL without query or fragment;
/// the path gets a trailing slash.
pub(crate) fn vault_url_override(params: &Parameters, errs: &mut Vec<ConfigError>) -> Option<Url> {
    let value = params.get("keyvaultURL");
    if value.is_empty() {
        return None;
    }
    let fail = |reason: &str| ConfigError::VaultUrl {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = match with_trailing_slash(value) {
        Ok(u) => u,
        Err(e) => {
            errs.push(fail(&format!("not a URL: {e}")));
            return None;
        }
    };
    let problem = if url.scheme() != "https" {
        Some("must be an https URL (tokens are sent to it)")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("has no host")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("must not have a query or fragment")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not carry credentials")
    } else {
        None
    };
    match problem {
        Some(p) => {
            errs.push(fail(p));
            None
        }
        None => Some(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/reference-provider.md §3 (cloud table) and TestGetVaultURL
    #[test]
    fn vault_urls_for_every_built_in_cloud() {
        for (name, url) in [
            ("", "https://testkv.vault.azure.net/"),
            ("AzurePublicCloud", "https://testkv.vault.azure.net/"),
            ("azurepubliccloud", "https://testkv.vault.azure.net/"),
            ("AzureCloud", "https://testkv.vault.azure.net/"),
            ("AzureChinaCloud", "https://testkv.vault.azure.cn/"),
            (
                "AzureGermanCloud",
                "https://testkv.vault.microsoftazure.de/",
            ),
            (
                "AzureUSGovernmentCloud",
                "https://testkv.vault.usgovcloudapi.net/",
            ),
            (
                "AZUREUSGOVERNMENT",
                "https://testkv.vault.usgovcloudapi.net/",
            ),
        ] {
            let c = cloud_by_name(name).unwrap();
            assert_eq!(vault_url_for("testkv", &c).unwrap().as_str(), url, "{name}");
        }
    }

    #[test]
    fn cloud_authorities_and_resources() {
        let c = cloud_by_name("AzureUSGovernmentCloud").unwrap();
        assert_eq!(c.name, "AzureUSGovernmentCloud");
        assert_eq!(
            c.authority_host.as_str(),
            "https://login.microsoftonline.us/"
        );
        assert_eq!(c.keyvault_resource, "https://vault.usgovcloudapi.net");
        let c = cloud_by_name("azurechinacloud").unwrap();
        assert_eq!(c.authority_host.as_str(), "https://login.chinacloudapi.cn/");
        let c = cloud_by_name("").unwrap();
        assert_eq!(c.name, "AzurePublicCloud");
        assert_eq!(
            c.authority_host.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(c.keyvault_resource, "https://vault.azure.net");
    }

    // reference: docs/reference-provider.md §1.2 (cloudName is refused); issue 12 item 4 (our words)
    #[test]
    fn unknown_cloud_lists_the_known_names() {
        assert_eq!(
            cloud_by_name("AzureCloud1").unwrap_err(),
            "there is no cloud named \"AzureCloud1\": use one of AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud (or AzureStackCloud with cloudEnvFileName)"
        );
    }

    // reference: docs/reference-provider.md §1.2 (vault name texts)
    #[test]
    fn vault_name_rules() {
        assert_eq!(
            validate_vault_name("kv").unwrap_err(),
            "Invalid vault name: \"kv\", must be between 3 and 24 chars"
        );
        assert_eq!(
            validate_vault_name("kv_test").unwrap_err(),
            "Invalid vault name: \"kv_test\", must match [-a-zA-Z0-9]{3,24}"
        );
        assert!(validate_vault_name(&"a".repeat(25)).is_err());
        assert!(validate_vault_name(&"a".repeat(24)).is_ok());
        // The reference's weak check accepts leading/trailing hyphens; so do we.
        assert!(validate_vault_name("-kv-").is_ok());
    }

    #[test]
    fn stack_file_is_read_with_the_reference_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("akscustom.json");
        std::fs::write(
            &path,
            r#"{"name": "AzureStackCloud", "managementPortalURL": "x",
                "activeDirectoryEndpoint": "https://adfs.local.azurestack.external/adfs",
                "keyVaultEndpoint": "https://vault.local.azurestack.external/",
                "keyVaultDNSSuffix": "vault.local.azurestack.external"}"#,
        )
        .unwrap();
        let c = stack_cloud(&path).unwrap();
        assert_eq!(c.name, "AzureStackCloud");
        assert_eq!(
            c.authority_host.as_str(),
            "https://adfs.local.azurestack.external/adfs/"
        );
        assert_eq!(c.keyvault_dns_suffix, "vault.local.azurestack.external");
        assert_eq!(
            c.keyvault_resource,
            "https://vault.local.azurestack.external"
        );
        assert_eq!(
            vault_url_for("kv1", &c).unwrap().as_str(),
            "https://kv1.vault.local.azurestack.external/"
        );
    }

    #[test]
    fn stack_file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = stack_cloud(&missing).unwrap_err();
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("cannot read"),
            "{e}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = stack_cloud(&bad).unwrap_err();
        assert!(
            e.contains("bad.json") && e.contains("not a cloud environment JSON"),
            "{e}"
        );
        std::fs::write(&bad, r#"{"activeDirectoryEndpoint": "https://login/"}"#).unwrap();
        assert!(
            stack_cloud(&bad)
                .unwrap_err()
                .ends_with("has no keyVaultDNSSuffix")
        );
    }

    #[test]
    fn keyvault_url_override_rules() {
        let run = |v: &str| {
            let mut errs = Vec::new();
            let p = Parameters::from_pairs([("keyvaultURL", v)]);
            (vault_url_override(&p, &mut errs), errs)
        };
        let (u, e) = run(" https://127.0.0.1:8443 ");
        assert!(e.is_empty());
        assert_eq!(u.unwrap().as_str(), "https://127.0.0.1:8443/");
        let (u, _) = run("https://kv.privatelink.vaultcore.azure.net/");
        assert_eq!(
            u.unwrap().as_str(),
            "https://kv.privatelink.vaultcore.azure.net/"
        );
        for bad in [
            "http://127.0.0.1:8443",
            "not a url",
            "https://h/?a=b",
            "https://u:p@h/",
        ] {
            let (u, e) = run(bad);
            assert!(u.is_none(), "{bad}");
            assert_eq!(e.len(), 1, "{bad}");
            assert!(e[0].to_string().starts_with("keyvaultURL "), "{}", e[0]);
        }
        assert_eq!(run("").0, None);
    }
}
