//! Fault rules and request counters: plain data, no I/O. Every non-admin request is classified
//! into a [`Route`] (by the one route table, `crate::routes`), counted, and checked against the
//! active faults before any authentication happens; `crate::inject` builds the answer of the
//! fault that fires.
//!
//! Besides outages (status, throttling, latency, drops) the faults include the answers of a
//! hostile server ([`FaultKind::RawHeader`], [`FaultKind::HugeBody`], [`FaultKind::EndlessBody`],
//! [`FaultKind::SlowBody`], [`FaultKind::HugeHeaders`], [`FaultKind::ResetBody`]); the body bytes
//! they hand to the connection are counted ([`Counts::body_bytes`]), so a test can prove a
//! client hung up early.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use crate::routes::{RequestKind, Route};

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
    /// Answer 429 (`Throttled`) with `x-ms-retry-after-ms: retry_after_ms` (milliseconds),
    /// the header the Azure SDKs read before `Retry-After`: waits shorter than a second.
    ThrottleMs {
        /// `x-ms-retry-after-ms` milliseconds.
        retry_after_ms: u64,
    },
    /// Delay the request, then handle it normally.
    #[serde(with = "duration_ms")]
    Latency(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer `status` (default 429) with one raw header as given, e.g. `Retry-After:
    /// 99999999999999999999` or `x-ms-retry-after-ms: 1e300`.
    RawHeader {
        /// Status code.
        #[serde(default = "default_raw_status")]
        status: u16,
        /// Header name.
        name: String,
        /// Header value, verbatim.
        value: String,
    },
    /// 200 with a secret bundle whose value is `bytes` long (`Content-Length` declared).
    HugeBody {
        /// Size of the value.
        bytes: u64,
    },
    /// 200 with a chunked body that never ends (until the client hangs up).
    EndlessBody,
    /// 200 with a chunked body of one byte every `every_ms`, forever.
    SlowBody {
        /// Milliseconds between bytes.
        every_ms: u64,
    },
    /// 200 with one response header `x-hostile-padding` of `bytes` bytes.
    HugeHeaders {
        /// Size of the header value.
        bytes: u64,
    },
    /// 200, `after_bytes` of body, then the stream is reset (HTTP/2 `RST_STREAM`, HTTP/1
    /// connection closed mid-body).
    ResetBody {
        /// Body bytes sent before the reset.
        after_bytes: u64,
    },
}

fn default_raw_status() -> u16 {
    429
}

impl FaultKind {
    /// Whether the answer is a hostile one (a 200 or a raw header, not an error body).
    pub(crate) fn is_hostile(&self) -> bool {
        matches!(
            self,
            FaultKind::RawHeader { .. }
                | FaultKind::HugeBody { .. }
                | FaultKind::EndlessBody
                | FaultKind::SlowBody { .. }
                | FaultKind::HugeHeaders { .. }
                | FaultKind::ResetBody { .. }
        )
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
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
pub(crate) struct Decision {
    /// Delay before anything else.
    pub latency: Duration,
    /// A terminal fault (status, throttle or drop), if any.
    pub action: Option<FaultKind>,
}

/// The active fault rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<Fault>,
}

impl Faults {
    /// Adds a rule (rules are evaluated in insertion order).
    pub(crate) fn add(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    /// Removes all rules.
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub(crate) fn list(&self) -> Vec<Fault> {
        self.rules.clone()
    }

    /// Decides what happens to a request on `route`: all triggered latencies add up; the first
    /// triggered terminal fault wins. Consumes `times` budgets of triggered rules.
    pub(crate) fn decide(&mut self, route: Route) -> Decision {
        let mut d = Decision::default();
        let mut rng = rand::rng();
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
                && !rng.random_bool(p.clamp(0.0, 1.0))
            {
                continue;
            }
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            match &rule.kind {
                FaultKind::Latency(l) => d.latency = d.latency.saturating_add(*l),
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
    /// Body bytes of hostile faults handed to connections (what a client could have read).
    #[serde(default)]
    pub body_bytes: u64,
    /// Requests per kind (`get`, `list`, `token`, `write`, `other`), throttled ones included.
    #[serde(default)]
    pub kinds: BTreeMap<RequestKind, u64>,
    /// Requests answered 429 by the throttle (not by injected faults), per route.
    #[serde(default)]
    pub throttled: BTreeMap<Route, u64>,
    /// All requests answered 429 by the throttle.
    #[serde(default)]
    pub throttled_total: u64,
    /// Counted requests being answered now (injected latency included).
    #[serde(default)]
    pub in_flight: u64,
    /// The most counted requests answered at once since the last reset: how parallel a
    /// client is, read without timing it.
    #[serde(default)]
    pub peak_in_flight: u64,
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

    /// Requests answered at once, at most, since the last reset.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight
    }

    pub(crate) fn enter(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
    }

    pub(crate) fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
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
    fn hostile_kinds_read_from_the_admin_api_json() {
        let f: Fault = serde_json::from_str(
            r#"{"route":"secret_get","kind":{"raw_header":{"name":"retry-after","value":"1e300"}}}"#,
        )
        .unwrap();
        assert_eq!(
            f.kind,
            FaultKind::RawHeader {
                status: 429,
                name: "retry-after".into(),
                value: "1e300".into()
            }
        );
        for (json, kind) in [
            (
                r#"{"huge_body":{"bytes":5}}"#,
                FaultKind::HugeBody { bytes: 5 },
            ),
            (r#""endless_body""#, FaultKind::EndlessBody),
            (
                r#"{"slow_body":{"every_ms":10}}"#,
                FaultKind::SlowBody { every_ms: 10 },
            ),
            (
                r#"{"huge_headers":{"bytes":9}}"#,
                FaultKind::HugeHeaders { bytes: 9 },
            ),
            (
                r#"{"reset_body":{"after_bytes":3}}"#,
                FaultKind::ResetBody { after_bytes: 3 },
            ),
        ] {
            let k: FaultKind = serde_json::from_str(json).unwrap();
            assert!(k.is_hostile(), "{json}");
            assert_eq!(k, kind, "{json}");
        }
        assert!(!FaultKind::Drop.is_hostile());
    }
}
