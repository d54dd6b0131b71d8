//! v2 timestamps → FHIR `date`/`dateTime`. FHIR needs an offset on any time; a v2 time without
//! one is local time at the sender, which in the UK is GMT in winter and BST (+01:00) in
//! summer. The rule is fixed (since 1996: last Sunday of March to last Sunday of October, at
//! 01:00 UTC), so it is computed here rather than pulling in a time-zone database.

use time::{Date, Month, PrimitiveDateTime, Time, Weekday};
use wyvern_hl7::{Precision, Timestamp};

use crate::spec::LocalTime;

/// The FHIR form of a v2 timestamp, or `None` when it does not parse.
pub fn fhir_datetime(raw: &str, zone: LocalTime) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let mut ts = Timestamp::parse(raw).ok()?;
    if ts.precision >= Precision::Hour && ts.offset_minutes.is_none() {
        ts.offset_minutes = Some(match zone {
            LocalTime::Utc => 0,
            LocalTime::EuropeLondon => london_offset(&ts)?,
        });
    }
    Some(ts.to_iso8601())
}

/// The FHIR form of a v2 timestamp `minutes` later (an appointment's end from its start and
/// length), its offset worked out again for the later time (a clock change may fall between).
pub fn fhir_datetime_plus(raw: &str, minutes: i64, zone: LocalTime) -> Option<String> {
    let ts = Timestamp::parse(raw.trim()).ok()?;
    if ts.precision < Precision::Minute {
        return None;
    }
    let date =
        Date::from_calendar_date(i32::from(ts.year), Month::try_from(ts.month).ok()?, ts.day)
            .ok()?;
    let later = PrimitiveDateTime::new(date, Time::from_hms(ts.hour, ts.minute, ts.second).ok()?)
        .checked_add(time::Duration::minutes(minutes))?;
    let mut v2 = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        later.year(),
        u8::from(later.month()),
        later.day(),
        later.hour(),
        later.minute(),
        later.second()
    );
    if let Some(off) = ts.offset_minutes {
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.unsigned_abs();
        v2.push_str(&format!("{sign}{:02}{:02}", off / 60, off % 60));
    }
    fhir_datetime(&v2, zone)
}

/// A v2 date (the day at most): `1980-01-02`.
pub fn fhir_date(raw: &str) -> Option<String> {
    let ts = Timestamp::parse(raw.trim()).ok()?;
    let day = Timestamp {
        precision: ts.precision.min(Precision::Day),
        ..ts
    };
    Some(day.to_iso8601())
}

fn london_offset(ts: &Timestamp) -> Option<i16> {
    let month = Month::try_from(ts.month).ok()?;
    let date = Date::from_calendar_date(i32::from(ts.year), month, ts.day).ok()?;
    let local = PrimitiveDateTime::new(date, Time::from_hms(ts.hour, ts.minute, ts.second).ok()?);
    let starts = last_sunday(ts.year, Month::March)?.with_hms(1, 0, 0).ok()?; // 01:00 GMT
    let ends = last_sunday(ts.year, Month::October)?
        .with_hms(1, 0, 0)
        .ok()?; // 01:00 UTC = 02:00 BST
    // Local wall time → compare against the switch instants in local terms.
    let in_bst =
        local >= starts + time::Duration::hours(1) && local < ends + time::Duration::hours(1);
    Some(if in_bst { 60 } else { 0 })
}

fn last_sunday(year: u16, month: Month) -> Option<Date> {
    let last = Date::from_calendar_date(
        i32::from(year),
        month,
        time::util::days_in_month(month, i32::from(year)),
    )
    .ok()?;
    let back = last.weekday().number_days_from_sunday();
    let d = last - time::Duration::days(i64::from(back));
    debug_assert_eq!(d.weekday(), Weekday::Sunday);
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_get_gmt_or_bst() {
        let z = LocalTime::EuropeLondon;
        assert_eq!(
            fhir_datetime("202601151030", z).as_deref(),
            Some("2026-01-15T10:30:00+00:00")
        );
        assert_eq!(
            fhir_datetime("202607151030", z).as_deref(),
            Some("2026-07-15T10:30:00+01:00")
        );
        // 2026: BST from Sunday 29 March, until Sunday 25 October.
        assert_eq!(
            fhir_datetime("202603290030", z).as_deref(),
            Some("2026-03-29T00:30:00+00:00")
        );
        assert_eq!(
            fhir_datetime("202603290300", z).as_deref(),
            Some("2026-03-29T03:00:00+01:00")
        );
        assert_eq!(
            fhir_datetime("202610250030", z).as_deref(),
            Some("2026-10-25T00:30:00+01:00")
        );
        assert_eq!(
            fhir_datetime("202610250300", z).as_deref(),
            Some("2026-10-25T03:00:00+00:00")
        );
        // An offset given wins; dates stay dates.
        assert_eq!(
            fhir_datetime("202607151030-0500", z).as_deref(),
            Some("2026-07-15T10:30:00-05:00")
        );
        assert_eq!(fhir_datetime("19800102", z).as_deref(), Some("1980-01-02"));
        assert_eq!(fhir_date("198001021200").as_deref(), Some("1980-01-02"));
        assert_eq!(fhir_datetime("not a date", z), None);
    }
}
