//! Key Vault's request throttling: one token bucket per vault and operation family, so a
//! fleet of agents hitting one emulated vault meets the same wall a real vault puts up
//! (429 `Throttled` with `Retry-After`).
//!
//! Default limits, per vault per 10 s (docs/protocol.md §1.8, from Microsoft's "Azure Key Vault
//! service limits" page, resource type vault):
//!
//! | family | limit | published figure it stands for |
//! |---|---|---|
//! | `secrets` (GET secret, list secret versions) | 4,000 | secrets and vault transactions, "all other transactions" |
//! | `keys` (GET key, list key versions) | 4,000 | RSA-2048 / EC software key, "all other transactions" |
//! | `certificates` (GET certificate, versions, policy) | 1,000 | no separate published figure: a certificate read touches its key too, so the emulator charges it like an RSA-3072 software key (1,000), the lower bucket the service documents for heavier key reads |
//! | `list` (`GET /secrets`, `/keys`, `/certificates`, `/deletedsecrets`) | 4,000 | vault transactions, "all other transactions" |
//! | `write` (PUT/PATCH/POST/DELETE) | 300 | CREATE secret |
//!
//! The service sums weighted costs across types; the emulator keeps families apart, which
//! is close enough to reproduce a fleet's 429 storm and simple to reason about. Rejected
//! requests take no token (the service says 429s do not count). Time is `tokio::time`, so
//! tests pause and advance it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::routes::Route;

/// An operation family with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Secret reads.
    Secrets,
    /// Key reads.
    Keys,
    /// Certificate reads.
    Certificates,
    /// Collection lists.
    List,
    /// Data-plane writes.
    Write,
}

impl Family {
    /// The family a data-plane route is charged to; `None` for routes Key Vault does not
    /// count (tokens, IMDS, discovery, anything else).
    pub(crate) fn of(route: Route) -> Option<Family> {
        match route {
            Route::SecretGet | Route::SecretVersions => Some(Family::Secrets),
            Route::KeyGet | Route::KeyVersions => Some(Family::Keys),
            Route::CertGet | Route::CertVersions => Some(Family::Certificates),
            Route::List => Some(Family::List),
            Route::Write => Some(Family::Write),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Secrets => "secrets",
            Family::Keys => "keys",
            Family::Certificates => "certificates",
            Family::List => "list",
            Family::Write => "write",
        }
    }
}

/// Requests allowed per `window` per vault, per family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The window the limits are counted over (Key Vault: 10 s).
    #[serde(with = "secs")]
    pub window: Duration,
    /// Per-family limits.
    pub per_family: BTreeMap<Family, u32>,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl Limits {
    /// The published Key Vault limits per vault per 10 s: secrets, keys and lists 4,000,
    /// certificates 1,000, writes 300 (emulator/README.md, "Throttling", says why).
    pub fn key_vault() -> Limits {
        Limits {
            window: Duration::from_secs(10),
            per_family: BTreeMap::from([
                (Family::Secrets, 4000),
                (Family::Keys, 4000),
                (Family::Certificates, 1000),
                (Family::List, 4000),
                (Family::Write, 300),
            ]),
        }
    }

    /// The limit of `family` (families left out are unlimited).
    pub fn limit(&self, family: Family) -> Option<u32> {
        self.per_family.get(&family).copied()
    }
}

/// Whether and how the emulator throttles. Parsed from `--throttle` and the seed's
/// `throttle:`: `off`, `keyvault` (alias `on`, the published limits), or
/// `keyvault,secrets=100,window=1s`-style overrides of single families (`secrets`, `keys`,
/// `certificates`, `list`, `write`, each a count per window; `window` a duration such as
/// `10s` or `500ms`). Overrides start from the published limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ThrottleConfig {
    /// No throttling.
    #[default]
    Off,
    /// Token buckets with these limits.
    On(Limits),
}

impl fmt::Display for ThrottleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottleConfig::Off => f.write_str("off"),
            ThrottleConfig::On(l) => {
                write!(f, "window={}ms", l.window.as_millis())?;
                for (fam, n) in &l.per_family {
                    write!(f, ",{}={n}", fam.name())?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for ThrottleConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => return Ok(ThrottleConfig::Off),
            "on" | "keyvault" | "default" | "true" => {
                return Ok(ThrottleConfig::On(Limits::key_vault()));
            }
            _ => {}
        }
        let mut limits = Limits::key_vault();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if matches!(part, "on" | "keyvault" | "default") {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("throttle: {part:?} is not NAME=VALUE (e.g. secrets=4000, window=10s)")
            })?;
            let family = match k.trim() {
                "window" => {
                    let d = humantime::parse_duration(v.trim())
                        .map_err(|e| format!("throttle: window {v:?}: {e}"))?;
                    if d.is_zero() {
                        return Err("throttle: window must be longer than 0".into());
                    }
                    limits.window = d;
                    continue;
                }
                "secrets" => Family::Secrets,
                "keys" => Family::Keys,
                "certificates" | "certs" => Family::Certificates,
                "list" => Family::List,
                "write" | "writes" => Family::Write,
                other => {
                    return Err(format!(
                        "throttle: unknown family {other:?}: use secrets, keys, certificates, list, write or window"
                    ));
                }
            };
            let n: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("throttle: {k}={v:?} is not a count"))?;
            if n == 0 {
                return Err(format!(
                    "throttle: {k}=0 would refuse every request; use a positive count"
                ));
            }
            limits.per_family.insert(family, n);
        }
        Ok(ThrottleConfig::On(limits))
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every vault. Lives in the shared state behind a mutex.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    config: ThrottleConfig,
    buckets: HashMap<(String, Family), Bucket>,
}

impl Throttle {
    /// Buckets for `config`, all full.
    pub(crate) fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            buckets: HashMap::new(),
        }
    }

    /// The configuration in effect.
    pub(crate) fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Replaces the configuration; buckets start full again.
    pub(crate) fn set_config(&mut self, config: ThrottleConfig) {
        self.config = config;
        self.buckets.clear();
    }

    /// Takes one token for `vault`/`family` at `now`, or says how long until one is
    /// available (the 429's `Retry-After`, rounded up to whole seconds, at least 1).
    pub(crate) fn admit(
        &mut self,
        vault: &str,
        family: Family,
        now: Instant,
    ) -> Result<(), Duration> {
        let ThrottleConfig::On(limits) = &self.config else {
            return Ok(());
        };
        let Some(limit) = limits.limit(family) else {
            return Ok(());
        };
        let capacity = f64::from(limit);
        let rate = capacity / limits.window.as_secs_f64().max(1e-3);
        let b = self
            .buckets
            .entry((vault.to_ascii_lowercase(), family))
            .or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            Err(Duration::from_secs(wait.ceil().max(1.0) as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_and_overrides() {
        assert_eq!(
            "off".parse::<ThrottleConfig>().unwrap(),
            ThrottleConfig::Off
        );
        assert_eq!(
            "keyvault".parse::<ThrottleConfig>().unwrap(),
            ThrottleConfig::On(Limits::key_vault())
        );
        let ThrottleConfig::On(l) = "secrets=5, window=1s".parse::<ThrottleConfig>().unwrap()
        else {
            panic!("on expected")
        };
        assert_eq!(l.window, Duration::from_secs(1));
        assert_eq!(l.limit(Family::Secrets), Some(5));
        assert_eq!(l.limit(Family::Keys), Some(4000));
        for bad in ["secrets", "bogus=3", "secrets=0", "secrets=x", "window=0s"] {
            assert!(bad.parse::<ThrottleConfig>().is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_per_vault_and_family_and_refill_with_time() {
        let mut t = Throttle::new("secrets=3,window=3s".parse().unwrap());
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.admit("a", Family::Secrets, now).is_ok());
        }
        assert_eq!(
            t.admit("a", Family::Secrets, now),
            Err(Duration::from_secs(1))
        );
        // Other vaults and families have their own buckets.
        assert!(t.admit("b", Family::Secrets, now).is_ok());
        assert!(t.admit("a", Family::Keys, now).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.admit("a", Family::Secrets, Instant::now()).is_ok());
        assert!(t.admit("a", Family::Secrets, Instant::now()).is_err());
        // Off never refuses.
        let mut off = Throttle::new(ThrottleConfig::Off);
        assert!((0..10_000).all(|_| off.admit("a", Family::Write, now).is_ok()));
    }
}
