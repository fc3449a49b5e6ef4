//! Deploy windows (`targets.windows` in a spec): when a deployment may
//! start, in UTC. `"mon-fri 09:00-17:00"`, `"sat,sun 10:00-12:00"`,
//! `"daily 06:00-22:00"`. A deployment may start inside any of them;
//! rollbacks are never held (they are the way back).

/// One window: the weekdays it is open (0 = Monday) and its minutes of
/// the day, `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    days: [bool; 7],
    from: u32,
    to: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Result<usize, String> {
    DAYS.iter()
        .position(|d| *d == s)
        .ok_or_else(|| format!("`{s}` is not a day: expected mon, tue, wed, thu, fri, sat or sun"))
}

fn minutes(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a time: expected HH:MM (24-hour, UTC)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m > 0) || h2(s) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `H:MM` (one digit hours) is accepted; more than two is not.
fn h2(s: &str) -> bool {
    s.split(':').next().is_some_and(|h| h.len() > 2)
}

impl std::str::FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let (days_part, time_part) = t.split_once(' ').ok_or_else(|| {
            format!("`{text}`: expected DAYS HH:MM-HH:MM, e.g. \"mon-fri 09:00-17:00\" (UTC)")
        })?;
        let mut days = [false; 7];
        if days_part == "daily" {
            days = [true; 7];
        } else {
            for part in days_part.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        if a > b {
                            return Err(format!(
                                "`{part}`: a range of days runs forward (e.g. mon-fri)"
                            ));
                        }
                        days[a..=b].iter_mut().for_each(|d| *d = true);
                    }
                    None => days[day(part)?] = true,
                }
            }
        }
        let (from, to) = time_part
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("`{time_part}`: expected HH:MM-HH:MM"))?;
        let (from, to) = (minutes(from)?, minutes(to)?);
        if from >= to {
            return Err(format!(
                "`{time_part}`: the window must end after it starts, the same day (split one across midnight in two)"
            ));
        }
        Ok(Window { days, from, to })
    }
}

/// Unix ms to (weekday from Monday, minute of the day), UTC.
fn at(ms: i64) -> (usize, u32) {
    let days = ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday (3, from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let minute = (ms.rem_euclid(86_400_000) / 60_000) as u32;
    (weekday, minute)
}

impl Window {
    fn contains(&self, ms: i64) -> bool {
        let (d, m) = at(ms);
        self.days[d] && m >= self.from && m < self.to
    }
}

/// Whether `now_ms` is inside one of `windows` (none: always). `Err`
/// carries when the next one opens (Unix ms, within a week).
pub fn check(windows: &[Window], now_ms: i64) -> Result<(), i64> {
    if windows.is_empty() || windows.iter().any(|w| w.contains(now_ms)) {
        return Ok(());
    }
    // The next opening: minute by minute would be 10k steps; window
    // starts are few, so try each day's starts in the coming week.
    let today = now_ms.div_euclid(86_400_000) * 86_400_000;
    let next = (0..8)
        .flat_map(|d| {
            windows
                .iter()
                .map(move |w| today + d * 86_400_000 + i64::from(w.from) * 60_000)
        })
        .filter(|t| *t > now_ms && windows.iter().any(|w| w.contains(*t)))
        .min()
        .unwrap_or(now_ms);
    Err(next)
}

/// Parses every window of a spec; the error names the index.
pub fn parse_all(texts: &[String]) -> Result<Vec<Window>, (usize, String)> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| t.parse().map_err(|e| (i, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 is a Monday.
    const MON: i64 = 1_796_601_600_000;

    fn ms(day: i64, h: i64, m: i64) -> i64 {
        MON + day * 86_400_000 + h * 3_600_000 + m * 60_000
    }

    #[test]
    fn working_hours_open_on_weekdays_only_and_say_when_they_open_next() {
        assert_eq!(at(MON), (0, 0), "2026-12-07 is a Monday");
        let w = parse_all(&["mon-fri 09:00-17:00".into()]).unwrap();
        assert_eq!(check(&w, ms(0, 9, 0)), Ok(()));
        assert_eq!(check(&w, ms(4, 16, 59)), Ok(()));
        assert_eq!(check(&w, ms(0, 8, 59)), Err(ms(0, 9, 0)));
        assert_eq!(check(&w, ms(0, 17, 0)), Err(ms(1, 9, 0)));
        // Friday evening: next Monday.
        assert_eq!(check(&w, ms(4, 18, 0)), Err(ms(7, 9, 0)));
        let two = parse_all(&["sat,sun 10:00-12:00".into(), "daily 23:00-24:00".into()]).unwrap();
        assert_eq!(check(&two, ms(5, 11, 0)), Ok(()));
        assert_eq!(check(&two, ms(2, 23, 30)), Ok(()));
        assert_eq!(check(&two, ms(2, 12, 0)), Err(ms(2, 23, 0)));
        assert_eq!(check(&[], ms(2, 3, 0)), Ok(()));
    }

    #[test]
    fn a_bad_window_is_refused_saying_what_is_expected() {
        for (text, want) in [
            ("weekdays 09:00-17:00", "is not a day"),
            ("mon-fri 9-17", "is not a time"),
            ("mon-fri 17:00-09:00", "must end after it starts"),
            ("fri-mon 09:00-17:00", "runs forward"),
            ("mon-fri", "expected DAYS HH:MM-HH:MM"),
            ("mon 25:00-26:00", "is not a time"),
        ] {
            let e = parse_all(&[text.into()]).unwrap_err();
            assert!(e.1.contains(want), "{text}: {}", e.1);
        }
    }
}
