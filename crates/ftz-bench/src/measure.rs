//! Driving operations and measuring them: a fixed number of operations with a fixed number in
//! flight; throughput over the whole run, latency percentiles over every operation.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub ops: usize,
    pub elapsed: Duration,
    /// Every operation's latency, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl Measured {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nothing measured yet (what [`Measured::merge`] starts from).
    pub fn empty() -> Measured {
        Measured { ops: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() }
    }

    /// Adds another run of the same scenario: operations and time add up, latencies are pooled.
    pub fn merge(&mut self, other: Measured) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
    }

    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)]
    }
}

/// Runs `op(i)` for i in 0..total, `in_flight` at a time. Errors stop the run.
pub async fn drive<F, Fut>(total: usize, in_flight: usize, op: F) -> anyhow::Result<Measured>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut latencies_us = Vec::with_capacity(total);
    for w in workers {
        latencies_us.extend(w.await??);
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Ok(Measured { ops: total, elapsed, latencies_us })
}

/// Runs a synchronous operation `total` times on this thread.
pub fn repeat(total: usize, mut op: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let mut latencies_us = Vec::with_capacity(total);
    for i in 0..total {
        let t = Instant::now();
        op(i)?;
        latencies_us.push(t.elapsed().as_nanos() as u64 / 1000);
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Ok(Measured { ops: total, elapsed, latencies_us })
}

/// The process's resident set now, and its peak, in MiB (Linux; 0 elsewhere).
pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub rss_mb: f64,
    pub baseline: String,
    pub ratio: f64,
}

impl Row {
    pub fn new(scenario: &str, m: &Measured, baseline: Option<(&str, f64)>) -> Row {
        let ops = m.ops_per_s();
        let (name, ratio) = match baseline {
            Some((name, base)) if base > 0.0 => (name.to_string(), ops / base),
            _ => (String::new(), 1.0),
        };
        Row {
            scenario: scenario.to_string(),
            ops_per_s: ops,
            p50_us: m.percentile_us(0.50),
            p99_us: m.percentile_us(0.99),
            rss_mb: rss_mb().0,
            baseline: name,
            ratio,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "ops_per_s": (self.ops_per_s * 10.0).round() / 10.0,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "rss_mb": (self.rss_mb * 10.0).round() / 10.0,
            "baseline": self.baseline,
            "ratio": (self.ratio * 1000.0).round() / 1000.0,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let m = Measured { ops: 100, elapsed: Duration::from_secs(2), latencies_us: (1..=100).collect() };
        assert_eq!((m.percentile_us(0.5), m.percentile_us(0.99)), (51, 99));
        assert!((m.ops_per_s() - 50.0).abs() < 1e-9);
        let r = Row::new("x", &m, Some(("base", 100.0)));
        assert!((r.ratio - 0.5).abs() < 1e-9);
    }

    #[test]
    fn merged_runs_add_up_and_pool_their_latencies() {
        let mut m = Measured::empty();
        m.merge(Measured { ops: 2, elapsed: Duration::from_secs(1), latencies_us: vec![5, 9] });
        m.merge(Measured { ops: 3, elapsed: Duration::from_secs(4), latencies_us: vec![1, 7, 8] });
        assert_eq!((m.ops, m.elapsed, m.latencies_us), (5, Duration::from_secs(5), vec![1, 5, 7, 8, 9]));
    }

    #[tokio::test]
    async fn drive_runs_every_operation_once() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let m = drive(50, 7, move |i| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(i);
                Ok(())
            }
        })
        .await
        .unwrap();
        let mut v = seen.lock().unwrap().clone();
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
        assert_eq!(m.latencies_us.len(), 50);
    }
}
