//! Weekly schedules in local time (UTC+8, China Standard Time, no daylight saving).

use serde::Serialize;

/// Offset of local time from UTC, seconds; China has one time zone and no daylight saving.
pub const UTC_OFFSET_S: i64 = 8 * 3600;

/// Day names as written in configuration, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a rule may raise alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// At all times.
    Always,
    /// Inside any of these windows.
    Windows(Vec<Window>),
}

/// One weekly window: on each listed day, from `from_min` to `to_min` (minutes after local midnight).
///
/// A window whose end is not after its start crosses midnight: `22:00`–`06:00` on `mon` covers Monday
/// 22:00 to Tuesday 06:00 — the part after midnight belongs to the day the window started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Days the window starts on, Monday first.
    pub days: [bool; 7],
    /// Start, minutes after midnight (0..1440).
    pub from_min: u16,
    /// End, minutes after midnight (1..=1440); ≤ `from_min` means it ends the next day.
    pub to_min: u16,
}

impl Schedule {
    /// True when frame time `t` (seconds since the Unix epoch) falls inside the schedule.
    pub fn is_active(&self, t: f64) -> bool {
        match self {
            Schedule::Always => true,
            Schedule::Windows(ws) => {
                if !t.is_finite() {
                    return false;
                }
                let (dow, sec) = local_day_and_second(t);
                ws.iter().any(|w| w.contains(dow, sec))
            }
        }
    }
}

impl Window {
    fn contains(&self, dow: usize, sec: u32) -> bool {
        let from = u32::from(self.from_min) * 60;
        let to = u32::from(self.to_min) * 60;
        let prev = (dow + 6) % 7;
        if from < to {
            self.days[dow] && sec >= from && sec < to
        } else {
            (self.days[dow] && sec >= from) || (self.days[prev] && sec < to)
        }
    }
}

/// Local weekday (0 = Monday) and second of the day for a Unix time.
pub fn local_day_and_second(t: f64) -> (usize, u32) {
    let local = t.floor() as i64 + UTC_OFFSET_S;
    let days = local.div_euclid(86_400);
    let sec = local.rem_euclid(86_400) as u32;
    // 1970-01-01 was a Thursday (index 3).
    let dow = (days + 3).rem_euclid(7) as usize;
    (dow, sec)
}

/// Parses `HH:MM` into minutes after midnight; `24:00` only when `allow_24`.
pub fn parse_hhmm(s: &str, allow_24: bool) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time; expected HH:MM such as \"06:00\" or \"22:30\"");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(if h == 24 && m == 0 {
            format!("{s:?}: 24:00 is only allowed as an end time")
        } else {
            format!("{s:?} is not a time of day (00:00–23:59)")
        });
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix time of a local (UTC+8) date and time; 2026-03-02 is a Monday.
    pub(crate) fn local(day_of_march_2026: i64, h: i64, m: i64) -> f64 {
        // 2026-03-01T00:00:00+08:00 = 2026-02-28T16:00:00Z.
        let march1 = 1_772_323_200i64 - UTC_OFFSET_S;
        (march1 + (day_of_march_2026 - 1) * 86_400 + h * 3600 + m * 60) as f64
    }

    #[test]
    fn weekday_is_right() {
        assert_eq!(
            local_day_and_second(local(2, 0, 0)),
            (0, 0),
            "2 March 2026 is a Monday"
        );
        assert_eq!(local_day_and_second(local(8, 23, 59)).0, 6);
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let mut days = [false; 7];
        days[0] = true; // Monday night only
        let s = Schedule::Windows(vec![Window {
            days,
            from_min: 22 * 60,
            to_min: 6 * 60,
        }]);
        assert!(!s.is_active(local(2, 21, 59)));
        assert!(s.is_active(local(2, 22, 0)));
        assert!(
            s.is_active(local(3, 5, 59)),
            "Tuesday early morning is Monday's night"
        );
        assert!(!s.is_active(local(3, 6, 0)));
        assert!(
            !s.is_active(local(3, 22, 30)),
            "Tuesday night is not scheduled"
        );
        assert!(
            !s.is_active(local(2, 3, 0)),
            "Monday early morning is Sunday's night"
        );
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_hhmm("06:30", false), Ok(390));
        assert_eq!(parse_hhmm("24:00", true), Ok(1440));
        assert!(parse_hhmm("24:00", false).is_err());
        assert!(parse_hhmm("6:30", false).is_err());
        assert!(parse_hhmm("12:60", false).is_err());
        assert!(parse_hhmm("25:00", true).is_err());
    }
}
