//! The Key Vault 401 challenge (`WWW-Authenticate: Bearer authorization="…", resource="…"`,
//! `docs/protocol.md` §2), the resource check the official SDKs apply before sending a token,
//! and the tenant a challenge names (`authorization="https://<authority>/<tenant>"`), which is
//! only used at the configured authority host ([`same_authority`]).

use url::Url;

/// A parsed Bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `authorization` or `authorization_uri`: the authority and tenant of the vault (its
    /// tenant is used at the configured authority host only; see [`named_tenant`]).
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

/// `host` or `host:port` (the port only when it is not 443), lowercase.
pub fn host_of(url: &Url) -> String {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match url.port() {
        Some(p) if p != 443 => format!("{host}:{p}"),
        _ => host,
    }
}

/// The authority host and tenant an `authorization` URL names, read as the SDKs read it: the
/// first path segment after the configured authority's own path (`https://login.microsoftonline.com/<tenant>`).
/// `None` when it is not an https URL with a tenant segment.
pub fn named_tenant(authorization: &str, configured: &Url) -> Option<(String, String)> {
    let url = Url::parse(authorization.trim()).ok()?;
    if url.scheme() != "https" {
        return None;
    }
    let prefix: Vec<&str> = configured
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let mut segs = url.path_segments()?.filter(|p| !p.is_empty());
    // The configured authority's path, if any (the emulator serves at its root; a proxy may not).
    let mut rest: Vec<&str> = segs.by_ref().collect();
    if rest.len() > prefix.len() && rest[..prefix.len()] == prefix[..] {
        rest.drain(..prefix.len());
    }
    let tenant = rest.first()?.to_string();
    Some((host_of(&url), tenant))
}

/// Host names Entra answers under as one authority (the aliases of its instance discovery
/// metadata): Key Vault's challenges name `login.windows.net` while the SDKs' default host
/// is `login.microsoftonline.com`.
const AUTHORITY_ALIASES: &[&[&str]] = &[
    &[
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
    ],
    &["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    &["login.microsoftonline.us", "login.usgovcloudapi.net"],
];

/// Whether a challenge's authority host is the configured one (`host[:port]` as
/// [`host_of`] writes them; Entra's aliases of one cloud count as one).
pub fn same_authority(challenge_host: &str, configured_host: &str) -> bool {
    let (a, b) = (
        challenge_host.to_ascii_lowercase(),
        configured_host.to_ascii_lowercase(),
    );
    a == b
        || AUTHORITY_ALIASES
            .iter()
            .any(|group| group.contains(&a.as_str()) && group.contains(&b.as_str()))
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

/// What a 401 leads to (see [`Rounds::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The challenge named a new scope or tenant: authorise with it and try again.
    Learn,
    /// The vault refused a token for a scope it still names: drop that token, try again.
    DropToken,
    /// Neither helps any more: the request fails as unauthorised.
    GiveUp,
}

/// The 401 rounds of one logical request: a new challenge is learned once and a refused
/// token dropped once, so a vault that answers 401 forever ends the request after at most
/// three attempts.
#[derive(Debug, Default)]
pub struct Rounds {
    learned: bool,
    dropped_token: bool,
}

impl Rounds {
    /// The answer to a 401: `changed` when the challenge names another scope or tenant than
    /// the request was sent with, `had_token` when it carried a token.
    pub fn reply(&mut self, changed: bool, had_token: bool) -> Reply {
        if changed && !self.learned {
            self.learned = true;
            return Reply::Learn;
        }
        if had_token && !self.dropped_token {
            self.dropped_token = true;
            return Reply::DropToken;
        }
        Reply::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/protocol.md §2.2 (learn the challenge once, replace a refused token once)
    #[test]
    fn a_401_is_learned_once_and_a_refused_token_dropped_once() {
        // The probe: no token, a new scope; then the token is refused twice.
        let mut r = Rounds::default();
        assert_eq!(r.reply(true, false), Reply::Learn);
        assert_eq!(r.reply(false, true), Reply::DropToken);
        assert_eq!(r.reply(false, true), Reply::GiveUp);
        // A vault whose challenge keeps changing is learned from once, not forever.
        let mut r = Rounds::default();
        assert_eq!(r.reply(true, false), Reply::Learn);
        assert_eq!(r.reply(true, true), Reply::DropToken);
        assert_eq!(r.reply(true, true), Reply::GiveUp);
        // A 401 to the probe that names nothing new has nothing to retry with.
        assert_eq!(Rounds::default().reply(false, false), Reply::GiveUp);
    }

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

    // reference: issue 11 item 8 (another tenant, only at the configured authority host)
    #[test]
    fn the_named_tenant_and_its_authority_host() {
        let public: Url = "https://login.microsoftonline.com/".parse().unwrap();
        assert_eq!(
            named_tenant(
                "https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47",
                &public
            ),
            Some((
                "login.windows.net".into(),
                "72f988bf-86f1-41af-91ab-2d7cd011db47".into()
            ))
        );
        // A configured authority with a path: the tenant follows it.
        let proxied: Url = "https://proxy.example:8443/entra/".parse().unwrap();
        assert_eq!(
            named_tenant("https://proxy.example:8443/entra/other-tenant", &proxied),
            Some(("proxy.example:8443".into(), "other-tenant".into()))
        );
        assert_eq!(named_tenant("http://login.windows.net/t", &public), None);
        assert_eq!(named_tenant("https://login.windows.net/", &public), None);
        assert_eq!(named_tenant("not a url", &public), None);
        assert!(same_authority(
            "login.windows.net",
            "login.microsoftonline.com"
        ));
        assert!(same_authority("LOCALHOST:8443", "localhost:8443"));
        assert!(!same_authority("localhost:8443", "localhost:9443"));
        assert!(!same_authority(
            "login.evil.example",
            "login.microsoftonline.com"
        ));
        assert!(!same_authority(
            "login.chinacloudapi.cn",
            "login.microsoftonline.com"
        ));
        assert_eq!(
            host_of(&"https://a.example:443/x".parse().unwrap()),
            "a.example"
        );
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
