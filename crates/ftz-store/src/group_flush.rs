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
    /// Callers served, and time spent flushing, since the store opened.
    callers: u64,
    busy: std::time::Duration,
}

#[derive(Debug, Default)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    done: Condvar,
}

/// How the store's flushes went: flushes run, callers served, time spent flushing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub flushes: u64,
    pub callers: u64,
    pub busy: std::time::Duration,
}

impl GroupFlush {
    pub(crate) fn stats(&self) -> FlushStats {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        FlushStats { flushes: s.completed, callers: s.callers, busy: s.busy }
    }

    /// Waits until a flush that started after this call has completed, running it if nobody
    /// else is.
    pub(crate) fn flush(&self, flush: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let needed = s.started + 1;
        s.callers += 1;
        let mut flush = Some(flush);
        loop {
            if s.completed >= needed {
                return match &s.failed {
                    Some((n, e)) if *n >= needed => Err(e.clone()),
                    _ => Ok(()),
                };
            }
            if s.running {
                s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead the next flush: it starts now, after every write of every waiter.
            s.running = true;
            s.started += 1;
            let number = s.started;
            drop(s);
            let t = std::time::Instant::now();
            let result = match flush.take() {
                Some(f) => f(),
                None => Err("flush already used".into()),
            };
            let took = t.elapsed();
            s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.busy += took;
            s.running = false;
            s.completed = number;
            if let Err(e) = &result {
                s.failed = Some((number, e.clone()));
            }
            self.done.notify_all();
            if number >= needed {
                return result;
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

    #[test]
    fn a_failed_flush_fails_its_callers() {
        let g = GroupFlush::default();
        assert_eq!(g.flush(|| Err("disk full".into())), Err("disk full".into()));
        assert_eq!(g.flush(|| Ok(())), Ok(()));
    }
}
