//! Logging with `tracing`: human-readable text or one JSON object per line.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the config's level.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // try_init: a second call (tests, the demo) keeps the first subscriber.
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

/// Warning lines about refused requests: at most `per_second` (in bursts of `burst`), whoever
/// causes them. A caller can make a node refuse as fast as it can send, so writing a line for
/// each would let anyone fill the node's disk through its log; the refusals themselves are
/// audited, bounded per zone (in the audit module). The lines left out are counted and
/// the count is told in the next line written.
pub(crate) struct LineGate {
    per_second: f64,
    burst: f64,
    state: std::sync::Mutex<GateState>,
}

struct GateState {
    tokens: f64,
    at: std::time::Instant,
    left_out: u64,
}

impl LineGate {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let state = GateState { tokens: burst, at: std::time::Instant::now(), left_out: 0 };
        Self { per_second: f64::from(per_second.max(1)), burst, state: std::sync::Mutex::new(state) }
    }

    /// `Some(n)`: write the line (and say `n` were left out before it); `None`: leave it out.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(std::time::Instant::now())
    }

    fn admit_at(&self, now: std::time::Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.per_second).min(self.burst);
        s.at = now.max(s.at);
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Some(std::mem::take(&mut s.left_out))
        } else {
            s.left_out = s.left_out.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::LineGate;

    #[test]
    fn refusal_lines_are_bounded_and_the_rest_counted() {
        let g = LineGate::new(5, 10);
        let t0 = Instant::now();
        let written = (0..1000).filter(|_| g.admit_at(t0).is_some()).count();
        assert_eq!(written, 10, "the burst, then nothing");
        // A second later, five more; the first says how many were left out.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(g.admit_at(t1), Some(990));
        assert_eq!((0..100).filter(|_| g.admit_at(t1).is_some()).count(), 4);
    }
}
