//! Retry timing, in one place for every caller (Key Vault, Entra/IMDS, the sidecar loop and
//! the `--on-change-http` hook): exponential backoff with full jitter, the server's requested
//! wait (`Retry-After`, `retry-after-ms`, `x-ms-retry-after-ms`), and deadlines.
//!
//! Server-requested waits are outside input: they are parsed without floating-point
//! conversions that can panic, saturate instead of overflowing, and are always clamped.
//! Within a sync ([`Retrier`]) a wait of any length is honoured as long as it ends before the
//! deadline (`--timeout`), and when it would not, we stop at once instead of sleeping into a
//! certain failure (the Azure SDKs give up above 60 s instead). Between sidecar cycles
//! ([`Failures`]) a requested wait is honoured up to a clamp (the longer of the refresh
//! interval and [`MAX_BACKOFF`]), so a `Retry-After: 86400` cannot silently stop rotation.
//! Every clamp is logged once, naming what was being fetched and the requested value.
//!
//! No arithmetic here can panic: instants and durations are added with `checked_*` /
//! `saturating_*` ([`deadline_in`] is the helper for "now + d"). Timers are tokio's, so tests
//! run under `tokio::time::pause`.

use std::time::{Duration, SystemTime};

use rand::RngExt as _;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// Longest exponential backoff step between sidecar cycles; a server's `Retry-After` may
/// stretch a wait up to the longer of this and the refresh interval, never beyond.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Shortest delay between failed sidecar cycles, so that a zero draw never spins.
pub const MIN_RETRY: Duration = Duration::from_millis(100);
/// Instants further away than this are "never" (tokio's own far future is 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, saturating at a far-future instant instead of panicking on overflow.
pub fn deadline_in(d: Duration) -> Instant {
    instant_after(Instant::now(), d)
}

/// `at + d`, saturating (never panics).
pub fn instant_after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FAR_FUTURE))
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

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

    /// IMDS guidance (`docs/protocol.md` §4): delta 2 s, max 60 s, 5 retries.
    pub fn imds_default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_retries: 5,
        }
    }

    /// The sidecar's backoff between failed cycles: base 1 s, doubling, capped at the
    /// refresh interval (within `[1 s, 5 min]`): a failing vault is never polled faster than
    /// at start, nor much slower than the normal schedule. Unlimited retries.
    pub fn for_interval(interval: Duration) -> Self {
        let max = interval.clamp(Duration::from_secs(1), MAX_BACKOFF);
        Self {
            base: Duration::from_secs(1).min(max),
            max,
            max_retries: u32::MAX,
        }
    }

    /// Maximum number of retries (attempts − 1).
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The longest step.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The ceiling of the jitter window before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A jittered delay before retry `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        full_jitter(self.ceiling(retry))
    }

    /// Starts a retry sequence that must finish by `deadline`.
    pub fn start(&self, deadline: Instant) -> Retrier {
        Retrier {
            backoff: *self,
            deadline,
            retries: 0,
            what: String::new(),
        }
    }
}

/// A uniform draw in `[0, max]` ("full jitter"), at nanosecond resolution.
pub fn full_jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// `interval` scaled by a uniform factor in `[1 - jitter, 1 + jitter]` (jitter clamped to
/// `[0, 0.9]`), so that replicas started together spread their requests. Integer arithmetic
/// on nanoseconds: any interval, however long, saturates instead of panicking.
pub fn jittered(interval: Duration, jitter: f64) -> Duration {
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 0.9)
    } else {
        0.0
    };
    // Parts per million of the interval; `as` from a value in [0, 900_000] is exact.
    let ppm = (j * 1_000_000.0).round() as u128;
    if ppm == 0 {
        return interval;
    }
    let nanos = interval.as_nanos();
    let spread = nanos.saturating_mul(ppm) / 1_000_000;
    let width = u64::try_from(spread.saturating_mul(2)).unwrap_or(u64::MAX);
    let draw = u128::from(rand::rng().random_range(0..=width));
    from_nanos_saturating(nanos.saturating_sub(spread).saturating_add(draw))
}

fn from_nanos_saturating(nanos: u128) -> Duration {
    let Ok(secs) = u64::try_from(nanos / 1_000_000_000) else {
        return Duration::MAX;
    };
    // `nanos % 1e9` always fits a u32 (and `Duration::new` cannot carry over here).
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// Why a retry sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The retry budget is spent.
    Exhausted,
    /// The next wait would end after the deadline.
    Deadline,
}

/// One retry sequence (one logical request) under a deadline.
#[derive(Debug, Clone)]
pub struct Retrier {
    backoff: Backoff,
    deadline: Instant,
    retries: u32,
    /// What is being fetched, for the one log line a clamped server wait gets.
    what: String,
}

impl Retrier {
    /// Names what this sequence fetches (e.g. `secret "db"` or `entra token`) in logs.
    pub fn named(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    /// Retries done so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The overall deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The delay before the next attempt: the server's `requested` wait when given (however
    /// long, as long as it ends before the deadline), else jittered backoff. `Err` when the
    /// budget or the deadline forbids retrying; a requested wait that does not fit is logged
    /// once with its value and stops the sequence at once. The `Ok` delay always ends
    /// before the deadline.
    pub fn next_delay(&mut self, requested: Option<Duration>) -> Result<Duration, GiveUp> {
        if self.retries >= self.backoff.max_retries {
            return Err(GiveUp::Exhausted);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GiveUp::Deadline);
        }
        let delay = match requested {
            Some(d) if d >= left => {
                tracing::warn!(
                    object = %self.what,
                    requested_wait = %format_wait(d),
                    time_left = %format_wait(left),
                    "the server asked to wait longer than the time left before the deadline (--timeout); giving up now instead of waiting"
                );
                return Err(GiveUp::Deadline);
            }
            Some(d) => d,
            None => self.backoff.delay(self.retries),
        };
        if delay >= left {
            return Err(GiveUp::Deadline);
        }
        self.retries = self.retries.saturating_add(1);
        Ok(delay)
    }

    /// Sleeps before the next attempt; `Err` when retrying is not allowed (no sleep then).
    pub async fn wait(&mut self, requested: Option<Duration>) -> Result<(), GiveUp> {
        let d = self.next_delay(requested)?;
        tokio::time::sleep(d).await;
        Ok(())
    }
}

/// The delay before the next sidecar cycle after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// How long to wait.
    pub delay: Duration,
    /// The server's requested wait when it was longer than the clamp (and so cut short).
    pub clamped_from: Option<Duration>,
}

/// Consecutive failures of the sidecar loop: backoff that grows per failure, honours the
/// server's requested wait up to a clamp, and resets on success. No deadline: the loop
/// retries forever.
#[derive(Debug, Clone)]
pub struct Failures {
    backoff: Backoff,
    clamp: Duration,
    /// Consecutive failures so far.
    pub attempt: u32,
}

impl Failures {
    /// For a loop refreshing every `interval`: [`Backoff::for_interval`], and server waits
    /// honoured up to the longer of `interval` and [`MAX_BACKOFF`].
    pub fn for_interval(interval: Duration) -> Self {
        Self::new(Backoff::for_interval(interval), interval.max(MAX_BACKOFF))
    }

    /// Explicit backoff and clamp of server-requested waits.
    pub fn new(backoff: Backoff, clamp: Duration) -> Self {
        Self {
            backoff,
            clamp: clamp.max(backoff.max),
            attempt: 0,
        }
    }

    /// The ceiling of the next draw.
    pub fn ceiling(&self) -> Duration {
        self.backoff.ceiling(self.attempt)
    }

    /// The longest wait a server can obtain.
    pub fn clamp(&self) -> Duration {
        self.clamp
    }

    /// Delay before the next attempt after a failure: a full-jitter draw under the ceiling
    /// (at least [`MIN_RETRY`]), and never less than `requested` clamped.
    pub fn next_delay(&mut self, requested: Option<Duration>) -> Pause {
        let ceiling = self.ceiling();
        let draw = full_jitter(ceiling).max(MIN_RETRY.min(ceiling));
        self.attempt = self.attempt.saturating_add(1);
        match requested {
            Some(r) if r > self.clamp => Pause {
                delay: draw.max(self.clamp),
                clamped_from: Some(r),
            },
            Some(r) => Pause {
                delay: draw.max(r),
                clamped_from: None,
            },
            None => Pause {
                delay: draw,
                clamped_from: None,
            },
        }
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A wait for people: whole seconds (sub-second waits in milliseconds).
pub fn format_wait(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// The server-requested wait: `x-ms-retry-after-ms`, then `retry-after-ms` (milliseconds),
/// then `Retry-After` (delta seconds or an HTTP date, relative to `now`). Values that are
/// negative, not numbers, NaN or infinite are ignored (backoff applies); huge values
/// saturate (the caller clamps them). Never panics.
pub fn requested_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_amount(v, 1_000_000))
        {
            return Some(ms);
        }
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Some(d) = parse_amount(v, 1_000_000_000) {
        return Some(d);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A non-negative decimal number of units of `unit_nanos` nanoseconds (`"120"`, `"1.5"`,
/// `"1e300"`), saturating at `u64::MAX` seconds. `None` for anything else.
fn parse_amount(text: &str, unit_nanos: u64) -> Option<Duration> {
    let t = text.trim();
    if t.is_empty() || t.len() > 64 {
        // A 64-character number already saturates; longer is not a number we accept.
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        // Plain digits, the common case: exact, saturating on 20-digit values.
        let n: u128 = t.parse().unwrap_or(u128::MAX);
        return Some(from_nanos_saturating(
            n.saturating_mul(u128::from(unit_nanos)),
        ));
    }
    // Decimals and exponents: floats, but only compared and cast (`as` saturates; NaN → 0),
    // never handed to `Duration::from_secs_f64`.
    let v: f64 = t.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let nanos = v * unit_nanos as f64;
    Some(from_nanos_saturating(nanos as u128))
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
        // Any window, however wide, is drawn from without overflow.
        assert!(full_jitter(Duration::MAX) <= Duration::MAX);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_every_retry_after_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(requested_wait(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(requested_wait(&h, now), Some(Duration::from_secs(90)));
        // A date in the past means "now".
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        h.insert("retry-after", HeaderValue::from_str(&earlier).unwrap());
        assert_eq!(requested_wait(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(requested_wait(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_millis(1500)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_millis(250)));
    }

    // reference: issue 9 item 1 (each of these panicked or was mis-read on main)
    #[test]
    fn hostile_waits_parse_without_panicking() {
        let now = SystemTime::now();
        let huge = Some(Duration::MAX);
        let cases: &[(&'static str, &str, Option<Duration>)] = &[
            ("retry-after", "99999999999999999999", huge),
            ("retry-after", "18446744073709551616", huge),
            ("retry-after", "1e300", huge),
            ("retry-after", "1.5", Some(Duration::from_millis(1500))),
            ("retry-after", "-5", None),
            ("retry-after", "NaN", None),
            ("retry-after", "inf", None),
            ("retry-after", "-inf", None),
            ("retry-after", "", None),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT", None),
            ("x-ms-retry-after-ms", "1e300", huge),
            (
                "x-ms-retry-after-ms",
                "99999999999999999999",
                Some(Duration::new(99_999_999_999_999_999, 999_000_000)),
            ),
            ("x-ms-retry-after-ms", "-1", None),
            ("x-ms-retry-after-ms", "NaN", None),
            (
                "x-ms-retry-after-ms",
                "0.5",
                Some(Duration::from_micros(500)),
            ),
            ("retry-after-ms", "infinity", None),
            ("retry-after-ms", "1e-300", Some(Duration::ZERO)),
        ];
        for (name, value, want) in cases {
            let got = requested_wait(&headers(&[(name, value)]), now);
            if *value == "Fri, 31 Dec 9999 23:59:59 GMT" {
                // Year 9999: a real, very long wait (about 7,973 years).
                let d = got.expect("an http date");
                assert!(d > Duration::from_secs(86_400 * 365 * 7_000), "{d:?}");
                continue;
            }
            assert_eq!(got, *want, "{name}: {value}");
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let interval = Duration::from_secs(120);
        let mut min = Duration::MAX;
        let mut max = Duration::ZERO;
        for _ in 0..2000 {
            let d = jittered(interval, 0.1);
            assert!(
                d >= Duration::from_secs(108) && d <= Duration::from_secs(132),
                "{d:?}"
            );
            min = min.min(d);
            max = max.max(d);
        }
        // Both halves of the range are used (probability of failure is negligible).
        assert!(min < Duration::from_secs(114) && max > Duration::from_secs(126));
        assert_eq!(jittered(interval, 0.0), interval);
        assert_eq!(jittered(interval, f64::NAN), interval);
        assert!(jittered(interval, 5.0) <= Duration::from_secs(228));
        // `Duration::mul_f64` panicked here on main.
        assert!(jittered(Duration::MAX, 0.5) >= Duration::from_secs(u64::MAX / 3));
    }

    #[test]
    fn failures_double_to_their_cap_and_reset() {
        let mut b = Failures::new(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(10), u32::MAX).unwrap(),
            Duration::from_secs(10),
        );
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(None).delay;
                assert!(d <= c && d >= MIN_RETRY, "{d:?} vs {c:?}");
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        // Many failures never overflow the doubling.
        for _ in 0..100 {
            b.next_delay(None);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(10));
    }

    #[test]
    fn failures_cap_follows_the_interval() {
        assert_eq!(
            Backoff::for_interval(Duration::from_secs(120)).max(),
            Duration::from_secs(120)
        );
        assert_eq!(
            Backoff::for_interval(Duration::from_secs(3600)).max(),
            MAX_BACKOFF
        );
        assert_eq!(
            Backoff::for_interval(Duration::from_millis(200)).max(),
            Duration::from_secs(1)
        );
    }

    // reference: issue 9 item 1 ("a huge Retry-After: 86400 silently stops rotation")
    #[test]
    fn failures_honour_server_waits_up_to_the_clamp_only() {
        let mut b = Failures::for_interval(Duration::from_secs(120));
        for _ in 0..20 {
            let p = b.next_delay(Some(Duration::from_secs(30)));
            assert!(p.delay >= Duration::from_secs(30) && p.clamped_from.is_none());
        }
        // Beyond its own backoff cap, a server wait is still honoured up to the clamp.
        let p = b.next_delay(Some(Duration::from_secs(250)));
        assert_eq!(p.delay, Duration::from_secs(250));
        for asked in [86_400, u64::MAX] {
            let p = b.next_delay(Some(Duration::from_secs(asked)));
            assert_eq!(p.delay, MAX_BACKOFF, "{asked}");
            assert_eq!(p.clamped_from, Some(Duration::from_secs(asked)));
        }
        // A long interval: the server may stretch a wait up to it.
        let mut b = Failures::for_interval(Duration::from_secs(3600));
        let p = b.next_delay(Some(Duration::from_secs(86_400)));
        assert_eq!(p.delay, Duration::from_secs(3600));
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
        let mut r = b
            .start(start + Duration::from_secs(30))
            .named("secret \"db\"");
        for asked in [
            Duration::from_secs(31),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            assert_eq!(r.wait(Some(asked)).await, Err(GiveUp::Deadline));
        }
        // No sleeping into a certain failure.
        assert_eq!(Instant::now(), start);
        // Deadlines far in the future saturate instead of panicking.
        let mut r = b.start(deadline_in(Duration::MAX));
        assert!(r.next_delay(Some(Duration::from_secs(5))).is_ok());
        assert!(instant_after(Instant::now(), Duration::MAX) > Instant::now());
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn header_value() -> impl Strategy<Value = String> {
            prop_oneof![
                // Anything printable a server may send.
                "[ -~]{0,40}",
                // Numbers of every shape: signs, decimals, exponents, 20+ digits.
                "[-+]?[0-9]{0,30}(\\.[0-9]{0,10})?([eE][-+]?[0-9]{1,4})?",
                // Dates, including far-future and malformed years.
                "(Mon|Fri|Sun), [0-9]{2} (Jan|Dec) [0-9]{4,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
                Just("NaN".to_owned()),
                Just("inf".to_owned()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            // reference: issue 9 items 1 and 10 (Retry-After parsing never panics)
            #[test]
            fn any_header_parses_and_every_wait_stays_under_its_clamp(
                name in prop_oneof![
                    Just("retry-after"),
                    Just("retry-after-ms"),
                    Just("x-ms-retry-after-ms"),
                ],
                value in header_value(),
                left_ms in 0u64..10_000_000,
                interval_s in 1u64..100_000,
            ) {
                let Ok(v) = HeaderValue::from_str(&value) else { return Ok(()) };
                let mut h = HeaderMap::new();
                h.insert(name, v);
                let asked = requested_wait(&h, SystemTime::now());

                // Within a sync: never past the deadline.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let left = Duration::from_millis(left_ms);
                    let mut r = Backoff::service_default().start(deadline_in(left));
                    if let Ok(d) = r.next_delay(asked) {
                        prop_assert!(d < left);
                    }
                    Ok(())
                })?;

                // Between sidecar cycles: never past the clamp.
                let mut f = Failures::for_interval(Duration::from_secs(interval_s));
                let p = f.next_delay(asked);
                prop_assert!(p.delay <= f.clamp());
                prop_assert!(p.delay <= Duration::from_secs(interval_s).max(MAX_BACKOFF));
            }
        }
    }
}
