//! Fault injection and request counters. Every non-admin request is classified into a [`Route`],
//! counted, and checked against the active faults before any authentication happens.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// A class of requests that faults and counters are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Route {
    /// Every request (faults); the total (counters).
    Any,
    /// `GET /secrets/{name}[/{version}]`.
    SecretGet,
    /// `GET /secrets/{name}/versions`.
    SecretVersions,
    /// `GET /keys/{name}[/{version}]`.
    KeyGet,
    /// `GET /keys/{name}/versions`.
    KeyVersions,
    /// `GET /certificates/{name}[/{version}]` (and `/policy`).
    CertGet,
    /// `GET /certificates/{name}/versions`.
    CertVersions,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// `GET /metadata/identity/oauth2/token` (either listener).
    Imds,
    /// `GET /secrets`, `/keys`, `/certificates`, `/deletedsecrets` (collection lists).
    List,
    /// Any data-plane write: PUT/PATCH/POST/DELETE on secrets, keys, certificates.
    Write,
    /// OIDC discovery, JWKS, Entra metadata.
    Discovery,
    /// Anything else that is not an admin route.
    Other,
}

impl Route {
    /// Classifies a request. `imds_only` is the plain-HTTP listener.
    pub fn classify(method: &http::Method, path: &str) -> Route {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = method == http::Method::GET;
        match segs.as_slice() {
            ["metadata", "identity", "oauth2", "token"] => Route::Imds,
            [_, "oauth2", "v2.0", "token"] | [_, "oauth2", "token"] => Route::Token,
            ["issuer", ..] | [_, "v2.0", ".well-known", ..] | [_, "discovery", ..] => {
                Route::Discovery
            }
            [kind @ ("secrets" | "keys" | "certificates" | "deletedsecrets")]
            | [
                kind @ ("secrets" | "keys" | "certificates" | "deletedsecrets"),
                "",
            ] => {
                let _ = kind;
                if get { Route::List } else { Route::Other }
            }
            [
                kind @ ("secrets" | "keys" | "certificates"),
                _name,
                rest @ ..,
            ] => {
                if !get {
                    return Route::Write;
                }
                let versions = rest.first() == Some(&"versions");
                match (*kind, versions) {
                    ("secrets", false) => Route::SecretGet,
                    ("secrets", true) => Route::SecretVersions,
                    ("keys", false) => Route::KeyGet,
                    ("keys", true) => Route::KeyVersions,
                    ("certificates", false) => Route::CertGet,
                    _ => Route::CertVersions,
                }
            }
            ["deletedsecrets", ..] => {
                if get {
                    Route::SecretGet
                } else {
                    Route::Write
                }
            }
            _ => Route::Other,
        }
    }

    /// The request kind an operator budgets by: `get`, `list` (collections and version
    /// lists), `token` (Entra and IMDS), `write`, or `other`.
    pub fn kind(self) -> RequestKind {
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

    /// Whether errors on this route use Entra's body shape.
    pub fn is_entra(self) -> bool {
        self == Route::Token
    }
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

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and the route's error body shape.
    Status(u16),
    /// Answer 429 (`Throttled`), with `Retry-After` when given (seconds).
    Throttle {
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Delay the request, then handle it normally.
    #[serde(with = "duration_ms")]
    Latency(Duration),
    /// Close the connection without answering.
    Drop,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A fault rule. With neither `times` nor `fraction` it applies to every matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Which requests it matches.
    pub route: Route,
    /// What it does.
    pub kind: FaultKind,
    /// Apply to the next N matching requests, then expire.
    #[serde(default)]
    pub times: Option<u32>,
    /// Apply with this probability (0.0..=1.0) to each matching request.
    #[serde(default)]
    pub fraction: Option<f64>,
}

impl Fault {
    /// A fault on every matching request.
    pub fn new(route: Route, kind: FaultKind) -> Fault {
        Fault {
            route,
            kind,
            times: None,
            fraction: None,
        }
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// Applies the fault to a random `fraction` of matching requests.
    pub fn fraction(mut self, fraction: f64) -> Fault {
        self.fraction = Some(fraction);
        self
    }
}

/// What the server must do for one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Delay before anything else.
    pub latency: Duration,
    /// A terminal fault (status, throttle or drop), if any.
    pub action: Option<FaultKind>,
}

/// The active fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Fault>,
}

impl Faults {
    /// Adds a rule (rules are evaluated in insertion order).
    pub fn add(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    /// Removes all rules.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub fn list(&self) -> Vec<Fault> {
        self.rules.clone()
    }

    /// Decides what happens to a request on `route`: all triggered latencies add up; the first
    /// triggered terminal fault wins. Consumes `times` budgets of triggered rules.
    pub fn decide(&mut self, route: Route) -> Decision {
        let mut d = Decision::default();
        let mut rng = rand::thread_rng();
        for rule in &mut self.rules {
            if rule.route != Route::Any && rule.route != route {
                continue;
            }
            if rule.times == Some(0) {
                continue;
            }
            let terminal = !matches!(rule.kind, FaultKind::Latency(_));
            if terminal && d.action.is_some() {
                continue;
            }
            if let Some(p) = rule.fraction
                && !rng.gen_bool(p.clamp(0.0, 1.0))
            {
                continue;
            }
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            match &rule.kind {
                FaultKind::Latency(l) => d.latency += *l,
                other => d.action = Some(other.clone()),
            }
        }
        self.rules.retain(|r| r.times != Some(0));
        d
    }
}

/// A snapshot of request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests per route.
    pub routes: BTreeMap<Route, u64>,
    /// Authenticated data-plane requests per client id.
    pub identities: BTreeMap<String, u64>,
    /// Access tokens issued per client id (Entra and IMDS).
    pub tokens: BTreeMap<String, u64>,
    /// All counted requests.
    pub total: u64,
    /// Requests per kind (`get`, `list`, `token`, `write`, `other`), throttled ones included.
    #[serde(default)]
    pub kinds: BTreeMap<RequestKind, u64>,
    /// Requests answered 429 by the throttle (not by injected faults), per route.
    #[serde(default)]
    pub throttled: BTreeMap<Route, u64>,
    /// All requests answered 429 by the throttle.
    #[serde(default)]
    pub throttled_total: u64,
}

impl Counts {
    /// Requests on `route` (`Route::Any` = total).
    pub fn route(&self, route: Route) -> u64 {
        if route == Route::Any {
            self.total
        } else {
            self.routes.get(&route).copied().unwrap_or(0)
        }
    }

    /// Authenticated data-plane requests made with tokens of `client_id`.
    pub fn identity(&self, client_id: &str) -> u64 {
        self.identities
            .get(&client_id.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Access tokens issued to `client_id`.
    pub fn tokens(&self, client_id: &str) -> u64 {
        self.tokens
            .get(&client_id.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// All counted requests.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Requests of `kind`.
    pub fn kind(&self, kind: RequestKind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// Requests the throttle answered 429 on `route` (`Route::Any` = all routes).
    pub fn throttled(&self, route: Route) -> u64 {
        if route == Route::Any {
            self.throttled_total
        } else {
            self.throttled.get(&route).copied().unwrap_or(0)
        }
    }

    pub(crate) fn count_throttled(&mut self, route: Route) {
        *self.throttled.entry(route).or_default() += 1;
        self.throttled_total += 1;
    }

    pub(crate) fn count_route(&mut self, route: Route) {
        *self.routes.entry(route).or_default() += 1;
        *self.kinds.entry(route.kind()).or_default() += 1;
        self.total += 1;
    }

    pub(crate) fn count_identity(&mut self, client_id: &str) {
        *self
            .identities
            .entry(client_id.to_ascii_lowercase())
            .or_default() += 1;
    }

    pub(crate) fn count_token(&mut self, client_id: &str) {
        *self
            .tokens
            .entry(client_id.to_ascii_lowercase())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_budget_expires_and_latency_stacks() {
        let mut f = Faults::default();
        f.add(Fault::new(Route::SecretGet, FaultKind::Status(503)).times(2));
        f.add(Fault::new(
            Route::Any,
            FaultKind::Latency(Duration::from_millis(5)),
        ));
        let d = f.decide(Route::SecretGet);
        assert_eq!(d.action, Some(FaultKind::Status(503)));
        assert_eq!(d.latency, Duration::from_millis(5));
        assert_eq!(f.decide(Route::KeyGet).action, None);
        assert!(f.decide(Route::SecretGet).action.is_some());
        assert_eq!(f.decide(Route::SecretGet).action, None);
        assert_eq!(f.list().len(), 1);
    }

    #[test]
    fn fraction_zero_never_and_one_always_triggers() {
        let mut f = Faults::default();
        f.add(Fault::new(Route::Token, FaultKind::Drop).fraction(0.0));
        assert!((0..50).all(|_| f.decide(Route::Token).action.is_none()));
        f.clear();
        f.add(Fault::new(Route::Token, FaultKind::Drop).fraction(1.0));
        assert!((0..50).all(|_| f.decide(Route::Token).action.is_some()));
    }

    #[test]
    fn classification_matches_protocol_paths() {
        use http::Method;
        assert_eq!(
            Route::classify(&Method::GET, "/secrets/a/"),
            Route::SecretGet
        );
        assert_eq!(
            Route::classify(&Method::GET, "/secrets/a/versions"),
            Route::SecretVersions
        );
        assert_eq!(Route::classify(&Method::PUT, "/secrets/a"), Route::Write);
        assert_eq!(Route::classify(&Method::GET, "/certificates"), Route::List);
        assert_eq!(
            Route::classify(&Method::POST, "/t/oauth2/v2.0/token"),
            Route::Token
        );
        assert_eq!(
            Route::classify(&Method::GET, "/metadata/identity/oauth2/token"),
            Route::Imds
        );
    }
}
