//! [`Coalescer`]: notifications run on their own task fed through a `watch` channel, so
//! a burst of swaps while one notification is in flight tells the application once more,
//! about the latest set, not once per swap (`docs/peers.md` §D.1 #2).

use tokio::sync::watch;
use tracing::Instrument;

use super::event::ChangeEvent;

/// Delivers [`ChangeEvent`]s to a handler on its own task, coalescing: while the handler
/// runs, newer events replace older ones, and the handler then runs once with the latest.
#[derive(Debug)]
pub struct Coalescer {
    tx: watch::Sender<Option<ChangeEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Coalescer {
    /// Spawns the delivery task (aborted when the `Coalescer` is dropped).
    pub fn spawn<F, Fut>(handler: F) -> Self
    where
        F: Fn(ChangeEvent) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = watch::channel(None::<ChangeEvent>);
        let task = tokio::spawn(
            async move {
                while rx.changed().await.is_ok() {
                    let event = rx.borrow_and_update().clone();
                    if let Some(event) = event {
                        handler(event).await;
                    }
                }
            }
            .instrument(tracing::info_span!("notify")),
        );
        Self { tx, task }
    }

    /// Queues a notification (replacing one not yet delivered).
    pub fn send(&self, event: ChangeEvent) {
        self.tx.send_replace(Some(event));
    }
}

impl Drop for Coalescer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::sample as event;
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // reference: docs/peers.md §D.1 #2 (coalesced notification)
    #[tokio::test]
    async fn coalescer_delivers_the_latest_once_after_a_busy_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let c = {
            let (calls, seen, gate) = (calls.clone(), seen.clone(), gate.clone());
            Coalescer::spawn(move |e: ChangeEvent| {
                let (calls, seen, gate) = (calls.clone(), seen.clone(), gate.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(e.data_dir.clone());
                    gate.acquire().await.unwrap().forget();
                }
            })
        };
        c.send(event(1));
        // Wait until the first delivery is in the (blocked) handler.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for n in 2..=5 {
            c.send(event(n));
        }
        gate.add_permits(10);
        while calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["..1".to_string(), "..5".to_string()]
        );
    }
}
