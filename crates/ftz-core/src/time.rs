//! Time as Unix milliseconds, read through a [`Clock`] so that tests can move it by hand
//! (status ages, expiry, retention) instead of sleeping.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// Milliseconds since the Unix epoch, UTC. Signed so that differences need no casts.
pub type UnixMillis = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> UnixMillis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock before 1970 is a broken clock; saying "0" makes every validity check fail
            // closed rather than pass.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to. Shared by cloning.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: UnixMillis) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    pub fn set(&self, t: UnixMillis) {
        self.0.store(t, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, by: i64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats Unix milliseconds as RFC 3339 (UTC, seconds), for humans. Values before the epoch
/// print as a number rather than as a wrong date.
pub fn format_ms(t: UnixMillis) -> String {
    // RFC 3339 has four-digit years: from year 10000 on (which a signed document may state), a
    // number too, never a panic.
    if !(0..253_402_300_800_000).contains(&t) {
        return format!("{t} ms");
    }
    let ts = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.unsigned_abs());
    humantime::format_rfc3339_seconds(ts).to_string()
}

/// Parses RFC 3339 (`2026-11-27T10:00:00Z`) into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<UnixMillis> {
    let ts = humantime::parse_rfc3339_weak(s).ok()?;
    let d = ts.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance_ms(500);
        assert_eq!(c.now_ms(), 1_500);
        let shared = c.clone();
        shared.set(42);
        assert_eq!(c.now_ms(), 42);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_ms(1_795_780_800_000), "2026-11-27T12:00:00Z");
        assert_eq!(format_ms(-5), "-5 ms");
        assert_eq!(format_ms(253_402_300_799_000), "9999-12-31T23:59:59Z");
        assert_eq!(format_ms(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(parse_rfc3339("2026-11-27T12:00:00Z"), Some(1_795_780_800_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
