//! When the next cycle starts. After a success: `interval ± jitter`, start to start (a
//! slow cycle eats into the wait; one slower than the interval is followed at once, never
//! overlapped), brought forward so an object about to expire is looked at before it
//! expires. After a failure: the backoff ([`crate::retry::Failures`]: full jitter, never
//! earlier than the server's `Retry-After`, clamped), counted from the failure.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::Settings;
use crate::retry::{deadline_in, jittered};

/// The delay after a successful cycle that started at `started`, measured from its start:
/// the jittered interval, or less when the report asks to look again `refresh_within` its
/// end (an object expiring before the next look).
pub(super) fn after_success(
    settings: &Settings,
    refresh_within: Option<Duration>,
    started: Instant,
) -> Duration {
    let delay = jittered(settings.interval, settings.jitter);
    match refresh_within {
        Some(within) => delay.min(within.saturating_add(started.elapsed())),
        None => delay,
    }
}

/// When the next cycle starts, given the `delay` the last one (started at `started`) earned.
/// The schedule runs start to start: a slow cycle eats into the wait, and one slower than
/// the interval is followed at once (never overlapped: the next starts after this one
/// returned). Failure backoff (and Retry-After) counts from the failure.
pub(super) fn next_start(ok: bool, started: Instant, delay: Duration) -> Instant {
    if ok {
        crate::retry::instant_after(started, delay)
    } else {
        deadline_in(delay)
    }
}

/// `retry 3 at 2024-05-01T10:00:07Z (in 7s)`: when the sidecar tries again after its
/// `n`th consecutive failure.
pub(super) fn retry_message(n: u32, delay: Duration, now: SystemTime) -> String {
    let at = now
        .checked_add(delay)
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "later".to_owned());
    format!(
        "retry {n} at {at} (in {})",
        humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tokio::time::Instant;

    use super::*;
    use crate::sidecar::harness::{Scripted, harness, published, run_for};

    // reference: README.md (honours `Retry-After`, clamped)
    #[tokio::test(start_paused = true)]
    async fn retry_after_delays_the_next_attempt_then_the_schedule_resumes() {
        let mut h = harness(
            vec![published(1), Err("throttle:30".into()), published(2)],
            Duration::from_millis(5),
            Duration::from_secs(10),
        );
        run_for(&mut h, Duration::from_secs(60)).await;
        let calls = h.calls.lock().unwrap().clone();
        let gap = |i: usize| calls[i + 1].0 - calls[i].1.unwrap();
        let start_to_start = |i: usize| calls[i + 1].0 - calls[i].0;
        assert_eq!(start_to_start(0), Duration::from_secs(10));
        // Far beyond the 1 s backoff ceiling: the server asked for 30 s, counted from the
        // failure.
        assert!(gap(1) >= Duration::from_secs(30), "{:?}", gap(1));
        assert!(gap(1) <= Duration::from_secs(31), "{:?}", gap(1));
        assert_eq!(start_to_start(2), Duration::from_secs(10));
        let text = h.lp.metrics.encode();
        assert!(
            text.contains("errors_total{class=\"throttled\"} 1"),
            "{text}"
        );
    }

    // reference: issue 9 item 1 ("a huge Retry-After: 86400 silently stops rotation"; and
    // `Instant::now() + delay` panicked on main with a saturated one)
    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_is_clamped_so_rotation_goes_on() {
        for asked in ["86400", "18446744073709551615"] {
            let mut h = harness(
                vec![published(1), Err(format!("throttle:{asked}")), published(2)],
                Duration::from_millis(5),
                Duration::from_secs(10),
            );
            let state = h.lp.state.clone();
            run_for(&mut h, Duration::from_secs(400)).await;
            let calls = h.calls.lock().unwrap().clone();
            assert!(calls.len() >= 3, "{asked}: {calls:?}");
            let gap = calls[2].0 - calls[1].1.unwrap();
            // Clamped to the longer of the interval and the 5 minute backoff ceiling.
            assert_eq!(gap, crate::retry::MAX_BACKOFF, "{asked}");
            assert_eq!(state.doc().data_dir.as_deref(), Some("..2"), "{asked}");
            assert!(state.readiness().ok, "{asked}");
        }
    }

    // reference: issue 10 item 3 (the interval is measured start to start)
    #[tokio::test(start_paused = true)]
    async fn the_interval_runs_start_to_start() {
        // Each cycle takes 2 s; refreshes still start every 10 s, not every 12 s.
        let mut h = harness(vec![], Duration::from_secs(2), Duration::from_secs(10));
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(45)).await;
        let starts: Vec<Duration> = h.calls.lock().unwrap().iter().map(|c| c.0 - t0).collect();
        assert_eq!(
            starts,
            [0, 10, 20, 30, 40].map(Duration::from_secs).to_vec(),
            "{starts:?}"
        );
    }

    // reference: issue 10 item 4 (refetched before it expires, even between intervals)
    #[tokio::test(start_paused = true)]
    async fn an_expiring_object_brings_the_next_refresh_forward() {
        let mut h = harness(vec![], Duration::from_secs(1), Duration::from_secs(60));
        h.lp.cycle = Box::new(Scripted {
            script: std::sync::Mutex::new(Default::default()),
            calls: h.calls.clone(),
            latency: Duration::from_secs(1),
            within: Some(Duration::from_secs(5)),
        });
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(14)).await;
        let starts: Vec<Duration> = h.calls.lock().unwrap().iter().map(|c| c.0 - t0).collect();
        // 5 s after each cycle ends, not 60 s after it starts.
        assert_eq!(starts, [0, 6, 12].map(Duration::from_secs).to_vec());
    }

    // reference: README.md flags table (`--interval`: start to start, a slower refresh is
    // followed at once, never overlapped)
    #[tokio::test(start_paused = true)]
    async fn a_refresh_slower_than_the_interval_is_followed_at_once_never_overlapped() {
        // Each cycle takes 15 s with a 10 s interval: back to back, one at a time.
        let mut h = harness(vec![], Duration::from_secs(15), Duration::from_secs(10));
        let t0 = Instant::now();
        run_for(&mut h, Duration::from_secs(50)).await;
        let calls = h.calls.lock().unwrap().clone();
        let starts: Vec<Duration> = calls.iter().map(|c| c.0 - t0).collect();
        assert_eq!(starts, [0, 15, 30, 45].map(Duration::from_secs).to_vec());
        for w in calls.windows(2) {
            assert!(w[1].0 >= w[0].1.unwrap(), "cycles overlapped: {calls:?}");
        }
    }

    #[test]
    // reference: issue 12 item 4 (the sidecar logs each retry with the next attempt time)
    fn retry_lines_give_the_next_attempt_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_message(3, Duration::from_secs(7), now),
            "retry 3 at 2023-11-14T22:13:27Z (in 7s)"
        );
    }
}
