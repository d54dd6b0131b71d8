//! HL7 DTM/TS values: `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`, keeping the precision given.
//!
//! A birth date `19700101` and an admission time `202611251430+0100` are different things;
//! FHIR keeps that difference (date vs dateTime), so the precision travels with the value.

use std::fmt::Write;

/// How much of the timestamp was present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Fractional seconds with this many digits (1–4 in HL7).
    Fraction(u8),
}

/// A parsed HL7 timestamp. Fields beyond the precision are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Fraction of a second in units of the precision's digits (e.g. `123` for `.123`).
    pub fraction: u32,
    pub precision: Precision,
    /// Offset from UTC in minutes, when the value carried one.
    pub offset_minutes: Option<i16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 timestamp {value:?}: {reason}")]
pub struct TimestampError {
    pub value: String,
    pub reason: &'static str,
}

impl Timestamp {
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let fail = |reason| {
            Err(TimestampError {
                value: s.to_string(),
                reason,
            })
        };
        let (main, offset) = match s.find(['+', '-']) {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let (digits, frac) = match main.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (main, None),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return fail("expected digits");
        }
        let precision = match (digits.len(), frac) {
            (4, None) => Precision::Year,
            (6, None) => Precision::Month,
            (8, None) => Precision::Day,
            (10, None) => Precision::Hour,
            (12, None) => Precision::Minute,
            (14, None) => Precision::Second,
            (14, Some(f))
                if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Precision::Fraction(f.len() as u8)
            }
            (14, Some(_)) => return fail("fractional seconds must be 1 to 9 digits"),
            (_, Some(_)) => {
                return fail("fractional seconds need a full YYYYMMDDHHMMSS before them");
            }
            _ => {
                return fail(
                    "expected YYYY, YYYYMM, YYYYMMDD, YYYYMMDDHH, YYYYMMDDHHMM or YYYYMMDDHHMMSS",
                );
            }
        };
        let num =
            |r: std::ops::Range<usize>| digits.get(r).map_or(0, |d| d.parse::<u32>().unwrap_or(0));
        let t = Timestamp {
            year: num(0..4) as u16,
            month: if precision >= Precision::Month {
                num(4..6) as u8
            } else {
                1
            },
            day: if precision >= Precision::Day {
                num(6..8) as u8
            } else {
                1
            },
            hour: num(8..10) as u8,
            minute: num(10..12) as u8,
            second: num(12..14) as u8,
            fraction: frac.map_or(0, |f| f.parse().unwrap_or(0)),
            precision,
            offset_minutes: match offset {
                None => None,
                Some(o) => match parse_offset(o) {
                    Some(m) => Some(m),
                    None => return fail("the UTC offset must be +HHMM or -HHMM"),
                },
            },
        };
        if !(1..=12).contains(&t.month) {
            return fail("month out of range");
        }
        if t.day < 1 || t.day > days_in_month(t.year, t.month) {
            return fail("day out of range for the month");
        }
        if t.hour > 23 || t.minute > 59 || t.second > 59 {
            return fail("time of day out of range");
        }
        Ok(t)
    }

    /// ISO 8601 / FHIR form at the precision given: `1970`, `1970-01`, `1970-01-01`,
    /// `2026-11-25T14:30:00+01:00`. Hours and minutes are padded to seconds, as FHIR requires.
    pub fn to_iso8601(&self) -> String {
        // Digits pushed by hand: this runs for every time a FHIR mapping writes, and the
        // formatting machinery cost more than the rest of the conversion.
        fn two(s: &mut String, sep: char, n: u8) {
            debug_assert!(n < 100, "two digits: {n}");
            s.push(sep);
            s.push(char::from(b'0' + (n / 10) % 10));
            s.push(char::from(b'0' + n % 10));
        }
        let mut s = String::with_capacity(32);
        let y = self.year;
        if y > 9999 {
            let _ = write!(s, "{y}");
        } else {
            for d in [y / 1000, (y / 100) % 10, (y / 10) % 10, y % 10] {
                s.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
            }
        }
        if self.precision >= Precision::Month {
            two(&mut s, '-', self.month);
        }
        if self.precision >= Precision::Day {
            two(&mut s, '-', self.day);
        }
        if self.precision >= Precision::Hour {
            two(&mut s, 'T', self.hour);
            two(&mut s, ':', self.minute);
            two(&mut s, ':', self.second);
            if let Precision::Fraction(n) = self.precision {
                let _ = write!(s, ".{:0width$}", self.fraction, width = n as usize);
            }
            if let Some(off) = self.offset_minutes {
                let abs = off.unsigned_abs();
                let sign = if off < 0 { '-' } else { '+' };
                match u8::try_from(abs / 60) {
                    Ok(h) if h < 100 => two(&mut s, sign, h),
                    _ => {
                        let _ = write!(s, "{sign}{}", abs / 60);
                    }
                }
                two(&mut s, ':', u8::try_from(abs % 60).unwrap_or(0));
            }
        }
        s
    }
}

fn parse_offset(o: &str) -> Option<i16> {
    let sign = if o.starts_with('-') { -1 } else { 1 };
    let d = &o[1..];
    if d.len() != 4 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i16, i16) = (d[..2].parse().ok()?, d[2..].parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions() {
        for (hl7, iso) in [
            ("1970", "1970"),
            ("197002", "1970-02"),
            ("19700228", "1970-02-28"),
            ("2026112514", "2026-11-25T14:00:00"),
            ("202611251430", "2026-11-25T14:30:00"),
            ("20261125143005", "2026-11-25T14:30:05"),
            ("20261125143005.12", "2026-11-25T14:30:05.12"),
            ("20261125143005.1234+0100", "2026-11-25T14:30:05.1234+01:00"),
            ("202611251430-0330", "2026-11-25T14:30:00-03:30"),
            ("20240229", "2024-02-29"),
        ] {
            assert_eq!(Timestamp::parse(hl7).unwrap().to_iso8601(), iso, "{hl7}");
        }
        assert_eq!(
            Timestamp::parse("19700101").unwrap().precision,
            Precision::Day
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "197",
            "19701",
            "20261301",
            "20230229",
            "20261125246000",
            "2026112514+01",
            "2026.5",
            "2026112514300.1",
            "x",
            "20261125143005.",
            "2026-11-25",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
