//! Retry timing: exponential backoff with full jitter, the server's `Retry-After`, and an
//! overall deadline.
//!
//! Unlike the Azure SDKs (which give up when `Retry-After` exceeds 60 s), a server-requested
//! delay of any length is honoured as long as it ends before the deadline; when it would
//! not, we stop at once instead of sleeping into a certain failure. Timers are tokio's, so
//! tests run under `tokio::time::pause`.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// An invalid backoff configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    /// `base` is zero.
    #[error("backoff base delay must be greater than zero")]
    ZeroBase,
    /// `max` is below `base`.
    #[error("backoff maximum delay ({max:?}) must not be below the base delay ({base:?})")]
    MaxBelowBase {
        /// Base.
        base: Duration,
        /// Max.
        max: Duration,
    },
}

/// Exponential backoff with full jitter: the delay before retry `n` (0-based) is uniform in
/// `[0, min(max, base * 2^n)]` (AWS architecture blog, "Exponential Backoff And Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    max_retries: u32,
}

impl Backoff {
    /// A validated backoff.
    pub fn new(base: Duration, max: Duration, max_retries: u32) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        Ok(Self {
            base,
            max,
            max_retries,
        })
    }

    /// Key Vault and Entra: 0.5 s doubling to 30 s, up to 10 retries (the deadline usually
    /// ends it first).
    pub fn service_default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            max_retries: 10,
        }
    }

    /// IMDS guidance (`protocol.md` §4): delta 2 s, max 60 s, 5 retries.
    pub fn imds_default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_retries: 5,
        }
    }

    /// Maximum number of retries (attempts − 1).
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The ceiling of the jitter window before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A jittered delay before retry `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let nanos =
            rand::thread_rng().gen_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64);
        Duration::from_nanos(nanos)
    }

    /// Starts a retry sequence that must finish by `deadline`.
    pub fn start(&self, deadline: Instant) -> Retrier {
        Retrier {
            backoff: *self,
            deadline,
            retries: 0,
        }
    }
}

/// Why a retry sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The retry budget is spent.
    Exhausted,
    /// The next wait would end after the deadline.
    Deadline,
}

/// One retry sequence (one logical request).
#[derive(Debug, Clone)]
pub struct Retrier {
    backoff: Backoff,
    deadline: Instant,
    retries: u32,
}

impl Retrier {
    /// Retries done so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The overall deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The delay before the next attempt: the server's `retry_after` when given (however
    /// long), else jittered backoff. `Err` when the budget or the deadline forbids retrying.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        if self.retries >= self.backoff.max_retries {
            return Err(GiveUp::Exhausted);
        }
        let delay = match retry_after {
            Some(d) => d,
            None => self.backoff.delay(self.retries),
        };
        if Instant::now() + delay >= self.deadline {
            return Err(GiveUp::Deadline);
        }
        self.retries += 1;
        Ok(delay)
    }

    /// Sleeps before the next attempt; `Err` when retrying is not allowed (no sleep then).
    pub async fn wait(&mut self, retry_after: Option<Duration>) -> Result<(), GiveUp> {
        let d = self.next_delay(retry_after)?;
        tokio::time::sleep(d).await;
        Ok(())
    }
}

/// The server-requested delay: `x-ms-retry-after-ms`, then `retry-after-ms` (milliseconds),
/// then `Retry-After` (delta seconds or an HTTP date, relative to `now`).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn constructor_validates() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1), 3),
            Err(BackoffError::ZeroBase)
        );
        assert!(matches!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1), 3),
            Err(BackoffError::MaxBelowBase { .. })
        ));
        assert!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 0).is_ok());
    }

    #[test]
    fn ceiling_doubles_and_caps_and_jitter_stays_inside() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 100).unwrap();
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(80), Duration::from_secs(1));
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = b.delay(2);
            assert!(d <= Duration::from_millis(400));
            distinct.insert(d);
        }
        // Full jitter: values spread over the window, not a fixed delay.
        assert!(distinct.len() > 100);
    }

    #[test]
    fn parses_every_retry_after_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        // A date in the past means "now".
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        h.insert("retry-after", HeaderValue::from_str(&earlier).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(250)));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_long_retry_after_within_the_deadline() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 5).unwrap();
        let start = Instant::now();
        let mut r = b.start(start + Duration::from_secs(600));
        // 120 s is beyond the SDKs' 60 s cut-off but inside our deadline: we wait it out.
        r.wait(Some(Duration::from_secs(120))).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(120));
        assert_eq!(r.retries(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_once_when_retry_after_passes_the_deadline() {
        let b = Backoff::service_default();
        let start = Instant::now();
        let mut r = b.start(start + Duration::from_secs(30));
        assert_eq!(
            r.wait(Some(Duration::from_secs(31))).await,
            Err(GiveUp::Deadline)
        );
        // No sleeping into a certain failure.
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_budget_and_deadline_bound_the_sequence() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400), 3).unwrap();
        let start = Instant::now();
        let mut r = b.start(start + Duration::from_secs(60));
        for _ in 0..3 {
            r.wait(None).await.unwrap();
        }
        assert_eq!(r.wait(None).await, Err(GiveUp::Exhausted));
        // 100 + 200 + 400 ms is the most three jittered waits can take.
        assert!(Instant::now() - start <= Duration::from_millis(700));

        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10), 100).unwrap();
        let start = Instant::now();
        let mut r = b.start(start + Duration::from_secs(25));
        let mut n = 0;
        while r.wait(None).await.is_ok() {
            n += 1;
        }
        assert!(n >= 2, "jitter ≤ 10 s each, so at least 2 fit in 25 s");
        assert!(Instant::now() < start + Duration::from_secs(25));
    }
}
