//! Per-scope token cache with single-flight refresh.
//!
//! One refresh per scope at a time: concurrent callers wait for it and share its result,
//! including its failure (so 100 parallel fetches behind a broken identity cause one token
//! request, not 100). A token is refreshed shortly before it expires: 5 minutes or 10% of
//! its lifetime, whichever is smaller. If a refresh fails transiently while the cached token
//! is still valid, the cached token keeps being used.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{AccessToken, AuthError};

/// The most we refresh ahead of expiry.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl AccessToken {
    /// When this token should be replaced.
    pub fn refresh_at(&self) -> Instant {
        let margin = MAX_REFRESH_MARGIN.min(self.lifetime / 10);
        self.expires_at
            .checked_sub(margin)
            .unwrap_or(self.expires_at)
    }

    /// Whether the token is still usable without a refresh.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at()
    }

    /// Whether the token has not expired yet (usable as a fallback).
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    /// The last failure and the number of the refresh that produced it.
    failure: Option<(u64, AuthError)>,
}

#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<State>,
    /// Refreshes finished so far.
    finished: AtomicU64,
}

/// Tokens by scope.
#[derive(Default)]
pub struct TokenCache {
    slots: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

impl TokenCache {
    fn slot(&self, scope: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(scope.to_owned()).or_default().clone()
    }

    /// The cached token for `scope`, or the result of one `fetch` shared by every caller
    /// that was waiting for it.
    pub async fn get_or_refresh<F, Fut>(
        &self,
        scope: &str,
        fetch: F,
    ) -> Result<AccessToken, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessToken, AuthError>>,
    {
        let slot = self.slot(scope);
        let seen = slot.finished.load(Ordering::Acquire);
        let mut st = slot.state.lock().await;
        let now = Instant::now();
        if let Some(t) = st.token.as_ref().filter(|t| t.is_fresh(now)) {
            return Ok(t.clone());
        }
        if let Some((n, e)) = &st.failure
            && *n > seen
        {
            // A refresh finished while we waited and failed: share its answer.
            return Err(e.clone());
        }
        let n = slot.finished.load(Ordering::Acquire) + 1;
        let result = fetch().await;
        slot.finished.store(n, Ordering::Release);
        match result {
            Ok(t) => {
                st.token = Some(t.clone());
                st.failure = None;
                Ok(t)
            }
            Err(e) => {
                st.failure = Some((n, e.clone()));
                match st.token.as_ref().filter(|t| t.is_valid(Instant::now())) {
                    Some(old) if e.is_transient() => {
                        tracing::warn!(error = %e, "token refresh failed; using the cached token until it expires");
                        Ok(old.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Drops the cached token for `scope` if it is `rejected` (Key Vault answered 401 to it).
    pub async fn invalidate(&self, scope: &str, rejected: &AccessToken) {
        let slot = self.slot(scope);
        let mut st = slot.state.lock().await;
        if st
            .token
            .as_ref()
            .is_some_and(|t| t.token.expose() == rejected.token.expose())
        {
            st.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use std::sync::atomic::AtomicUsize;

    fn token(value: &str, lifetime: Duration) -> AccessToken {
        AccessToken {
            token: SecretString::new(value),
            expires_at: Instant::now() + lifetime,
            lifetime,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_before_expiry_by_the_smaller_margin() {
        // 1 h token: margin 5 min. 10 min token: margin 1 min.
        let t = token("a", Duration::from_secs(3600));
        assert_eq!(t.expires_at - t.refresh_at(), Duration::from_secs(300));
        let t = token("a", Duration::from_secs(600));
        assert_eq!(t.expires_at - t.refresh_at(), Duration::from_secs(60));

        let cache = TokenCache::default();
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(token(&format!("t{n}"), Duration::from_secs(600)))
        };
        // The token the cache hands out for `scope` now, refreshing through `fetch` if due.
        let current = |scope: &'static str| {
            let cache = &cache;
            async move {
                let t = cache.get_or_refresh(scope, fetch).await.unwrap();
                t.token.expose().to_owned()
            }
        };
        assert_eq!(current("s").await, "t0");
        tokio::time::advance(Duration::from_secs(539)).await;
        assert_eq!(current("s").await, "t0");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(current("s").await, "t1");
        // Another scope has its own token.
        assert_eq!(current("other").await, "t2");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh_and_its_failure() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let run = |ok: bool| {
            let cache = cache.clone();
            let calls = calls.clone();
            async move {
                cache
                    .get_or_refresh("s", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if ok {
                            Ok(token("x", Duration::from_secs(3600)))
                        } else {
                            Err(AuthError::Rejected {
                                mode: "test",
                                message: "no".into(),
                            })
                        }
                    })
                    .await
            }
        };
        let results = futures::future::join_all((0..20).map(|_| run(false))).await;
        assert!(results.iter().all(|r| r.is_err()));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "failure shared by waiters");
        // A later caller tries again.
        let results = futures::future::join_all((0..20).map(|_| run(true))).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_a_valid_token_when_refresh_fails_transiently_and_invalidate_drops_it() {
        let cache = TokenCache::default();
        let t = cache
            .get_or_refresh("s", || async {
                Ok(token("old", Duration::from_secs(1000)))
            })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(950)).await;
        let got = cache
            .get_or_refresh("s", || async {
                Err(AuthError::Unavailable {
                    mode: "test",
                    message: "503".into(),
                    retry_after: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(got.token.expose(), "old");
        cache.invalidate("s", &t).await;
        let got = cache
            .get_or_refresh("s", || async {
                Ok(token("new", Duration::from_secs(1000)))
            })
            .await
            .unwrap();
        assert_eq!(got.token.expose(), "new");
    }
}
