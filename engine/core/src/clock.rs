//! Time as a dependency: real in production, fixed in tests so outputs (ACK timestamps,
//! received-at) are reproducible in golden files.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, from somewhere.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_millis(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to (test mode).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(millis: i64) -> Self {
        FixedClock(AtomicI64::new(millis))
    }
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn utc(millis: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Formats Unix milliseconds as an HL7 timestamp in UTC: `YYYYMMDDHHMMSS.sss+0000`.
pub fn hl7_timestamp(millis: i64) -> String {
    let t = utc(millis);
    let (date, time) = (t.date(), t.time());
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}.{:03}+0000",
        date.year(),
        u8::from(date.month()),
        date.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// Formats Unix milliseconds for people, in UTC: `YYYY-MM-DD HH:MM:SS.sss`.
pub fn display_timestamp(millis: i64) -> String {
    let h = hl7_timestamp(millis);
    format!(
        "{}-{}-{} {}:{}:{}",
        &h[0..4],
        &h[4..6],
        &h[6..8],
        &h[8..10],
        &h[10..12],
        &h[12..18]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hl7() {
        assert_eq!(hl7_timestamp(0), "19700101000000.000+0000");
        assert_eq!(hl7_timestamp(1_795_617_000_123), "20261125143000.123+0000");
        assert_eq!(
            display_timestamp(1_795_617_000_123),
            "2026-11-25 14:30:00.123"
        );
        let c = FixedClock::new(5);
        c.advance(10);
        assert_eq!(c.now_millis(), 15);
    }
}
