//! Time helpers every stage may use (a leaf: imports nothing from the crate): unix milliseconds,
//! the proleptic Gregorian calendar, China Standard Time days (the users' day), and the text forms
//! the config and the API accept (durations such as "1h30m", RFC 3339 date-times).

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch (negative before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Inverse of [`unix_ms`].
pub fn from_unix_ms(ms: i64) -> SystemTime {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// Serde adapter: `SystemTime` as integer unix milliseconds.
pub mod serde_unix_ms {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as unix milliseconds.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::unix_ms(*t))
    }

    /// Deserializes from unix milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        i64::deserialize(d).map(super::from_unix_ms)
    }
}

/// Seconds since the Unix epoch as a float (0 before it), for JSON and model inputs.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// UTC+8 offset in milliseconds.
const OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 (CST) of the CST calendar day holding `ms`.
pub(crate) fn day_of(ms: i64) -> i64 {
    (ms + OFFSET_MS).div_euclid(DAY_MS)
}

/// Unix ms at which CST day `day` begins.
pub(crate) fn day_start_ms(day: i64) -> i64 {
    day * DAY_MS - OFFSET_MS
}

/// Unix ms at which the CST month holding `ms` begins and the next one begins.
pub(crate) fn month_bounds_ms(ms: i64) -> (i64, i64) {
    let (y, m, _) = civil_from_days(day_of(ms));
    let start = day_start_ms(days_from_civil(y, m, 1));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start, day_start_ms(days_from_civil(ny, nm, 1)))
}

/// `YYYY-MM-DD` of the CST day holding `ms`.
pub(crate) fn day_key(ms: i64) -> String {
    let (y, m, d) = civil_from_days(day_of(ms));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` of the CST month holding `ms`.
pub(crate) fn month_key(ms: i64) -> String {
    let (y, m, _) = civil_from_days(day_of(ms));
    format!("{y:04}-{m:02}")
}

/// Hour of the CST day (0–23).
pub fn local_hour(t: SystemTime) -> u32 {
    let ms = unix_ms(t) + OFFSET_MS;
    // rem_euclid of a positive divisor is in 0..24.
    u32::try_from(ms.div_euclid(3_600_000).rem_euclid(24)).unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` in CST, for messages and reports.
pub fn format_cst(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let (y, m, d) = civil_from_days(day_of(ms));
    let sec = (ms + OFFSET_MS).div_euclid(1000).rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sec / 3600,
        sec / 60 % 60,
        sec % 60
    )
}

/// Unix ms of a CST wall-clock date and time (tests and callers building windows).
pub fn cst_ms(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> i64 {
    day_start_ms(days_from_civil(y, m, d))
        + i64::from(hh) * 3_600_000
        + i64::from(mm) * 60_000
        + i64::from(ss) * 1000
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Parses a duration such as "500ms", "10s", "5m", "1h" or "1h30m" (integer amounts, units
/// h, m, s, ms, largest first, each at most once).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected e.g. \"500ms\", \"10s\", \"5m\", \"1h30m\"";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    let mut rest = t;
    let mut total = Duration::ZERO;
    let mut last_rank = u8::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration; {HINT}"));
        }
        let (num, after) = rest.split_at(digits);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is too large a duration"))?;
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let (rank, unit_ms) = match unit {
            "h" => (3, 3_600_000u64),
            "m" => (2, 60_000),
            "s" => (1, 1000),
            "ms" => (0, 1),
            "" => return Err(format!("{s:?} is missing a unit after {num}; {HINT}")),
            other => {
                return Err(format!(
                    "{s:?} has unknown unit {other:?}; use h, m, s or ms"
                ));
            }
        };
        if rank >= last_rank {
            return Err(format!(
                "{s:?}: units must go from largest to smallest, each once (e.g. \"1h30m\")"
            ));
        }
        last_rank = rank;
        let ms = n
            .checked_mul(unit_ms)
            .ok_or_else(|| format!("{s:?} is too large a duration"))?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| format!("{s:?} is too large a duration"))?;
        rest = after;
    }
    Ok(total)
}

/// Parses an RFC 3339 date-time with a UTC offset (`2026-11-22T01:00:00+08:00`, `…Z`, fractional
/// seconds allowed) into milliseconds since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!(
            "{s:?} is not an RFC 3339 date-time ({why}); expected e.g. \"2026-11-22T01:00:00+08:00\""
        )
    };
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("layout is YYYY-MM-DDTHH:MM:SS±HH:MM"));
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return Err(bad("non-digit in date or time"));
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("no such time"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad("empty fraction"));
        }
        for (k, d) in b[i + 1..i + 1 + digits.min(3)].iter().enumerate() {
            millis += i64::from(d - b'0') * 10i64.pow(2 - k as u32);
        }
        i += 1 + digits;
    }
    let offset_min = match b.get(i..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad("bad UTC offset"));
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return Err(bad("bad UTC offset"));
            }
            let off = h * 60 + m;
            if *sign == b'-' { -off } else { off }
        }
        Some([]) => return Err(bad("missing UTC offset; add e.g. +08:00")),
        _ => return Err(bad("bad UTC offset")),
    };
    // Validated above: month is 1..=12 and day 1..=31.
    let days = days_from_civil(
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    );
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 11_016, 19_723, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn cst_day_and_month_boundaries() {
        // 2024-03-01 00:00 CST is 2024-02-29 16:00 UTC.
        let m = cst_ms(2024, 3, 1, 0, 0, 0);
        assert_eq!(m, 1_709_222_400_000);
        assert_eq!(day_key(m), "2024-03-01");
        assert_eq!(day_key(m - 1), "2024-02-29");
        assert_eq!(month_key(m - 1), "2024-02");
        assert_eq!(month_bounds_ms(m - 1), (cst_ms(2024, 2, 1, 0, 0, 0), m));
        assert_eq!(
            month_bounds_ms(cst_ms(2023, 12, 31, 23, 0, 0)).1,
            cst_ms(2024, 1, 1, 0, 0, 0)
        );
        assert_eq!(day_start_ms(day_of(m + 5)), m);
        assert_eq!(local_hour(from_unix_ms(m - 1)), 23);
        assert_eq!(local_hour(from_unix_ms(m)), 0);
        assert_eq!(
            format_cst(from_unix_ms(cst_ms(2025, 7, 4, 9, 5, 7))),
            "2025-07-04 09:05:07"
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("2m500ms", Duration::from_millis(120_500)),
            (" 0s ", Duration::ZERO),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in [
            "",
            "10",
            "s",
            "1.5s",
            "10 s",
            "5d",
            "30m1h",
            "1s1s",
            "-1s",
            "99999999999999999999h",
        ] {
            let e = parse_duration(s)
                .err()
                .unwrap_or_else(|| panic!("{s:?} accepted"));
            assert!(
                e.contains("expected") || e.contains("unit") || e.contains("large"),
                "{s}: {e}"
            );
        }
        assert!(
            parse_duration("10")
                .err()
                .unwrap_or_default()
                .contains("missing a unit")
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("1970-01-01T08:00:00+08:00"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T01:00:00+08:00"),
            Ok(1_795_280_400_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.250Z"),
            Ok(1_709_208_000_250)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59-00:00"), Ok(-1000));
        for s in [
            "2026-11-22T01:00:00",
            "2026-11-22",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T01:00:00+8:00",
            "2026-11-22T01:00:00.Z",
            "二〇二六-11-22T01:00:00Z",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s} accepted");
        }
        assert!(
            parse_rfc3339("2026-11-22T01:00:00")
                .err()
                .unwrap_or_default()
                .contains("+08:00")
        );
    }
}
