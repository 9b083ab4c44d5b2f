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
    /// The error of the last flush, given to the callers that waited for it.
    failed: Option<(u64, String)>,
}

#[derive(Debug)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    done: Condvar,
    /// The number of the last completed flush, for callers that wait without a thread.
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
            return Step::Done(match &s.failed {
                Some((n, e)) if *n >= needed => Err(e.clone()),
                _ => Ok(()),
            });
        }
        if s.running {
            return Step::Wait;
        }
        // Lead the next flush (others wait for it from now on).
        s.running = true;
        Step::Lead
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
        if let Err(e) = result {
            s.failed = Some((number, e));
        }
        drop(s);
        self.done.notify_all();
        self.completed.send_replace(number);
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
                    self.run(|| flush.take().map_or_else(|| Err("flush already used".into()), |f| f()));
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
                    // A flush completing after the subscription wakes this up; the state says
                    // whether it was the one needed.
                    let _ = completed.changed().await;
                }
                Step::Lead => {
                    let (me, f) = (self.clone(), flush.take());
                    let run = move || me.run(|| f.map_or_else(|| Err("flush already used".into()), |f| f()));
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
    fn a_failed_flush_fails_its_callers() {
        let g = GroupFlush::default();
        assert_eq!(g.flush(|| Err("disk full".into())), Err("disk full".into()));
        assert_eq!(g.flush(|| Ok(())), Ok(()));
    }
}
