//! Background work the node runs besides answering calls (retries, checkpoints, sweeps,
//! retention): started through one handle, so that shutdown can signal all of it and wait for
//! it, and written once as [`Tasks::every`] instead of one select/sleep loop per task.

use std::{future::Future, sync::Mutex, time::Duration};

use tokio::{sync::watch, task::JoinSet};

pub(crate) struct Tasks {
    set: Mutex<JoinSet<()>>,
    shutdown: watch::Receiver<bool>,
}

impl Tasks {
    /// Tasks that end when `shutdown` turns true.
    pub(crate) fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self { set: Mutex::new(JoinSet::new()), shutdown }
    }

    /// Runs `f` in the background; shutdown waits for it (it must end on [`Self::stopped`]).
    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        // Finished tasks are reaped here, so the set stays as small as the work in flight.
        while set.try_join_next().is_some() {}
        set.spawn(f);
    }

    /// Runs `f` now and then every `period` after it finished, until shutdown.
    pub(crate) fn every<F, Fut>(&self, period: Duration, f: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.repeat(Duration::ZERO, period, f);
    }

    /// The same, first after `period` (for work the caller has just done once itself).
    pub(crate) fn every_after<F, Fut>(&self, period: Duration, f: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.repeat(period, period, f);
    }

    fn repeat<F, Fut>(&self, first: Duration, period: Duration, mut f: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut shutdown = self.shutdown.clone();
        self.spawn(async move {
            let mut wait = first;
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(wait) => {}
                }
                f().await;
                wait = period;
            }
        });
    }

    /// Resolves once shutdown is signalled: what a long-running task selects on.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }
    }

    /// True once the node is shutting down.
    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits for the background work to end (after shutdown was signalled); aborts what is
    /// still running after `grace`.
    pub(crate) async fn join(&self, grace: Duration) {
        let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("background work did not end in time; aborted");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_runs_at_once_then_each_period_until_shutdown() {
        let (tx, rx) = watch::channel(false);
        let tasks = Tasks::new(rx);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        tasks.every(Duration::from_secs(10), move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        tx.send(true).unwrap();
        tasks.join(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
