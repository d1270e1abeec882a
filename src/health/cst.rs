//! China Standard Time (UTC+8, no DST) calendar maths on unix milliseconds: the users' day.

use std::time::SystemTime;

use super::state::to_unix_ms;

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
    let ms = to_unix_ms(t) + OFFSET_MS;
    // rem_euclid of a positive divisor is in 0..24.
    u32::try_from(ms.div_euclid(3_600_000).rem_euclid(24)).unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` in CST, for messages and reports.
pub fn format_cst(t: SystemTime) -> String {
    let ms = to_unix_ms(t);
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

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::from_unix_ms;

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
}
