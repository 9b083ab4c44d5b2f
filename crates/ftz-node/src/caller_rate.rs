//! Request rates per caller: a token bucket for each authenticated identity (each other zone's
//! node, each of this zone's users), checked before any service runs. A caller over its rate is
//! refused with `RATE_LIMITED` and a retry hint; of those refusals, at most one a second per
//! caller reaches the audit log, so a flood cannot grow the log faster than the rate allows.

use std::{collections::HashMap, sync::Mutex};

/// Callers tracked at most; when full, those whose bucket has refilled are forgotten (they
/// would start full anyway).
const MAX_CALLERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
    last_logged_ms: i64,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admit,
    /// Over the rate: retry after this long; `log`: this refusal goes to the audit log.
    Refuse {
        retry_after_ms: u64,
        log: bool,
    },
}

#[derive(Default)]
pub(crate) struct CallerRates {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl CallerRates {
    /// Takes one request of `caller`, allowed `per_second` with bursts of twice that.
    pub(crate) fn admit(&self, caller: &str, per_second: u32, now_ms: i64) -> Admission {
        self.admit_burst(caller, per_second, per_second.saturating_mul(2), now_ms)
    }

    /// The same with bursts of `burst`.
    pub(crate) fn admit_burst(&self, caller: &str, per_second: u32, burst: u32, now_ms: i64) -> Admission {
        let rate = f64::from(per_second.max(1)) / 1000.0; // tokens per ms
        let burst = f64::from(burst.max(1));
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CALLERS && !map.contains_key(caller) {
            map.retain(|_, b| b.tokens + (now_ms - b.at_ms).max(0) as f64 * rate < burst);
            if map.len() >= MAX_CALLERS {
                map.clear();
            }
        }
        let b =
            map.entry(caller.to_string()).or_insert(Bucket { tokens: burst, at_ms: now_ms, last_logged_ms: i64::MIN });
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_ms = now_ms.max(b.at_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Admission::Admit;
        }
        let retry_after_ms = ((1.0 - b.tokens) / rate).ceil() as u64;
        let log = now_ms.saturating_sub(b.last_logged_ms) >= 1000;
        if log {
            b.last_logged_ms = now_ms;
        }
        Admission::Refuse { retry_after_ms, log }
    }
}

/// A budget of things written per key (a zone's refusal entries in the audit log, the node's
/// warning lines about refusals): at most `per_second` in bursts of `burst`; what is left out is
/// counted and the count handed to the next one admitted, so nothing goes unmentioned.
pub(crate) struct CountedGate {
    rates: CallerRates,
    left_out: Mutex<HashMap<String, u64>>,
    per_second: u32,
    burst: u32,
}

impl CountedGate {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self { rates: CallerRates::default(), left_out: Mutex::default(), per_second, burst }
    }

    /// `None`: over the budget, left out (and counted). `Some(n)`: write it, `n` were left out
    /// before it.
    pub(crate) fn admit(&self, key: &str, now_ms: i64) -> Option<u64> {
        let mut left_out = self.left_out.lock().unwrap_or_else(|e| e.into_inner());
        match self.rates.admit_burst(key, self.per_second, self.burst, now_ms) {
            Admission::Admit => Some(left_out.remove(key).unwrap_or(0)),
            Admission::Refuse { .. } => {
                // Bounded like the rates: at most as many keys as callers tracked.
                if left_out.len() < MAX_CALLERS || left_out.contains_key(key) {
                    *left_out.entry(key.to_string()).or_default() += 1;
                }
                None
            }
        }
    }

    /// Counts `n` more left out for `key` (bounded like [`CountedGate::admit`]).
    fn count_left_out(&self, key: &str, n: u64) {
        let mut left_out = self.left_out.lock().unwrap_or_else(|e| e.into_inner());
        if left_out.len() < MAX_CALLERS || left_out.contains_key(key) {
            *left_out.entry(key.to_string()).or_default() += n;
        }
    }
}

/// Warning lines about refusals: a budget per caller (so one caller's flood does not hide
/// another's first refusal) under a ceiling for the whole node (so many callers together cannot
/// fill the disk either). A line left out by either is counted in that caller's next line.
pub(crate) struct RefusalLines {
    per_caller: CountedGate,
    node: CountedGate,
}

impl RefusalLines {
    /// `per_caller` lines a second per caller (bursts of five times that), `node` a second in
    /// all (bursts of twice that).
    pub(crate) fn new(per_caller: u32, node: u32) -> Self {
        Self {
            per_caller: CountedGate::new(per_caller, per_caller.saturating_mul(5)),
            node: CountedGate::new(node, node.saturating_mul(2)),
        }
    }

    /// `None`: leave the line out (counted for `caller`). `Some(n)`: write it, saying `n` of
    /// this caller's lines were left out before it.
    pub(crate) fn admit(&self, caller: &str, now_ms: i64) -> Option<u64> {
        let mine = self.per_caller.admit(caller, now_ms)?;
        if self.node.admit("", now_ms).is_some() {
            return Some(mine);
        }
        self.per_caller.count_left_out(caller, mine + 1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_are_per_caller_under_a_node_ceiling() {
        let lines = RefusalLines::new(1, 20);
        // One caller's flood: its burst of five, then nothing.
        assert_eq!((0..1000).filter(|_| lines.admit("zone:hainan", 0).is_some()).count(), 5);
        // It does not silence another caller.
        assert_eq!(lines.admit("ip:192.0.2.7", 0), Some(0));
        // A second later the flooding caller gets one line, saying what it left out.
        assert_eq!(lines.admit("zone:hainan", 1000), Some(995));
        // Five thousand callers at once: the node writes no more than its ceiling.
        let caller = |i: u32| format!("ip:10.0.{}.{}", i / 256, i % 256);
        let written = (0..5000).filter(|&i| lines.admit(&caller(i), 5000).is_some()).count();
        assert_eq!(written, 40, "the node's burst in one instant");
        // What the ceiling left out is still counted for the caller it belonged to.
        assert_eq!(lines.admit(&caller(4999), 7000), Some(1));
    }

    #[test]
    fn refusal_lines_are_bounded_and_the_rest_counted() {
        let g = CountedGate::new(5, 10);
        let written = (0..1000).filter(|_| g.admit("", 0).is_some()).count();
        assert_eq!(written, 10, "the burst, then nothing");
        // A second later, five more; the first says how many were left out.
        assert_eq!(g.admit("", 1000), Some(990));
        assert_eq!((0..100).filter(|_| g.admit("", 1000).is_some()).count(), 4);
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let r = CallerRates::default();
        for _ in 0..20 {
            assert_eq!(r.admit("a", 10, 0), Admission::Admit);
        }
        let Admission::Refuse { retry_after_ms, log } = r.admit("a", 10, 0) else { panic!("over the burst") };
        assert_eq!((retry_after_ms, log), (100, true));
        // Another caller is not affected.
        assert_eq!(r.admit("b", 10, 0), Admission::Admit);
        // Only one refusal a second is logged.
        assert_eq!(r.admit("a", 10, 50), Admission::Refuse { retry_after_ms: 50, log: false });
        // 100 ms later one token is back.
        assert_eq!(r.admit("a", 10, 100), Admission::Admit);
        assert!(matches!(r.admit("a", 10, 100), Admission::Refuse { .. }));
        assert!(matches!(r.admit("a", 10, 1100), Admission::Admit));
        // A clock that goes back does not mint tokens.
        let r = CallerRates::default();
        for _ in 0..2 {
            assert_eq!(r.admit("c", 1, 10_000), Admission::Admit);
        }
        assert!(matches!(r.admit("c", 1, 0), Admission::Refuse { .. }));
    }

    #[test]
    fn the_table_stays_bounded() {
        let r = CallerRates::default();
        for i in 0..(MAX_CALLERS + 10) {
            r.admit(&format!("caller-{i}"), 10, 0);
        }
        assert!(r.buckets.lock().unwrap().len() <= MAX_CALLERS);
    }
}
