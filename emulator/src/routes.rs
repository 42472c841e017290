//! The route table: every Key Vault data-plane operation the emulator knows, implemented or
//! not, as one row of method, path pattern, operation and [`Route`] class. The data-plane
//! router (`keyvault`) dispatches on a row's [`Op`]; faults, counters and the throttle key
//! by its [`Route`] ([`Route::classify`]). One table for both, so a route added for the
//! router is classified for faults the same day, and an operation Key Vault has but the
//! emulator lacks is listed once and answers 501 instead of reading as an object name.
//!
//! Patterns are `/`-separated segments: literals, `{name}`, `{version}`; a trailing `[/]`
//! accepts an optional trailing slash, a trailing `[/{version}]` an optional version (empty =
//! the latest, as `GET /secrets/{name}/` is). Rows are tried in order, first match wins: a
//! literal row (`GET /certificates/contacts`) sits above the pattern it would otherwise fall
//! into (`GET /certificates/{name}`), and a unit test proves every row is reachable.

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// A class of requests that faults and counters are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Route {
    /// Every request (faults); the total (counters).
    Any,
    /// `GET /secrets/{name}[/{version}]`, `GET /deletedsecrets/{name}`.
    SecretGet,
    /// `GET /secrets/{name}/versions`.
    SecretVersions,
    /// `GET /keys/{name}[/{version}]` (and the key operations Key Vault reads by GET).
    KeyGet,
    /// `GET /keys/{name}/versions`.
    KeyVersions,
    /// `GET /certificates/{name}[/{version}]` (and `/policy`, `/pending`, contacts, issuers).
    CertGet,
    /// `GET /certificates/{name}/versions`.
    CertVersions,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// `GET /metadata/identity/oauth2/token` (either listener).
    Imds,
    /// `GET /secrets`, `/keys`, `/certificates` and their `deleted…` collections.
    List,
    /// Any data-plane write: PUT/PATCH/POST/DELETE on secrets, keys, certificates.
    Write,
    /// OIDC discovery, JWKS, Entra metadata.
    Discovery,
    /// Anything else that is not an admin route.
    Other,
}

/// Coarse request kinds, for reading a request budget off `/admin/counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Object reads.
    Get,
    /// Collection and version lists.
    List,
    /// Access tokens (Entra and IMDS).
    Token,
    /// Data-plane writes.
    Write,
    /// Discovery and anything else.
    Other,
}

impl Route {
    /// Classifies a request: the identity endpoints first (the HTTPS router serves them
    /// before the data plane), then the Key Vault route table (`TABLE`); a path in neither is
    /// [`Route::Other`].
    pub(crate) fn classify(method: &Method, path: &str) -> Route {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segs.as_slice() {
            ["metadata", "identity", "oauth2", "token"]
            | ["metadata", "identity", "oauth2", "token", ""] => Route::Imds,
            [_, "oauth2", "v2.0", "token"] | [_, "oauth2", "token"] => Route::Token,
            ["issuer", ..] | [_, "v2.0", ".well-known", ..] | [_, "discovery", ..] => {
                Route::Discovery
            }
            _ => lookup(method, path).map_or(Route::Other, |m| m.row.route),
        }
    }

    /// The request kind an operator budgets by: `get`, `list` (collections and version
    /// lists), `token` (Entra and IMDS), `write`, or `other`.
    pub(crate) fn kind(self) -> RequestKind {
        match self {
            Route::SecretGet | Route::KeyGet | Route::CertGet => RequestKind::Get,
            Route::SecretVersions | Route::KeyVersions | Route::CertVersions | Route::List => {
                RequestKind::List
            }
            Route::Token | Route::Imds => RequestKind::Token,
            Route::Write => RequestKind::Write,
            _ => RequestKind::Other,
        }
    }
}

/// A Key Vault operation, named as in the REST API reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // The names are the REST API's; each row of TABLE says its route.
pub(crate) enum Op {
    GetSecrets,
    GetSecretVersions,
    GetSecret,
    SetSecret,
    UpdateSecret,
    DeleteSecret,
    GetDeletedSecrets,
    GetDeletedSecret,
    PurgeDeletedSecret,
    RecoverDeletedSecret,
    GetKeys,
    GetKeyVersions,
    CreateKey,
    GetKey,
    ImportKey,
    UpdateKey,
    DeleteKey,
    GetDeletedKeys,
    GetDeletedKey,
    PurgeDeletedKey,
    RecoverDeletedKey,
    GetCertificates,
    GetCertificateVersions,
    GetCertificatePolicy,
    ImportCertificate,
    CreateCertificate,
    GetCertificateOperation,
    UpdateCertificate,
    DeleteCertificate,
    GetDeletedCertificates,
    GetDeletedCertificate,
    PurgeDeletedCertificate,
    RecoverDeletedCertificate,
    GetCertificate,
    /// Key Vault has this operation (its REST name); the emulator answers 501.
    Unimplemented(&'static str),
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Row {
    /// HTTP method, upper case.
    pub(crate) method: &'static str,
    /// Path pattern (module header).
    pub(crate) pattern: &'static str,
    /// What the router does.
    pub(crate) op: Op,
    /// What faults, counters and the throttle see.
    pub(crate) route: Route,
}

const fn row(method: &'static str, pattern: &'static str, op: Op, route: Route) -> Row {
    Row {
        method,
        pattern,
        op,
        route,
    }
}

const fn missing(
    method: &'static str,
    pattern: &'static str,
    name: &'static str,
    route: Route,
) -> Row {
    row(method, pattern, Op::Unimplemented(name), route)
}

use Op::*;
use Route::{
    CertGet, CertVersions, KeyGet, KeyVersions, List, Other, SecretGet, SecretVersions, Write,
};

/// Every Key Vault data-plane route the emulator knows, in match order.
#[rustfmt::skip]
pub(crate) static TABLE: &[Row] = &[
    // Secrets.
    row(    "GET",    "/secrets[/]",                         GetSecrets,                   List),
    row(    "GET",    "/secrets/{name}/versions",            GetSecretVersions,            SecretVersions),
    row(    "GET",    "/secrets/{name}[/{version}]",         GetSecret,                    SecretGet),
    row(    "PUT",    "/secrets/{name}",                     SetSecret,                    Write),
    row(    "PATCH",  "/secrets/{name}[/{version}]",         UpdateSecret,                 Write),
    row(    "DELETE", "/secrets/{name}",                     DeleteSecret,                 Write),
    missing("POST",   "/secrets/{name}/backup",              "BackupSecret",               Write),
    missing("POST",   "/secrets/restore",                    "RestoreSecret",              Write),
    row(    "GET",    "/deletedsecrets[/]",                  GetDeletedSecrets,            List),
    row(    "GET",    "/deletedsecrets/{name}",              GetDeletedSecret,             SecretGet),
    row(    "DELETE", "/deletedsecrets/{name}",              PurgeDeletedSecret,           Write),
    row(    "POST",   "/deletedsecrets/{name}/recover",      RecoverDeletedSecret,         Write),
    // Keys.
    row(    "GET",    "/keys[/]",                            GetKeys,                      List),
    row(    "GET",    "/keys/{name}/versions",               GetKeyVersions,               KeyVersions),
    missing("GET",    "/keys/{name}/rotationpolicy",         "GetKeyRotationPolicy",       KeyGet),
    missing("GET",    "/keys/{name}/{version}/attestation",  "GetKeyAttestation",          KeyGet),
    row(    "GET",    "/keys/{name}[/{version}]",            GetKey,                       KeyGet),
    row(    "POST",   "/keys/{name}/create",                 CreateKey,                    Write),
    row(    "PUT",    "/keys/{name}",                        ImportKey,                    Write),
    row(    "PATCH",  "/keys/{name}[/{version}]",            UpdateKey,                    Write),
    row(    "DELETE", "/keys/{name}",                        DeleteKey,                    Write),
    missing("PUT",    "/keys/{name}/rotationpolicy",         "UpdateKeyRotationPolicy",    Write),
    missing("POST",   "/keys/{name}/backup",                 "BackupKey",                  Write),
    missing("POST",   "/keys/restore",                       "RestoreKey",                 Write),
    missing("POST",   "/keys/{name}/rotate",                 "RotateKey",                  Write),
    missing("POST",   "/keys/{name}/release",                "Release",                    Write),
    missing("POST",   "/keys/{name}/{version}/release",      "Release",                    Write),
    missing("POST",   "/keys/{name}/{version}/encrypt",      "Encrypt",                    Write),
    missing("POST",   "/keys/{name}/{version}/decrypt",      "Decrypt",                    Write),
    missing("POST",   "/keys/{name}/{version}/sign",         "Sign",                       Write),
    missing("POST",   "/keys/{name}/{version}/verify",       "Verify",                     Write),
    missing("POST",   "/keys/{name}/{version}/wrapkey",      "WrapKey",                    Write),
    missing("POST",   "/keys/{name}/{version}/unwrapkey",    "UnwrapKey",                  Write),
    row(    "GET",    "/deletedkeys[/]",                     GetDeletedKeys,               List),
    row(    "GET",    "/deletedkeys/{name}",                 GetDeletedKey,                KeyGet),
    row(    "DELETE", "/deletedkeys/{name}",                 PurgeDeletedKey,              Write),
    row(    "POST",   "/deletedkeys/{name}/recover",         RecoverDeletedKey,            Write),
    // Certificates. `GET /certificates/contacts` is the operation; `/certificates/contacts/`
    // (empty version) is a certificate named `contacts`.
    row(    "GET",    "/certificates[/]",                    GetCertificates,              List),
    missing("GET",    "/certificates/contacts",              "GetCertificateContacts",     CertGet),
    missing("PUT",    "/certificates/contacts",              "SetCertificateContacts",     Write),
    missing("DELETE", "/certificates/contacts",              "DeleteCertificateContacts",  Write),
    missing("GET",    "/certificates/issuers[/]",            "GetCertificateIssuers",      CertGet),
    missing("GET",    "/certificates/issuers/{name}",        "GetCertificateIssuer",       CertGet),
    missing("PUT",    "/certificates/issuers/{name}",        "SetCertificateIssuer",       Write),
    missing("PATCH",  "/certificates/issuers/{name}",        "UpdateCertificateIssuer",    Write),
    missing("DELETE", "/certificates/issuers/{name}",        "DeleteCertificateIssuer",    Write),
    row(    "GET",    "/certificates/{name}/versions",       GetCertificateVersions,       CertVersions),
    row(    "GET",    "/certificates/{name}/policy",         GetCertificatePolicy,         CertGet),
    row(    "GET",    "/certificates/{name}/pending",        GetCertificateOperation,      CertGet),
    row(    "GET",    "/certificates/{name}[/{version}]",    GetCertificate,               CertGet),
    row(    "POST",   "/certificates/{name}/import",         ImportCertificate,            Write),
    row(    "POST",   "/certificates/{name}/create",         CreateCertificate,            Write),
    missing("PATCH",  "/certificates/{name}/policy",         "UpdateCertificatePolicy",    Write),
    missing("PATCH",  "/certificates/{name}/pending",        "UpdateCertificateOperation", Write),
    missing("DELETE", "/certificates/{name}/pending",        "DeleteCertificateOperation", Write),
    missing("POST",   "/certificates/{name}/pending/merge",  "MergeCertificate",           Write),
    missing("POST",   "/certificates/{name}/backup",         "BackupCertificate",          Write),
    missing("POST",   "/certificates/restore",               "RestoreCertificate",         Write),
    row(    "PATCH",  "/certificates/{name}[/{version}]",    UpdateCertificate,            Write),
    row(    "DELETE", "/certificates/{name}",                DeleteCertificate,            Write),
    row(    "GET",    "/deletedcertificates[/]",             GetDeletedCertificates,       List),
    row(    "GET",    "/deletedcertificates/{name}",         GetDeletedCertificate,        CertGet),
    row(    "DELETE", "/deletedcertificates/{name}",         PurgeDeletedCertificate,      Write),
    row(    "POST",   "/deletedcertificates/{name}/recover", RecoverDeletedCertificate,    Write),
    // The rest of the data plane.
    missing("POST",   "/rng",                                "GetRandomBytes",             Other),
    missing("GET",    "/settings",                           "GetSettings",                Other),
    missing("GET",    "/settings/{name}",                    "GetSetting",                 Other),
    missing("PATCH",  "/settings/{name}",                    "UpdateSetting",              Other),
];

/// A matched row with the values of its `{name}` and `{version}` segments.
#[derive(Debug)]
pub(crate) struct Matched<'p> {
    /// The row.
    pub(crate) row: &'static Row,
    /// `{name}`, when the pattern has one.
    pub(crate) name: &'p str,
    /// `{version}`, when the pattern has one and the request gave a non-empty one.
    pub(crate) version: Option<&'p str>,
}

/// The first row of [`TABLE`] matching `method` and `path` (no query).
pub(crate) fn lookup<'p>(method: &Method, path: &'p str) -> Option<Matched<'p>> {
    let segs: Vec<&'p str> = path.trim_start_matches('/').split('/').collect();
    TABLE
        .iter()
        .filter(|r| r.method == method.as_str())
        .find_map(|r| matches(r, &segs))
}

fn matches<'p>(row: &'static Row, segs: &[&'p str]) -> Option<Matched<'p>> {
    let (fixed, optional) = match row.pattern.strip_suffix("[/]") {
        Some(p) => (p, Some("")),
        None => match row.pattern.strip_suffix("[/{version}]") {
            Some(p) => (p, Some("{version}")),
            None => (row.pattern, None),
        },
    };
    let pattern: Vec<&str> = fixed.trim_start_matches('/').split('/').collect();
    let rest = segs.get(pattern.len()..)?;
    let mut m = Matched {
        row,
        name: "",
        version: None,
    };
    for (p, s) in pattern.iter().zip(segs) {
        match *p {
            "{name}" => m.name = s,
            "{version}" => m.version = Some(s),
            literal if literal == *s => {}
            _ => return None,
        }
    }
    match (optional, rest) {
        (_, []) | (Some(_), [""]) => {}
        (Some("{version}"), [v]) => m.version = Some(v),
        _ => return None,
    }
    m.version = m.version.filter(|v| !v.is_empty());
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path the row's pattern matches, with every placeholder filled in.
    fn sample(pattern: &str) -> String {
        pattern
            .replace("[/{version}]", "/v1")
            .replace("[/]", "")
            .replace("{name}", "n1")
            .replace("{version}", "v1")
    }

    // reference: issue 13 item 5 (one route table shared by the router and the faults)
    #[test]
    fn every_row_is_reachable_and_unique() {
        for (i, r) in TABLE.iter().enumerate() {
            let method = Method::from_bytes(r.method.as_bytes()).unwrap();
            let path = sample(r.pattern);
            let m = lookup(&method, &path).unwrap_or_else(|| panic!("{path} matches no row"));
            assert!(
                std::ptr::eq(m.row, r),
                "row {i} ({} {}) is shadowed by {} {}",
                r.method,
                r.pattern,
                m.row.method,
                m.row.pattern
            );
        }
    }

    // reference: docs/protocol.md §1 (URL shapes), issue 13 item 5
    #[test]
    fn optional_slash_and_version_and_the_literal_rows() {
        fn get(p: &str) -> Option<(Op, &str, Option<&str>)> {
            lookup(&Method::GET, p).map(|m| (m.row.op, m.name, m.version))
        }
        assert_eq!(get("/secrets"), Some((GetSecrets, "", None)));
        assert_eq!(get("/secrets/"), Some((GetSecrets, "", None)));
        assert_eq!(get("/secrets/a"), Some((GetSecret, "a", None)));
        assert_eq!(get("/secrets/a/"), Some((GetSecret, "a", None)));
        assert_eq!(get("/secrets/a/v"), Some((GetSecret, "a", Some("v"))));
        assert_eq!(get("/secrets/a/v/x"), None);
        assert_eq!(
            get("/certificates/contacts"),
            Some((Unimplemented("GetCertificateContacts"), "", None))
        );
        assert_eq!(
            get("/certificates/contacts/"),
            Some((GetCertificate, "contacts", None))
        );
        assert_eq!(
            lookup(&Method::PUT, "/secrets/a/").map(|m| m.row.op),
            None,
            "PUT takes no trailing slash"
        );
    }

    // reference: emulator/README.md "Faults and counters" (route classes)
    #[test]
    fn classification_matches_protocol_paths() {
        let c = Route::classify;
        assert_eq!(c(&Method::GET, "/secrets/a/"), Route::SecretGet);
        assert_eq!(
            c(&Method::GET, "/secrets/a/versions"),
            Route::SecretVersions
        );
        assert_eq!(c(&Method::PUT, "/secrets/a"), Route::Write);
        assert_eq!(c(&Method::GET, "/certificates"), Route::List);
        assert_eq!(c(&Method::GET, "/deletedkeys/"), Route::List);
        assert_eq!(c(&Method::GET, "/deletedsecrets/a"), Route::SecretGet);
        assert_eq!(c(&Method::POST, "/t/oauth2/v2.0/token"), Route::Token);
        assert_eq!(
            c(&Method::GET, "/metadata/identity/oauth2/token/"),
            Route::Imds
        );
        // Unimplemented operations are classed like the family they touch.
        assert_eq!(c(&Method::GET, "/certificates/contacts"), Route::CertGet);
        assert_eq!(c(&Method::GET, "/keys/k/rotationpolicy"), Route::KeyGet);
        assert_eq!(c(&Method::POST, "/keys/k/v/sign"), Route::Write);
        assert_eq!(c(&Method::POST, "/secrets/restore"), Route::Write);
        assert_eq!(c(&Method::POST, "/rng"), Route::Other);
        assert_eq!(c(&Method::GET, "/settings/x"), Route::Other);
        assert_eq!(c(&Method::GET, "/nothing/here"), Route::Other);
    }
}
