//! The seam between the loop and the work it schedules: [`Cycle`] (one sync cycle over a
//! plan), [`CycleFactory`] (a cycle per plan, at startup and on each reload) and the real
//! factory, whose syncers share one publisher and one fetch cache.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::{Plan, Settings};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::report::{SyncError, SyncReport};
use crate::syncer::Syncer;

/// One sync cycle over a plan. [`Syncer`] is the real one; the seam exists so a test can
/// run the real syncer elsewhere (for example on a runtime with a real clock while the loop
/// runs on a paused one).
pub trait Cycle: Send + Sync {
    /// One fetch → convert → write cycle.
    fn sync(&self) -> BoxFuture<'_, Result<SyncReport, SyncError>>;

    /// The publisher this cycle writes through, if it has one.
    fn publisher(&self) -> Option<&Publisher> {
        None
    }
}

impl Cycle for Syncer {
    fn sync(&self) -> BoxFuture<'_, Result<SyncReport, SyncError>> {
        Box::pin(Syncer::sync(self))
    }

    fn publisher(&self) -> Option<&Publisher> {
        Some(Syncer::publisher(self))
    }
}

/// Builds a [`Cycle`] for a plan (at startup and on each reload).
pub type CycleFactory = Arc<
    dyn Fn(Arc<Plan>, &Settings, Arc<Metrics>) -> Result<Box<dyn Cycle>, SyncError> + Send + Sync,
>;

/// Real syncers, all publishing through `publisher` (one writer per output directory for
/// the life of the process, whatever the reloads) and sharing one fetch cache (a reload
/// reuses unchanged objects).
pub(super) fn default_factory(publisher: Publisher) -> CycleFactory {
    let cache = crate::detect::FetchCache::new();
    Arc::new(move |plan, settings, metrics| {
        Ok(Box::new(
            Syncer::with_publisher(plan, settings, metrics, publisher.clone())?
                .with_cache(cache.clone()),
        ) as Box<dyn Cycle>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use crate::sidecar::Sidecar;
    use crate::sidecar::harness::test_plan;

    // reference: ISSUE13 item 1 ("one AtomicWriter per output dir owned by the publisher")
    #[tokio::test]
    async fn cycles_built_for_reloads_share_one_publisher() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::with_defaults(dir.path().join("spc.yaml"), dir.path());
        let publisher = Publisher::for_dir(dir.path());
        let factory = default_factory(publisher.clone());
        let first = factory(test_plan().into(), &settings, Metrics::new()).unwrap();
        let mut reloaded = test_plan();
        reloaded.vault_name = "other".into();
        let second = factory(reloaded.into(), &settings, Metrics::new()).unwrap();
        assert!(first.publisher().unwrap().same_as(&publisher));
        assert!(second.publisher().unwrap().same_as(&publisher));
        // And the sidecar's own loop has no writer of its own: it is built from settings
        // with one publisher that every cycle shares.
        let s = Sidecar::new(settings.clone(), Env::default());
        let a = (s.factory)(test_plan().into(), &settings, Metrics::new()).unwrap();
        let b = (s.factory)(test_plan().into(), &settings, Metrics::new()).unwrap();
        assert!(a.publisher().unwrap().same_as(b.publisher().unwrap()));
    }
}
