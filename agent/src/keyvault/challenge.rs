//! The Key Vault 401 challenge (`WWW-Authenticate: Bearer authorization="…", resource="…"`,
//! `docs/protocol.md` §2) and the resource check the official SDKs apply before sending a token.

use url::Url;

/// A parsed Bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `authorization` or `authorization_uri` (informational; we use the configured authority).
    pub authorization: Option<String>,
    /// The scope to request: `scope`, or `resource + "/.default"`.
    pub scope: String,
}

/// Parses a `WWW-Authenticate` value. `None` unless it is a Bearer challenge naming a
/// resource or scope.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let scope = match (get("scope"), get("resource")) {
        (Some(s), _) => s,
        (None, Some(r)) => format!("{}/.default", r.trim_end_matches('/')),
        (None, None) => return None,
    };
    Some(Challenge {
        authorization: get("authorization").or_else(|| get("authorization_uri")),
        scope,
    })
}

/// `k="v", k2=v2` pairs (quoted strings may contain commas and `\"`).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
    out
}

/// The host the challenge's scope belongs to (`https://vault.azure.net/.default` →
/// `vault.azure.net`).
pub fn scope_host(scope: &str) -> Option<String> {
    let resource = scope.strip_suffix("/.default").unwrap_or(scope);
    Url::parse(resource)
        .ok()?
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
}

/// The SDKs' rule (aka.ms/azsdk/blog/vault-uri): the request host must end with
/// `"." + <resource host>`, so a look-alike vault cannot obtain a Key Vault token.
pub fn host_matches(request_host: &str, resource_host: &str) -> bool {
    let req = request_host.trim_end_matches('.').to_ascii_lowercase();
    let res = resource_host.trim_end_matches('.').to_ascii_lowercase();
    !res.is_empty() && req.ends_with(&format!(".{res}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/protocol.md §2.1
    #[test]
    fn parses_the_recorded_forms() {
        let c = parse(r#"Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#).unwrap();
        assert_eq!(c.scope, "https://vault.azure.net/.default");
        assert_eq!(
            c.authorization.as_deref(),
            Some("https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        let c = parse(r#"Bearer authorization_uri="https://localhost:8443/secrets", resource="https://vault.localhost/""#).unwrap();
        assert_eq!(c.scope, "https://vault.localhost/.default");
        assert_eq!(
            c.authorization.as_deref(),
            Some("https://localhost:8443/secrets")
        );
        let c =
            parse(r#"bearer scope="https://vault.azure.net/.default",authorization="https://x/t""#)
                .unwrap();
        assert_eq!(c.scope, "https://vault.azure.net/.default");
        let c = parse(r#"Bearer resource=https://vault.azure.cn"#).unwrap();
        assert_eq!(c.scope, "https://vault.azure.cn/.default");
        assert_eq!(parse(r#"Basic realm="x""#), None);
        assert_eq!(parse(r#"Bearer authorization="https://x/t""#), None);
        assert_eq!(parse(""), None);
    }

    // reference: docs/protocol.md §2.2 (verify_challenge_resource)
    #[test]
    fn host_check_accepts_subdomains_only() {
        assert_eq!(
            scope_host("https://vault.azure.net/.default").as_deref(),
            Some("vault.azure.net")
        );
        assert_eq!(
            scope_host("https://vault.localhost").as_deref(),
            Some("vault.localhost")
        );
        assert!(host_matches("myvault.vault.azure.net", "vault.azure.net"));
        assert!(host_matches("demo.vault.localhost", "vault.localhost"));
        assert!(host_matches("Demo.Vault.Localhost.", "vault.localhost"));
        // The resource host itself is not a vault.
        assert!(!host_matches("vault.azure.net", "vault.azure.net"));
        // Look-alikes.
        assert!(!host_matches(
            "myvault.vault.azure.net.evil.com",
            "vault.azure.net"
        ));
        assert!(!host_matches("myvaultvault.azure.net", "vault.azure.net"));
        assert!(!host_matches("evil.localhost", "vault.localhost"));
        assert!(!host_matches("myvault.vault.azure.net", "evil.com"));
        assert!(!host_matches("x.vault.azure.net", ""));
    }
}
