//! Group commit for the whole store: every write method ends with a flush, and concurrent
//! callers share flushes. A caller returns only after a flush that *started after its call*
//! has completed, so everything it wrote before calling is on disk; one sled flush (a write and
//! an fsync) covers every writer that arrived while the previous one ran.

use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Flushes started, and completed, so far (each numbered by when it started).
    started: u64,
    completed: u64,
    running: bool,
    /// The last flush that succeeded: every caller that needed it or an earlier one is durable.
    last_ok: u64,
    /// Why the last failed flush failed, for the callers it leaves without a successful one.
    last_error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    done: Condvar,
    /// Bumped whenever a flush ends, for callers that wait without a thread.
    completed: tokio::sync::watch::Sender<u64>,
}

impl Default for GroupFlush {
    fn default() -> Self {
        Self { state: Mutex::default(), done: Condvar::new(), completed: tokio::sync::watch::Sender::new(0) }
    }
}

/// What a caller does next.
enum Step {
    Done(Result<(), String>),
    Wait,
    /// Run the next flush: none is running and the caller's is not done.
    Lead,
}

/// Held by a flush's leader until the flush has ended. Dropped before that (the flush panicked,
/// or its task never ran because the runtime is stopping), it ends the flush as failed, so
/// that nobody waits for it for ever.
struct Leading<G: std::ops::Deref<Target = GroupFlush>> {
    group: G,
    armed: bool,
}

impl<G: std::ops::Deref<Target = GroupFlush>> Leading<G> {
    fn run(mut self, flush: impl FnOnce() -> Result<(), String>) {
        self.group.run(flush);
        self.armed = false;
    }
}

impl<G: std::ops::Deref<Target = GroupFlush>> Drop for Leading<G> {
    fn drop(&mut self) {
        if self.armed {
            self.group.abandon();
        }
    }
}

impl GroupFlush {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a caller: it needs a flush that starts after now.
    fn arrive(s: &State) -> u64 {
        s.started + 1
    }

    fn step(s: &mut State, needed: u64) -> Step {
        if s.completed >= needed {
            // Flushes run one at a time, each after the previous: a later successful one covers
            // every earlier caller too.
            return Step::Done(if s.last_ok >= needed {
                Ok(())
            } else {
                Err(s.last_error.clone().unwrap_or_else(|| "the flush failed".into()))
            });
        }
        if s.running {
            return Step::Wait;
        }
        // Lead the next flush (others wait for it from now on).
        s.running = true;
        Step::Lead
    }

    fn ended(&self) {
        self.done.notify_all();
        self.completed.send_modify(|n| *n += 1);
    }

    fn run(&self, flush: impl FnOnce() -> Result<(), String>) {
        // The flush starts now, after every write of every caller that arrived so far.
        let number = {
            let mut s = self.lock();
            s.started += 1;
            s.started
        };
        let result = flush();
        let mut s = self.lock();
        s.running = false;
        s.completed = number;
        match result {
            Ok(()) => s.last_ok = number,
            Err(e) => s.last_error = Some(e),
        }
        drop(s);
        self.ended();
    }

    /// A leader went away without ending its flush.
    fn abandon(&self) {
        let mut s = self.lock();
        if s.started > s.completed {
            s.completed = s.started;
            s.last_error = Some("the flush did not complete".into());
        }
        s.running = false;
        drop(s);
        self.ended();
    }

    /// Waits until a flush that started after this call has completed, running it if nobody
    /// else is.
    pub(crate) fn flush(&self, flush: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let mut s = self.lock();
        let needed = Self::arrive(&s);
        let mut flush = Some(flush);
        loop {
            match Self::step(&mut s, needed) {
                Step::Done(r) => return r,
                Step::Wait => s = self.done.wait(s).unwrap_or_else(|e| e.into_inner()),
                Step::Lead => {
                    drop(s);
                    let f = flush.take();
                    Leading { group: self, armed: true }
                        .run(|| f.map_or_else(|| Err("flush already used".into()), |f| f()));
                    s = self.lock();
                }
            }
        }
    }

    /// The same for async callers, which wait without holding a thread: only a caller that
    /// leads a flush runs it, on the blocking pool, where it completes even if that caller is
    /// cancelled (others wait for it).
    pub(crate) async fn flush_async(
        self: &std::sync::Arc<Self>,
        flush: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<(), String> {
        let mut completed = self.completed.subscribe();
        let needed = Self::arrive(&self.lock());
        let mut flush = Some(flush);
        loop {
            let step = Self::step(&mut self.lock(), needed);
            match step {
                Step::Done(r) => return r,
                Step::Wait => {
                    // A flush ending after the subscription wakes this up; the state says
                    // whether it was the one needed.
                    let _ = completed.changed().await;
                }
                Step::Lead => {
                    let (leading, f) = (Leading { group: self.clone(), armed: true }, flush.take());
                    let run = move || leading.run(|| f.map_or_else(|| Err("flush already used".into()), |f| f()));
                    if let Err(e) = tokio::task::spawn_blocking(run).await {
                        return Err(format!("the flush task failed: {e}"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use super::*;

    #[test]
    fn concurrent_callers_share_flushes_and_each_waits_for_one_that_started_after_it() {
        let g = Arc::new(GroupFlush::default());
        let flushes = Arc::new(AtomicU64::new(0));
        // Each "write" bumps `written`; a flush records how many writes it covered.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (g, flushes, written, durable) = (g.clone(), flushes.clone(), written.clone(), durable.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        let (w, d, f) = (written.clone(), durable.clone(), flushes.clone());
                        g.flush(move || {
                            f.fetch_add(1, Ordering::SeqCst);
                            let covered = w.load(Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            d.fetch_max(covered, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        // What this caller wrote is covered by a completed flush.
                        assert!(durable.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 1600, "{n} flushes for 1600 writes: none shared");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_callers_share_flushes_without_threads_and_see_their_writes_covered() {
        let g = Arc::new(GroupFlush::default());
        let (flushes, written, durable) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (g, flushes, written, durable) = (g.clone(), flushes.clone(), written.clone(), durable.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        let (w, d, f) = (written.clone(), durable.clone(), flushes.clone());
                        g.flush_async(move || {
                            f.fetch_add(1, Ordering::SeqCst);
                            let covered = w.load(Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            d.fetch_max(covered, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                        .unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 1280, "{n} flushes for 1280 writes: none shared");
        // Sync and async callers share one sequence.
        assert_eq!(g.flush(|| Err("disk full".into())), Err("disk full".into()));
        assert_eq!(g.flush_async(|| Ok(())).await, Ok(()));
    }

    #[test]
    fn a_failed_flush_fails_its_callers_and_no_other() {
        let g = GroupFlush::default();
        assert_eq!(g.flush(|| Err("disk full".into())), Err("disk full".into()));
        assert_eq!(g.flush(|| Ok(())), Ok(()));
        // A caller whose flush succeeded is not failed by a later one that did not.
        let mut s = g.lock();
        let needed = GroupFlush::arrive(&s);
        drop(s);
        assert_eq!(g.flush(|| Ok(())), Ok(()));
        assert_eq!(g.flush(|| Err("disk full".into())), Err("disk full".into()));
        s = g.lock();
        assert!(matches!(GroupFlush::step(&mut s, needed), Step::Done(Ok(()))));
    }

    #[test]
    fn a_flush_that_panics_fails_its_callers_and_does_not_block_the_next() {
        let g = Arc::new(GroupFlush::default());
        let g2 = g.clone();
        let panicked = std::thread::spawn(move || g2.flush(|| panic!("sled panicked"))).join();
        assert!(panicked.is_err());
        assert_eq!(g.flush(|| Ok(())), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_flush_that_panics_fails_its_callers_and_does_not_block_the_next() {
        let g = Arc::new(GroupFlush::default());
        assert!(g.flush_async(|| panic!("sled panicked")).await.is_err());
        assert_eq!(g.flush_async(|| Ok(())).await, Ok(()));
        assert_eq!(g.flush(|| Ok(())), Ok(()));
    }
}
