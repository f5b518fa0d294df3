//! Wall-clock timestamps as Patroni's REST API writes and reads them.
//!
//! Patroni is Python: `/patroni` prints `postmaster_start_time` with `str(datetime)`
//! (`2024-08-28 19:39:26.352526+00:00`), schedules are written with `isoformat()`
//! (`2024-08-28T19:39:26+00:00`), `/metrics` prints epoch seconds as a Python float, and
//! `scheduled_at`/`schedule` in requests are parsed leniently by `dateutil`. This module does
//! the same conversions without IO and without a date crate: civil-date arithmetic is a few
//! lines (days from 1970-01-01 in the proleptic Gregorian calendar).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant in wall-clock time plus the UTC offset it was written with (kept so a schedule
/// is echoed back in the zone the operator used, as Patroni does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Microseconds since 1970-01-01T00:00:00Z (negative before).
    pub unix_micros: i64,
    /// Offset from UTC in seconds, used only for formatting.
    pub offset_secs: i32,
}

/// Why a timestamp in a request was refused; Patroni answers 400 for the first and 422 for
/// the second (`RestApiHandler.parse_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timezone information is missing")]
    NoTimezone,
    #[error("not a recognisable date and time")]
    Invalid,
}

impl Timestamp {
    /// A UTC timestamp from a `SystemTime` (microsecond precision).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let unix_micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Timestamp {
            unix_micros,
            offset_secs: 0,
        }
    }

    /// A UTC timestamp from whole epoch seconds.
    pub fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp {
            unix_micros: secs.saturating_mul(1_000_000),
            offset_secs: 0,
        }
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        let micros = self.unix_micros.unsigned_abs();
        let d = Duration::from_micros(micros);
        if self.unix_micros >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }

    /// Python's `str(datetime)`: `YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM`.
    pub fn python_str(&self) -> String {
        self.format(' ')
    }

    /// Python's `datetime.isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM`.
    pub fn isoformat(&self) -> String {
        self.format('T')
    }

    /// Epoch seconds as Python prints a float (`1724873966.352526`, `1724873966.0`), the
    /// form `/metrics` uses for `patroni_postmaster_start_time`.
    pub fn epoch_seconds(&self) -> String {
        python_float(self.unix_micros as f64 / 1_000_000.0)
    }

    fn format(&self, sep: char) -> String {
        let local = self.unix_micros + i64::from(self.offset_secs) * 1_000_000;
        let secs = local.div_euclid(1_000_000);
        let micros = local.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
        if micros != 0 {
            out.push_str(&format!(".{micros:06}"));
        }
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let off = self.offset_secs.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", off / 3600, (off / 60) % 60));
        if off % 60 != 0 {
            out.push_str(&format!(":{:02}", off % 60));
        }
        out
    }

    /// Parse a date and time the way operators and patronictl write them: ISO 8601 with `T`
    /// or a space between date and time, optional seconds and fraction, and a zone `Z`,
    /// `UTC`, `GMT`, `±HH`, `±HHMM` or `±HH:MM`. A value without a zone is
    /// [`TimestampError::NoTimezone`] (Patroni refuses those), anything else unreadable is
    /// [`TimestampError::Invalid`].
    pub fn parse(input: &str) -> Result<Timestamp, TimestampError> {
        let s = input.trim();
        let b = s.as_bytes();
        let mut p = Cursor { b, i: 0 };
        let year = p.digits(4, 4).ok_or(TimestampError::Invalid)?;
        p.expect(b'-')?;
        let month = p.digits(1, 2).ok_or(TimestampError::Invalid)?;
        p.expect(b'-')?;
        let day = p.digits(1, 2).ok_or(TimestampError::Invalid)?;
        let (mut hour, mut minute, mut second, mut micros) = (0, 0, 0, 0);
        if p.peek()
            .is_some_and(|c| c == b'T' || c == b't' || c == b' ')
        {
            p.i += 1;
            while p.peek() == Some(b' ') {
                p.i += 1;
            }
            hour = p.digits(1, 2).ok_or(TimestampError::Invalid)?;
            p.expect(b':')?;
            minute = p.digits(2, 2).ok_or(TimestampError::Invalid)?;
            if p.peek() == Some(b':') {
                p.i += 1;
                second = p.digits(2, 2).ok_or(TimestampError::Invalid)?;
                if p.peek().is_some_and(|c| c == b'.' || c == b',') {
                    p.i += 1;
                    let start = p.i;
                    while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                        p.i += 1;
                    }
                    let frac = &s[start..p.i];
                    if frac.is_empty() {
                        return Err(TimestampError::Invalid);
                    }
                    let mut padded: String = frac.chars().take(6).collect();
                    while padded.len() < 6 {
                        padded.push('0');
                    }
                    micros = padded.parse::<i64>().map_err(|_| TimestampError::Invalid)?;
                }
            }
        }
        while p.peek() == Some(b' ') {
            p.i += 1;
        }
        let rest = &s[p.i..];
        let offset_secs = if rest.is_empty() {
            return Err(TimestampError::NoTimezone);
        } else if rest.eq_ignore_ascii_case("z")
            || rest.eq_ignore_ascii_case("utc")
            || rest.eq_ignore_ascii_case("gmt")
        {
            0
        } else {
            parse_offset(rest).ok_or(TimestampError::Invalid)?
        };
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TimestampError::Invalid);
        }
        let days = days_from_civil(year, month, day);
        let local_secs = days * 86_400 + hour * 3600 + minute * 60 + second;
        let utc_secs = local_secs - i64::from(offset_secs);
        Ok(Timestamp {
            unix_micros: utc_secs * 1_000_000 + micros,
            offset_secs,
        })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), TimestampError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(TimestampError::Invalid)
        }
    }

    /// Between `min` and `max` ASCII digits as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        while self.i - start < max && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
}

/// `±HH`, `±HHMM`, `±HH:MM` (also with seconds `±HH:MM:SS`) to seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, body) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !body.bytes().all(|c| c.is_ascii_digit() || c == b':') {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != ':').collect();
    let (h, m, sec) = match digits.len() {
        2 => (&digits[0..2], "0", "0"),
        4 => (&digits[0..2], &digits[2..4], "0"),
        6 => (&digits[0..2], &digits[2..4], &digits[4..6]),
        _ => return None,
    };
    let (h, m, sec): (i32, i32, i32) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A float as Python's `repr` prints it for the magnitudes we meet (epoch seconds, byte
/// counts): shortest round-trip digits, and a trailing `.0` on whole numbers.
pub fn python_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_str_and_isoformat() {
        // 2024-08-28 19:39:26.352526 UTC, the example in Patroni's docs.
        let t = Timestamp {
            unix_micros: 1_724_873_966_352_526,
            offset_secs: 0,
        };
        assert_eq!(t.python_str(), "2024-08-28 19:39:26.352526+00:00");
        assert_eq!(t.isoformat(), "2024-08-28T19:39:26.352526+00:00");
        assert_eq!(t.epoch_seconds(), "1724873966.352526");
        let whole = Timestamp::from_unix_secs(1_724_873_966);
        assert_eq!(whole.isoformat(), "2024-08-28T19:39:26+00:00");
        assert_eq!(whole.epoch_seconds(), "1724873966.0");
    }

    #[test]
    fn keeps_the_offset_it_was_written_with() {
        let t = Timestamp::parse("2023-09-24T10:36:00+02:00").unwrap();
        assert_eq!(t.isoformat(), "2023-09-24T10:36:00+02:00");
        assert_eq!(
            t.unix_micros,
            Timestamp::parse("2023-09-24T08:36:00Z")
                .unwrap()
                .unix_micros
        );
        let neg = Timestamp::parse("2023-09-24 01:00-0530").unwrap();
        assert_eq!(neg.isoformat(), "2023-09-24T01:00:00-05:30");
    }

    #[test]
    fn parses_the_forms_patronictl_and_the_docs_use() {
        // The docs' example `2019-09-24T12:00+00` (hours-only offset, no seconds).
        let t = Timestamp::parse("2019-09-24T12:00+00").unwrap();
        assert_eq!(t.isoformat(), "2019-09-24T12:00:00+00:00");
        let frac = Timestamp::parse("2019-09-24T12:00:01.5Z").unwrap();
        assert_eq!(frac.unix_micros - t.unix_micros, 1_500_000);
        assert_eq!(
            Timestamp::parse(" 2019-09-24 12:00:00 UTC ")
                .unwrap()
                .unix_micros,
            t.unix_micros
        );
    }

    #[test]
    fn refuses_missing_zone_and_garbage() {
        assert_eq!(
            Timestamp::parse("2019-09-24T12:00"),
            Err(TimestampError::NoTimezone)
        );
        assert_eq!(
            Timestamp::parse("2019-09-24"),
            Err(TimestampError::NoTimezone)
        );
        for bad in [
            "",
            "tomorrow",
            "2019-13-01T00:00Z",
            "2019-02-29T00:00Z",
            "2019-09-24T25:00Z",
            "2019-09-24T12:00+25",
            "2019-09-24T12:00 Europe/Berlin",
            "2019-09-24T12:00:00.Z",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(TimestampError::Invalid), "{bad}");
        }
        assert!(Timestamp::parse("2020-02-29T00:00Z").is_ok());
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 1, 11_016, 19_963, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn system_time_round_trip() {
        let now = SystemTime::now();
        let t = Timestamp::from_system_time(now);
        let back = t.to_system_time();
        let diff = now.duration_since(back).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_micros(1));
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(Timestamp::from_system_time(before).unix_micros, -10_000_000);
        assert_eq!(Timestamp::from_system_time(before).to_system_time(), before);
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(python_float(0.0), "0.0");
        assert_eq!(python_float(1.5), "1.5");
        assert_eq!(python_float(1_692_356_718.0), "1692356718.0");
    }
}
